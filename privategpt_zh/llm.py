"""LLM backends: count tokens, format a chat, stream a completion.

``MODEL_PATH`` picks the backend in :func:`get_llm`:

- empty: the embedded default GGUF (see :mod:`models`), run by llama.cpp;
- a path: any GGUF chat model, run by llama.cpp;
- ``fake:``: a deterministic stand-in for unit tests of the logic around the model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import chat_format
from .config import Settings
from .errors import MissingDependencyError, ModelError
from .models import check_gguf, default_model_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 384
    temperature: float = 0.2
    top_p: float = 0.9
    top_k: int = 40
    repeat_penalty: float = 1.1
    seed: int = -1

    @classmethod
    def from_settings(cls, s: Settings) -> SamplingParams:
        return cls(s.max_new_tokens, s.temperature, s.top_p, s.top_k, s.repeat_penalty, s.seed)


class LLM(Protocol):
    name: str
    n_ctx: int

    def count_tokens(self, text: str) -> int: ...

    def format_chat(self, messages: list[dict[str, str]]) -> str: ...

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[str]: ...


class LlamaCppLLM:
    def __init__(self, path: Path, settings: Settings) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise MissingDependencyError(
                "llama-cpp-python is not installed: pip install -r requirements.txt"
            ) from exc
        self.name = path.name
        self.path = path
        try:
            self._llama = Llama(
                model_path=str(path),
                n_ctx=settings.model_n_ctx,
                n_batch=min(settings.model_n_batch, settings.model_n_ctx),
                n_threads=settings.threads(),
                n_gpu_layers=0,
                seed=_llama_seed(settings.seed),
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                f"llama.cpp could not load {path} ({exc}). The file may be truncated or of an "
                "architecture this llama-cpp-python does not know; re-download or re-convert it."
            ) from exc
        self.n_ctx = self._llama.n_ctx()
        meta = self._llama.metadata
        self._template = chat_format.resolve(
            settings.prompt_template,
            meta.get("tokenizer.chat_template"),
            meta.get("general.architecture", ""),
        )
        self._bos = self._token_text(self._llama.token_bos())
        self._eos = self._token_text(self._llama.token_eos())

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llama.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def format_chat(self, messages: list[dict[str, str]]) -> str:
        prompt = chat_format.render(self._template, messages, self._bos, self._eos)
        # llama.cpp adds BOS itself when the model wants one; don't send it twice.
        if self._bos and prompt.startswith(self._bos):
            prompt = prompt[len(self._bos) :]
        return prompt

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[str]:
        room = self.n_ctx - self.count_tokens(prompt)
        if room <= 0:
            raise ModelError("the prompt fills the whole context window: raise MODEL_N_CTX")
        chunks = self._llama.create_completion(
            prompt,
            max_tokens=min(params.max_new_tokens, room),
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            repeat_penalty=params.repeat_penalty,
            seed=_llama_seed(params.seed),
            stop=self._template.stop,
            stream=True,
        )
        for chunk in chunks:
            text = chunk["choices"][0]["text"]
            if text:
                yield text


def _llama_seed(seed: int) -> int:
    return 0xFFFFFFFF if seed < 0 else seed  # llama.cpp's "random seed" value


class FakeLLM:
    """Deterministic stand-in: counts characters as tokens, echoes what it was given.

    For unit tests of prompt budgeting and the CLI; never the only test of a path.
    """

    def __init__(self, n_ctx: int = 2048, reply: str | None = None) -> None:
        self.name = "fake"
        self.n_ctx = n_ctx
        self.reply = reply
        self.prompts: list[str] = []
        self._template = chat_format.resolve("chatml", None, "")

    def count_tokens(self, text: str) -> int:
        return len(text)

    def format_chat(self, messages: list[dict[str, str]]) -> str:
        return chat_format.render(self._template, messages, "", "")

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[str]:
        self.prompts.append(prompt)
        reply = self.reply if self.reply is not None else "根据资料：" + prompt[-40:]
        yield from reply[: params.max_new_tokens]


def resolve_model_path(settings: Settings) -> Path:
    if settings.model_path is None:
        return default_model_path(settings.model_dir)
    return check_gguf(Path(os.path.expanduser(settings.model_path)))


def get_llm(settings: Settings) -> LLM:
    """The one factory for answer models."""
    if settings.model_path is not None and str(settings.model_path).startswith("fake:"):
        return FakeLLM(n_ctx=settings.model_n_ctx, reply=str(settings.model_path)[5:] or None)
    return LlamaCppLLM(resolve_model_path(settings), settings)
