"""kill -9 during ingest, then a rerun: the store must end exactly as after one clean run."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import subprocess_env

from privategpt_zh.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _ingest(db: Path, src: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "ingest.py")],
        env=subprocess_env(db, src),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _committed(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db / 'manifest.sqlite3'}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT count(*) FROM documents").fetchone()[0]
    except sqlite3.Error:
        return -1


def _snapshot(db: Path) -> dict:
    store = Store(db)
    status = store.status()
    fts = store.db.execute("SELECT count(*) FROM chunks_fts").fetchone()[0]
    staged = store.db.execute("SELECT count(*) FROM staging").fetchone()[0]
    ids = sorted(r[0] for r in store.db.execute("SELECT id FROM chunks"))
    vectors = sorted(store.vectors().get(include=[])["ids"])
    store.close()
    assert fts == status["chunks"] and staged == 0, "lexical index out of step"
    assert vectors == ids, "vectors and manifest differ (orphans or missing vectors)"
    return {"files": [(f["source"], f["hash"], f["chunks"]) for f in status["files"]], "ids": ids}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("crash") / "source_documents"
    src.mkdir()
    for n in range(30):
        (src / f"文档{n:02d}.txt").write_text(
            f"第{n}号：" + "奶牛乳房炎的预防要点。" * 60, encoding="utf-8"
        )
    (src / "大文件.txt").write_text("".join(f"第{i}段，猪舍通风的要求。\n" for i in range(6000)))
    return src


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> dict:
    db = tmp_path_factory.mktemp("ref") / "db"
    proc = _ingest(db, corpus)
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()
    return _snapshot(db)


# (documents committed, then seconds more): before any commit, while the big file's
# chunks are staged, between the big file's commit and the pooled small files, and later.
@pytest.mark.parametrize("after_docs,delay", [(0, 0.0), (0, 0.4), (1, 0.0), (1, 0.3)])
def test_kill_minus_nine_then_rerun_equals_clean_run(
    corpus, reference, tmp_path, after_docs, delay
):
    db = tmp_path / "db"
    proc = _ingest(db, corpus)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if _committed(db) >= after_docs and (db / "chroma").exists():
            break
        time.sleep(0.02)
    time.sleep(delay)
    assert proc.poll() is None, "ingest finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    rerun = _ingest(db, corpus)
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read().decode()
    assert _snapshot(db) == reference
