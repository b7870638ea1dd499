"""The python -m convert command line: exit codes, one-line errors, offline pull."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import convert_models  # noqa: F401 - first: skips or fails without the packages
import pytest
from convert_models import shared_llama_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def llama_dir() -> Path:
    return shared_llama_dir()


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:

    return subprocess.run(
        [sys.executable, "-m", "convert", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def test_error_is_one_red_line_with_exit_code(tmp_path):
    r = run("hf2gguf", str(tmp_path), str(tmp_path / "o.gguf"))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no config.json" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    r = run("--debug", "hf2gguf", str(tmp_path), str(tmp_path / "o.gguf"))
    assert r.returncode == 1 and "Traceback" in r.stderr and "ConvertError" in r.stderr


def test_all_then_inspect(llama_dir, tmp_path):
    out = tmp_path / "m.gguf"
    r = run("all", str(llama_dir), str(out), "--type", "q4_0")
    assert r.returncode == 0, r.stderr
    assert "quantize q4_0" in r.stderr  # the progress bar went to stderr
    assert out.is_file() and not (tmp_path / "m.f16.gguf").exists()
    r = run("inspect", str(out))
    assert r.returncode == 0, r.stderr
    assert "architecture:   llama" in r.stdout and "Q4_0" in r.stdout
    assert "<|im_start|>" in r.stdout  # chat template's first lines
    r = run("all", str(llama_dir), str(out), "--type", "q4_0")
    assert r.returncode == 1 and "--force" in r.stderr


def test_usage_errors(tmp_path):
    r = run("quantize", str(tmp_path / "a.gguf"), str(tmp_path / "b.gguf"), "--type", "q3")
    assert r.returncode == 1 and "unknown quant type" in r.stderr
    r = run("all", str(tmp_path), str(tmp_path / "b.gguf"), "--type", "q3")
    assert r.returncode == 1 and "unknown quant type" in r.stderr
    r = run("nonsense")
    assert r.returncode == 2


def test_pull_fails_fast_offline(tmp_path):
    start = time.monotonic()
    r = run(
        "pull",
        "someone/some-model-GGUF",
        "model.Q4_K_M.gguf",
        "--models-dir",
        str(tmp_path),
        env={"HF_HUB_OFFLINE": "1"},
        timeout=30,
    )
    assert time.monotonic() - start < 20
    assert r.returncode == 1
    assert "no network access (HF_HUB_OFFLINE is set)" in r.stderr
    assert not list(tmp_path.iterdir())


def test_core_modules_do_not_import_cli_libraries():
    code = (
        "import sys, convert.hf, convert.ggml, convert.quantize, convert.inspect_gguf;"
        "import convert.pull, convert.checkpoint, convert.vocab;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
