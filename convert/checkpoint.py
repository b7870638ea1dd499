"""Read Hugging Face checkpoints tensor by tensor.

Listing names, shapes and dtypes reads only headers; each tensor's data is read
when asked for. safetensors are read with seeks, PyTorch ``.bin`` shards through
torch's mmap (released shard by shard). That keeps a 7B conversion's peak memory
near a few times its largest tensor instead of the model's size.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from privategpt_zh.errors import ConvertError

logger = logging.getLogger(__name__)

# Index files that name the shard of every tensor, most preferred first.
_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SUPPORTED_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class TensorMeta:
    name: str
    shape: tuple[int, ...]
    dtype: str  # torch dtype name without the "torch." prefix
    shard: Path


class Checkpoint:
    """All tensors of a HF model folder, opened lazily shard by shard."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.shards = _find_shards(model_dir)
        self._open: dict[Path, Any] = {}  # Path -> SafetensorsFile or a torch state dict
        self.tensors: dict[str, TensorMeta] = {}
        for shard in self.shards:
            for meta in self._list_shard(shard):
                self.tensors[meta.name] = meta

    def _handle(self, shard: Path) -> Any:
        if shard not in self._open:
            self._open[shard] = _open_shard(shard)
        return self._open[shard]

    def _list_shard(self, shard: Path) -> Iterator[TensorMeta]:
        handle = self._handle(shard)
        if isinstance(handle, SafetensorsFile):
            for name, (dtype, shape, _, _) in handle.entries.items():
                yield TensorMeta(name, shape, dtype, shard)
        else:
            for name, t in handle.items():
                yield TensorMeta(name, tuple(t.shape), str(t.dtype).removeprefix("torch."), shard)

    def load(self, name: str) -> np.ndarray:
        """One tensor as a float32 numpy array (bf16 has no numpy dtype)."""
        meta = self.tensors[name]
        if meta.dtype not in SUPPORTED_DTYPES:
            raise ConvertError(
                f"tensor {name} in {meta.shard.name} has dtype {meta.dtype}; "
                f"only {', '.join(SUPPORTED_DTYPES)} are supported"
            )
        handle = self._handle(meta.shard)
        if isinstance(handle, SafetensorsFile):
            return handle.load(name)
        return handle[name].float().numpy()

    def release(self, shard: Path) -> None:
        """Drop a shard's mapping once its tensors are done, so its pages leave RSS."""
        self._open.pop(shard, None)

    def close(self) -> None:
        # safetensors handles and torch mmaps close when dropped.
        self._open.clear()


# safetensors dtype codes -> the torch names used in messages and TensorMeta
_ST_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


class SafetensorsFile:
    """A safetensors file read with plain seeks, not mmap.

    The format is an 8-byte header length, a JSON header of name -> dtype, shape and
    byte range, then the raw data. Reading each tensor with a seek keeps RSS at the
    size of that tensor; an mmap would keep every page read so far resident.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        self.data_start = 8 + n
        self.entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            dtype = _ST_DTYPES.get(info["dtype"], info["dtype"].lower())
            self.entries[name] = (dtype, tuple(info["shape"]), begin, end)

    def load(self, name: str) -> np.ndarray:
        dtype, shape, begin, end = self.entries[name]
        raw = np.dtype(np.uint16) if dtype == "bfloat16" else np.dtype(dtype)
        count = (end - begin) // raw.itemsize
        with open(self.path, "rb") as f:
            f.seek(self.data_start + begin)
            data = np.fromfile(f, dtype=raw, count=count)
        if data.size != count or data.size != int(np.prod(shape)):
            raise ConvertError(f"{self.path.name}: tensor {name} is truncated")
        if dtype == "bfloat16":  # bf16 is the top half of an f32
            data = (data.astype(np.uint32) << 16).view(np.float32)
        return data.reshape(shape).astype(np.float32, copy=False)


def _find_shards(model_dir: Path) -> list[Path]:
    for index_name in _INDEX_FILES:
        index = model_dir / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (ValueError, KeyError) as exc:
                raise ConvertError(f"{index} is not a valid shard index: {exc}") from exc
            shards = [model_dir / f for f in dict.fromkeys(weight_map.values())]
            missing = [s.name for s in shards if not s.is_file()]
            if missing:
                raise ConvertError(
                    f"{index_name} lists shards that are missing: {', '.join(missing)}"
                )
            return shards
    shards = sorted(model_dir.glob("*.safetensors"))
    if not shards:
        shards = sorted(p for p in model_dir.glob("pytorch_model*.bin"))
    if not shards:
        raise ConvertError(
            f"no weights in {model_dir}: expected *.safetensors or pytorch_model*.bin files"
        )
    return shards


def _open_shard(shard: Path) -> Any:
    try:
        if shard.suffix == ".safetensors":
            return SafetensorsFile(shard)
        import torch  # heavy; only needed for PyTorch shards

        # weights_only refuses pickled code; mmap avoids reading the shard into RAM.
        try:
            state = torch.load(str(shard), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            # pre-1.6 (non-zip) torch.save format cannot be mapped: load it whole
            logger.warning("%s: legacy format, loading it into memory", shard.name)
            state = torch.load(str(shard), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a broken file
        raise ConvertError(f"cannot read {shard.name}: {exc}") from exc
    if not isinstance(state, dict):
        raise ConvertError(f"{shard.name} does not hold a state dict")
    return state
