"""Retrieval quality on a CMRC-style file:

    python bench/retrieval.py --data ../shared/data/cmrc2018_trial.json [--k 4] [--limit N]
        [--mode hybrid|dense|lexical] [--embeddings NAME] [--chunk-size N --chunk-overlap N]
        [--half]

Writes each passage as one document, ingests them with the project's own ingest
into a temporary store, asks every question through the project's retriever and
prints one JSON line last. --half ingests every other passage and also reports
how often questions about the missing half are refused (NOT_FOUND_THRESHOLD).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cmrc
from _common import emit, percentile

from privategpt_zh.config import load_settings
from privategpt_zh.embeddings import embedder_for
from privategpt_zh.ingest import Ingestor
from privategpt_zh.retriever import Retriever
from privategpt_zh.store import Store


def main() -> None:
    args = _args()
    passages, questions = cmrc.load(args.data)
    kept = sorted(passages)[::2] if args.half else sorted(passages)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    docs = {n: passages[n] for n in kept}
    for copy in range(1, args.replicate):  # a bigger store, for latency only
        docs.update({f"copy{copy}_{n}": passages[n] for n in kept})
    cmrc.write_passages(docs, work / "docs")
    overrides = {
        "retrieval_mode": args.mode,
        "embeddings_model_name": args.embeddings,
        "chunk_size": args.chunk_size,
        "chunk_overlap": args.chunk_overlap,
        "hybrid_dense_weight": args.dense_weight,
        "not_found_threshold": args.threshold,
    }
    settings = load_settings(
        None,
        source_directory=work / "docs",
        persist_directory=work / "db",
        **{k: v for k, v in overrides.items() if v is not None},
    )
    started = time.perf_counter()
    Ingestor(settings).run()
    ingest_s = time.perf_counter() - started
    store = Store(settings.persist_directory)
    embedder = None if settings.retrieval_mode == "lexical" else embedder_for(settings)
    retriever = Retriever(store, embedder, settings)
    kept_set = set(kept)
    asked = questions[: args.limit] if args.limit else questions
    result = _score(
        retriever, [q for q in asked if q.source in kept_set], args.k, settings.not_found_threshold
    )
    result["ingest_s"] = round(ingest_s, 1)
    result.update(
        {
            "mode": settings.retrieval_mode,
            "chunk_size": settings.chunk_size,
            "chunk_overlap": settings.chunk_overlap,
        }
    )
    if args.half:
        missing = [q for q in asked if q.source not in kept_set]
        refused = sum(1 for q in missing if retriever.search(q.text, args.k).not_found)
        result["refused_unanswerable"] = round(refused / max(len(missing), 1), 4)
        result["unanswerable"] = len(missing)
    emit(result)


def _score(retriever: Retriever, questions, k: int, threshold: float) -> dict:
    doc1 = dock = ans = refused = 0
    times = []
    for q in questions:
        found = retriever.search(q.text, k)
        times.append(found.ms)
        sources = [h.chunk.source for h in found.hits]
        doc1 += bool(sources) and sources[0] == q.source
        dock += q.source in sources
        ans += any(a in h.chunk.text for a in q.answers for h in found.hits)
        refused += found.not_found
    n = max(len(questions), 1)
    return {
        "questions": len(questions),
        "doc_at_1": round(doc1 / n, 4),
        "doc_at_k": round(dock / n, 4),
        "answer_at_k": round(ans / n, 4),
        "refused_answerable": round(refused / n, 4),
        "k": k,
        "p50_ms": round(percentile(times, 0.5), 1),
        "p95_ms": round(percentile(times, 0.95), 1),
    }


def _args():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--mode", choices=["hybrid", "dense", "lexical"], default=None)
    p.add_argument("--embeddings", default=None)
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--chunk-overlap", type=int, default=None)
    p.add_argument("--dense-weight", type=float, default=None)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--half", action="store_true")
    p.add_argument(
        "--replicate",
        type=int,
        default=1,
        help="write every passage N times (a store N times bigger, for latency)",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="working folder; a store already there is only synced (mode changes "
        "need no re-ingest)",
    )
    return p.parse_args()


if __name__ == "__main__":
    main()
