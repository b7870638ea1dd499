from __future__ import annotations

import pytest

from privategpt_zh.errors import ConfigError, NotFoundError
from privategpt_zh.ingest import Ingestor
from privategpt_zh.llm import FakeLLM
from privategpt_zh.qa import QA, Turn, build_qa, is_chinese
from privategpt_zh.retriever import Retriever
from privategpt_zh.store import Chunk, Hit


class _StaticRetriever:
    def __init__(self, hits):
        self.hits = hits

    def search(self, query, k):
        from privategpt_zh.retriever import Retrieval

        return Retrieval(
            self.hits[:k], self.hits[0].score if self.hits else 0.0, 1.0, not self.hits
        )


def _hits(n, size=200):
    return [
        Hit(Chunk(f"c{i}", f"doc{i}.txt", i, None, f"第{i}段" + "奶" * size), 1.0 - i / 10)
        for i in range(n)
    ]


def test_prompt_fits_by_dropping_old_turns_then_low_ranked_chunks(settings_for):
    settings = settings_for(model_n_ctx=1200, max_new_tokens=200, target_source_chunks=4)
    llm = FakeLLM(n_ctx=1200)
    qa = QA(settings, _StaticRetriever(_hits(4)), llm)
    history = [Turn("旧问题" * 20, "旧回答" * 20) for _ in range(3)]
    prepared = qa.prepare("奶牛乳房炎怎么预防？", history)
    assert prepared.prompt_tokens <= 1200 - 200
    assert prepared.dropped_turns == 3  # all turns go before any chunk
    kept = [h.chunk.id for h in prepared.hits]
    assert 1 <= len(kept) < 4 and kept == ["c0", "c1", "c2", "c3"][: len(kept)]
    assert prepared.dropped_chunks == 4 - len(kept)
    assert all(h.chunk.text in prepared.prompt for h in prepared.hits)


def test_the_best_chunk_is_trimmed_never_dropped(settings_for):
    settings = settings_for(model_n_ctx=600, max_new_tokens=100)
    qa = QA(settings, _StaticRetriever(_hits(3, size=800)), FakeLLM(n_ctx=600))
    prepared = qa.prepare("奶牛乳房炎怎么预防？")
    assert prepared.prompt_tokens <= 500
    assert [h.chunk.id for h in prepared.hits] == ["c0"]
    assert (
        prepared.hits[0].chunk.text.startswith("第0段") and "奶牛乳房炎怎么预防" in prepared.prompt
    )


def test_a_question_too_long_for_the_window_is_a_clear_error(settings_for):
    settings = settings_for(model_n_ctx=600, max_new_tokens=100)
    qa = QA(settings, _StaticRetriever(_hits(2)), FakeLLM(n_ctx=600))
    with pytest.raises(ConfigError, match="MODEL_N_CTX=600"):
        qa.prepare("请问" + "奶牛" * 2000)


def test_language_follows_the_question(settings_for):
    qa = QA(settings_for(), _StaticRetriever(_hits(1, 10)), FakeLLM())
    assert "参考资料" in qa.prepare("奶牛怎么养？").prompt
    assert "Reference material" in qa.prepare("How to raise cows?").prompt
    assert is_chinese("奶牛") and not is_chinese("cow")


def test_nothing_retrieved_is_not_found_in_the_question_language(settings_for):
    qa = QA(settings_for(), _StaticRetriever([]), FakeLLM())
    with pytest.raises(NotFoundError, match="资料中没有"):
        qa.prepare("奶牛怎么养？")
    with pytest.raises(NotFoundError, match="do not contain"):
        qa.prepare("How to raise cows?")


def test_real_llama_answer_from_ingested_documents(docs, settings_for, model_path):
    settings = settings_for(
        model_path=model_path,
        model_n_ctx=2048,
        max_new_tokens=64,
        temperature=0.0,
        seed=1,
        retrieval_mode="lexical",
    )
    Ingestor(settings).run()
    qa = build_qa(settings)
    answer = qa.answer("挤奶前应该怎样处理乳头？")
    assert answer.hits[0].chunk.source == "奶牛手册.pdf"
    assert answer.text and answer.timings.tokens > 0 and answer.timings.first_token_s > 0
    assert any(fact in answer.text for fact in ("药浴", "擦干", "纸巾")), answer.text


def test_real_llama_never_exceeds_its_context(docs, settings_for, model_path):
    settings = settings_for(
        model_path=model_path,
        model_n_ctx=512,
        max_new_tokens=128,
        temperature=0.0,
        target_source_chunks=10,
        chunk_size=400,
        chunk_overlap=0,
        retrieval_mode="lexical",
    )
    (docs / "long.txt").write_text(
        ("奶牛乳房炎的预防要点很多，" * 40 + "\n") * 10, encoding="utf-8"
    )
    Ingestor(settings).run()
    qa = build_qa(settings)
    history = [Turn("奶牛乳房炎" * 50, "预防" * 100)]
    prepared = qa.prepare("奶牛乳房炎怎么预防？" * 8, history)
    assert prepared.prompt_tokens <= 512 - 128
    assert len(prepared.hits) >= 1 and prepared.dropped_turns == 1
    assert "".join(qa.stream(prepared))  # llama.cpp accepted it


def test_retriever_modes_on_real_store(docs, settings_for):
    settings = settings_for()
    Ingestor(settings).run()
    from privategpt_zh.embeddings import get_embedder
    from privategpt_zh.store import Store

    store = Store(settings.persist_directory)
    for mode in ("lexical", "dense", "hybrid"):
        retriever = Retriever(store, get_embedder("hash:256"), settings_for(retrieval_mode=mode))
        top = retriever.search("伊维菌素驱虫", 2).hits[0]
        assert top.chunk.source == "肉羊.txt", mode
