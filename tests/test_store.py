from __future__ import annotations

import pytest

from privategpt_zh.embeddings import HashEmbedder
from privategpt_zh.errors import StoreEmptyError, StoreMismatchError
from privategpt_zh.ingest import chunk_id
from privategpt_zh.store import Chunk, DocRecord, Store

EMB = HashEmbedder(64)


def _doc(store, source, texts, digest="h1"):
    chunks = [Chunk(chunk_id(source, i, t), source, i, None, t) for i, t in enumerate(texts)]
    store.put_document(DocRecord(source, digest, 1, 1, 0, 0.0), chunks)
    return chunks


def test_missing_store_says_run_ingest(tmp_path):
    with pytest.raises(StoreEmptyError, match="ingest"):
        Store(tmp_path / "nothing")


def test_put_replace_remove_keep_vectors_and_index_in_step(tmp_path):
    store = Store(tmp_path / "db", create=True, embedder=EMB)
    _doc(store, "a.txt", ["奶牛乳房炎的预防方法", "猪舍通风的要求"])
    _doc(store, "b.txt", ["肉羊春秋两季驱虫"])
    assert store.chunk_count() == 3 and store.vector_count() == 3
    assert store.lexical_search("乳房炎", 5)[0].chunk.source == "a.txt"

    _doc(store, "a.txt", ["蛋鸡光照十六小时"], digest="h2")  # changed file
    assert store.chunk_count() == 2 and store.vector_count() == 2
    assert store.lexical_search("乳房炎", 5) == []
    assert store.documents()["a.txt"].hash == "h2"

    store.remove_document("b.txt")
    assert store.chunk_count() == 1 and store.vector_count() == 1
    assert store.lexical_search("驱虫", 5) == []
    assert set(store.documents()) == {"a.txt"}


def test_dense_search_ranks_the_closest_chunk_first(tmp_path):
    store = Store(tmp_path / "db", create=True, embedder=EMB)
    _doc(store, "a.txt", ["奶牛乳房炎的预防方法", "猪舍通风的要求", "蛋鸡的光照管理"])
    hits = store.dense_search(EMB.embed(["猪舍通风"])[0], 3)
    assert hits[0].chunk.text == "猪舍通风的要求"
    assert hits[0].score > hits[1].score


def test_orphan_vectors_are_ignored_then_swept(tmp_path):
    store = Store(tmp_path / "db", create=True, embedder=EMB)
    _doc(store, "a.txt", ["奶牛乳房炎的预防方法"])
    # a crash between the vector write and the manifest commit leaves this behind
    orphan = Chunk("orphan", "gone.txt", 0, None, "猪舍通风的要求")
    store._upsert_vectors([orphan], EMB.embed([orphan.text]))
    hits = store.dense_search(EMB.embed(["猪舍通风的要求"])[0], 5)
    assert [h.chunk.source for h in hits] == ["a.txt"]
    assert store.sweep_orphans() == 1
    assert store.vector_count() == 1


def test_meta_mismatch_is_refused(tmp_path):
    store = Store(tmp_path / "db", create=True, embedder=EMB)
    store.set_meta({"embedding_model": "a"})
    store.check_meta({"embedding_model": "a"}, "fix")
    with pytest.raises(StoreMismatchError, match="embedding_model=a, now embedding_model=b: fix"):
        store.check_meta({"embedding_model": "b"}, "fix")


def test_status_lists_documents(tmp_path):
    store = Store(tmp_path / "db", create=True, embedder=EMB)
    _doc(store, "a.txt", ["一", "二"])
    status = store.status()
    assert status["documents"] == 1 and status["chunks"] == 2
    assert status["files"][0]["source"] == "a.txt" and status["files"][0]["chunks"] == 2


def test_long_running_reader_sees_another_process_writes(tmp_path):
    """An open REPL must find documents an ingest added after it started."""
    import subprocess
    import sys

    db = tmp_path / "db"
    reader = Store(db, create=True, embedder=EMB)
    _doc(reader, "a.txt", ["奶牛乳房炎的预防方法"])
    assert len(reader.dense_search(EMB.embed(["猪舍"])[0], 5)) == 1
    code = (
        "from pathlib import Path\n"
        "from privategpt_zh.embeddings import HashEmbedder\n"
        "from privategpt_zh.ingest import chunk_id\n"
        "from privategpt_zh.store import Chunk, DocRecord, Store\n"
        f"s = Store(Path({str(db)!r}), embedder=HashEmbedder(64))\n"
        "c = Chunk(chunk_id('b.txt', 0, '猪舍通风'), 'b.txt', 0, None, '猪舍通风')\n"
        "s.put_document(DocRecord('b.txt', 'h', 1, 1, 0, 0.0), [c])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    sources = {h.chunk.source for h in reader.dense_search(EMB.embed(["猪舍"])[0], 5)}
    assert sources == {"a.txt", "b.txt"}
