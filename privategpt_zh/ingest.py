"""Bring the store in line with SOURCE_DIRECTORY: add new files, redo changed ones,
drop deleted ones, skip what is unchanged.

A file that fails is reported and the others go on; what was stored before is
never lost because of a bad file.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import loaders
from .config import Settings
from .embeddings import Embedder, embedder_id, get_embedder
from .errors import LoaderError, StoreLockedError
from .splitter import ChineseTextSplitter
from .store import SCHEMA_VERSION, Chunk, DocRecord, Store

log = logging.getLogger(__name__)

SKIPPED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


class Progress(Protocol):
    """What ingest reports while it works; the CLI draws it."""

    def start(self, total_files: int) -> None: ...

    def file_done(self, result: FileResult) -> None: ...


@dataclass
class FileResult:
    source: str
    status: str  # added | updated | unchanged | removed | failed | skipped
    chunks: int = 0
    reason: str = ""
    chars: int = 0


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]


def store_settings(settings: Settings, embedder: Embedder) -> dict[str, str]:
    return {
        "schema_version": str(SCHEMA_VERSION),
        "embedding_model": embedder_id(embedder),
        "chunk_size": str(settings.chunk_size),
        "chunk_overlap": str(settings.chunk_overlap),
    }


def scan(source_dir: Path) -> Iterator[Path]:
    """Every file under ``source_dir`` that is not hidden or an editor's temp file."""
    for root, dirs, files in os.walk(source_dir, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith((".", "~$")) or name in SKIPPED_NAMES or name.endswith("~"):
                continue
            yield Path(root) / name


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def chunk_id(source: str, index: int, text: str) -> str:
    return hashlib.sha256(f"{source}\0{index}\0{text}".encode()).hexdigest()[:32]


def split_file(path: Path, source: str, splitter: ChineseTextSplitter) -> list[Chunk]:
    chunks: list[Chunk] = []
    for section in loaders.load(path):
        for text in splitter.split(section.text):
            chunks.append(
                Chunk(chunk_id(source, len(chunks), text), source, len(chunks), section.page, text)
            )
    return chunks


@contextmanager
def store_lock(directory: Path) -> Iterator[None]:
    """One ingest at a time; a second one is told who holds the store."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".ingest.lock").open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise StoreLockedError(
                f"another ingest ({holder}) is updating {directory}: wait for it to finish"
            ) from None
        fh.truncate(0)
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Ingestor:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or get_embedder(
            settings.embeddings_model_name, settings.embeddings_batch_size
        )
        self.splitter = ChineseTextSplitter(settings.chunk_size, settings.chunk_overlap)

    def run(self, progress: Progress | None = None, rebuild: bool = False) -> IngestReport:
        directory = self.settings.persist_directory
        source_dir = self.settings.source_directory
        if not source_dir.is_dir():
            raise LoaderError(
                f"source folder {source_dir} does not exist: create it and add documents"
            )
        started = time.perf_counter()
        with store_lock(directory):
            store = Store(directory, create=True, embedder=self.embedder)
            if rebuild:
                store.clear()
            try:
                report = self._sync(store, source_dir, progress)
            finally:
                store.close()
        report.seconds = time.perf_counter() - started
        return report

    def _sync(self, store: Store, source_dir: Path, progress: Progress | None) -> IngestReport:
        wanted = store_settings(self.settings, self.embedder)
        store.check_meta(wanted, "run `python ingest.py --rebuild` to re-embed everything")
        store.set_meta(wanted)
        report = IngestReport()
        known = store.documents()
        files = list(scan(source_dir))
        if progress:
            progress.start(len(files))
        for path in files:
            source = path.relative_to(source_dir).as_posix()
            result = self._one(store, path, source, known.pop(source, None))
            report.results.append(result)
            if progress:
                progress.file_done(result)
        for source in sorted(known):  # still in the store, gone from the folder
            store.remove_document(source)
            report.results.append(FileResult(source, "removed"))
        orphans = store.sweep_orphans()
        if orphans:
            log.info("removed %d vectors left by an interrupted ingest", orphans)
        return report

    def _one(self, store: Store, path: Path, source: str, old: DocRecord | None) -> FileResult:
        if path.suffix.lower() not in loaders.LOADERS:
            return FileResult(
                source, "skipped", reason=f"unsupported file type {path.suffix or '(none)'}"
            )
        try:
            stat = path.stat()
            if old and (old.size, old.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                return FileResult(source, "unchanged", old.chunks)
            digest = file_hash(path)
            record = DocRecord(source, digest, stat.st_size, stat.st_mtime_ns, 0, 0.0)
            if old and old.hash == digest:
                store.touch_document(record)
                return FileResult(source, "unchanged", old.chunks)
            chunks = split_file(path, source, self.splitter)
        except LoaderError as exc:
            return FileResult(source, "failed", reason=str(exc))
        except OSError as exc:
            return FileResult(source, "failed", reason=f"could not read the file ({exc.strerror})")
        if not chunks:
            return FileResult(
                source, "failed", reason="no text found (a scanned PDF or an empty file?)"
            )
        store.put_document(record, chunks)
        return FileResult(
            source,
            "updated" if old else "added",
            len(chunks),
            chars=sum(len(c.text) for c in chunks),
        )
