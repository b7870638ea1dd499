"""A sentence-transformers model run by ONNX Runtime instead of torch.

Why: importing sentence-transformers pulls in torch, transformers, scikit-learn
and scipy, about 9 s on the 2-core machine before the first chunk is embedded,
and ONNX Runtime also computes MiniLM about 1.2x faster there. This backend
needs only ``onnxruntime`` and ``tokenizers`` (0.5 s to import).

The model is exported once from the sentence-transformers folder (with torch,
which is installed anyway) into ``MODEL_DIR/onnx/``, and the export is only kept
if it gives the same vectors as sentence-transformers on probe sentences. A
folder this module cannot reproduce exactly (pooling other than mean/CLS, extra
modules, no fast tokenizer) is left to sentence-transformers: see
:func:`supports`.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import MissingDependencyError, ModelError

if TYPE_CHECKING:
    from .embeddings import Embedder

log = logging.getLogger(__name__)

EXPORT_VERSION = 1  # bump when the export changes: old files are then not reused
SAME_VECTORS = 0.9999  # least cosine between torch and ONNX vectors on the probes
PROBES = [
    "奶牛乳房炎怎么预防？挤奶前后要药浴乳头，定期检测体细胞数。",
    "How often should piglets be weaned, and at what weight?",
    "2023年第三季度，张三追加投资50万元（合同编号 INV-0042）。",
    "短",
]
_MODULES = {
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
}


def supports(folder: Path) -> bool:
    """Whether the folder is a plain Transformer → mean/CLS pooling → [Normalize] model."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
        config = _sbert_config(folder)
        pooling = _pooling(folder, modules)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    types = [m.get("type") for m in modules]
    return (
        bool(types)
        and types[0] == "sentence_transformers.models.Transformer"
        and set(types) <= _MODULES
        and pooling in ("mean", "cls")
        and (folder / "tokenizer.json").is_file()
        and int(config.get("max_seq_length") or 0) > 0
    )


class OnnxEmbedder:
    """Same vectors as ``SentenceTransformer(folder).encode(..., normalize_embeddings=True)``.

    With a ``fallback`` (the torch backend for the same folder), a failed export or a
    missing runtime logs a warning and hands the work to it instead of failing.
    """

    def __init__(
        self,
        folder: Path,
        cache_dir: Path,
        batch_size: int = 32,
        max_length: int = 0,
        cjk_max_length: int = 0,
        fallback: Embedder | None = None,
    ) -> None:
        self.name = str(folder)  # same identity as the torch backend: the vectors are the same
        self.folder = folder
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.max_length = max_length or int(_sbert_config(folder)["max_seq_length"])
        self.cjk_max_length = cjk_max_length
        self.fallback = fallback
        self._session = None
        self._delegate: Embedder | None = None

    def embed(self, texts: list[str]) -> list[list[float]]:
        from .embeddings import encode_by_script

        if self._session is None and self._delegate is None:
            self._load()
        if self._delegate is not None:
            return self._delegate.embed(texts)
        return encode_by_script(texts, self._encode, self.max_length, self.cjk_max_length)

    def _load(self) -> None:
        try:
            self._open(ensure_export(self.folder, self.cache_dir))
        except (ModelError, MissingDependencyError) as exc:
            if self.fallback is None:
                raise
            log.warning("embedding with sentence-transformers (torch) instead of ONNX: %s", exc)
            self._delegate = self.fallback

    def _open(self, path: Path) -> None:
        ort, tokenizers = _runtime()
        options = ort.SessionOptions()
        # ORT's default counts physical cores; on a 2-vCPU machine that halves the speed.
        options.intra_op_num_threads = _cpus()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # a damaged cache file: say where it is
            raise ModelError(
                f"cannot load {path} ({exc}): delete it and it is rebuilt on the next run"
            ) from exc
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = tokenizers.Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        modules = json.loads((self.folder / "modules.json").read_text())
        self._pooling = _pooling(self.folder, modules)

    def _encode(self, texts: list[str], limit: int) -> list[list[float]]:
        import numpy as np

        tok = self._tokenizer
        tok.no_padding()
        tok.enable_truncation(limit)
        encodings = tok.encode_batch(texts)
        # Longest first, as sentence-transformers does: batches of similar length pad little.
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out: list = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            for i, vector in zip(batch, self._run([encodings[i] for i in batch], np)):
                out[i] = vector
        return [v.tolist() for v in out]

    def _run(self, encodings: list, np):
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        if self._pooling == "cls":
            vectors = hidden[:, 0]
        else:
            weights = mask[..., None].astype(hidden.dtype)
            vectors = (hidden * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)
        # Always unit length, as the torch backend asks sentence-transformers for.
        return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)


def ensure_export(folder: Path, cache_dir: Path) -> Path:
    """The ONNX file for ``folder``, exported and checked on first use.

    A model whose export failed is not tried again on every run (that costs about
    15 s): the reason is kept beside where the file would be.
    """
    target = cache_dir / f"{folder.name}-{_fingerprint(folder)}.onnx"
    failed = target.with_suffix(".failed")
    if target.is_file():
        return target
    if failed.is_file():
        raise ModelError(
            f"{failed.read_text(errors='replace').strip()} (delete {failed} to try again)"
        )
    log.info(
        "exporting the embedding model %s/%s to ONNX (once, about 15 s)",
        folder.parent.name,
        folder.name,
    )
    tmp = None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _sweep_parts(cache_dir)
        fd, name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=cache_dir)
        os.close(fd)
        tmp = Path(name)
        try:
            _export(folder, tmp)
            _check_same_vectors(folder, tmp, cache_dir)
        except (MissingDependencyError, OSError):
            raise  # about this machine, not the model: worth trying again once fixed
        except ModelError as exc:
            failed.write_text(str(exc))
            raise
        except Exception as exc:  # torch's exporter fails in many ways; all mean "not this model"
            failed.write_text(f"could not export {folder} to ONNX ({exc})")
            raise ModelError(f"could not export {folder} to ONNX ({exc})") from exc
        # mkstemp makes the file private; the cache may be shared by several users
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o644 & ~umask)
        os.replace(tmp, target)
    except OSError as exc:
        raise ModelError(
            f"could not write the ONNX model to {cache_dir} ({exc}): make it writable, "
            "or set EMBEDDINGS_BACKEND=torch"
        ) from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return target


def _sweep_parts(cache_dir: Path) -> None:
    """Remove what exports killed half-way left behind (an hour old: not one running now)."""
    for part in cache_dir.glob("*.part"):
        with contextlib.suppress(OSError):
            if time.time() - part.stat().st_mtime > 3600:
                part.unlink()


def _export(folder: Path, out: Path) -> None:
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise MissingDependencyError(
            "exporting the embedding model needs torch and transformers: "
            "pip install -r requirements.txt"
        ) from exc

    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs))).last_hidden_state

    dummy = tuple(torch.ones(2, 8, dtype=torch.long) for _ in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    # The tracer warns about shape checks it freezes (batch and length > 1, no padding
    # offset); they hold for every input we feed, and the export is checked against
    # sentence-transformers on probes of several lengths before it is kept.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHiddenState(),
            dummy,
            str(out),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, dynamic axes work
        )


def _check_same_vectors(folder: Path, candidate: Path, cache_dir: Path) -> None:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    want = reference.encode(PROBES, normalize_embeddings=True)
    trial = OnnxEmbedder(folder, cache_dir)
    trial._open(candidate)
    got = np.asarray(trial._encode(PROBES, trial.max_length))
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    cosine = float(np.min(np.sum(got * want, axis=1)))
    if cosine < SAME_VECTORS:
        raise ModelError(
            f"the ONNX export of {folder} does not reproduce its vectors (cosine {cosine:.5f}): "
            "set EMBEDDINGS_BACKEND=torch"
        )


def _runtime():
    try:
        import onnxruntime
        import tokenizers
    except ImportError as exc:
        raise MissingDependencyError(
            "the ONNX embedding backend needs onnxruntime and tokenizers: "
            "pip install -r requirements.txt (or set EMBEDDINGS_BACKEND=torch)"
        ) from exc
    return onnxruntime, tokenizers


def _fingerprint(folder: Path) -> str:
    """Bound to the weights' size and mtime and the configs: cheap enough for every start."""
    digest = hashlib.sha256(f"v{EXPORT_VERSION}".encode())
    configs = ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json")
    for name in (*configs, "config_sentence_transformers.json", "1_Pooling/config.json"):
        path = folder / name
        digest.update(path.read_bytes() if path.is_file() else b"-")
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _sbert_config(folder: Path) -> dict:
    return json.loads((folder / "sentence_bert_config.json").read_text())


def _pooling(folder: Path, modules: list[dict]) -> str:
    pooling = next((m for m in modules if str(m.get("type")).endswith("Pooling")), None)
    if pooling is None:
        return "other"
    config = json.loads((folder / pooling["path"] / "config.json").read_text())
    modes = [k for k, v in config.items() if k.startswith("pooling_mode") and v]
    if modes == ["pooling_mode_mean_tokens"]:
        return "mean"
    if modes == ["pooling_mode_cls_token"]:
        return "cls"
    return "other"


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
