"""Tiny random checkpoints, built offline, that the convert tests share.

Models are kept tiny (hidden 64, 2 layers, ~1000 tokens) so the whole folder
runs in about a minute on 2 CPU cores. Nothing is downloaded.

This folder has neither __init__.py nor conftest.py on purpose: a package here would
be named ``convert`` and shadow the real one, and a second conftest.py would take the
module name ``conftest`` that tests/ imports from. Hence module names prefixed with
``convert_`` and the shared models below, built once per run and cached.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# The convert tests need the packages of requirements-convert.txt and llama-cpp-python.
# Every test module imports this module first: without them it skips the module on a
# developer's machine and fails it in CI (CI=true), never a silent pass.
NEEDED = (
    "torch",
    "transformers",
    "sentencepiece",
    "tokenizers",
    "gguf",
    "safetensors",
    "llama_cpp",
)
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None]
if MISSING:
    _why = f"convert tests need {', '.join(MISSING)}: pip install -r requirements-convert.txt"
    if os.environ.get("CI"):
        raise ImportError(_why)
    pytest.skip(_why, allow_module_level=True)

ZH = [
    "私有文档问答工具可以在没有网络的电脑上运行。",
    "我们把大型语言模型转换成四比特的格式，这样内存占用更小。",
    "中文分词和英文分词的方法不一样，模型需要完整的词表。",
    "请根据下面的文档内容回答问题，如果不知道答案就说不知道。",
    "北京是中华人民共和国的首都，上海是最大的经济中心。",
    "今天天气很好，我们一起去公园散步吧。",
    "机器学习和深度学习是人工智能的重要分支。",
    "这份合同规定了双方的权利和义务，有效期为三年。",
    "公司的年度报告显示，营业收入增长了百分之十二。",
    "用户上传的文件会被切分成小段，然后计算向量并存入数据库。",
    "检索增强生成把相关的段落交给模型，让回答更加准确。",
    "量化以后模型的体积大约是原来的四分之一，速度也更快。",
    "我喜欢读书，尤其是历史和科学方面的书。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？",
    "数据在本地处理，不会发送到任何服务器，保护隐私。",
    "电脑的内存是十六吉字节，硬盘还剩下一百吉字节的空间。",
]
EN = [
    "A private document question answering tool runs fully offline.",
    "We convert the large language model into a four bit format to save memory.",
    "The quick brown fox jumps over the lazy dog.",
    "Please answer the question using only the context below.",
    "Retrieval augmented generation gives the model relevant passages.",
    "In 2023 the company reported revenue of 1,234 million dollars.",
    "Hello world! This is a small test of the tokenizer, with numbers 42 and 3.14.",
]
# Strings the tokenisation tests compare; rare characters exercise byte fallback.
PROMPTS_ZH = [
    "北京是中国的首都。",
    "请回答：模型在本地运行吗？",
    "龘靐齉 😀 很少见的字",
    "机器学习 and deep learning 2024年",
]
PROMPTS_EN = ["The quick brown fox", "Hello world, 42 and 3.14!"]

SPECIAL_LLAMA = "<|im_start|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def corpus() -> list[str]:
    return (ZH * 6) + (EN * 6)


def train_spm(workdir: Path) -> Path:
    """A Llama-style SentencePiece BPE model: identity normalisation, byte fallback."""
    import sentencepiece as spm

    workdir.mkdir(parents=True, exist_ok=True)
    text = workdir / "corpus.txt"
    text.write_text("\n".join(corpus()), encoding="utf-8")
    prefix = workdir / "spm"
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(prefix),
        model_type="bpe",
        vocab_size=900,
        character_coverage=0.995,
        byte_fallback=True,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=2,
    )
    return prefix.with_suffix(".model")


def make_llama_tokenizer(workdir: Path):
    from transformers import LlamaTokenizer

    model_file = train_spm(workdir)
    # from_pretrained on a folder holding only tokenizer.model works in transformers 4 and 5
    src = workdir / "hf-tokenizer"
    src.mkdir()
    shutil.copy(model_file, src / "tokenizer.model")
    tok = LlamaTokenizer.from_pretrained(
        src, legacy=True, add_bos_token=True, add_eos_token=False, local_files_only=True
    )
    tok.add_special_tokens({"additional_special_tokens": [SPECIAL_LLAMA]})
    tok.chat_template = CHAT_TEMPLATE
    return tok, model_file


def save_llama(
    out: Path, dtype=None, safetensors: bool = True, hidden: int = 64, seed: int = 0
) -> Path:
    """A random tiny Llama (GQA: 4 heads, 2 kv heads) with the SentencePiece tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True)
    tok, model_file = make_llama_tokenizer(out.parent / (out.name + "-spm"))
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        initializer_range=0.2,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(cfg).eval()
    _randomise_norms(model)
    if dtype is not None:
        model = model.to(dtype)
    tok.save_pretrained(out)
    shutil.copy(model_file, out / "tokenizer.model")  # as on the Hub, whatever transformers saves
    if safetensors:
        model.save_pretrained(out)
    else:
        model.config.architectures = ["LlamaForCausalLM"]
        model.config.save_pretrained(out)
        torch.save(model.state_dict(), out / "pytorch_model.bin")
    return out


def _randomise_norms(model) -> None:
    import torch

    # HF initialises norms to 1 and biases to 0, which would hide a mis-mapped tensor.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))


def make_qwen2_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_qwen2(out: Path, seed: int = 0) -> Path:
    """A random tiny Qwen2 (q/k/v biases, tied embeddings) with a byte-level BPE tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out.mkdir(parents=True)
    tok = make_qwen2_tokenizer()
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        initializer_range=0.2,
        tie_word_embeddings=True,
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.eos_token_id,
    )
    model = Qwen2ForCausalLM(cfg).eval()
    _randomise_norms(model)
    tok.save_pretrained(out)
    model.save_pretrained(out)
    return out


# --- built once per test run, shared by every module (tests must copy, not modify) ---


@functools.cache
def _workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="convert-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def shared_llama_dir() -> Path:
    return save_llama(_workdir() / "llama")


@functools.cache
def shared_qwen2_dir() -> Path:
    return save_qwen2(_workdir() / "qwen2")


@functools.cache
def shared_llama_f16() -> Path:
    from convert.hf import convert_hf

    return convert_hf(shared_llama_dir(), _workdir() / "llama-f16.gguf", outtype="f16")
