"""Hybrid retrieval on a slice of the real CMRC 2018 trial data (../shared/data)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import MODEL_DIR, SHARED_DATA

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import cmrc  # noqa: E402

from privategpt_zh.config import load_settings  # noqa: E402
from privategpt_zh.embeddings import embedder_for  # noqa: E402
from privategpt_zh.ingest import Ingestor  # noqa: E402
from privategpt_zh.retriever import Retriever  # noqa: E402
from privategpt_zh.store import Store  # noqa: E402

PASSAGES = 25


@pytest.fixture(scope="module")
def slice_store(tmp_path_factory):
    if not SHARED_DATA.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_DATA} is missing: CI must run with ../shared beside the clone")
        pytest.skip("../shared/data is not beside this checkout")
    passages, questions = cmrc.load(SHARED_DATA)
    names = sorted(passages)[:PASSAGES]
    work = tmp_path_factory.mktemp("cmrc")
    cmrc.write_passages({n: passages[n] for n in names}, work / "docs")

    settings = load_settings(
        None, source_directory=work / "docs", persist_directory=work / "db", model_dir=MODEL_DIR
    )
    Ingestor(settings).run()  # the embedded MiniLM, for real
    asked = [q for q in questions if q.source in set(names)]
    return settings, Store(settings.persist_directory), asked


def _doc_at_1(store, settings, questions, mode) -> float:
    settings = load_settings(None, retrieval_mode=mode, model_dir=MODEL_DIR)
    embedder = embedder_for(settings) if mode != "lexical" else None
    retriever = Retriever(store, embedder, settings)
    hits = [retriever.search(q.text, 4).hits for q in questions]
    return sum(bool(h) and h[0].chunk.source == q.source for h, q in zip(hits, questions)) / len(
        questions
    )


def test_hybrid_finds_the_right_passage(slice_store):
    settings, store, questions = slice_store
    assert len(questions) > 50
    hybrid = _doc_at_1(store, settings, questions, "hybrid")
    lexical = _doc_at_1(store, settings, questions, "lexical")
    assert hybrid >= 0.95
    assert hybrid >= lexical


def test_answerable_questions_are_rarely_refused(slice_store):
    settings, store, questions = slice_store
    from privategpt_zh.config import load_settings

    retriever = Retriever(store, None, load_settings(None, retrieval_mode="lexical"))
    refused = sum(retriever.search(q.text, 4).not_found for q in questions)
    assert refused / len(questions) <= 0.05
