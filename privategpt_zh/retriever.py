"""Find the chunks that answer a question: BM25, vectors, or both fused."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .config import Settings
from .embeddings import Embedder
from .store import Hit, Store

# Lexical relevance at which BM25 alone decides the ranking. Below it the vectors get a
# growing share (up to HYBRID_DENSE_WEIGHT at relevance 0), so a weak embedder (the
# embedded MiniLM is nearly blind to Chinese) can't reorder confident BM25 matches, and
# a strong one still helps where BM25 is unsure. On CMRC 2018 (trial) this made hybrid
# tie lexical (doc@1 0.980, answer@4 0.976) where plain weighted fusion lost 0.1-0.3
# points (bench/retrieval.py, README "Retrieval quality").
CONFIDENT = 1.0


@dataclass(frozen=True)
class Retrieval:
    hits: list[Hit]
    relevance: float  # lexical relevance of the best match, compared to NOT_FOUND_THRESHOLD
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
        pool = k if self.mode == "lexical" else max(4 * k, 20)
        lexical = self.store.lexical_search(query, pool) if self.mode != "dense" else []
        if self.mode == "lexical":
            hits = lexical
        elif self.mode == "dense":
            hits = self._dense(query, k)
        relevance = lexical[0].score if lexical else 0.0
        if self.mode == "hybrid":
            fused = fuse(lexical, self._dense(query, pool), self._weight(relevance))[:k]
            # A chunk only the vectors found, and they got no say, is filler: it would
            # only slow the model down and show the user an unrelated source.
            matched = {h.chunk.id for h in lexical}
            hits = fused[:1] + [h for h in fused[1:] if h.score > 0 or h.chunk.id in matched]
        # Dense scores of a Chinese-blind embedder can't tell "unrelated" apart, so the
        # check runs on the lexical relevance, and not at all in dense mode.
        checked = self.mode != "dense" and self.threshold > 0
        not_found = not hits or (checked and relevance < self.threshold)
        return Retrieval(hits, relevance, (time.perf_counter() - started) * 1000, not_found)

    def _weight(self, relevance: float) -> float:
        """The vectors' say shrinks as BM25's match grows surer (see CONFIDENT)."""
        return self.dense_weight * max(0.0, 1.0 - relevance / CONFIDENT)

    def _dense(self, query: str, k: int) -> list[Hit]:
        assert self.embedder is not None
        vector = self.embedder.embed([query])[0]
        return self.store.dense_search(vector, k)

    def warm_up(self) -> None:
        """Load the embedding model and the segmenter now, not inside the first question."""
        self.store.lexical_search("预热 warm-up", 1)
        if self.embedder is not None:
            self.store.dense_search(self.embedder.embed(["预热 warm-up"])[0], 1)


def _min_max(hits: list[Hit]) -> dict[str, float]:
    if len(hits) < 2:
        return {h.chunk.id: 1.0 for h in hits}
    scores = [h.score for h in hits]
    low, span = min(scores), (max(scores) - min(scores)) or 1.0
    return {h.chunk.id: (h.score - low) / span for h in hits}


def fuse(lexical: list[Hit], dense: list[Hit], dense_weight: float) -> list[Hit]:
    """Weighted sum of min-max normalised scores; a chunk missing from a list scores 0 there.

    Chosen on CMRC 2018 (trial) over weighted RRF, which let the weak Chinese ranking
    of the embedded MiniLM drag BM25 down (doc@1 0.92 at weight 0.1 against 0.98).
    """
    chunks = {h.chunk.id: h.chunk for h in lexical + dense}
    scores: dict[str, float] = dict.fromkeys(chunks, 0.0)
    for normed, weight in (
        (_min_max(lexical), 1.0 - dense_weight),
        (_min_max(dense), dense_weight),
    ):
        for chunk_id, value in normed.items():
            scores[chunk_id] += weight * value
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)
    return [Hit(chunks[i], scores[i]) for i in ranked]
