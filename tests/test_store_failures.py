"""A read-only or full disk under db/: one clear line, exit 1, the old store intact.

The folder is made read-only (a read-only bind mount) or tiny (a size-limited tmpfs)
inside a user and mount namespace made with `unshare`, so the test needs no real root.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env

from privategpt_zh.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _can_unshare(), reason="needs `unshare -rm` (user and mount namespaces)"
)


def _ingest_in_namespace(setup: str, db: Path, src: Path) -> subprocess.CompletedProcess:
    script = f"{setup} && exec {sys.executable} {ROOT / 'ingest.py'}"
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        env=subprocess_env(db, src),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _searchable(db: Path, word: str) -> bool:
    store = Store(db)
    try:
        return bool(store.lexical_search(word, 1))
    finally:
        store.close()


def test_read_only_store(docs, tmp_path):
    db = tmp_path / "db"
    first = subprocess.run(
        [sys.executable, str(ROOT / "ingest.py")],
        env=subprocess_env(db, docs),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr
    (docs / "肉羊.txt").write_text("新的内容：鸵鸟养殖。", encoding="utf-8")
    proc = _ingest_in_namespace(
        f"mount --bind {db} {db} && mount -o remount,bind,ro {db}", db, docs
    )
    assert proc.returncode == 1, proc.stderr
    assert "folder is read-only" in proc.stderr and "Traceback" not in proc.stderr
    assert _searchable(db, "伊维菌素") and not _searchable(db, "鸵鸟")


def test_disk_full(docs, tmp_path):
    db = tmp_path / "db"
    db.mkdir()
    big = tmp_path / "big_source"
    shutil.copytree(docs, big)
    mount = f"mount -t tmpfs -o size=6m tmpfs {db}"
    # a first run that fits, kept on the tmpfs by running the second in the same namespace
    lines = "".join(
        f"第{i}段：猪舍通风、奶牛乳房炎、羊驱虫的要点各不相同。\n" for i in range(60000)
    )
    (big / "巨大.txt").write_text(lines, encoding="utf-8")
    script = (
        f"{mount} && SOURCE_DIRECTORY={docs} {sys.executable} {ROOT / 'ingest.py'} && "
        f"{sys.executable} {ROOT / 'ingest.py'}; echo exit=$? >&2; "
        f"{sys.executable} {ROOT / 'ingest.py'} --status --json"
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        env=subprocess_env(db, big),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "exit=1" in proc.stderr or "exit=5" in proc.stderr, proc.stderr[-2000:]
    assert "disk is full" in proc.stderr and "Traceback" not in proc.stderr
    status = proc.stdout.strip().splitlines()[-1]
    assert '"documents": 3' in status  # the earlier documents survived, the big one did not land
