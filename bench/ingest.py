"""Ingest speed and memory: python bench/ingest.py DIR [--db DIR] [--embeddings NAME]

Runs the project's own ingest on DIR into a fresh store (cold), then again with
nothing changed (warm), and prints one JSON line last.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import emit, peak_rss_mb

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
    args = parser.parse_args()
    db = args.db or Path(tempfile.mkdtemp(prefix="bench-ingest-")) / "db"
    settings = load_settings(
        None,
        source_directory=args.source,
        persist_directory=db,
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
        }
    )


def _sections(path: Path) -> list:
    try:
        return list(loaders.load(path))
    except LoaderError:
        return []


if __name__ == "__main__":
    main()
