from __future__ import annotations

from privategpt_zh.segment import query_tokens, tokenize


def test_search_mode_emits_sub_words():
    tokens = tokenize("中华人民共和国的奶牛乳房炎怎么预防")
    assert {"中华", "人民", "共和国", "中华人民共和国", "奶牛", "乳房", "预防"} <= set(tokens)


def test_query_drops_question_words_and_punctuation():
    tokens = query_tokens("奶牛乳房炎怎么预防？")
    assert "怎么" not in tokens and "？" not in tokens
    assert "乳房" in tokens and "奶牛" in tokens


def test_latin_is_lower_cased_and_mixed_text_works():
    assert "tmr" in tokenize("全混合日粮（TMR）要现配现喂")
    assert "mastitis" in query_tokens("How to prevent Mastitis?")
