"""Shared bits of the benchmark scripts (not tests: they print figures)."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from privategpt_zh.offline import go_offline  # noqa: E402

go_offline()


def bench_settings(source: Path, db: Path, max_new_tokens: int):
    """Settings for the answering benchmarks: repeatable (greedy, fixed seed)."""
    from privategpt_zh.config import load_settings

    return load_settings(
        None,
        source_directory=source,
        persist_directory=db,
        model_dir=ROOT / "models",
        max_new_tokens=max_new_tokens,
        temperature=0.0,
        seed=1,
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result: dict) -> None:
    """The last line of every bench script: one JSON object."""
    print(json.dumps(result, ensure_ascii=False))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]
