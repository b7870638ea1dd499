"""Small pieces: config parsing, sharded checkpoints, pull's offline checks."""

from __future__ import annotations

import json
from pathlib import Path

import convert_models  # noqa: F401 - first: skips or fails without the packages
import gguf
import numpy as np
import pytest
from convert_models import shared_llama_dir, shared_llama_f16

from convert.hf import convert_hf, parse_hparams
from convert.pull import _pick_gguf, env_line, offline_reason
from privategpt_zh.errors import ConvertError


@pytest.fixture
def llama_dir() -> Path:
    return shared_llama_dir()


@pytest.fixture
def llama_f16() -> Path:
    return shared_llama_f16()


BASE = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "vocab_size": 100,
}


def test_config_variants():
    hp = parse_hparams({**BASE, "rope_theta": 5e5, "rope_scaling": {"type": "linear", "factor": 2}})
    assert hp.rope_theta == 5e5 and hp.rope_scaling == {"type": "linear", "factor": 2}
    assert hp.n_head_kv == 4 and hp.head_dim == 16
    # transformers 5 layout
    hp = parse_hparams(
        {**BASE, "rope_parameters": {"rope_type": "linear", "rope_theta": 1e6, "factor": 4.0}}
    )
    assert hp.rope_theta == 1e6 and hp.rope_scaling["factor"] == 4.0
    # configs that only name the model type
    old = {k: v for k, v in BASE.items() if k != "architectures"} | {"model_type": "qwen2"}
    assert parse_hparams(old).arch == gguf.MODEL_ARCH.QWEN2
    with pytest.raises(ConvertError, match="lacks 'intermediate_size'"):
        parse_hparams({k: v for k, v in BASE.items() if k != "intermediate_size"})
    with pytest.raises(ConvertError, match="not a multiple of num_key_value_heads 3"):
        parse_hparams({**BASE, "num_key_value_heads": 3})


def test_sharded_checkpoint_gives_same_file(llama_dir, llama_f16, tmp_path):
    from safetensors.numpy import load_file, save_file

    shard_dir = tmp_path / "sharded"
    shard_dir.mkdir()
    for f in llama_dir.iterdir():
        if f.name != "model.safetensors":
            (shard_dir / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(llama_dir / "model.safetensors"))
    names = sorted(weights)
    halves = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    weight_map = {}
    for fname, part in halves.items():
        save_file({n: weights[n] for n in part}, str(shard_dir / fname), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, fname)
    index = {"metadata": {}, "weight_map": weight_map}
    (shard_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    out = convert_hf(shard_dir, tmp_path / "sharded.gguf", outtype="f16", name="llama")
    a = {t.name: np.array(t.data) for t in gguf.GGUFReader(out).tensors}
    b = {t.name: np.array(t.data) for t in gguf.GGUFReader(llama_f16).tensors}
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    (shard_dir / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ConvertError, match="lists shards that are missing"):
        convert_hf(shard_dir, tmp_path / "again.gguf")


def test_offline_reasons(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert offline_reason() == "HF_HUB_OFFLINE is set"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # a closed port on loopback: the connect check must fail fast, not hang
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert offline_reason(timeout=2).startswith("cannot connect to 127.0.0.1")


def test_pull_picks_files_and_env_lines(tmp_path):
    assert _pick_gguf(["README.md", "config.json"]) is None  # an embedding model: whole repo
    assert _pick_gguf(["a.Q4_K_M.gguf", "a.Q8_0.gguf"]) == "a.Q4_K_M.gguf"
    with pytest.raises(ConvertError, match="name one: a.Q5_0.gguf, a.Q8_0.gguf"):
        _pick_gguf(["a.Q8_0.gguf", "a.Q5_0.gguf"])
    model = tmp_path / "models" / "m.gguf"
    model.parent.mkdir()
    model.write_bytes(b"x")
    assert env_line(model, tmp_path) == "MODEL_PATH=models/m.gguf"
    assert env_line(tmp_path / "models", tmp_path) == "EMBEDDINGS_MODEL_NAME=models"
