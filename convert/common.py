"""Helpers every command shares: output checks, disk space, progress bars."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from privategpt_zh.errors import ConvertError

logger = logging.getLogger(__name__)

# Headroom over the size estimate: metadata, alignment padding, and the fact
# that our estimates for k-quants are approximate.
DISK_MARGIN = 1.05
DISK_SLACK_BYTES = 64 * 1024 * 1024


def check_output(out: Path, force: bool) -> None:
    """Refuse to clobber an existing file unless ``force`` is set."""
    if out.exists() and not force:
        raise ConvertError(f"{out} already exists; pass --force to overwrite it")
    if out.exists() and out.is_dir():
        raise ConvertError(f"{out} is a directory, expected a file path")
    if not out.parent.exists():
        raise ConvertError(f"output folder {out.parent} does not exist")


def check_disk_space(out: Path, needed_bytes: int) -> None:
    """Fail before writing anything when the output would not fit."""
    free = shutil.disk_usage(out.parent).free
    want = int(needed_bytes * DISK_MARGIN) + DISK_SLACK_BYTES
    if free < want:
        raise ConvertError(
            f"not enough disk space in {out.parent}: need about {human_bytes(want)}, "
            f"{human_bytes(free)} free"
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def progress(total: int, desc: str, unit: str = "B") -> tqdm:
    """A byte progress bar on stderr (stdout stays clean for results)."""
    return tqdm(
        total=total, desc=desc, unit=unit, unit_scale=True, unit_divisor=1024, file=sys.stderr
    )


@contextlib.contextmanager
def atomic_output(out: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``out``; move it into place only on success.

    A crash or Ctrl-C half way through a 13 GB write must not leave a truncated
    file that looks like a model.
    """
    tmp = out.with_name(out.name + ".part")
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
