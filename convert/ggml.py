"""Old GGML Llama files (magic ggml / ggmf / ggjt, up to ggjt v3) -> GGUF.

Layout of those files, all little-endian:
    magic u32 [version u32, absent for 'ggml']
    hparams: n_vocab n_embd n_mult n_head n_layer n_rot ftype (7 x i32)
    vocab:   n_vocab x (len u32, bytes[len] [, score f32 unless 'ggml'])
    tensors until EOF: n_dims i32, name_len i32, dtype i32, dims i32[n_dims]
                       (innermost first), name, [ggjt: pad to 32 bytes], data
Tensor data is copied as-is: GGML Llama files already store q/k in the row
order llama.cpp expects, and ggjt v3's q4_0/q8_0 blocks are today's blocks.
"""

from __future__ import annotations

import contextlib
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import gguf
import numpy as np

from convert.common import atomic_output, check_disk_space, check_output, progress
from privategpt_zh.errors import ConvertError

logger = logging.getLogger(__name__)

MAGIC_GGML = 0x67676D6C  # unversioned
MAGIC_GGMF = 0x67676D66  # versioned, v1 only
MAGIC_GGJT = 0x67676A74  # versioned and aligned, v1..v3
GGJT_ALIGNMENT = 32

GQT = gguf.GGMLQuantizationType
# GGML type ids of that era that we can copy; quant blocks only from ggjt v3.
_FLOAT_TYPES = {0: GQT.F32, 1: GQT.F16}
_V3_QUANT_TYPES = {2: GQT.Q4_0, 8: GQT.Q8_0}

_BYTE_PIECE = re.compile(rb"<0x[0-9A-Fa-f]{2}>")
_SPM_SPACE = "\u2581".encode()


@dataclass
class GGMLTensor:
    name: str
    shape: tuple[int, ...]  # numpy order (outermost first)
    qtype: gguf.GGMLQuantizationType
    offset: int
    nbytes: int


@dataclass
class GGMLModel:
    magic: int
    version: int
    hparams: dict[str, int]
    vocab: list[tuple[bytes, float]]
    tensors: list[GGMLTensor]

    @property
    def format_name(self) -> str:
        name = {MAGIC_GGML: "ggml", MAGIC_GGMF: "ggmf", MAGIC_GGJT: "ggjt"}[self.magic]
        return f"{name} v{self.version}"


# --- parsing ------------------------------------------------------------------


def _read(f: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize(fmt)
    buf = f.read(size)
    if len(buf) != size:
        raise ConvertError("GGML file is truncated")
    return struct.unpack(fmt, buf)


def _read_header(f: BinaryIO) -> tuple[int, int]:
    (magic,) = _read(f, "<I")
    if magic == MAGIC_GGML:
        return magic, 1
    if magic not in (MAGIC_GGMF, MAGIC_GGJT):
        if magic == gguf.GGUF_MAGIC:
            raise ConvertError("this file is already GGUF; no conversion needed")
        raise ConvertError(f"not a GGML Llama file (magic {magic:#010x})")
    (version,) = _read(f, "<I")
    if (magic == MAGIC_GGMF and version != 1) or (magic == MAGIC_GGJT and version not in (1, 2, 3)):
        raise ConvertError(f"unknown GGML file version {version}")
    return magic, version


def _read_vocab(f: BinaryIO, n_vocab: int, has_scores: bool) -> list[tuple[bytes, float]]:
    vocab = []
    for _ in range(n_vocab):
        (length,) = _read(f, "<I")
        text = f.read(length)
        score = _read(f, "<f")[0] if has_scores else 0.0
        vocab.append((text, score))
    return vocab


def _tensor_qtype(dtype: int, magic: int, version: int, name: str) -> gguf.GGMLQuantizationType:
    if dtype in _FLOAT_TYPES:
        return _FLOAT_TYPES[dtype]
    if dtype in _V3_QUANT_TYPES and magic == MAGIC_GGJT and version == 3:
        return _V3_QUANT_TYPES[dtype]
    if dtype in _V3_QUANT_TYPES:
        raise ConvertError(
            f"tensor {name} is quantized in the pre-ggjt-v3 block layout, which llama.cpp no "
            "longer reads; convert the original f16 model instead"
        )
    raise ConvertError(
        f"tensor {name} has GGML type {dtype}; supported: f32, f16, and q4_0/q8_0 from ggjt v3"
    )


def _read_tensors(f: BinaryIO, magic: int, version: int, file_size: int) -> list[GGMLTensor]:
    tensors = []
    while f.tell() < file_size:
        n_dims, name_len, dtype = _read(f, "<iii")
        if not 1 <= n_dims <= 4 or not 0 < name_len < 512:
            raise ConvertError(f"corrupt tensor header at byte {f.tell() - 12}")
        dims = _read(f, f"<{n_dims}i")
        name = f.read(name_len).decode("utf-8", errors="replace")
        qtype = _tensor_qtype(dtype, magic, version, name)
        if magic == MAGIC_GGJT:
            f.seek(-f.tell() % GGJT_ALIGNMENT, 1)
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        if dims[0] % block:
            raise ConvertError(f"tensor {name}: row length {dims[0]} is not a multiple of {block}")
        nbytes = int(np.prod(dims)) // block * type_size
        offset = f.tell()
        if offset + nbytes > file_size:
            raise ConvertError(f"GGML file is truncated inside tensor {name}")
        tensors.append(GGMLTensor(name, tuple(reversed(dims)), qtype, offset, nbytes))
        f.seek(nbytes, 1)
    return tensors


def read_ggml(path: Path) -> GGMLModel:
    """Parse headers, vocab and the tensor table; tensor data stays on disk."""
    if not path.is_file():
        raise ConvertError(f"{path} does not exist")
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        magic, version = _read_header(f)
        keys = ("n_vocab", "n_embd", "n_mult", "n_head", "n_layer", "n_rot", "ftype")
        hparams = dict(zip(keys, _read(f, "<7i"), strict=True))
        vocab = _read_vocab(f, hparams["n_vocab"], has_scores=magic != MAGIC_GGML)
        tensors = _read_tensors(f, magic, version, file_size)
    return GGMLModel(magic, version, hparams, vocab, tensors)


# --- mapping to GGUF ----------------------------------------------------------

_LAYER_NAMES = {
    "attention.wq.weight": "attn_q.weight",
    "attention.wk.weight": "attn_k.weight",
    "attention.wv.weight": "attn_v.weight",
    "attention.wo.weight": "attn_output.weight",
    "feed_forward.w1.weight": "ffn_gate.weight",
    "feed_forward.w2.weight": "ffn_down.weight",
    "feed_forward.w3.weight": "ffn_up.weight",
    "attention_norm.weight": "attn_norm.weight",
    "ffn_norm.weight": "ffn_norm.weight",
}
_GLOBAL_NAMES = {
    "tok_embeddings.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "output.weight": "output.weight",
}
_LAYER_RE = re.compile(r"layers\.(\d+)\.(.+)")


def gguf_name(name: str) -> str:
    if name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[name]
    m = _LAYER_RE.fullmatch(name)
    if m and m.group(2) in _LAYER_NAMES:
        return f"blk.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}"
    raise ConvertError(f"unknown tensor {name!r} in GGML file; is it a Llama model?")


def _has_raw_byte_tokens(vocab: list[tuple[bytes, float]]) -> bool:
    """Old llama.cpp stored SentencePiece byte pieces <0xNN> as the raw byte at ids 3..258."""
    if len(vocab) < 259:
        return False
    return sorted(text[0] for text, _ in vocab[3:259] if len(text) == 1) == list(range(256))


def gguf_vocab(vocab: list[tuple[bytes, float]]) -> tuple[list[bytes], list[float], list[int]]:
    """Undo the GGML-era vocab encoding so llama.cpp's SentencePiece tokenizer works."""
    raw_bytes = _has_raw_byte_tokens(vocab)
    tokens, scores, types = [], [], []
    for i, (text, score) in enumerate(vocab):
        ttype = gguf.TokenType.NORMAL
        if i == 0 and text in (b"", b" \xe2\x81\x87 ", b"<unk>"):
            text, ttype = b"<unk>", gguf.TokenType.UNKNOWN
        elif i in (1, 2) and text in (b"", b"<s>", b"</s>"):
            text, ttype = (b"<s>", b"</s>")[i - 1], gguf.TokenType.CONTROL
        elif _BYTE_PIECE.fullmatch(text):
            ttype = gguf.TokenType.BYTE
        elif raw_bytes and 3 <= i < 259:
            text, ttype = f"<0x{text[0]:02X}>".encode(), gguf.TokenType.BYTE
        elif not text:
            ttype = gguf.TokenType.CONTROL
        else:
            text = text.replace(b" ", _SPM_SPACE)  # GGML files kept spaces, GGUF keeps U+2581
        tokens.append(text)
        scores.append(score)
        types.append(int(ttype))
    return tokens, scores, types


def _derive_shapes(model: GGMLModel) -> dict[str, int]:
    by_name = {t.name: t for t in model.tensors}
    for needed in (
        "tok_embeddings.weight",
        "layers.0.feed_forward.w1.weight",
        "layers.0.attention.wk.weight",
    ):
        if needed not in by_name:
            raise ConvertError(f"GGML file lacks tensor {needed}")
    hp = model.hparams
    if hp["n_head"] <= 0 or hp["n_embd"] % hp["n_head"]:
        raise ConvertError(f"bad hparams: n_embd {hp['n_embd']} / n_head {hp['n_head']}")
    head_dim = hp["n_embd"] // hp["n_head"]
    kv_rows = by_name["layers.0.attention.wk.weight"].shape[0]
    if by_name["tok_embeddings.weight"].shape != (hp["n_vocab"], hp["n_embd"]):
        raise ConvertError("tok_embeddings.weight does not match n_vocab x n_embd")
    return {
        # The file has no n_ff, only n_mult; the tensor shape is the truth.
        "n_ff": by_name["layers.0.feed_forward.w1.weight"].shape[0],
        # Llama-2 70B ggml files needed a --gqa flag; the k rows tell us directly.
        "n_head_kv": kv_rows // head_dim,
    }


def _add_metadata(
    writer: gguf.GGUFWriter,
    model: GGMLModel,
    name: str,
    eps: float,
    context_length: int,
    rope_freq_base: float,
) -> None:
    hp, extra = model.hparams, _derive_shapes(model)
    writer.add_name(name)
    writer.add_description(f"converted from {model.format_name}")
    writer.add_context_length(context_length)
    writer.add_embedding_length(hp["n_embd"])
    writer.add_block_count(hp["n_layer"])
    writer.add_feed_forward_length(extra["n_ff"])
    writer.add_head_count(hp["n_head"])
    writer.add_head_count_kv(extra["n_head_kv"])
    writer.add_rope_dimension_count(hp["n_rot"] or hp["n_embd"] // hp["n_head"])
    writer.add_rope_freq_base(rope_freq_base)
    writer.add_layer_norm_rms_eps(eps)
    writer.add_vocab_size(hp["n_vocab"])
    writer.add_file_type(hp["ftype"])  # llama_ftype numbering is unchanged since GGML
    if any(t.qtype not in (GQT.F32, GQT.F16) for t in model.tensors):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokens, scores, types = gguf_vocab(model.vocab)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    # GGML Llama files always used SentencePiece's ids and added BOS only.
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)


def convert_ggml(
    src: Path,
    out: Path,
    force: bool = False,
    eps: float = 1e-5,
    context_length: int = 4096,
    rope_freq_base: float = 10000.0,
    name: str | None = None,
) -> Path:
    """Convert an old GGML Llama file to GGUF without touching tensor data."""
    check_output(out, force)
    model = read_ggml(src)
    _derive_shapes(model)  # fail on a broken file before creating the output
    logger.info("%s: %s, %d tensors", src, model.format_name, len(model.tensors))
    total = sum(t.nbytes for t in model.tensors)
    check_disk_space(out, total)

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
    with atomic_output(out) as tmp, contextlib.closing(gguf.GGUFWriter(tmp, arch)) as writer:
        _add_metadata(writer, model, name or src.stem, eps, context_length, rope_freq_base)
        for t in model.tensors:
            writer.add_tensor_info(
                gguf_name(t.name), t.shape, np.dtype(np.float32), t.nbytes, raw_dtype=t.qtype
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        # seek + read, not mmap: RSS stays at one tensor instead of the whole file
        with open(src, "rb") as f, progress(total, "ggml2gguf") as bar:
            for t in model.tensors:
                f.seek(t.offset)
                writer.write_tensor_data(np.fromfile(f, dtype=np.uint8, count=t.nbytes))
                bar.update(t.nbytes)
    return out
