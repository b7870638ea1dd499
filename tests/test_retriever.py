from __future__ import annotations

from privategpt_zh.retriever import CONFIDENT, Retriever, fuse
from privategpt_zh.store import Chunk, Hit


def _hit(name: str, score: float) -> Hit:
    return Hit(Chunk(name, "f.txt", 0, None, name), score)


def test_fuse_weights_min_max_normalised_scores():
    lexical = [_hit("a", 3.0), _hit("b", 2.0), _hit("c", 1.0)]
    dense = [_hit("c", 0.9), _hit("d", 0.5), _hit("a", 0.1)]
    assert [h.chunk.id for h in fuse(lexical, dense, 0.0)][:3] == ["a", "b", "c"]
    assert [h.chunk.id for h in fuse(lexical, dense, 1.0)][:2] == ["c", "d"]
    mixed = {h.chunk.id: round(h.score, 3) for h in fuse(lexical, dense, 0.5)}
    assert mixed == {"a": 0.5, "b": 0.25, "c": 0.5, "d": 0.25}


class _FakeStore:
    def __init__(self, lexical, dense):
        self.lexical, self.dense = lexical, dense

    def lexical_search(self, query, k):
        return self.lexical[:k]

    def dense_search(self, vector, k):
        return self.dense[:k]


class _Emb:
    name = "fake"

    def embed(self, texts):
        return [[1.0] for _ in texts]


def _retriever(store, settings_for, **kw):
    return Retriever(store, _Emb(), settings_for(retrieval_mode="hybrid", **kw))


def test_confident_bm25_match_is_not_reordered_by_vectors(settings_for):
    lexical = [_hit("a", CONFIDENT + 0.5), _hit("b", 0.9)]
    dense = [_hit("b", 0.99), _hit("z", 0.98)]
    found = _retriever(_FakeStore(lexical, dense), settings_for, hybrid_dense_weight=0.9).search(
        "q", 2
    )
    assert [h.chunk.id for h in found.hits] == ["a", "b"]


def test_unsure_bm25_lets_vectors_help(settings_for):
    lexical = [_hit("a", 0.3), _hit("b", 0.25)]
    dense = [_hit("b", 0.99), _hit("z", 0.5)]
    found = _retriever(
        _FakeStore(lexical, dense), settings_for, hybrid_dense_weight=0.9, not_found_threshold=0.2
    ).search("q", 2)
    assert found.hits[0].chunk.id == "b" and not found.not_found


def test_weak_best_match_is_not_found(settings_for):
    store = _FakeStore([_hit("a", 0.3)], [_hit("a", 0.9)])
    found = _retriever(store, settings_for, not_found_threshold=0.8).search("q", 4)
    assert found.not_found and found.relevance == 0.3
    assert not _retriever(store, settings_for, not_found_threshold=0).search("q", 4).not_found


def test_vector_only_filler_is_dropped_when_vectors_have_no_say(settings_for):
    lexical = [_hit("a", CONFIDENT + 1.0)]
    dense = [_hit("x", 0.9), _hit("y", 0.8)]
    found = _retriever(_FakeStore(lexical, dense), settings_for).search("q", 4)
    assert [h.chunk.id for h in found.hits] == ["a"]
