"""Ingest and ask must never open a network connection.

The commands run in a subprocess with a Python audit hook that kills the
process (exit 99, so no library can swallow it) on any socket connect, bind,
send or name lookup other than a local UNIX socket (and urllib3's import-time
probe that binds ::1 port 0 and closes again).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GUARD = r"""
import os, runpy, socket, sys
NET = {"socket.connect", "socket.connect_ex", "socket.bind", "socket.sendto",
       "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname",
       "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.getnameinfo"}
def guard(event, args):
    if event not in NET:
        return
    if event in ("socket.connect", "socket.connect_ex", "socket.bind") and \
            getattr(args[0], "family", None) == socket.AF_UNIX:
        return
    # urllib3 probes IPv6 support at import by binding ::1 port 0; that reaches nothing.
    if event == "socket.bind" and args[1][:2] in (("::1", 0), ("127.0.0.1", 0)):
        return
    os.write(2, f"NETWORK ATTEMPT: {event} {args[1:]!r}\n".encode())
    os._exit(99)
sys.addaudithook(guard)
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def _guarded(args, tmp_path, stdin=None, **settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(
        PERSIST_DIRECTORY=str(tmp_path / "db"),
        SOURCE_DIRECTORY=str(tmp_path / "source_documents"),
        MODEL_DIR=str(ROOT / "models"),
        MODEL_N_CTX="2048",
        MAX_NEW_TOKENS="16",
        PYTHONIOENCODING="utf-8",
    )
    env.update(settings)
    return subprocess.run(
        [sys.executable, "-c", GUARD, *args],
        cwd=tmp_path,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_guard_catches_a_connection(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n")
    proc = _guarded([str(probe)], tmp_path)
    assert proc.returncode == 99 and "NETWORK ATTEMPT" in proc.stderr


def test_ingest_and_ask_open_no_socket(docs, tmp_path, model_path):
    """The real defaults: MiniLM embeddings, Chroma, hybrid retrieval, llama.cpp.

    MODEL_DIR is empty, so the one-time ONNX export of the embedding model runs
    under the guard too.
    """
    fresh = {"MODEL_DIR": str(tmp_path / "models"), "MODEL_PATH": str(model_path)}
    proc = _guarded([str(ROOT / "ingest.py")], tmp_path, **fresh)
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "models" / "onnx").glob("*.onnx"))
    proc = _guarded([str(ROOT / "ingest.py"), "--status", "--json"], tmp_path, **fresh)
    assert proc.returncode == 0, proc.stderr
    proc = _guarded([str(ROOT / "ask.py"), "挤奶前怎样处理乳头？"], tmp_path, **fresh)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    proc = _guarded(
        [str(ROOT / "ask.py")], tmp_path, stdin="伊维菌素是做什么的？\n/exit\n", **fresh
    )
    assert proc.returncode == 0, proc.stderr


def test_torch_embedding_backend_opens_no_socket(docs, tmp_path, model_path):
    """sentence-transformers on torch: the fallback and EMBEDDINGS_BACKEND=torch."""
    torch = {"EMBEDDINGS_BACKEND": "torch"}
    proc = _guarded([str(ROOT / "ingest.py")], tmp_path, **torch)
    assert proc.returncode == 0, proc.stderr
    proc = _guarded([str(ROOT / "ask.py"), "挤奶前怎样处理乳头？"], tmp_path, **torch)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
