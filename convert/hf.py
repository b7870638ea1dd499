"""Hugging Face checkpoint (Llama, Qwen2) -> GGUF, one tensor at a time.

The GGUF header (metadata + tensor table) needs every tensor's name, shape and
type up front, but not its data. So we plan all tensors from the checkpoint's
metadata, write the header, then load, convert and append each tensor in turn.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from convert.checkpoint import SUPPORTED_DTYPES, Checkpoint
from convert.common import atomic_output, check_disk_space, check_output, progress
from convert.vocab import Vocab, load_bpe_vocab, load_spm_vocab
from privategpt_zh.errors import ConvertError

logger = logging.getLogger(__name__)

OUTTYPES = ("f32", "f16", "q8_0")

# HF class name -> (GGUF architecture, how q/k are laid out)
ARCHITECTURES: dict[str, gguf.MODEL_ARCH] = {
    "LlamaForCausalLM": gguf.MODEL_ARCH.LLAMA,
    "LLaMAForCausalLM": gguf.MODEL_ARCH.LLAMA,
    "Qwen2ForCausalLM": gguf.MODEL_ARCH.QWEN2,
}

MODEL_TYPES = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}

# Tensors HF checkpoints sometimes carry that llama.cpp recomputes itself.
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


@dataclass(frozen=True)
class HParams:
    arch: gguf.MODEL_ARCH
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_ctx: int
    rope_theta: float
    rms_eps: float
    tie_embeddings: bool
    rope_scaling: dict[str, Any] | None


@dataclass
class PlannedTensor:
    src: str
    dst: str
    shape: tuple[int, ...]
    qtype: gguf.GGMLQuantizationType
    transform: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def nbytes(self) -> int:
        block, type_size = gguf.GGML_QUANT_SIZES[self.qtype]
        return int(np.prod(self.shape)) // block * type_size


# --- config -------------------------------------------------------------------


def read_config(model_dir: Path) -> dict[str, Any]:
    if not model_dir.is_dir():
        raise ConvertError(f"{model_dir} is not a folder")
    path = model_dir / "config.json"
    if not path.is_file():
        raise ConvertError(f"{model_dir} has no config.json; is it a Hugging Face model folder?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConvertError(f"config.json is not valid JSON: {exc}") from exc


def parse_hparams(config: dict[str, Any]) -> HParams:
    archs = config.get("architectures") or []
    arch = next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None)
    if arch is None and not archs:  # old configs name only the model type
        arch = MODEL_TYPES.get(config.get("model_type", ""))
    if arch is None:
        raise ConvertError(
            f"unsupported architecture {archs or config.get('model_type')!r}; "
            f"supported: {', '.join(ARCHITECTURES)}"
        )
    # transformers 5 moved rope_theta and rope_scaling into rope_parameters
    rope = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or (
        rope if rope.get("rope_type", "default") != "default" else None
    )
    try:
        n_embd = int(config["hidden_size"])
        n_head = int(config["num_attention_heads"])
        hp = HParams(
            arch=arch,
            n_vocab=int(config["vocab_size"]),
            n_embd=n_embd,
            n_layer=int(config["num_hidden_layers"]),
            n_head=n_head,
            n_head_kv=int(config.get("num_key_value_heads") or n_head),
            head_dim=int(config.get("head_dim") or n_embd // n_head),
            n_ff=int(config["intermediate_size"]),
            n_ctx=int(config.get("max_position_embeddings") or 4096),
            rope_theta=float(config.get("rope_theta") or rope.get("rope_theta") or 10000.0),
            rms_eps=float(config.get("rms_norm_eps") or 1e-6),
            tie_embeddings=bool(config.get("tie_word_embeddings", False)),
            rope_scaling=scaling,
        )
    except KeyError as exc:
        raise ConvertError(f"config.json lacks {exc.args[0]!r}") from exc
    if hp.n_head % hp.n_head_kv:
        raise ConvertError(
            f"num_attention_heads {hp.n_head} is not a multiple of "
            f"num_key_value_heads {hp.n_head_kv}"
        )
    return hp


# --- tensors ------------------------------------------------------------------


def expected_shapes(hp: HParams) -> dict[str, tuple[int, ...]]:
    """Every tensor a well-formed checkpoint must hold, with its HF shape."""
    q_rows, kv_rows = hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (hp.n_vocab, hp.n_embd),
        "model.norm.weight": (hp.n_embd,),
    }
    if not hp.tie_embeddings:
        shapes["lm_head.weight"] = (hp.n_vocab, hp.n_embd)
    for i in range(hp.n_layer):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "self_attn.q_proj.weight": (q_rows, hp.n_embd),
                p + "self_attn.k_proj.weight": (kv_rows, hp.n_embd),
                p + "self_attn.v_proj.weight": (kv_rows, hp.n_embd),
                p + "self_attn.o_proj.weight": (hp.n_embd, q_rows),
                p + "mlp.gate_proj.weight": (hp.n_ff, hp.n_embd),
                p + "mlp.up_proj.weight": (hp.n_ff, hp.n_embd),
                p + "mlp.down_proj.weight": (hp.n_embd, hp.n_ff),
                p + "input_layernorm.weight": (hp.n_embd,),
                p + "post_attention_layernorm.weight": (hp.n_embd,),
            }
        )
        if hp.arch == gguf.MODEL_ARCH.QWEN2:
            shapes.update(
                {
                    p + "self_attn.q_proj.bias": (q_rows,),
                    p + "self_attn.k_proj.bias": (kv_rows,),
                    p + "self_attn.v_proj.bias": (kv_rows,),
                }
            )
    return shapes


def validate_tensors(ckpt: Checkpoint, hp: HParams) -> list[str]:
    """Names to convert, in checkpoint order; raise on anything missing or odd."""
    want = expected_shapes(hp)
    missing = [n for n in want if n not in ckpt.tensors]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise ConvertError(f"checkpoint is missing tensors: {', '.join(missing[:5])}{more}")
    names = []
    for name, meta in ckpt.tensors.items():
        if name.endswith(_IGNORED_SUFFIXES):
            continue
        if name == "lm_head.weight" and hp.tie_embeddings:
            continue  # tied: llama.cpp reuses token_embd
        if name not in want:
            raise ConvertError(
                f"unexpected tensor {name} {meta.shape}: "
                f"not part of a plain {hp.arch.name.lower()} model"
            )
        if meta.dtype not in SUPPORTED_DTYPES:
            raise ConvertError(
                f"tensor {name} has dtype {meta.dtype}; "
                f"only {', '.join(SUPPORTED_DTYPES)} are supported"
            )
        if meta.shape != want[name]:
            raise ConvertError(
                f"tensor {name} has shape {meta.shape}, config.json implies {want[name]}"
            )
        names.append(name)
    return names


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF stores rotary halves split across the head; llama.cpp wants them interleaved.

    HF's conversion from Meta's checkpoint un-interleaved each head's rows;
    this undoes it so llama.cpp's (non-NeoX) RoPE for llama sees Meta's order.
    """
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def out_qtype(shape: tuple[int, ...], outtype: str) -> gguf.GGMLQuantizationType:
    # Norms and biases are tiny and precision-sensitive: llama.cpp keeps them f32.
    if outtype == "f32" or len(shape) == 1:
        return gguf.GGMLQuantizationType.F32
    if (
        outtype == "q8_0"
        and shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0
    ):
        return gguf.GGMLQuantizationType.Q8_0
    return gguf.GGMLQuantizationType.F16


def plan_tensors(ckpt: Checkpoint, hp: HParams, outtype: str) -> list[PlannedTensor]:
    names = validate_tensors(ckpt, hp)
    name_map = gguf.get_tensor_name_map(hp.arch, hp.n_layer)
    plan = []
    for name in names:
        dst = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if dst is None:
            raise ConvertError(f"no GGUF name for tensor {name}")
        shape = ckpt.tensors[name].shape
        transform = None
        if hp.arch == gguf.MODEL_ARCH.LLAMA and name.endswith("q_proj.weight"):
            transform = _bind_permute(hp.n_head)
        elif hp.arch == gguf.MODEL_ARCH.LLAMA and name.endswith("k_proj.weight"):
            transform = _bind_permute(hp.n_head_kv)
        plan.append(PlannedTensor(name, dst, shape, out_qtype(shape, outtype), transform))
    return plan


def _bind_permute(n_head: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda w: permute_qk(w, n_head)


def encode(data: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    if qtype == gguf.GGMLQuantizationType.F32:
        return data.astype(np.float32, copy=False)
    if qtype == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16)
    return gguf.quants.quantize(data.astype(np.float32, copy=False), qtype)


# --- metadata -----------------------------------------------------------------

_FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
}


def add_hparams(writer: gguf.GGUFWriter, hp: HParams, name: str, outtype: str) -> None:
    writer.add_name(name)
    writer.add_context_length(hp.n_ctx)
    writer.add_embedding_length(hp.n_embd)
    writer.add_block_count(hp.n_layer)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_head_count(hp.n_head)
    writer.add_head_count_kv(hp.n_head_kv)
    writer.add_rope_dimension_count(hp.head_dim)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_layer_norm_rms_eps(hp.rms_eps)
    writer.add_vocab_size(hp.n_vocab)
    writer.add_file_type(_FILE_TYPES[outtype])
    if outtype == "q8_0":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_rope_scaling(writer, hp.rope_scaling)


def _add_rope_scaling(writer: gguf.GGUFWriter, scaling: dict[str, Any] | None) -> None:
    if not scaling:
        return
    kind = scaling.get("rope_type") or scaling.get("type")
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(scaling["factor"]))
    elif kind == "dynamic":
        # llama.cpp has no dynamic NTK; the model still works within its trained context.
        logger.warning("rope_scaling 'dynamic' is not supported by llama.cpp; ignoring it")
    elif kind != "default":
        raise ConvertError(f"unsupported rope_scaling {scaling!r}")


def load_vocab(model_dir: Path, hp: HParams) -> Vocab:
    if hp.arch == gguf.MODEL_ARCH.QWEN2:
        return load_bpe_vocab(model_dir, hp.n_vocab, pre="qwen2")
    if (model_dir / "tokenizer.model").is_file():
        return load_spm_vocab(model_dir, hp.n_vocab)
    raise ConvertError(
        f"{model_dir} has no tokenizer.model; only SentencePiece Llama tokenizers are supported "
        "(Llama 3 style BPE tokenizers are not)"
    )


def _write_tensors(
    writer: gguf.GGUFWriter, ckpt: Checkpoint, plan: list[PlannedTensor], desc: str
) -> None:
    """Append tensor data in plan order, one tensor in memory at a time."""
    last_of_shard = {ckpt.tensors[t.src].shard: i for i, t in enumerate(plan)}
    with progress(sum(t.nbytes for t in plan), desc) as bar:
        for i, t in enumerate(plan):
            data = ckpt.load(t.src)
            if t.transform is not None:
                data = t.transform(data)
            writer.write_tensor_data(encode(data, t.qtype))
            bar.update(t.nbytes)
            del data  # free before loading the next tensor
            shard = ckpt.tensors[t.src].shard
            if last_of_shard[shard] == i:
                ckpt.release(shard)


# --- entry point --------------------------------------------------------------


def convert_hf(
    model_dir: Path, out: Path, outtype: str = "f16", force: bool = False, name: str | None = None
) -> Path:
    """Convert a HF model folder to ``out``; return ``out``."""
    if outtype not in OUTTYPES:
        raise ConvertError(f"unknown outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    check_output(out, force)
    hp = parse_hparams(read_config(model_dir))
    ckpt = Checkpoint(model_dir)
    plan = plan_tensors(ckpt, hp, outtype)
    vocab = load_vocab(model_dir, hp)
    total = sum(t.nbytes for t in plan)
    check_disk_space(out, total)
    logger.info("converting %s (%s, %d tensors) to %s", model_dir, hp.arch.name, len(plan), outtype)

    arch = gguf.MODEL_ARCH_NAMES[hp.arch]
    with atomic_output(out) as tmp, contextlib.closing(gguf.GGUFWriter(tmp, arch)) as writer:
        add_hparams(writer, hp, name or model_dir.resolve().name, outtype)
        vocab.add_to_gguf(writer)
        for t in plan:
            writer.add_tensor_info(
                t.dst, t.shape, np.dtype(np.float32), t.nbytes, raw_dtype=t.qtype
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        _write_tensors(writer, ckpt, plan, f"hf2gguf {outtype}")
    ckpt.close()
    return out
