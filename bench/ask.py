"""Answer speed and the tool's overhead: python bench/ask.py [--db DIR] [--max-new-tokens N]

Ingests source_documents/ into a temporary store, asks a fixed question set
through the project's QA pipeline, then sends the very same prompts straight to
llama-cpp-python in the same process. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import ROOT, bench_settings, emit, peak_rss_mb

from privategpt_zh.ingest import Ingestor
from privategpt_zh.qa import Timings, build_qa

QUESTIONS = [
    "奶牛乳房炎怎么预防？",
    "育肥猪舍的适宜温度是多少？",
    "羊一年驱虫几次？",
    "产蛋高峰期每天需要多少小时光照？",
    "非洲猪瘟怎么防控？",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    db = args.db or Path(tempfile.mkdtemp(prefix="bench-ask-")) / "db"
    settings = bench_settings(ROOT / "source_documents", db, args.max_new_tokens)
    Ingestor(settings).run()
    qa = build_qa(settings)
    tool, direct = [], []
    for question in QUESTIONS:
        tool.append(_through_tool(qa, question))
        direct.append(_direct(qa, tool[-1]["prompt"], args.max_new_tokens))
    emit(_summary(tool, direct))


def _through_tool(qa, question: str) -> dict:
    qa.llm._llama.reset()  # no prompt reuse from the last question: both sides start cold
    started = time.perf_counter()
    prepared = qa.prepare(question)
    timings = Timings()
    for _ in qa.stream(prepared, timings):
        pass
    total = time.perf_counter() - started
    return {
        "prompt": prepared.prompt,
        "retrieval_ms": timings.retrieval_ms,
        "ttft_s": prepared.retrieval_ms / 1000 + timings.first_token_s,
        "tokens": timings.tokens,
        "tps": timings.tokens_per_s,
        "total_s": total,
    }


def _direct(qa, prompt: str, max_tokens: int) -> dict:
    llama = qa.llm._llama  # the same loaded model: only the tool's own work differs
    llama.reset()  # else llama.cpp reuses the KV cache of the identical prompt just run
    started = time.perf_counter()
    first, tokens = None, 0
    for _ in llama.create_completion(
        prompt, max_tokens=max_tokens, temperature=0.0, seed=1, stream=True
    ):
        first = first or time.perf_counter()
        tokens += 1
    end = time.perf_counter()
    return {
        "ttft_s": first - started,
        "tokens": tokens,
        "tps": tokens / (end - first) if end > first else 0.0,
        "total_s": end - started,
    }


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def _summary(tool: list[dict], direct: list[dict]) -> dict:
    return {
        "questions": len(tool),
        "retrieval_ms": round(_mean(tool, "retrieval_ms"), 1),
        "ttft_s": round(_mean(tool, "ttft_s"), 3),
        "tokens_per_s": round(_mean(tool, "tps"), 2),
        "direct_ttft_s": round(_mean(direct, "ttft_s"), 3),
        "direct_tokens_per_s": round(_mean(direct, "tps"), 2),
        "total_s": round(sum(r["total_s"] for r in tool), 2),
        "direct_total_s": round(sum(r["total_s"] for r in direct), 2),
        "overhead_ratio": round(
            sum(r["total_s"] for r in tool) / sum(r["total_s"] for r in direct), 3
        ),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


if __name__ == "__main__":
    main()
