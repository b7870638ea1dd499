"""Quantize a GGUF with llama.cpp's own quantizer, via llama-cpp-python.

No llama.cpp checkout or binary is needed: llama-cpp-python exposes
``llama_model_quantize``. It reports no progress, so we run it in a thread and
show the output file growing against the size we expect.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from convert.common import atomic_output, check_disk_space, check_output, progress
from privategpt_zh.errors import ConvertError, MissingDependencyError

logger = logging.getLogger(__name__)

# type name -> (llama_cpp ftype constant name, approximate bits per weight)
QUANT_TYPES: dict[str, tuple[str, float]] = {
    "q4_0": ("LLAMA_FTYPE_MOSTLY_Q4_0", 4.55),
    "q4_K_M": ("LLAMA_FTYPE_MOSTLY_Q4_K_M", 4.9),
    "q5_K_M": ("LLAMA_FTYPE_MOSTLY_Q5_K_M", 5.7),
    "q8_0": ("LLAMA_FTYPE_MOSTLY_Q8_0", 8.5),
}


def estimate_size(n_params: int, qtype: str) -> int:
    return int(n_params * QUANT_TYPES[qtype][1] / 8)


def count_params(path: Path) -> int:
    from gguf import GGUFReader

    try:
        return sum(int(t.n_elements) for t in GGUFReader(path).tensors)
    except Exception as exc:  # noqa: BLE001 - any parse failure means it is not GGUF
        raise ConvertError(f"{path} is not a readable GGUF file: {exc}") from exc


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingDependencyError(
            "quantize needs llama-cpp-python: pip install llama-cpp-python"
        ) from exc
    return llama_cpp


def quantize(src: Path, out: Path, qtype: str, force: bool = False, threads: int = 0) -> Path:
    """Write ``src`` quantized to ``qtype`` as ``out``; return ``out``."""
    if qtype not in QUANT_TYPES:
        raise ConvertError(f"unknown quant type {qtype!r}; choose one of {', '.join(QUANT_TYPES)}")
    if not src.is_file():
        raise ConvertError(f"{src} does not exist")
    check_output(out, force)
    expected = estimate_size(count_params(src), qtype)
    check_disk_space(out, expected)
    llama_cpp = _llama_cpp()

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[qtype][0])
    params.nthread = threads
    with atomic_output(out) as tmp, _quiet_llama_log():
        rc = _run_with_progress(
            lambda: llama_cpp.llama_model_quantize(
                str(src).encode(), str(tmp).encode(), ctypes.byref(params)
            ),
            tmp,
            expected,
            f"quantize {qtype}",
        )
        if rc != 0:
            raise ConvertError(
                f"llama.cpp failed to quantize {src} (return code {rc}); see its log above"
            )
    return out


@contextlib.contextmanager
def _quiet_llama_log() -> Iterator[None]:
    """Keep llama.cpp's warnings (e.g. quant fallbacks) but not its line per tensor.

    llama-cpp-python prints llama.cpp's log through this logger's level; with
    --debug (root logger at DEBUG) everything is shown.
    """
    llama_logger = logging.getLogger("llama-cpp-python")
    saved = llama_logger.level
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        llama_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        llama_logger.setLevel(saved)


def _run_with_progress(fn: Callable[[], int], watched: Path, expected: int, desc: str) -> int:
    """Run ``fn`` in a thread while a bar tracks ``watched``'s size."""
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["rc"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["exc"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    with progress(expected, desc) as bar:
        while worker.is_alive():
            worker.join(0.2)
            size = watched.stat().st_size if watched.exists() else 0
            bar.update(max(0, min(size, expected) - bar.n))
        bar.update(max(0, expected - bar.n))
    if "exc" in result:
        raise ConvertError(f"quantization failed: {result['exc']}") from result["exc"]  # type: ignore[arg-type]
    return int(result.get("rc", 1))  # type: ignore[arg-type]
