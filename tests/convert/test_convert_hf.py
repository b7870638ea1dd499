"""hf2gguf: converted models must compute what transformers computes."""

from __future__ import annotations

import shutil
from pathlib import Path

import convert_models  # noqa: F401 - first: skips or fails without the packages
import gguf
import numpy as np
import pytest
import torch
from convert_checks import (
    gguf_logits,
    hf_logits,
    hf_tokenizer,
    interleave_rope_rows,
    load_llama,
    rel_diff,
)
from convert_models import (
    CHAT_TEMPLATE,
    PROMPTS_EN,
    PROMPTS_ZH,
    SPECIAL_LLAMA,
    save_llama,
    shared_llama_dir,
    shared_llama_f16,
    shared_qwen2_dir,
)

from convert.hf import convert_hf, permute_qk
from convert.inspect_gguf import inspect_gguf
from privategpt_zh.errors import ConvertError


@pytest.fixture
def llama_dir() -> Path:
    return shared_llama_dir()


@pytest.fixture
def qwen2_dir() -> Path:
    return shared_qwen2_dir()


@pytest.fixture
def llama_f16() -> Path:
    return shared_llama_f16()


PROMPTS = PROMPTS_ZH + PROMPTS_EN


def _ids(model_dir, text: str) -> list[int]:
    return hf_tokenizer(model_dir)(text)["input_ids"]


def _field(path, key):
    f = gguf.GGUFReader(path).fields[key]
    return f.contents()


def test_permute_matches_meta_row_order():
    w = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    assert np.array_equal(permute_qk(w, 2), interleave_rope_rows(w, 2))


@pytest.mark.parametrize(("outtype", "tol"), [("f32", 1e-3), ("f16", 2e-2), ("q8_0", 6e-2)])
def test_llama_logits_match_hf(llama_dir, tmp_path, outtype, tol):
    out = convert_hf(llama_dir, tmp_path / f"m-{outtype}.gguf", outtype=outtype)
    for text in ("北京是中国的首都。", "The quick brown fox"):
        ids = _ids(llama_dir, text)
        ref, got = hf_logits(llama_dir, ids), gguf_logits(out, ids)
        assert rel_diff(got, ref) < tol, (outtype, text, rel_diff(got, ref))
        if outtype == "f32":
            assert np.array_equal(got.argmax(-1), ref.argmax(-1))


def test_llama_tokenises_like_hf(llama_f16, llama_dir):
    import sentencepiece as spm

    tok = hf_tokenizer(llama_dir)
    sp = spm.SentencePieceProcessor(model_file=str(llama_dir / "tokenizer.model"))
    llm = load_llama(llama_f16, vocab_only=True)
    for text in PROMPTS:
        want = tok(text)["input_ids"]
        assert want == [1] + sp.encode(text)  # the HF tokenizer itself is faithful
        assert llm.tokenize(text.encode(), add_bos=True, special=False) == want, text
    # byte fallback really happened for the rare characters
    assert any(sp.IsByte(i) for i in sp.encode("龘靐齉 😀"))


def test_llama_metadata(llama_f16, llama_dir):
    s = inspect_gguf(llama_f16)
    tok = hf_tokenizer(llama_dir)
    assert s.architecture == "llama"
    assert s.vocab_size == len(tok)
    assert s.context_length == 256
    assert s.chat_template == CHAT_TEMPLATE
    assert s.quant_types == {"F16": 16, "F32": 5}
    assert s.metadata["llama.attention.head_count_kv"] == 2
    tokens = _field(llama_f16, "tokenizer.ggml.tokens")
    types = _field(llama_f16, "tokenizer.ggml.token_type")
    special_id = tok.convert_tokens_to_ids(SPECIAL_LLAMA)
    assert tokens[special_id] == SPECIAL_LLAMA
    assert types[special_id] == gguf.TokenType.CONTROL
    assert types[0] == gguf.TokenType.UNKNOWN and types[1] == gguf.TokenType.CONTROL
    assert tokens[3 + 0x0A] == "<0x0A>" and types[3 + 0x0A] == gguf.TokenType.BYTE
    assert s.metadata["tokenizer.ggml.bos_token_id"] == 1
    assert s.metadata["tokenizer.ggml.add_bos_token"] is True


def test_llama_pytorch_bin_bf16(tmp_path):
    src = save_llama(tmp_path / "bf16", dtype=torch.bfloat16, safetensors=False, seed=1)
    assert (src / "pytorch_model.bin").is_file() and not list(src.glob("*.safetensors"))
    out = convert_hf(src, tmp_path / "bf16.gguf", outtype="f32")
    ids = _ids(src, "请回答：模型在本地运行吗？")
    # transformers upcasts the bf16 weights exactly, as we do
    assert rel_diff(gguf_logits(out, ids), hf_logits(src, ids)) < 1e-3


def test_qwen2_logits_and_tokens_match_hf(qwen2_dir, tmp_path):
    out = convert_hf(qwen2_dir, tmp_path / "qwen2.gguf", outtype="f32")
    tok = hf_tokenizer(qwen2_dir)
    llm = load_llama(out, vocab_only=True)
    for text in PROMPTS:
        want = tok(text)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == want, text
    llm.close()
    for text in ("北京是中国的首都。", "Hello world, 42 and 3.14!"):
        ids = tok(text)["input_ids"]
        ref, got = hf_logits(qwen2_dir, ids), gguf_logits(out, ids)
        assert rel_diff(got, ref) < 1e-3, (text, rel_diff(got, ref))
    s = inspect_gguf(out)
    assert s.architecture == "qwen2" and s.tokenizer == "gpt2"
    assert s.metadata["tokenizer.ggml.pre"] == "qwen2"
    assert s.metadata["tokenizer.ggml.add_bos_token"] is False
    assert s.metadata["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert s.chat_template == CHAT_TEMPLATE
    assert "output.weight" not in {t.name for t in gguf.GGUFReader(out).tensors}  # tied
    types = _field(out, "tokenizer.ggml.token_type")
    assert types[tok.convert_tokens_to_ids("<|im_start|>")] == gguf.TokenType.CONTROL


# --- broken inputs -------------------------------------------------------------


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_config(llama_dir, tmp_path):
    d = _copy(llama_dir, tmp_path / "m")
    (d / "config.json").unlink()
    with pytest.raises(ConvertError, match="no config.json"):
        convert_hf(d, tmp_path / "o.gguf")


def test_unsupported_architecture(llama_dir, tmp_path):
    import json

    d = _copy(llama_dir, tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["GPTNeoXForCausalLM"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConvertError, match="unsupported architecture.*GPTNeoX"):
        convert_hf(d, tmp_path / "o.gguf")


def _rewrite_weights(d, edit):
    from safetensors.torch import load_file, save_file

    weights = load_file(str(d / "model.safetensors"))
    edit(weights)
    save_file(weights, str(d / "model.safetensors"), metadata={"format": "pt"})


def test_missing_tensor(llama_dir, tmp_path):
    d = _copy(llama_dir, tmp_path / "m")
    _rewrite_weights(d, lambda w: w.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(
        ConvertError, match=r"missing tensors: model\.layers\.1\.mlp\.up_proj\.weight"
    ):
        convert_hf(d, tmp_path / "o.gguf")
    assert not (tmp_path / "o.gguf").exists()


def test_wrong_shape(llama_dir, tmp_path):
    d = _copy(llama_dir, tmp_path / "m")
    _rewrite_weights(d, lambda w: w.update({"model.norm.weight": torch.ones(65)}))
    with pytest.raises(
        ConvertError, match=r"model\.norm\.weight has shape \(65,\), config.json implies \(64,\)"
    ):
        convert_hf(d, tmp_path / "o.gguf")


def test_unknown_dtype(llama_dir, tmp_path):
    d = _copy(llama_dir, tmp_path / "m")
    _rewrite_weights(
        d, lambda w: w.update({"model.norm.weight": torch.ones(64, dtype=torch.int32)})
    )
    with pytest.raises(ConvertError, match="dtype int32"):
        convert_hf(d, tmp_path / "o.gguf")
    assert not list(tmp_path.glob("o.gguf*"))


def test_refuses_overwrite_without_force(llama_dir, tmp_path):
    out = tmp_path / "o.gguf"
    out.write_bytes(b"keep me")
    with pytest.raises(ConvertError, match="already exists; pass --force"):
        convert_hf(llama_dir, out)
    assert out.read_bytes() == b"keep me"
    convert_hf(llama_dir, out, force=True)
    assert inspect_gguf(out).architecture == "llama"


def test_checks_disk_space(llama_dir, tmp_path, monkeypatch):
    import shutil as sh

    monkeypatch.setattr(sh, "disk_usage", lambda p: sh._ntuple_diskusage(10**12, 10**12, 1024))
    with pytest.raises(ConvertError, match="not enough disk space"):
        convert_hf(llama_dir, tmp_path / "o.gguf")
    assert not list(tmp_path.glob("o.gguf*"))
