from __future__ import annotations

import os

import pytest

from privategpt_zh.errors import StoreLockedError, StoreMismatchError
from privategpt_zh.ingest import Ingestor, store_lock
from privategpt_zh.store import Store


def _statuses(report):
    return {r.source: r.status for r in report.results}


def test_ingest_pdf_docx_gbk_txt_with_metadata(docs, settings_for):
    settings = settings_for()
    report = Ingestor(settings).run()
    assert _statuses(report) == {
        "奶牛手册.pdf": "added",
        "生猪 要点.docx": "added",
        "肉羊.txt": "added",
    }
    store = Store(settings.persist_directory)
    pages = {h.chunk.page for h in store.lexical_search("乳头封闭剂 药浴", 10)}
    assert {1, 2} <= pages  # PDF page numbers kept
    hit = store.lexical_search("伊维菌素", 3)[0]
    assert hit.chunk.source == "肉羊.txt" and "阿苯达唑" in hit.chunk.text  # GBK decoded
    meta = store.vectors().get(ids=[hit.chunk.id], include=["metadatas"])["metadatas"][0]
    assert meta["source"] == "肉羊.txt" and meta["chunk"] == hit.chunk.index


def test_rerun_adds_nothing_and_changes_are_synced(docs, settings_for):
    settings = settings_for()
    Ingestor(settings).run()
    store = Store(settings.persist_directory)
    before = store.chunk_count()

    again = Ingestor(settings).run()
    assert set(_statuses(again).values()) == {"unchanged"}
    assert store.chunk_count() == before == store.vector_count()

    (docs / "肉羊.txt").write_text("蛋鸡产蛋高峰期每天光照16小时。", encoding="utf-8")
    (docs / "生猪 要点.docx").unlink()
    report = Ingestor(settings).run()
    assert _statuses(report)["肉羊.txt"] == "updated"
    assert _statuses(report)["生猪 要点.docx"] == "removed"
    assert store.lexical_search("伊维菌素", 3) == []
    assert store.lexical_search("光照", 3)[0].chunk.source == "肉羊.txt"
    assert store.lexical_search("非洲猪瘟", 3) == []
    assert store.chunk_count() == store.vector_count()


def test_touched_but_unchanged_file_is_not_reembedded(docs, settings_for):
    settings = settings_for()
    Ingestor(settings).run()
    os.utime(docs / "肉羊.txt", (1, 1))
    assert _statuses(Ingestor(settings).run())["肉羊.txt"] == "unchanged"


def test_bad_file_is_reported_and_others_ingested(docs, settings_for):
    settings = settings_for()
    (docs / "坏.pdf").write_bytes(b"%PDF-1.4 garbage")
    (docs / "空.txt").write_bytes(b"")
    (docs / ".hidden.txt").write_text("secret")
    (docs / "~$temp.docx").write_bytes(b"lock")
    report = Ingestor(settings).run()
    status = _statuses(report)
    assert status["坏.pdf"] == "failed" and status["空.txt"] == "failed"
    assert status["奶牛手册.pdf"] == "added"
    assert ".hidden.txt" not in status and "~$temp.docx" not in status
    reasons = {r.source: r.reason for r in report.failed}
    assert "PDF" in reasons["坏.pdf"] and "no text" in reasons["空.txt"]


def test_file_that_turns_bad_keeps_its_old_chunks(docs, settings_for):
    settings = settings_for()
    Ingestor(settings).run()
    (docs / "奶牛手册.pdf").write_bytes(b"%PDF-1.4 truncated")
    report = Ingestor(settings).run()
    assert _statuses(report)["奶牛手册.pdf"] == "failed"
    assert Store(settings.persist_directory).lexical_search("乳头封闭剂", 3)


def test_other_embedder_or_chunking_is_refused_until_rebuild(docs, settings_for):
    Ingestor(settings_for()).run()
    with pytest.raises(StoreMismatchError, match="--rebuild"):
        Ingestor(settings_for(embeddings_model_name="hash:128")).run()
    with pytest.raises(StoreMismatchError, match="chunk_size"):
        Ingestor(settings_for(chunk_size=500)).run()
    report = Ingestor(settings_for(chunk_size=500)).run(rebuild=True)
    assert set(_statuses(report).values()) == {"added"}


def test_second_ingest_is_locked_out(docs, settings_for):
    settings = settings_for()
    with store_lock(settings.persist_directory):
        with pytest.raises(StoreLockedError, match="another ingest"):
            Ingestor(settings).run()


def test_real_embedding_model_end_to_end(docs, settings_for):
    """The embedded sentence-transformers model, loaded from its package, offline."""
    settings = settings_for(embeddings_model_name=None, retrieval_mode="dense")
    Ingestor(settings).run()
    store = Store(settings.persist_directory)
    assert store.meta()["embedding_model"] == "default:all-MiniLM-L6-v2"
    assert store.vector_count() == store.chunk_count() > 0
