from __future__ import annotations

import hashlib

import pytest

from privategpt_zh import models
from privategpt_zh.errors import ModelError


def test_embedded_model_is_assembled_and_verified(model_path):
    assert model_path.stat().st_size == models.DEFAULT_MODEL_SIZE
    assert model_path.read_bytes()[:4] == b"GGUF"
    assert models._verified(model_path)


def test_sha256_pin_matches_the_parts():
    digest = hashlib.sha256()
    for part in models._parts():
        digest.update(part.read_bytes())
    assert digest.hexdigest() == models.DEFAULT_MODEL_SHA256


def test_tampered_model_is_reassembled(tmp_path, model_path, monkeypatch):
    target = tmp_path / models.DEFAULT_MODEL_FILE
    target.write_bytes(b"GGUF broken")
    assert not models._verified(target)
    assert models.default_model_path(tmp_path).stat().st_size == models.DEFAULT_MODEL_SIZE


def test_bad_model_paths_say_how_to_fix(tmp_path):
    with pytest.raises(ModelError, match="does not exist.*MODEL_PATH"):
        models.check_gguf(tmp_path / "missing.gguf")
    old = tmp_path / "old.bin"
    old.write_bytes(b"tjgg" + b"\0" * 100)
    with pytest.raises(ModelError, match="ggml2gguf"):
        models.check_gguf(old)
    with pytest.raises(ModelError, match="folder"):
        models.check_gguf(tmp_path)


def test_truncated_gguf_gives_model_error(tmp_path, model_path):
    from privategpt_zh.config import load_settings
    from privategpt_zh.llm import LlamaCppLLM

    cut = tmp_path / "cut.gguf"
    with model_path.open("rb") as fh:
        cut.write_bytes(fh.read(5_000_000))
    with pytest.raises(ModelError, match="could not load"):
        LlamaCppLLM(cut, load_settings(None, model_path=cut))
