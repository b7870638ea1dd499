"""Folders as users have them: an unreadable file, symlink loops, dangling links.

Root reads any file whatever its mode, so when the tests run as root the ingest
runs as an ordinary user inside a user namespace (`unshare -U --map-user`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SHEEP_TEXT, subprocess_env

from privategpt_zh.store import Store


def _as_ordinary_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    probe = ["unshare", "-U", "--map-user=1000", "--map-group=1000", "true"]
    if not shutil.which("unshare") or subprocess.run(probe, capture_output=True).returncode:
        pytest.skip("running as root and cannot drop to an ordinary user (unshare -U)")
    return probe[:-1] + argv


def test_unreadable_file_and_link_loops_are_reported_not_fatal(tmp_path: Path):
    src = tmp_path / "docs"
    (src / "子目录").mkdir(parents=True)
    (src / "肉羊.txt").write_text(SHEEP_TEXT, encoding="utf-8")
    locked = src / "锁定 文件.txt"
    locked.write_text("不给看的内容", encoding="utf-8")
    locked.chmod(0)
    (src / "子目录" / "回到上层").symlink_to(src, target_is_directory=True)  # a folder loop
    (src / "甲.txt").symlink_to(src / "乙.txt")  # a file link loop
    (src / "乙.txt").symlink_to(src / "甲.txt")
    (src / "断链.txt").symlink_to(src / "不存在.txt")
    db = tmp_path / "db"

    argv = _as_ordinary_user([sys.executable, "ingest.py", "--json"])
    done = subprocess.run(
        argv, cwd=ROOT, env=subprocess_env(db, src), capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 5, done.stderr  # some files failed, the rest are in
    reasons = {f["file"]: f["reason"] for f in json.loads(done.stdout)["files"]}
    assert reasons == {
        "肉羊.txt": "",
        "锁定 文件.txt": "permission denied: make the file readable",
        "甲.txt": "a loop of symbolic links: fix or remove the link",
        "乙.txt": "a loop of symbolic links: fix or remove the link",
        "断链.txt": "a broken link, or the file was removed during the run",
    }
    store = Store(db)
    assert set(store.documents()) == {"肉羊.txt"}  # once: the folder loop was not followed
    assert store.lexical_search("驱虫", 3)
