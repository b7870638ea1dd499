"""Summarise a GGUF file: what it is, how big, how quantized, which template."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privategpt_zh.errors import ConvertError


@dataclass
class GGUFSummary:
    path: Path
    architecture: str
    name: str | None
    file_size: int
    n_params: int
    n_tensors: int
    quant_types: dict[str, int]  # tensor type name -> tensor count
    context_length: int | None
    vocab_size: int | None
    tokenizer: str | None
    chat_template: str | None
    metadata: dict[str, Any] = field(default_factory=dict)  # scalar fields only


def _scalar(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None or not f.types:
        return None
    from gguf import GGUFValueType

    if f.types[0] == GGUFValueType.ARRAY:
        return None
    value = f.parts[f.data[0]]
    if f.types[0] == GGUFValueType.STRING:
        return bytes(value).decode("utf-8", errors="replace")
    return value.tolist()[0]


def inspect_gguf(path: Path) -> GGUFSummary:
    from gguf import GGUFReader

    if not path.is_file():
        raise ConvertError(f"{path} does not exist")
    try:
        reader = GGUFReader(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure means not GGUF
        raise ConvertError(f"{path} is not a readable GGUF file: {exc}") from exc
    arch = _scalar(reader, "general.architecture") or "unknown"
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    metadata = {
        k: v
        for k in reader.fields
        if not k.startswith("GGUF.") and (v := _scalar(reader, k)) is not None
    }
    return GGUFSummary(
        path=path,
        architecture=arch,
        name=_scalar(reader, "general.name"),
        file_size=path.stat().st_size,
        n_params=sum(int(t.n_elements) for t in reader.tensors),
        n_tensors=len(reader.tensors),
        quant_types=dict(Counter(t.tensor_type.name for t in reader.tensors).most_common()),
        context_length=_scalar(reader, f"{arch}.context_length"),
        vocab_size=len(tokens.data) if tokens is not None else None,
        tokenizer=_scalar(reader, "tokenizer.ggml.model"),
        chat_template=_scalar(reader, "tokenizer.chat_template"),
        metadata=metadata,
    )
