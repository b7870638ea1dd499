"""The yardstick for bench/ingest.py: privateGPT's original ingest, restated.

    python bench/privategpt_baseline.py DIR DB

The issue sets our ingest speed against privateGPT's original ingest.py (2023).
That script is not installable here (its langchain 0.0.x imports are gone), so
this one does the same work with today's packages, step for step:

- every file loaded in a multiprocessing Pool of os.cpu_count() processes,
  text files as UTF-8 (its TextLoader), one Document per file;
- RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=50), default separators;
- HuggingFaceEmbeddings(all-MiniLM-L6-v2): SentenceTransformer.encode with its
  defaults (batch 32, the model's 256-piece limit, no normalisation), on torch;
- Chroma.from_documents into a persistent store.

Only .txt files are read (the CMRC passages are text). The same embedding model
is used as by our ingest: the embedded all-MiniLM-L6-v2. Prints one JSON line.
"""

from __future__ import annotations

import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

from _common import emit, peak_rss_mb

started = time.perf_counter()  # the imports below are part of what a user waits for

from langchain_chroma import Chroma  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_text_splitters import RecursiveCharacterTextSplitter  # noqa: E402

from privategpt_zh.embeddings import default_embeddings_path  # noqa: E402


class HuggingFaceEmbeddings(Embeddings):
    """What langchain's HuggingFaceEmbeddings did with no extra arguments."""

    def __init__(self, model_name: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.client = SentenceTransformer(model_name, local_files_only=True)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        texts = [t.replace("\n", " ") for t in texts]
        return self.client.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def load_single_document(path: str) -> Document:
    with open(path, encoding="utf8") as fh:
        return Document(page_content=fh.read(), metadata={"source": path})


def main() -> None:
    source, persist = Path(sys.argv[1]), Path(sys.argv[2])
    files = sorted(str(p) for p in source.rglob("*.txt"))
    with Pool(processes=os.cpu_count()) as pool:
        documents = list(pool.imap_unordered(load_single_document, files))
    splitter = RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=50)
    texts = splitter.split_documents(documents)
    embeddings = HuggingFaceEmbeddings(str(default_embeddings_path()))
    Chroma.from_documents(texts, embeddings, persist_directory=str(persist))
    seconds = time.perf_counter() - started
    chars = sum(len(d.page_content) for d in documents)
    emit(
        {
            "files": len(documents),
            "chars": chars,
            "chunks": len(texts),
            "seconds": round(seconds, 2),
            "chars_per_s": round(chars / seconds, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    )


if __name__ == "__main__":
    main()
