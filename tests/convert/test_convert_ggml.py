"""ggml2gguf: old GGML Llama files must compute what the original HF model computes."""

from __future__ import annotations

import struct
from pathlib import Path

import convert_models  # noqa: F401 - first: skips or fails without the packages
import pytest
from convert_checks import (
    gguf_logits,
    hf_logits,
    hf_tokenizer,
    load_llama,
    rel_diff,
    write_ggml,
)
from convert_models import PROMPTS_EN, PROMPTS_ZH, shared_llama_dir

from convert.ggml import convert_ggml, read_ggml
from convert.inspect_gguf import inspect_gguf
from privategpt_zh.errors import ConvertError


@pytest.fixture
def llama_dir() -> Path:
    return shared_llama_dir()


def _convert(llama_dir, tmp_path, **kw):
    src = tmp_path / "model.bin"
    write_ggml(src, llama_dir, **kw)
    return convert_ggml(src, tmp_path / "model.gguf", eps=1e-5, context_length=256)


def test_ggjt_v3_f32_matches_hf(llama_dir, tmp_path):
    out = _convert(llama_dir, tmp_path)
    tok = hf_tokenizer(llama_dir)
    for text in ("北京是中国的首都。", "The quick brown fox"):
        ids = tok(text)["input_ids"]
        assert rel_diff(gguf_logits(out, ids), hf_logits(llama_dir, ids)) < 1e-3, text
    llm = load_llama(out, vocab_only=True)
    for text in PROMPTS_ZH + PROMPTS_EN:
        assert llm.tokenize(text.encode(), add_bos=True, special=False) == tok(text)["input_ids"], (
            text
        )
    s = inspect_gguf(out)
    assert s.context_length == 256 and s.vocab_size == len(tok)
    assert s.metadata["llama.attention.head_count_kv"] == 2  # derived from wk's shape
    assert s.metadata["llama.feed_forward_length"] == 128  # derived from w1's shape


def test_ggjt_v3_q8_0_copies_blocks(llama_dir, tmp_path):
    out = _convert(llama_dir, tmp_path, quant="q8_0")
    assert inspect_gguf(out).quant_types["Q8_0"] == 16
    ids = hf_tokenizer(llama_dir)("请回答：模型在本地运行吗？")["input_ids"]
    assert rel_diff(gguf_logits(out, ids), hf_logits(llama_dir, ids)) < 6e-2


@pytest.mark.parametrize("fmt", ["ggml", "ggmf"])
def test_older_containers(llama_dir, tmp_path, fmt):
    src = tmp_path / "model.bin"
    write_ggml(src, llama_dir, fmt=fmt, version=1)
    model = read_ggml(src)
    assert model.format_name == f"{fmt} v1"
    out = convert_ggml(src, tmp_path / "model.gguf", eps=1e-5)
    ids = hf_tokenizer(llama_dir)("Hello world")["input_ids"]
    # unversioned 'ggml' files carry no scores, so compare logits on fixed ids only
    assert rel_diff(gguf_logits(out, ids), hf_logits(llama_dir, ids)) < 1e-3


def test_refuses_pre_v3_quant_blocks(llama_dir, tmp_path):
    src = tmp_path / "old.bin"
    write_ggml(src, llama_dir, fmt="ggjt", version=1, quant="q4_0")
    with pytest.raises(ConvertError, match="pre-ggjt-v3 block layout"):
        convert_ggml(src, tmp_path / "o.gguf")
    assert not list(tmp_path.glob("o.gguf*"))


def test_rejects_non_ggml_and_truncated(llama_dir, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(ConvertError, match="not a GGML Llama file"):
        convert_ggml(junk, tmp_path / "o.gguf")
    src = tmp_path / "model.bin"
    write_ggml(src, llama_dir)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(src.read_bytes()[:-100])
    with pytest.raises(ConvertError, match="truncated"):
        convert_ggml(cut, tmp_path / "o.gguf")
    unknown = tmp_path / "v9.bin"
    unknown.write_bytes(struct.pack("<II", 0x67676A74, 9))
    with pytest.raises(ConvertError, match="unknown GGML file version 9"):
        convert_ggml(unknown, tmp_path / "o.gguf")
