"""Chinese word segmentation for the lexical (BM25) index.

jieba's search mode emits a long word and its shorter parts ("奶牛乳房炎" →
"奶牛", "乳房", "乳房炎"), so a question that uses a sub-word still matches.
Latin words are lower-cased; punctuation and spaces are dropped.
"""

from __future__ import annotations

import logging
import re
import threading

_WORD = re.compile(r"\w", re.UNICODE)
_lock = threading.Lock()
_ready = False

# Question words and particles: they say nothing about which passage holds the answer.
# fmt: off
QUERY_STOPWORDS = frozenset((
    "的", "了", "是", "在", "和", "与", "及", "或", "吗", "呢", "吧", "啊", "么",
    "什么", "哪", "哪里", "哪些", "哪个", "哪儿", "谁", "多少", "几", "怎么", "怎样",
    "如何", "为什么", "为何", "是否", "有", "有没有", "请问", "请", "一个", "这个", "那个",
    "这", "那", "其", "之", "被", "把", "对", "于", "中", "上", "下", "the",
    "a", "an", "of", "to", "in", "on", "for", "is", "are", "was",
    "were", "what", "which", "who", "whom", "how", "why", "when",
    "where", "does", "do", "did", "and", "or",
))
# fmt: on


def _jieba():
    global _ready
    import jieba

    with _lock:
        if not _ready:
            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _ready = True
    return jieba


def tokenize(text: str) -> list[str]:
    """Index-side tokens: every word and sub-word jieba finds."""
    return [t.lower() for t in _jieba().cut_for_search(text) if _WORD.search(t)]


def query_tokens(text: str) -> list[str]:
    """Query-side tokens: as for the index, without question words, each once."""
    seen: dict[str, None] = {}
    for token in tokenize(text):
        if token not in QUERY_STOPWORDS:
            seen.setdefault(token, None)
    return list(seen)
