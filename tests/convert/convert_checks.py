"""Reference computations for the convert tests: HF logits, llama.cpp logits, GGML files."""

from __future__ import annotations

import struct
from pathlib import Path

import convert_models  # noqa: F401 - first: skips or fails without the packages
import numpy as np
import torch


def hf_model(model_dir: Path):
    import transformers
    from transformers import AutoModelForCausalLM

    major = int(transformers.__version__.split(".")[0])
    key = "dtype" if major >= 5 else "torch_dtype"
    return AutoModelForCausalLM.from_pretrained(
        model_dir, local_files_only=True, **{key: torch.float32}
    ).eval()


def hf_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)


def hf_logits(model_dir: Path, ids: list[int]) -> np.ndarray:
    model = hf_model(model_dir)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


GGML_TYPE_F32 = 0


def load_llama(path: Path, vocab_only: bool = False):
    from llama_cpp import Llama

    return Llama(
        model_path=str(path),
        n_ctx=128,
        n_batch=128,
        logits_all=True,
        vocab_only=vocab_only,
        verbose=False,
        n_threads=2,
        seed=0,
        # an f32 KV cache: the default f16 one alone costs ~1e-3 of the logit scale
        type_k=GGML_TYPE_F32,
        type_v=GGML_TYPE_F32,
    )


def gguf_logits(path: Path, ids: list[int]) -> np.ndarray:
    llm = load_llama(path)
    llm.eval(ids)
    scores = np.array(llm.scores[: len(ids)], dtype=np.float32)
    llm.close()
    return scores


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Max abs difference, relative to the reference's logit scale."""
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# --- a GGML "ggjt" writer, written independently of convert.ggml -------------

GGML_NAMES = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}
GGML_LAYER = {
    "self_attn.q_proj.weight": "attention.wq.weight",
    "self_attn.k_proj.weight": "attention.wk.weight",
    "self_attn.v_proj.weight": "attention.wv.weight",
    "self_attn.o_proj.weight": "attention.wo.weight",
    "mlp.gate_proj.weight": "feed_forward.w1.weight",
    "mlp.down_proj.weight": "feed_forward.w2.weight",
    "mlp.up_proj.weight": "feed_forward.w3.weight",
    "input_layernorm.weight": "attention_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
MAGICS = {"ggml": 0x67676D6C, "ggmf": 0x67676D66, "ggjt": 0x67676A74}


def interleave_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Meta's row order from HF's: per head, rows i and i+d/2 become rows 2i and 2i+1."""
    d = w.shape[0] // n_head
    out = np.empty_like(w)
    for h in range(n_head):
        for i in range(d // 2):
            out[h * d + 2 * i] = w[h * d + i]
            out[h * d + 2 * i + 1] = w[h * d + d // 2 + i]
    return out


def ggml_era_vocab(model_dir: Path) -> list[tuple[bytes, float]]:
    """The vocab as llama.cpp's pre-GGUF convert.py wrote it: spaces, raw bytes, empty controls."""
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))
    vocab = []
    for i in range(sp.GetPieceSize()):
        piece = sp.IdToPiece(i)
        if sp.IsUnknown(i):
            text = " \u2047 ".encode()
        elif sp.IsControl(i):
            text = b""
        elif sp.IsByte(i):
            text = bytes([int(piece[3:-1], 16)])
        else:
            text = piece.replace("\u2581", " ").encode()
        vocab.append((text, sp.GetScore(i)))
    tok = hf_tokenizer(model_dir)  # added tokens follow the SentencePiece pieces
    extra = tok.convert_ids_to_tokens(list(range(len(vocab), len(tok))))
    return vocab + [(text.encode(), -1000.0) for text in extra]


def write_ggml(
    path: Path, model_dir: Path, fmt: str = "ggjt", version: int = 3, quant: str | None = None
) -> None:
    """Write the HF Llama in ``model_dir`` as an old GGML file (f32, or q8_0 matrices)."""
    import json

    from safetensors.numpy import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    weights = load_file(str(model_dir / "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    vocab = ggml_era_vocab(model_dir)
    with open(path, "wb") as f:
        f.write(struct.pack("<I", MAGICS[fmt]))
        if fmt != "ggml":
            f.write(struct.pack("<I", version))
        f.write(
            struct.pack(
                "<7i",
                len(vocab),
                cfg["hidden_size"],
                256,
                n_head,
                cfg["num_hidden_layers"],
                cfg["hidden_size"] // n_head,
                0,
            )
        )
        for text, score in vocab:
            f.write(struct.pack("<I", len(text)) + text)
            if fmt != "ggml":
                f.write(struct.pack("<f", score))
        for hf_name, w in weights.items():
            w = w.astype(np.float32)
            if hf_name.endswith("q_proj.weight"):
                w = interleave_rope_rows(w, n_head)
            elif hf_name.endswith("k_proj.weight"):
                w = interleave_rope_rows(w, n_kv)
            _write_tensor(f, _ggml_name(hf_name), w, fmt, quant)


def _ggml_name(hf_name: str) -> str:
    if hf_name in GGML_NAMES:
        return GGML_NAMES[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)
    return f"layers.{layer}.{GGML_LAYER[rest]}"


def _write_tensor(f, name: str, w: np.ndarray, fmt: str, quant: str | None) -> None:
    import gguf

    dtype, data = 0, w.tobytes()
    if quant == "q8_0" and w.ndim == 2:
        dtype, data = 8, gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0).tobytes()
    elif quant == "q4_0" and w.ndim == 2:
        dtype, data = 2, gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q4_0).tobytes()
    encoded = name.encode()
    f.write(struct.pack("<iii", w.ndim, len(encoded), dtype))
    f.write(struct.pack(f"<{w.ndim}i", *reversed(w.shape)))
    f.write(encoded)
    if fmt == "ggjt":
        f.write(b"\0" * (-f.tell() % 32))
    f.write(data)
