"""The local store: a Chroma collection for vectors, a SQLite manifest for the rest.

Vectors are written and searched through langchain-chroma's ``Chroma`` store,
which embeds with our embedder (see :class:`embeddings.LangChainEmbeddings`).

``manifest.sqlite3`` is the source of truth. It holds the documents, their
chunks (text and metadata), a BM25 full-text index of the chunks (FTS5 over
jieba tokens) and the settings the store was built with. Chroma holds one
vector per chunk id.

Write order makes a crash at any moment recoverable: vectors go into Chroma
first, then one SQLite transaction swaps the document's chunks. A vector whose
id the manifest doesn't list is an orphan: searches skip it and the next
ingest deletes it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .embeddings import Embedder, LangChainEmbeddings
from .errors import MissingDependencyError, StoreEmptyError, StoreError, StoreMismatchError
from .segment import query_tokens, tokenize

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
COLLECTION = "documents"
MANIFEST = "manifest.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    source TEXT PRIMARY KEY, hash TEXT NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, chunks INTEGER NOT NULL, ingested_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, source TEXT NOT NULL,
    idx INTEGER NOT NULL, page INTEGER, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(tokens, tokenize='unicode61');
"""


@dataclass(frozen=True)
class Chunk:
    id: str
    source: str
    index: int
    page: int | None
    text: str


@dataclass(frozen=True)
class DocRecord:
    source: str
    hash: str
    size: int
    mtime_ns: int
    chunks: int
    ingested_at: float


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float  # higher is better; scale depends on the ranker


class Store:
    def __init__(
        self, directory: Path, create: bool = False, embedder: Embedder | None = None
    ) -> None:
        self.directory = directory
        self.embedder = embedder
        manifest = directory / MANIFEST
        if not manifest.exists() and not create:
            raise StoreEmptyError(
                f"no document store in {directory}: put documents in the source folder and "
                "run `python ingest.py` first"
            )
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(manifest, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store in {directory} ({exc})") from exc
        self._vectors = None

    def close(self) -> None:
        self.db.close()

    # --- settings the store was built with --------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta"))

    def check_meta(self, wanted: dict[str, str], fix: str) -> None:
        """Refuse to mix vectors of two embedders or chunks of two chunkings."""
        have = self.meta()
        for key, value in wanted.items():
            if key in have and have[key] != value:
                raise StoreMismatchError(
                    f"the store in {self.directory} was built with {key}={have[key]}, "
                    f"now {key}={value}: {fix}"
                )

    def set_meta(self, values: dict[str, str]) -> None:
        with self._tx():
            self.db.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", values.items()
            )

    # --- documents ------------------------------------------------------------

    def documents(self) -> dict[str, DocRecord]:
        rows = self.db.execute(
            "SELECT source, hash, size, mtime_ns, chunks, ingested_at FROM documents"
        )
        return {r[0]: DocRecord(*r) for r in rows}

    def chunk_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def put_document(self, record: DocRecord, chunks: list[Chunk]) -> None:
        """Replace a document's chunks with ``chunks`` (crash-safe, see module doc)."""
        old_ids = self._chunk_ids(record.source)
        self._upsert_vectors(chunks)
        with self._tx():
            self._delete_rows(record.source)
            for c in chunks:
                cur = self.db.execute(
                    "INSERT INTO chunks(id, source, idx, page, text) VALUES (?, ?, ?, ?, ?)",
                    (c.id, c.source, c.index, c.page, c.text),
                )
                self.db.execute(
                    "INSERT INTO chunks_fts(rowid, tokens) VALUES (?, ?)",
                    (cur.lastrowid, " ".join(tokenize(c.text))),
                )
            self.db.execute(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.source,
                    record.hash,
                    record.size,
                    record.mtime_ns,
                    len(chunks),
                    time.time(),
                ),
            )
        self._delete_vectors(set(old_ids) - {c.id for c in chunks})

    def touch_document(self, record: DocRecord) -> None:
        """Same content, new mtime: remember it so the fast path works next time."""
        with self._tx():
            self.db.execute(
                "UPDATE documents SET mtime_ns = ?, size = ? WHERE source = ?",
                (record.mtime_ns, record.size, record.source),
            )

    def remove_document(self, source: str) -> None:
        ids = self._chunk_ids(source)
        with self._tx():
            self._delete_rows(source)
            self.db.execute("DELETE FROM documents WHERE source = ?", (source,))
        self._delete_vectors(ids)

    def clear(self) -> None:
        """Empty the store (``--rebuild``): every vector, chunk, document and setting."""
        self.vectors().delete_collection()
        self._vectors = None
        with self._tx():
            for table in ("chunks_fts", "chunks", "documents", "meta"):
                self.db.execute(f"DELETE FROM {table}")

    def sweep_orphans(self) -> int:
        """Delete vectors no manifest chunk owns (left by a crash). Returns how many."""
        live = {r[0] for r in self.db.execute("SELECT id FROM chunks")}
        stored = set(self.vectors().get(include=[])["ids"])
        orphans = list(stored - live)
        self._delete_vectors(orphans)
        return len(orphans)

    def _chunk_ids(self, source: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM chunks WHERE source = ?", (source,))]

    def _delete_rows(self, source: str) -> None:
        self.db.execute(
            "DELETE FROM chunks_fts WHERE rowid IN (SELECT rowid FROM chunks WHERE source = ?)",
            (source,),
        )
        self.db.execute("DELETE FROM chunks WHERE source = ?", (source,))

    def _tx(self):
        return _Transaction(self.db)

    # --- vectors --------------------------------------------------------------

    def vectors(self):
        """The langchain-chroma vector store over this store's collection."""
        if self._vectors is None:
            self._vectors = _open_vectors(self.directory, self.embedder)
        return self._vectors

    def vector_count(self) -> int:
        return len(self.vectors().get(include=[])["ids"])

    def _upsert_vectors(self, chunks: list[Chunk]) -> None:
        if not chunks:
            return
        if self.embedder is None:
            raise StoreError("no embedding model given to write vectors with")
        try:
            self.vectors().add_texts(
                [c.text for c in chunks],
                [_chunk_meta(c) for c in chunks],
                ids=[c.id for c in chunks],
            )
        except Exception as exc:
            raise StoreError(f"could not write vectors to {self.directory} ({exc})") from exc

    def _delete_vectors(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), 5000):
            self.vectors().delete(ids=ids[start : start + 5000])

    # --- search ---------------------------------------------------------------

    def dense_search(self, vector: list[float], k: int) -> list[Hit]:
        found = self.vectors().similarity_search_by_vector_with_relevance_scores(vector, k)
        chunks = self.chunks_by_id([doc.id for doc, _ in found])
        # Cosine distance → similarity; ids the manifest doesn't know are skipped (orphans).
        return [Hit(chunks[doc.id], 1.0 - dist) for doc, dist in found if doc.id in chunks]

    def lexical_search(self, query: str, k: int) -> list[Hit]:
        tokens = query_tokens(query)
        if not tokens:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in tokens)
        rows = self.db.execute(
            "SELECT c.id, c.source, c.idx, c.page, c.text, -bm25(chunks_fts) AS score "
            "FROM chunks_fts JOIN chunks c ON c.rowid = chunks_fts.rowid "
            "WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts) LIMIT ?",
            (match, k),
        )
        return [Hit(Chunk(*r[:5]), r[5]) for r in rows]

    def chunks_by_id(self, ids: list[str]) -> dict[str, Chunk]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            f"SELECT id, source, idx, page, text FROM chunks WHERE id IN ({marks})", ids
        )
        return {r[0]: Chunk(*r) for r in rows}

    def status(self) -> dict:
        docs = self.documents()
        return {
            "store": str(self.directory),
            "documents": len(docs),
            "chunks": self.chunk_count(),
            "settings": self.meta(),
            "files": [
                {
                    "source": d.source,
                    "hash": d.hash,
                    "chunks": d.chunks,
                    "size": d.size,
                    "ingested_at": time.strftime(
                        "%Y-%m-%dT%H:%M:%S", time.localtime(d.ingested_at)
                    ),
                }
                for d in sorted(docs.values(), key=lambda d: d.source)
            ],
        }


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _chunk_meta(c: Chunk) -> dict:
    meta = {"source": c.source, "chunk": c.index}
    if c.page is not None:
        meta["page"] = c.page
    return meta


def _open_vectors(directory: Path, embedder: Embedder | None):
    try:
        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from langchain_chroma import Chroma
    except ImportError as exc:
        raise MissingDependencyError(
            "chromadb / langchain-chroma are not installed: pip install -r requirements.txt"
        ) from exc
    try:
        client = chromadb.PersistentClient(
            path=str(directory / "chroma"),
            settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False),
        )
        return Chroma(
            collection_name=COLLECTION,
            client=client,
            embedding_function=LangChainEmbeddings(embedder) if embedder else None,
            collection_metadata={"hnsw:space": "cosine"},
        )
    except Exception as exc:
        raise StoreError(f"cannot open the Chroma store in {directory} ({exc})") from exc


def dumps_status(status: dict) -> str:
    return json.dumps(status, ensure_ascii=False)
