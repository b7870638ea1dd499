from __future__ import annotations

import pytest

from privategpt_zh import chat_format
from privategpt_zh.errors import ConfigError

MESSAGES = [
    {"role": "system", "content": "只根据资料回答。"},
    {"role": "user", "content": "问题一"},
    {"role": "assistant", "content": "回答一"},
    {"role": "user", "content": "问题二"},
]


def test_llama2_format():
    t = chat_format.resolve("llama2", None, "")
    text = chat_format.render(t, MESSAGES, "<s>", "</s>")
    assert text == (
        "<s>[INST] <<SYS>>\n只根据资料回答。\n<</SYS>>\n\n问题一 [/INST] 回答一 </s>"
        "<s>[INST] 问题二 [/INST]"
    )


def test_chatml_format_ends_with_assistant_turn():
    t = chat_format.resolve("chatml", None, "")
    text = chat_format.render(t, MESSAGES, "", "")
    assert text.startswith("<|im_start|>system\n只根据资料回答。<|im_end|>\n")
    assert text.endswith("<|im_start|>user\n问题二<|im_end|>\n<|im_start|>assistant\n")


def test_auto_prefers_gguf_template_then_architecture():
    assert chat_format.resolve("auto", "{{ messages }}", "llama").name == "gguf"
    assert chat_format.resolve("auto", None, "llama").name == "llama2"
    assert chat_format.resolve("auto", None, "qwen2").name == "chatml"


def test_template_file_and_bad_setting(tmp_path):
    f = tmp_path / "t.jinja"
    f.write_text("{% for m in messages %}{{ m.role }}:{{ m.content }}|{% endfor %}")
    t = chat_format.resolve(str(f), None, "")
    assert chat_format.render(t, MESSAGES[:2], "", "") == "system:只根据资料回答。|user:问题一|"
    with pytest.raises(ConfigError, match="PROMPT_TEMPLATE"):
        chat_format.resolve("nonsense", None, "")


def test_real_gguf_template_is_used(real_llm):
    prompt = real_llm.format_chat(MESSAGES)
    assert real_llm._template.name == "gguf"
    assert "<|im_start|>user\n问题二<|im_end|>" in prompt
    assert prompt.rstrip().endswith("<|im_start|>assistant")
    assert real_llm.count_tokens("<|im_start|>") == 1  # special tokens are parsed as such
