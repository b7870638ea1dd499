"""Find the chunks that answer a question: BM25, vectors, or both fused."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .config import Settings
from .embeddings import Embedder
from .store import Hit, Store


@dataclass(frozen=True)
class Retrieval:
    hits: list[Hit]
    best_score: float  # the fused score of the top hit, comparable to NOT_FOUND_THRESHOLD
    ms: float
    not_found: bool = False  # nothing relevant enough: the answer is not in the documents


class Retriever:
    def __init__(self, store: Store, embedder: Embedder | None, settings: Settings) -> None:
        self.store = store
        self.embedder = embedder
        self.mode = settings.retrieval_mode if embedder is not None else "lexical"
        self.dense_weight = settings.hybrid_dense_weight
        self.threshold = settings.not_found_threshold

    def search(self, query: str, k: int) -> Retrieval:
        started = time.perf_counter()
        if self.mode == "lexical":
            hits = _normalised(self.store.lexical_search(query, k))
        elif self.mode == "dense":
            hits = self._dense(query, k)
        else:
            hits = self._hybrid(query, k)
        best = hits[0].score if hits else 0.0
        not_found = not hits or (self.threshold > 0 and best < self.threshold)
        return Retrieval(hits, best, (time.perf_counter() - started) * 1000, not_found)

    def _dense(self, query: str, k: int) -> list[Hit]:
        assert self.embedder is not None
        vector = self.embedder.embed([query])[0]
        return self.store.dense_search(vector, k)

    def _hybrid(self, query: str, k: int) -> list[Hit]:
        pool = max(4 * k, 20)
        lexical = _normalised(self.store.lexical_search(query, pool))
        dense = self._dense(query, pool)
        return fuse(lexical, dense, self.dense_weight)[:k]


def _normalised(hits: list[Hit]) -> list[Hit]:
    """BM25 scores have no fixed scale: express each as a share of the best one's."""
    if not hits:
        return []
    top = hits[0].score or 1.0
    return [Hit(h.chunk, h.score / top) for h in hits]


def fuse(lexical: list[Hit], dense: list[Hit], dense_weight: float) -> list[Hit]:
    """Weighted sum of normalised scores; a chunk missing from one list scores 0 there."""
    scores: dict[str, float] = {}
    chunks = {}
    for hits, weight in ((lexical, 1.0 - dense_weight), (dense, dense_weight)):
        for h in hits:
            chunks[h.chunk.id] = h.chunk
            scores[h.chunk.id] = scores.get(h.chunk.id, 0.0) + weight * max(h.score, 0.0)
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)
    return [Hit(chunks[i], scores[i]) for i in ranked]
