"""Bring the store in line with SOURCE_DIRECTORY: add new files, redo changed ones,
drop deleted ones, skip what is unchanged.

Files are parsed and split in worker processes while the main process embeds
and writes, batch by batch. A file that fails is reported and the others go on;
what was stored before is never lost because of a bad file or a crash.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import loaders
from .config import Settings
from .embeddings import Embedder, embedder_for, embedder_id
from .errors import LoaderError, StoreError, StoreLockedError
from .splitter import ChineseTextSplitter
from .store import MANIFEST, SCHEMA_VERSION, Chunk, DocRecord, Store, write_failure

log = logging.getLogger(__name__)

SKIPPED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
BATCH = 256  # chunks embedded and written at a time
BIG_FILE = 32 << 20  # parsed in the main process, streaming, rather than shipped from a worker
NO_TEXT = "no text found (an empty file or a scanned PDF?)"
# Reading these is cheaper than starting a worker process (about 2 s of imports each).
CHEAP = {".txt", ".text", ".md", ".markdown", ".csv", ".tsv"}


class Progress(Protocol):
    """What ingest reports while it works; the CLI draws it."""

    def start(self, total_files: int) -> None: ...

    def file_done(self, result: FileResult) -> None: ...


@dataclass
class FileResult:
    source: str
    status: str  # added | updated | unchanged | removed | failed | skipped (dry run: new | ...)
    chunks: int = 0
    reason: str = ""
    chars: int = 0


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]


@dataclass
class _Job:
    path: Path
    source: str
    record: DocRecord
    old: DocRecord | None


def store_settings(settings: Settings, embedder: Embedder) -> dict[str, str]:
    return {
        "schema_version": str(SCHEMA_VERSION),
        "embedding_model": embedder_id(embedder),
        "chunk_size": str(settings.chunk_size),
        "chunk_overlap": str(settings.chunk_overlap),
    }


def scan(source_dir: Path) -> Iterator[Path]:
    """Every file under ``source_dir`` that is not hidden or an editor's temp file.

    Symlinked folders are not followed (a link loop can't trap us); symlinked
    files are read like any other.
    """
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


def iter_chunks(path: Path, source: str, splitter: ChineseTextSplitter) -> Iterator[Chunk]:
    index = 0
    for section in loaders.load(path):
        for text in splitter.split(section.text):
            yield Chunk(chunk_id(source, index, text), source, index, section.page, text)
            index += 1


def _parse_in_worker(path: str, source: str, size: int, overlap: int) -> list[Chunk] | str:
    """Runs in a worker process: the file's chunks, or the reason it failed."""
    try:
        return list(iter_chunks(Path(path), source, ChineseTextSplitter(size, overlap)))
    except LoaderError as exc:
        return str(exc)


def _worker_init(ocr_enabled: bool) -> None:
    from . import formats

    formats.OCR_ENABLED = ocr_enabled


@contextmanager
def store_lock(directory: Path) -> Iterator[None]:
    """One ingest at a time; a second one is told who holds the store."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock_file = (directory / ".ingest.lock").open("a+")
    except OSError as exc:
        raise StoreError(write_failure(directory, exc)) from exc
    with lock_file as fh:
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
    def __init__(
        self, settings: Settings, embedder: Embedder | None = None, workers: int | None = None
    ) -> None:
        self.settings = settings
        self.embedder = embedder or embedder_for(settings)
        self.splitter = ChineseTextSplitter(settings.chunk_size, settings.chunk_overlap)
        self.workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
        from . import formats

        formats.OCR_ENABLED = settings.ocr_enabled

    def run(
        self, progress: Progress | None = None, rebuild: bool = False, dry_run: bool = False
    ) -> IngestReport:
        source_dir = self.settings.source_directory
        if not source_dir.is_dir():
            raise LoaderError(
                f"source folder {source_dir} does not exist: create it and add documents"
            )
        started = time.perf_counter()
        if dry_run and not (self.settings.persist_directory / MANIFEST).exists():
            report, jobs, _ = self._plan(None, source_dir, fresh=True, dry_run=True)
            return _as_plan(report, jobs)  # nothing to lock, nothing created
        with store_lock(self.settings.persist_directory):
            store = Store(self.settings.persist_directory, create=True, embedder=self.embedder)
            try:
                report = self._run(store, source_dir, progress, rebuild, dry_run)
            finally:
                store.close()
        report.seconds = time.perf_counter() - started
        return report

    def _run(self, store: Store, source_dir: Path, progress, rebuild: bool, dry_run: bool):
        wanted = store_settings(self.settings, self.embedder)
        if rebuild and not dry_run:
            store.clear()
        elif not rebuild:
            store.check_meta(wanted, "run `python ingest.py --rebuild` to re-embed everything")
        report, jobs, gone = self._plan(store, source_dir, fresh=rebuild, dry_run=dry_run)
        if dry_run:
            return _as_plan(report, jobs)
        store.set_meta(wanted)
        store.discard_staged()
        if jobs:
            self.embedder.embed(["warm-up"])  # load the model before the progress bar starts
        if progress:
            progress.start(len(jobs))
        for result in self._execute(store, jobs):
            report.results.append(result)
            if progress:
                progress.file_done(result)
        for source in gone:
            store.remove_document(source)
        store.discard_staged()  # left by a file that failed half-way
        orphans = store.sweep_orphans()
        if orphans:
            log.info("removed %d vectors left by an interrupted ingest", orphans)
        return report

    # --- planning -------------------------------------------------------------

    def _plan(self, store: Store | None, source_dir: Path, fresh: bool, dry_run: bool):
        """Decide what each file needs. Returns (report so far, jobs, removed sources)."""
        report = IngestReport()
        known = {} if fresh or store is None else store.documents()
        jobs: list[_Job] = []
        for path in scan(source_dir):
            source = path.relative_to(source_dir).as_posix()
            old = known.pop(source, None)
            job_or_result = self._classify(store, path, source, old, dry_run)
            if isinstance(job_or_result, FileResult):
                report.results.append(job_or_result)
            else:
                jobs.append(job_or_result)
        for source in sorted(known):  # in the store, gone from the folder
            report.results.append(FileResult(source, "removed", known[source].chunks))
        return report, jobs, sorted(known)

    def _classify(
        self, store: Store | None, path: Path, source: str, old: DocRecord | None, dry_run: bool
    ) -> _Job | FileResult:
        if path.suffix.lower() not in loaders.LOADERS:
            kind = path.suffix or "(none)"
            return FileResult(source, "skipped", reason=f"unsupported file type {kind}")
        try:
            stat = path.stat()
            if old and (old.size, old.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                return FileResult(source, "unchanged", old.chunks)
            digest = file_hash(path)
        except OSError as exc:
            return FileResult(source, "failed", reason=_os_reason(exc))
        record = DocRecord(source, digest, stat.st_size, stat.st_mtime_ns, 0, 0.0)
        if old and old.hash == digest:
            if store is not None and not dry_run:
                store.touch_document(record)
            return FileResult(source, "unchanged", old.chunks)
        return _Job(path, source, record, old)

    # --- doing ----------------------------------------------------------------

    def _execute(self, store: Store, jobs: list[_Job]) -> Iterator[FileResult]:
        """Write parsed files; small ones are pooled so the embedder gets full batches."""
        pooled: list[tuple[_Job, list[Chunk]]] = []
        for job, parsed in self._parsed(jobs):
            if isinstance(parsed, str):
                yield FileResult(job.source, "failed", reason=parsed)
            elif isinstance(parsed, list):
                pooled.append((job, parsed))
                if sum(len(chunks) for _, chunks in pooled) >= BATCH:
                    yield from self._write_pooled(store, pooled)
                    pooled = []
            else:  # a big file, streamed
                yield from self._write_pooled(store, pooled)
                pooled = []
                yield self._write(store, job, parsed)
        yield from self._write_pooled(store, pooled)

    def _write_pooled(
        self, store: Store, pooled: list[tuple[_Job, list[Chunk]]]
    ) -> Iterator[FileResult]:
        store.stage([c for _, chunks in pooled if chunks for c in chunks])
        for job, chunks in pooled:
            if not chunks:
                yield FileResult(job.source, "failed", reason=NO_TEXT)
                continue
            store.commit_document(job.record)
            chars = sum(len(c.text) for c in chunks)
            yield FileResult(
                job.source, "updated" if job.old else "added", len(chunks), chars=chars
            )

    def _parsed(self, jobs: list[_Job]) -> Iterator[tuple[_Job, Iterable[Chunk] | str]]:
        """Each job with its chunks (or failure reason), parsed ahead in worker processes."""
        costly = [
            j for j in jobs if j.record.size < BIG_FILE and j.path.suffix.lower() not in CHEAP
        ]
        if self.workers < 2 or len(costly) < 4:
            for job in jobs:
                yield job, self._lazy_chunks(job)
            return
        context = multiprocessing.get_context("spawn")  # forking a process that holds torch hangs
        with ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_worker_init,
            initargs=(self.settings.ocr_enabled,),
        ) as pool:
            pending: dict[int, Future] = {}
            broken = False
            ahead = self.workers * 2  # bounded: parsed-but-unwritten files stay few
            for n, job in enumerate(jobs):
                for m in range(n, min(n + ahead, len(jobs))):
                    if not broken and m not in pending and jobs[m].record.size < BIG_FILE:
                        pending[m] = pool.submit(
                            _parse_in_worker,
                            str(jobs[m].path),
                            jobs[m].source,
                            self.settings.chunk_size,
                            self.settings.chunk_overlap,
                        )
                future = pending.pop(n, None)
                if future is None or broken:
                    yield job, self._lazy_chunks(job)
                    continue
                try:
                    yield job, future.result()
                except BrokenProcessPool:
                    # A parser died hard (out of memory, a crash in a C library): this file
                    # fails, the rest are parsed here, one by one.
                    broken = True
                    yield job, "the parser process died on this file (out of memory?)"

    def _lazy_chunks(self, job: _Job) -> Iterable[Chunk] | list[Chunk] | str:
        """A big file streams; a small one is parsed whole, like in a worker."""
        if job.record.size >= BIG_FILE:
            return iter_chunks(job.path, job.source, self.splitter)
        return _parse_in_worker(
            str(job.path), job.source, self.settings.chunk_size, self.settings.chunk_overlap
        )

    def _write(self, store: Store, job: _Job, parsed: Iterable[Chunk]) -> FileResult:
        """Stream one big file into the store, batch by batch."""
        count = chars = 0
        try:
            for batch in _batches(parsed, BATCH):
                store.stage(batch)
                count += len(batch)
                chars += sum(len(c.text) for c in batch)
        except LoaderError as exc:
            return FileResult(job.source, "failed", reason=str(exc))
        if not count:
            return FileResult(job.source, "failed", reason=NO_TEXT)
        store.commit_document(job.record)
        return FileResult(job.source, "updated" if job.old else "added", count, chars=chars)


def _as_plan(report: IngestReport, jobs: list[_Job]) -> IngestReport:
    """A dry run's report: what a real run would do to each file."""
    renamed = {"removed": "to remove"}
    results = [
        FileResult(r.source, renamed.get(r.status, r.status), r.chunks, r.reason)
        for r in report.results
    ]
    results += [FileResult(j.source, "to update" if j.old else "to add") for j in jobs]
    return IngestReport(sorted(results, key=lambda r: r.source), dry_run=True)


def _batches(chunks: Iterable[Chunk], size: int) -> Iterator[list[Chunk]]:
    batch: list[Chunk] = []
    for chunk in chunks:
        batch.append(chunk)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied: make the file readable"
    if exc.errno == errno.ELOOP:
        return "a loop of symbolic links: fix or remove the link"
    if isinstance(exc, FileNotFoundError):
        return "a broken link, or the file was removed during the run"
    return f"could not read the file ({exc.strerror or exc})"
