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
    assert store.meta()["embedding_model"] == "default:all-MiniLM-L6-v2:128/zh32"
    assert store.vector_count() == store.chunk_count() > 0


def test_dry_run_plans_and_changes_nothing(docs, settings_for):
    settings = settings_for()
    plan = Ingestor(settings).run(dry_run=True)
    assert plan.dry_run and {r.status for r in plan.results} == {"to add"}
    assert not settings.persist_directory.exists()  # not even an empty store is created
    Ingestor(settings).run()
    (docs / "肉羊.txt").write_text("新内容：蛋鸡光照。", encoding="utf-8")
    (docs / "奶牛手册.pdf").unlink()
    plan = _statuses(Ingestor(settings).run(dry_run=True))
    assert plan == {
        "肉羊.txt": "to update",
        "奶牛手册.pdf": "to remove",
        "生猪 要点.docx": "unchanged",
    }
    assert Store(settings.persist_directory).lexical_search("伊维菌素", 1)  # old text still there


def test_parallel_parsing_matches_serial(tmp_path, settings_for):
    src = tmp_path / "source_documents"
    src.mkdir()
    for n in range(8):
        (src / f"doc{n}.txt").write_text(f"第{n}号文件。" + "奶牛养殖要点。" * 30, encoding="utf-8")
    (src / "bad.docx").write_bytes(b"not a zip")
    parallel = Ingestor(settings_for(), workers=2).run()
    serial_settings = settings_for(persist_directory=tmp_path / "db2")
    serial = Ingestor(serial_settings, workers=1).run()
    assert _statuses(parallel) == _statuses(serial)
    assert _statuses(parallel)["bad.docx"] == "failed"
    a = Store(tmp_path / "db").status()
    b = Store(tmp_path / "db2").status()
    assert [(f["source"], f["chunks"]) for f in a["files"]] == [
        (f["source"], f["chunks"]) for f in b["files"]
    ]


def test_big_file_streams_in_batches(tmp_path, settings_for, monkeypatch, stage_calls):
    import privategpt_zh.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "BATCH", 7)
    monkeypatch.setattr(ingest_module, "BIG_FILE", 1000)
    batches = stage_calls
    src = tmp_path / "source_documents"
    src.mkdir()
    (src / "big.txt").write_text("".join(f"第{i}段：奶牛乳房炎的预防。\n" for i in range(400)))
    report = Ingestor(settings_for(chunk_size=100, chunk_overlap=0)).run()
    store = Store(tmp_path / "db")
    assert report.results[0].chunks == store.chunk_count() == store.vector_count() > 7
    assert max(batches) == 7 and len(batches) > 10  # streamed, never held whole
    assert store.db.execute("SELECT count(*) FROM staging").fetchone()[0] == 0


def test_staged_chunks_are_invisible_until_committed(docs, settings_for):
    from privategpt_zh.embeddings import HashEmbedder
    from privategpt_zh.store import Chunk

    settings = settings_for()
    Ingestor(settings).run()
    store = Store(settings.persist_directory, embedder=HashEmbedder(256))
    half = Chunk("half-written", "肉羊.txt", 99, None, "半截写入的新内容：鸵鸟养殖")
    store.stage([half])  # what a crash between stage and commit leaves behind
    assert store.lexical_search("鸵鸟", 3) == []
    assert all(h.chunk.id != "half-written" for h in store.dense_search([0.1] * 256, 50))
    Ingestor(settings).run()  # the next run cleans up
    assert store.db.execute("SELECT count(*) FROM staging").fetchone()[0] == 0
    assert store.vector_count() == store.chunk_count()


def test_small_files_share_embedding_batches(tmp_path, settings_for, stage_calls):
    batches = stage_calls
    src = tmp_path / "source_documents"
    src.mkdir()
    for n in range(12):
        (src / f"d{n}.txt").write_text(f"第{n}号。奶牛养殖。", encoding="utf-8")
    (src / "empty.txt").write_text("", encoding="utf-8")
    report = Ingestor(settings_for(), workers=1).run()
    assert batches == [12] and report.count("added") == 12
    assert _statuses(report)["empty.txt"] == "failed"
