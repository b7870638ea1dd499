from __future__ import annotations

from pathlib import Path

import pytest

from privategpt_zh.config import load_settings, physical_cores
from privategpt_zh.errors import ConfigError


def test_defaults_need_no_env_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.persist_directory == Path("db")
    assert s.target_source_chunks == 4
    assert s.model_path is None and s.embeddings_model_name is None
    assert s.retrieval_mode == "hybrid"


def test_precedence_env_file_then_environment_then_flags(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("TARGET_SOURCE_CHUNKS=6\nMODEL_N_CTX=1024\nTEMPERATURE=0.5\nMODEL_PATH=\n")
    s = load_settings(env)
    assert (s.target_source_chunks, s.model_n_ctx, s.temperature) == (6, 1024, 0.5)
    assert s.model_path is None  # empty means default
    monkeypatch.setenv("MODEL_N_CTX", "2048")
    s = load_settings(env)
    assert s.model_n_ctx == 2048 and s.target_source_chunks == 6
    s = load_settings(env, model_n_ctx=512, temperature=None)
    assert s.model_n_ctx == 512 and s.temperature == 0.5


def test_invalid_value_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("TARGET_SOURCE_CHUNKS", "many")
    with pytest.raises(ConfigError, match="TARGET_SOURCE_CHUNKS='many'"):
        load_settings(None)


def test_out_of_range_and_cross_field_checks():
    with pytest.raises(ConfigError, match="RETRIEVAL_MODE"):
        load_settings(None, retrieval_mode="magic")
    with pytest.raises(ConfigError, match="MAX_NEW_TOKENS must be smaller than MODEL_N_CTX"):
        load_settings(None, model_n_ctx=512, max_new_tokens=600)
    with pytest.raises(ConfigError, match="CHUNK_OVERLAP"):
        load_settings(None, chunk_size=100, chunk_overlap=100)


def test_threads_default_to_physical_cores():
    s = load_settings(None)
    assert s.threads() == physical_cores() >= 1
    assert load_settings(None, n_threads=3).threads() == 3


def test_example_env_documents_every_setting():
    from privategpt_zh.config import Settings

    text = (Path(__file__).parent.parent / "example.env").read_text()
    for name in Settings.model_fields:
        assert f"\n{name.upper()}=" in text, name
