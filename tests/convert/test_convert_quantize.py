"""quantize: llama.cpp's quantizer through llama-cpp-python; outputs load and generate."""

from __future__ import annotations

from pathlib import Path

import convert_models  # noqa: F401 - first: skips or fails without the packages
import numpy as np
import pytest
from convert_checks import gguf_logits, hf_logits, hf_tokenizer, load_llama
from convert_models import save_llama, shared_llama_dir, shared_llama_f16

from convert.hf import convert_hf
from convert.inspect_gguf import inspect_gguf
from convert.quantize import quantize
from privategpt_zh.errors import ConvertError


@pytest.fixture
def llama_dir() -> Path:
    return shared_llama_dir()


@pytest.fixture
def llama_f16() -> Path:
    return shared_llama_f16()


def _generates(path) -> list[int]:
    llm = load_llama(path)
    ids = llm.tokenize("北京是".encode(), add_bos=True)
    out = [t for _, t in zip(range(4), llm.generate(ids, temp=0.0), strict=False)]
    llm.close()
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize(
    ("qtype", "main_type", "min_corr"),
    [
        ("q8_0", "Q8_0", 0.99),
        ("q4_0", "Q4_0", 0.75),
        ("q4_K_M", None, 0.9),
        ("q5_K_M", None, 0.9),
    ],
)
def test_quantize_types(llama_f16, llama_dir, tmp_path, qtype, main_type, min_corr):
    out = quantize(llama_f16, tmp_path / f"m-{qtype}.gguf", qtype)
    s = inspect_gguf(out)
    if main_type:
        assert max(s.quant_types, key=s.quant_types.get) == main_type
    else:
        # rows of 64 are not a multiple of 256: llama.cpp falls back per tensor
        assert not {"F16"} & set(s.quant_types), s.quant_types
    assert s.file_size < llama_f16.stat().st_size
    assert len(_generates(out)) == 4
    ids = hf_tokenizer(llama_dir)("北京是中国的首都。")["input_ids"]
    assert _corr(gguf_logits(out, ids), hf_logits(llama_dir, ids)) > min_corr


def test_q4_k_m_on_256_wide_model(tmp_path):
    src = save_llama(tmp_path / "wide", hidden=256, seed=2)
    f16 = convert_hf(src, tmp_path / "wide-f16.gguf")
    out = quantize(f16, tmp_path / "wide-q4km.gguf", "q4_K_M")
    types = inspect_gguf(out).quant_types
    assert types.get("Q4_K", 0) >= 8 and "Q6_K" in types, types  # q4_K_M keeps some tensors at Q6_K
    assert len(_generates(out)) == 4


def test_quantize_errors(llama_f16, tmp_path):
    with pytest.raises(ConvertError, match="unknown quant type 'q3'"):
        quantize(llama_f16, tmp_path / "o.gguf", "q3")
    with pytest.raises(ConvertError, match="does not exist"):
        quantize(tmp_path / "missing.gguf", tmp_path / "o.gguf", "q4_0")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(ConvertError, match="not a readable GGUF"):
        quantize(bad, tmp_path / "o.gguf", "q4_0")
    existing = tmp_path / "exists.gguf"
    existing.write_bytes(b"x")
    with pytest.raises(ConvertError, match="--force"):
        quantize(llama_f16, existing, "q4_0")
