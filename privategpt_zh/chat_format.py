"""Chat prompt formats: the GGUF's own Jinja2 template, or a built-in one.

GGUF chat models carry their template in ``tokenizer.chat_template``; older
conversions (Chinese Llama-2 from 2023) often don't, so Llama-2's ``[INST]
<<SYS>>`` format and ChatML are built in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from .errors import ConfigError

LLAMA2 = (
    "{% for m in messages %}"
    "{% if m.role == 'system' %}{% set ns.sys = m.content %}"
    "{% elif m.role == 'user' %}{{ bos_token }}[INST] "
    "{% if ns.sys %}<<SYS>>\n{{ ns.sys }}\n<</SYS>>\n\n{% set ns.sys = '' %}{% endif %}"
    "{{ m.content | trim }} [/INST]"
    "{% else %} {{ m.content | trim }} {{ eos_token }}{% endif %}"
    "{% endfor %}"
)
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
BUILT_IN = {"llama2": (LLAMA2, ["[INST]"]), "chatml": (CHATML, ["<|im_end|>"])}


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    source: str
    stop: list[str] = field(default_factory=list)


def resolve(setting: str, gguf_template: str | None, architecture: str) -> ChatTemplate:
    """Pick the template: PROMPT_TEMPLATE, else the GGUF's own, else by architecture."""
    choice = (setting or "auto").strip()
    if choice in BUILT_IN:
        return ChatTemplate(choice, *BUILT_IN[choice])
    if choice != "auto":
        path = Path(choice).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"Invalid setting PROMPT_TEMPLATE={choice!r}: use auto, llama2, chatml or the "
                "path of a Jinja2 chat template file."
            )
        return ChatTemplate(path.name, path.read_text(encoding="utf-8"))
    if gguf_template:
        return ChatTemplate("gguf", gguf_template)
    name = "llama2" if architecture == "llama" else "chatml"
    return ChatTemplate(name, *BUILT_IN[name])


def render(template: ChatTemplate, messages: list[dict[str, str]], bos: str, eos: str) -> str:
    from jinja2 import TemplateError

    try:
        return _compiled(template.name, template.source).render(
            messages=messages, add_generation_prompt=True, bos_token=bos, eos_token=eos
        )
    except TemplateError as exc:
        raise ConfigError(
            f"the chat template ({template.name}) failed to render: {exc}. "
            "Set PROMPT_TEMPLATE=chatml or llama2 to use a built-in format."
        ) from exc


@lru_cache(maxsize=8)
def _compiled(name: str, source: str):
    """Compile once: the prompt budget renders the same template several times a question."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    if name == "llama2":
        source = "{% set ns = namespace(sys='') %}" + source
    return env.from_string(source)


def _raise(message: str) -> None:
    from jinja2 import TemplateError

    raise TemplateError(message)
