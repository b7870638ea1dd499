"""Tokenizer vocabularies for GGUF: SentencePiece (Llama) and byte-level BPE (Qwen2).

llama.cpp re-implements both tokenizers, so what we write must let it reproduce
the Hugging Face token ids exactly: every piece with its id, score and type.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from privategpt_zh.errors import ConvertError

logger = logging.getLogger(__name__)

# Score llama.cpp's converter gives tokens that SentencePiece never scored.
ADDED_TOKEN_SCORE = -1000.0


@dataclass
class Vocab:
    model: str  # tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2" (BPE)
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    pre: str | None = None  # tokenizer.ggml.pre, BPE only
    special: gguf.SpecialVocab | None = None
    merges: list[str] = field(default_factory=list)

    def add_to_gguf(self, writer: gguf.GGUFWriter) -> None:
        writer.add_tokenizer_model(self.model)
        if self.pre:
            writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        if self.scores is not None:
            writer.add_token_scores(self.scores)
        writer.add_token_types(self.types)
        if self.special is not None:
            self.special.add_to_gguf(writer, quiet=True)


def _pad_token(i: int) -> str:
    return f"[PAD{i}]"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConvertError(f"{path.name} is not valid JSON: {exc}") from exc


def hf_added_tokens(model_dir: Path) -> dict[int, tuple[str, bool]]:
    """id -> (text, is_special) from every place transformers may have put them."""
    added: dict[int, tuple[str, bool]] = {}
    if (p := model_dir / "added_tokens.json").is_file():
        for text, tid in _read_json(p).items():
            added[int(tid)] = (text, False)
    if (p := model_dir / "tokenizer_config.json").is_file():
        for tid, entry in (_read_json(p).get("added_tokens_decoder") or {}).items():
            added[int(tid)] = (entry["content"], bool(entry.get("special", False)))
    if (p := model_dir / "tokenizer.json").is_file():
        for entry in _read_json(p).get("added_tokens") or []:
            added[int(entry["id"])] = (entry["content"], bool(entry.get("special", False)))
    return added


# --- SentencePiece (Llama, Chinese-LLaMA, Llama2-Chinese ...) -----------------


def _spm_piece_types(model_file: Path, sp: Any) -> list[int]:
    """Piece types as stored in the model proto (same numbering as gguf.TokenType).

    The Python API has no IsUserDefined(), and llama.cpp must know user-defined
    pieces (e.g. Chinese words forced into the vocab) to match them whole.
    """
    try:
        from sentencepiece import sentencepiece_model_pb2 as pb2

        proto = pb2.ModelProto()
        proto.ParseFromString(model_file.read_bytes())
        return [int(p.type) for p in proto.pieces]
    except Exception as exc:  # noqa: BLE001 - protobuf missing or too new; degrade
        logger.warning("cannot read piece types from the proto (%s); guessing them", exc)
    types = []
    for i in range(sp.GetPieceSize()):
        t = gguf.TokenType.NORMAL
        if sp.IsUnknown(i):
            t = gguf.TokenType.UNKNOWN
        elif sp.IsControl(i):
            t = gguf.TokenType.CONTROL
        elif sp.IsUnused(i):
            t = gguf.TokenType.UNUSED
        elif sp.IsByte(i):
            t = gguf.TokenType.BYTE
        types.append(int(t))
    return types


def load_spm_vocab(model_dir: Path, n_vocab: int) -> Vocab:
    """tokenizer.model plus HF added tokens, padded to the embedding's row count."""
    from sentencepiece import SentencePieceProcessor

    model_file = model_dir / "tokenizer.model"
    sp = SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(model_file))
    except Exception as exc:  # noqa: BLE001
        raise ConvertError(f"cannot load {model_file}: {exc}") from exc
    n_sp = sp.GetPieceSize()
    if n_sp > n_vocab:
        raise ConvertError(
            f"tokenizer.model has {n_sp} pieces but the embedding has only {n_vocab} rows"
        )
    tokens = [_pad_token(i) for i in range(n_vocab)]
    scores = [ADDED_TOKEN_SCORE] * n_vocab
    types = [int(gguf.TokenType.UNUSED)] * n_vocab
    piece_types = _spm_piece_types(model_file, sp)
    for i in range(n_sp):
        tokens[i] = sp.IdToPiece(i)
        scores[i] = sp.GetScore(i)
        types[i] = piece_types[i]

    for tid, (text, special) in sorted(hf_added_tokens(model_dir).items()):
        if tid < n_sp:
            continue  # <unk>, <s>, </s> already come from the SentencePiece model
        if tid >= n_vocab:
            raise ConvertError(f"added token {text!r} has id {tid} beyond the vocab size {n_vocab}")
        tokens[tid] = text
        types[tid] = int(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)

    special_vocab = gguf.SpecialVocab(model_dir, n_vocab=n_vocab)
    # Fall back to the ids SentencePiece itself declares.
    for kind, tid in (("bos", sp.bos_id()), ("eos", sp.eos_id()), ("unk", sp.unk_id())):
        if tid >= 0:
            special_vocab.special_token_ids.setdefault(kind, tid)
    special_vocab.add_special_token.setdefault("bos", True)
    special_vocab.add_special_token.setdefault("eos", False)
    return Vocab("llama", tokens, types, scores=scores, special=special_vocab)


# --- byte-level BPE (Qwen2) ---------------------------------------------------


def load_bpe_vocab(model_dir: Path, n_vocab: int, pre: str) -> Vocab:
    """tokenizer.json's BPE vocab and merges; ``pre`` names llama.cpp's pre-tokenizer."""
    from tokenizers import Tokenizer

    tok_file = model_dir / "tokenizer.json"
    if not tok_file.is_file():
        raise ConvertError(f"{model_dir} has no tokenizer.json (needed for a BPE vocab)")
    model_type = (_read_json(tok_file).get("model") or {}).get("type")
    if model_type != "BPE":
        raise ConvertError(f"tokenizer.json holds a {model_type} model, expected BPE")
    tok = Tokenizer.from_file(str(tok_file))
    by_id = {tid: text for text, tid in tok.get_vocab(with_added_tokens=True).items()}
    if max(by_id) >= n_vocab:
        raise ConvertError(
            f"tokenizer.json has token id {max(by_id)} but the embedding has {n_vocab} rows"
        )
    added = {tid: t.special for tid, t in tok.get_added_tokens_decoder().items()}
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(_pad_token(i))
            types.append(int(gguf.TokenType.UNUSED))
            continue
        tokens.append(by_id[i])
        if i in added:
            types.append(int(gguf.TokenType.CONTROL if added[i] else gguf.TokenType.USER_DEFINED))
        else:
            types.append(int(gguf.TokenType.NORMAL))
    special_vocab = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=n_vocab)
    if not special_vocab.merges:
        raise ConvertError("tokenizer.json has no BPE merges")
    # Qwen2 never prepends BOS; say so explicitly, llama.cpp's BPE default differs.
    special_vocab.add_special_token.setdefault("bos", False)
    return Vocab("gpt2", tokens, types, pre=pre, special=special_vocab)
