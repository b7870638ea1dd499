"""The CLI through typer's runner and as real subprocesses (stdout/stderr split, exit codes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privategpt_zh.cli import app

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, **extra) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "PERSIST_", "SOURCE_"))
    }
    env.update(
        PERSIST_DIRECTORY=str(tmp_path / "db"),
        SOURCE_DIRECTORY=str(tmp_path / "source_documents"),
        MODEL_DIR=str(ROOT / "models"),
        EMBEDDINGS_MODEL_NAME="hash:256",
        MODEL_N_CTX="2048",
        MAX_NEW_TOKENS="48",
        TEMPERATURE="0",
        SEED="3",
        PYTHONIOENCODING="utf-8",
    )
    env.update(extra)
    return env


def _run(args, tmp_path, stdin=None, **extra):
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=_env(tmp_path, **extra),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_runner_ingest_status_json(docs, tmp_path, monkeypatch):
    for k, v in _env(tmp_path).items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["ingest"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["ingest", "--status", "--json"])
    status = json.loads(result.stdout)
    assert status["documents"] == 3 and status["chunks"] > 3
    assert {f["source"] for f in status["files"]} == {"奶牛手册.pdf", "生猪 要点.docx", "肉羊.txt"}


def test_runner_bad_setting_is_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODEL_N_CTX", "lots")
    result = CliRunner().invoke(app, ["ask", "你好"])
    assert result.exit_code == 2
    assert "MODEL_N_CTX='lots'" in result.output and "Traceback" not in result.output


def test_ask_on_empty_store_exits_3(tmp_path):
    proc = _run([str(ROOT / "ask.py"), "奶牛怎么养？"], tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "ingest" in proc.stderr and proc.stdout == ""


def test_ingest_reports_failures_with_exit_5(docs, tmp_path):
    (docs / "坏.docx").write_bytes(b"PK\x03\x04 broken zip")
    proc = _run([str(ROOT / "ingest.py")], tmp_path)
    assert proc.returncode == 5, proc.stderr
    assert "坏.docx" in proc.stderr and "failed" in proc.stderr
    assert "3 added" in proc.stderr


def test_missing_model_file_message(docs, tmp_path):
    _run([str(ROOT / "ingest.py")], tmp_path)
    proc = _run([str(ROOT / "ask.py"), "奶牛"], tmp_path, MODEL_PATH=str(tmp_path / "none.gguf"))
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr and "MODEL_PATH" in proc.stderr


@pytest.mark.slow
def test_one_shot_subprocess_stdout_is_only_the_answer(docs, tmp_path, model_path):
    assert _run([str(ROOT / "ingest.py")], tmp_path).returncode == 0
    proc = _run([str(ROOT / "ask.py"), "挤奶前怎样处理乳头？"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() and "奶牛手册.pdf" not in proc.stdout
    assert "奶牛手册.pdf" in proc.stderr and "tokens/s" in proc.stderr

    proc = _run(
        [str(ROOT / "ask.py"), "-", "--json", "--hide-sources"],
        tmp_path,
        stdin="挤奶前怎样处理乳头？\n",
    )
    data = json.loads(proc.stdout)
    assert data["question"].strip() == "挤奶前怎样处理乳头？" and data["answer"]
    assert data["sources"][0]["file"] == "奶牛手册.pdf" and data["sources"][0]["page"] in (1, 2)
    assert set(data["timings"]) >= {"retrieval_ms", "first_token_s", "tokens_per_s"}


@pytest.mark.slow
def test_repl_answers_shows_sources_and_exits(docs, tmp_path, model_path):
    assert _run([str(ROOT / "ingest.py")], tmp_path).returncode == 0
    proc = _run(
        [str(ROOT / "ask.py")], tmp_path, stdin="伊维菌素是做什么的？\n/sources\n/reset\n/exit\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("肉羊.txt") >= 2  # after the answer and for /sources
    assert "对话已清空" in proc.stdout


def test_question_the_documents_cannot_answer_exits_4(docs, tmp_path):
    assert _run([str(ROOT / "ingest.py")], tmp_path).returncode == 0
    proc = _run([str(ROOT / "ask.py"), "火星上有液态水吗？"], tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert "资料中没有" in proc.stdout  # said in the question's language, as the answer
    proc = _run([str(ROOT / "ask.py"), "--json", "Is there liquid water on Mars?"], tmp_path)
    assert proc.returncode == 4
    data = json.loads(proc.stdout)
    assert data["not_found"] is True and "do not contain" in data["answer"]


def test_bad_hash_embedder_and_missing_env_file_are_one_line_errors(docs, tmp_path):
    proc = _run([str(ROOT / "ingest.py")], tmp_path, EMBEDDINGS_MODEL_NAME="hash:abc")
    assert proc.returncode == 2 and "EMBEDDINGS_MODEL_NAME" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _run([str(ROOT / "ask.py"), "--env-file", "nope.env", "问题"], tmp_path)
    assert proc.returncode == 2 and "nope.env does not exist" in proc.stderr
