from __future__ import annotations

from privategpt_zh.splitter import ChineseTextSplitter

TEXT = (
    "乳房炎是奶牛场最常见的疾病。预防乳房炎要保持牛舍干燥！挤奶前要药浴乳头吗？要。"
    "干奶期是关键时期；干奶时应注入干奶药。" * 6
)


def test_chunks_respect_size_and_sentence_ends():
    chunks = ChineseTextSplitter(60, 10).split(TEXT)
    assert len(chunks) > 3
    assert all(len(c) <= 60 for c in chunks)
    # every chunk ends at a sentence or clause mark, never mid-word
    assert all(c[-1] in "。！？；" for c in chunks[:-1])


def test_overlap_repeats_text_between_neighbours():
    chunks = ChineseTextSplitter(60, 30).split(TEXT)
    shared = sum(1 for a, b in zip(chunks, chunks[1:]) if b[:8] in a)
    assert shared >= len(chunks) // 2


def test_no_text_lost():
    chunks = ChineseTextSplitter(50, 0).split(TEXT)
    assert "".join(chunks) == TEXT


def test_closing_quote_stays_with_its_sentence():
    text = "他说：“挤奶前要药浴。”然后离开了。" * 10
    chunks = ChineseTextSplitter(30, 0).split(text)
    assert not any(c.startswith("”") for c in chunks)


def test_long_run_without_punctuation_is_still_cut():
    chunks = ChineseTextSplitter(40, 0).split("奶" * 200)
    assert all(len(c) <= 40 for c in chunks) and "".join(chunks) == "奶" * 200
