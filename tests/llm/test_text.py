"""One definition of Chinese text and one token estimate for every app."""

from llm.text import estimate_tokens, mostly_chinese


def test_chinese_is_recognised() -> None:
    assert mostly_chinese("快递什么时候到？")
    assert mostly_chinese("iPhone 退货怎么办")
    assert not mostly_chinese("Where is my iPhone order 123?")
    assert not mostly_chinese("   ")


def test_token_estimates() -> None:
    assert estimate_tokens("退货运费") == 4
    assert estimate_tokens("abcdefgh") == 2
    assert estimate_tokens("abcdefghi") == 3
    assert estimate_tokens("") == 0
    # Kana, Hangul and full-width punctuation count one token each, as Han characters do.
    assert estimate_tokens("ありがとう") == 5
    assert estimate_tokens("감사합니다") == 5
    assert estimate_tokens("好，") == 2
