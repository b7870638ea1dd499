"""Answer quality on a CMRC-style file, with the configured LLM:

    python bench/answer.py --data ../shared/data/cmrc2018_trial.json --limit 50

Ingests every passage (one document each) into a temporary store, answers the
first N questions through the project's QA pipeline and prints one JSON line
last: CMRC's character F1 and exact match (punctuation and spaces removed),
"a gold answer is contained in the answer", how often the tool refused, and the
median seconds per question.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cmrc
from _common import bench_settings, emit

from privategpt_zh.errors import NotFoundError
from privategpt_zh.ingest import Ingestor
from privategpt_zh.qa import build_qa


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--db", type=Path, default=None, help="reuse a store built by an earlier run")
    args = p.parse_args()
    passages, questions = cmrc.load(args.data)
    work = Path(tempfile.mkdtemp(prefix="bench-answer-"))
    db = args.db or work / "db"
    settings = bench_settings(work / "docs", db, args.max_new_tokens)
    if args.db is None or not (db / "manifest.sqlite3").exists():
        cmrc.write_passages(passages, work / "docs")
        Ingestor(settings).run()
    qa = build_qa(settings)
    f1s, ems, contains, refused, times = [], [], [], 0, []
    for q in questions[: args.limit]:
        started = time.perf_counter()
        try:
            answer = qa.answer(q.text).text
        except NotFoundError:
            answer, refused = "", refused + 1
        times.append(time.perf_counter() - started)
        f1s.append(max(cmrc.f1(answer, g) for g in q.answers))
        ems.append(max(cmrc.normalise(answer) == cmrc.normalise(g) for g in q.answers))
        contains.append(any(cmrc.normalise(g) in cmrc.normalise(answer) for g in q.answers))
    n = len(f1s)
    emit(
        {
            "questions": n,
            "f1": round(sum(f1s) / n, 4),
            "em": round(sum(ems) / n, 4),
            "contains": round(sum(contains) / n, 4),
            "refused": round(refused / n, 4),
            "p50_s": round(statistics.median(times), 2),
        }
    )


if __name__ == "__main__":
    main()
