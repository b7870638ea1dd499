"""Ingest speed and memory: python bench/ingest.py DIR [--db DIR] [--embeddings NAME]

Runs the project's own ingest on DIR into a fresh store (cold), then again with
nothing changed (warm), and prints one JSON line last.

With --against-privategpt it then also times, as fresh processes on the same files
and into empty stores, `python ingest.py` and bench/privategpt_baseline.py (the
original privateGPT ingest restated), taking turns --rounds times, and reports
the wall-clock ratio. Wall clock includes imports: that is what a user waits for.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, emit, peak_rss_mb

from privategpt_zh import loaders
from privategpt_zh.config import load_settings
from privategpt_zh.errors import LoaderError
from privategpt_zh.ingest import Ingestor, scan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", type=Path)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument(
        "--embeddings", default=None, help="EMBEDDINGS_MODEL_NAME (default: embedded)"
    )
    parser.add_argument("--against-privategpt", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    db = args.db or work / "db"
    settings = load_settings(
        None,
        source_directory=args.source,
        persist_directory=db,
        model_dir=ROOT / "models",
        embeddings_model_name=args.embeddings,
    )
    ingestor = Ingestor(settings)
    # source characters (what a user has), not chunk characters (overlap counts twice)
    chars = sum(len(s.text) for f in scan(args.source) for s in _sections(f))
    started = time.perf_counter()
    cold = ingestor.run()
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    warm = ingestor.run()
    warm_s = time.perf_counter() - started
    chunks = sum(r.chunks for r in cold.results if r.status in ("added", "updated"))
    side = _side_by_side(args.source, work, args.rounds) if args.against_privategpt else {}
    emit(
        {
            "files": len(cold.results),
            "failed": len(cold.failed),
            "chars": chars,
            "chunks": chunks,
            "seconds": round(cold_s, 2),
            "chars_per_s": round(chars / cold_s, 1),
            "chunks_per_s": round(chunks / cold_s, 2),
            "warm_seconds": round(warm_s, 2),
            "warm_unchanged": warm.count("unchanged"),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            **side,
        }
    )


def _side_by_side(source: Path, work: Path, rounds: int) -> dict:
    """Both ingests as fresh processes, taking turns: the machine's noise hits both."""
    ours = [ROOT / "ingest.py"]
    theirs = [ROOT / "bench" / "privategpt_baseline.py", source]
    times: dict[str, list[float]] = {"ours": [], "privategpt": []}
    rss: dict[str, float] = {"ours": 0.0, "privategpt": 0.0}
    for n in range(rounds):
        for name, script in (("privategpt", theirs), ("ours", ours)):
            db = work / f"{name}-{n}"
            env = {**os.environ, "SOURCE_DIRECTORY": str(source), "PERSIST_DIRECTORY": str(db)}
            env["MODEL_DIR"] = str(ROOT / "models")
            argv = [sys.executable, *map(str, script)] + ([str(db)] if name != "ours" else [])
            seconds, peak = _timed(argv, env)
            times[name].append(seconds)
            rss[name] = max(rss[name], peak)
            print(f"{name} round {n + 1}: {seconds:.2f} s, peak RSS {peak:.0f} MB", flush=True)
    best = {name: min(values) for name, values in times.items()}
    return {
        "side_by_side_s": {name: [round(v, 2) for v in values] for name, values in times.items()},
        "side_by_side_peak_rss_mb": {name: round(v, 1) for name, v in rss.items()},
        "speedup_vs_privategpt": round(best["privategpt"] / best["ours"], 2),
    }


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            sys.stderr.write(err.read().decode(errors="replace"))
            raise SystemExit(f"{argv[1]} failed (exit {os.waitstatus_to_exitcode(status)})")
    return seconds, usage.ru_maxrss / 1024


def _sections(path: Path) -> list:
    try:
        return list(loaders.load(path))
    except LoaderError:
        return []


if __name__ == "__main__":
    main()
