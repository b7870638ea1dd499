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

from privategpt_zh.config import load_settings
from privategpt_zh.ingest import Ingestor


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
    started = time.perf_counter()
    cold = ingestor.run()
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    warm = ingestor.run()
    warm_s = time.perf_counter() - started
    chars = sum(r.chars for r in cold.results)
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


if __name__ == "__main__":
    main()
