"""Question answering: retrieve, fit the prompt into the context window, stream."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from .config import Settings
from .errors import ConfigError, NotFoundError
from .llm import LLM, SamplingParams
from .retriever import Retriever
from .store import Hit

_CJK = re.compile(r"[\u3400-\u9fff]")

SYSTEM_ZH = (
    "你是一个严谨的文档问答助手。只根据用户提供的参考资料回答问题，不要编造资料里没有的内容。"
    "如果参考资料中没有答案，请直接说“资料中没有找到相关内容”。用提问所用的语言回答，简洁准确。"
)
SYSTEM_EN = (
    "You are a careful document assistant. Answer only from the reference material the user "
    "gives you; never invent facts. If the material does not contain the answer, say that the "
    "documents do not contain it. Answer in the language of the question, briefly and precisely."
)
NOT_FOUND_ZH = "资料中没有找到与这个问题相关的内容。"
NOT_FOUND_EN = "The documents do not contain an answer to this question."


def is_chinese(text: str) -> bool:
    return bool(_CJK.search(text))


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str


@dataclass
class Prepared:
    question: str
    prompt: str
    hits: list[Hit]  # the chunks that made it into the prompt
    prompt_tokens: int
    retrieval_ms: float
    dropped_chunks: int = 0
    dropped_turns: int = 0


@dataclass
class Timings:
    retrieval_ms: float = 0.0
    first_token_s: float = 0.0
    generation_s: float = 0.0
    tokens: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.generation_s if self.generation_s > 0 else 0.0


@dataclass
class Answer:
    question: str
    text: str
    hits: list[Hit]
    timings: Timings = field(default_factory=Timings)


class QA:
    def __init__(self, settings: Settings, retriever: Retriever, llm: LLM) -> None:
        self.settings = settings
        self.retriever = retriever
        self.llm = llm
        self.params = SamplingParams.from_settings(settings)

    def prepare(self, question: str, history: list[Turn] | None = None) -> Prepared:
        """Retrieve and build a prompt that fits; raise NotFoundError if nothing is relevant."""
        question = question.strip()
        found = self.retriever.search(question, self.settings.target_source_chunks)
        if found.not_found:
            raise NotFoundError(NOT_FOUND_ZH if is_chinese(question) else NOT_FOUND_EN)
        return self._fit(question, found.hits, list(history or []), found.ms)

    def _fit(self, question: str, hits: list[Hit], turns: list[Turn], ms: float) -> Prepared:
        """Drop older turns, then lower-ranked chunks, then trim the last chunk, until it fits.

        The answer's own MAX_NEW_TOKENS are reserved, so llama.cpp never sees a
        request larger than its context window. The best chunk is never dropped:
        an answer without material is what the tool promises not to give.
        """
        budget = self.llm.n_ctx - self.params.max_new_tokens
        kept_hits, kept_turns = list(hits), list(turns)
        while True:
            prompt = self.llm.format_chat(self.messages(question, kept_hits, kept_turns))
            tokens = self.llm.count_tokens(prompt)
            if tokens <= budget:
                break
            if kept_turns:
                kept_turns.pop(0)
            elif len(kept_hits) > 1:
                kept_hits.pop()
            elif len(kept_hits[0].chunk.text) > 40:
                kept_hits[0] = _trimmed(kept_hits[0])
            else:
                raise ConfigError(
                    f"the question and the best passage don't fit into MODEL_N_CTX="
                    f"{self.llm.n_ctx} with MAX_NEW_TOKENS={self.params.max_new_tokens}: "
                    "raise MODEL_N_CTX, lower MAX_NEW_TOKENS or ask a shorter question"
                )
        return Prepared(
            question,
            prompt,
            kept_hits,
            tokens,
            ms,
            dropped_chunks=len(hits) - len(kept_hits),
            dropped_turns=len(turns) - len(kept_turns),
        )

    def messages(self, question: str, hits: list[Hit], turns: list[Turn]) -> list[dict[str, str]]:
        zh = is_chinese(question)
        system = self.settings.system_prompt or (SYSTEM_ZH if zh else SYSTEM_EN)
        messages = [{"role": "system", "content": system}]
        for turn in turns:
            messages.append({"role": "user", "content": turn.question})
            messages.append({"role": "assistant", "content": turn.answer})
        messages.append({"role": "user", "content": _user_message(question, hits, zh)})
        return messages

    def stream(self, prepared: Prepared, timings: Timings | None = None) -> Iterator[str]:
        """Yield the answer's pieces as the model produces them, filling ``timings``."""
        timings = timings if timings is not None else Timings()
        timings.retrieval_ms = prepared.retrieval_ms
        started = time.perf_counter()
        first = None
        for piece in self.llm.stream(prepared.prompt, self.params):
            if first is None:
                first = time.perf_counter()
                timings.first_token_s = first - started
            timings.tokens += 1
            timings.generation_s = time.perf_counter() - first
            yield piece

    def answer(self, question: str, history: list[Turn] | None = None) -> Answer:
        prepared = self.prepare(question, history)
        timings = Timings()
        text = "".join(self.stream(prepared, timings))
        return Answer(question, text.strip(), prepared.hits, timings)


def _trimmed(hit: Hit) -> Hit:
    text = hit.chunk.text[: len(hit.chunk.text) * 3 // 4]
    return Hit(replace(hit.chunk, text=text), hit.score)


def _user_message(question: str, hits: list[Hit], zh: bool) -> str:
    blocks = []
    for n, hit in enumerate(hits, start=1):
        where = hit.chunk.source + (f" p.{hit.chunk.page}" if hit.chunk.page else "")
        blocks.append(f"[{n}] ({where})\n{hit.chunk.text}")
    material = "\n\n".join(blocks)
    if zh:
        return f"参考资料：\n{material}\n\n请只根据以上参考资料回答问题。\n问题：{question}"
    return (
        f"Reference material:\n{material}\n\n"
        f"Answer only from the material above.\nQuestion: {question}"
    )


def build_qa(settings: Settings) -> QA:
    """Open the store and load the models the settings name."""
    from .embeddings import embedder_for, embedder_id
    from .errors import StoreEmptyError
    from .llm import get_llm
    from .store import SCHEMA_VERSION, Store

    store = Store(settings.persist_directory)
    if store.chunk_count() == 0:
        raise StoreEmptyError(
            f"the store in {settings.persist_directory} holds no documents: add files to "
            f"{settings.source_directory} and run `python ingest.py`"
        )
    embedder = None
    if settings.retrieval_mode != "lexical":
        embedder = embedder_for(settings)
        store.check_meta(
            {"embedding_model": embedder_id(embedder), "schema_version": str(SCHEMA_VERSION)},
            "re-run `python ingest.py --rebuild` "
            "(or set EMBEDDINGS_MODEL_NAME back if you changed it)",
        )
    retriever = Retriever(store, embedder, settings)
    retriever.warm_up()
    return QA(settings, retriever, get_llm(settings))
