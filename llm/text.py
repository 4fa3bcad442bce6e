"""Script detection and token estimates shared by every app (one definition of "Chinese").

``HAN`` is the Han ideographs (unified, extension A, compatibility): what Chinese text is made
of. ``WIDE`` adds the other scripts a tokenizer counts about one token per character (kana,
CJK punctuation, Hangul, full-width forms). ``UNSPACED`` is the scripts written without spaces
between words (Han, kana, CJK radicals and punctuation, full-width forms; not Hangul, which
spaces its words). All three are regex character-class bodies.
"""

import math
import re

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_PUNCTUATION_AND_KANA = "\u3000-\u30ff"
_CJK_RADICALS = "\u2e80-\u2fff"
_HANGUL = "\uac00-\ud7af"
_FULL_WIDTH = "\uff00-\uffef"
WIDE = f"{_CJK_PUNCTUATION_AND_KANA}{HAN}{_HANGUL}{_FULL_WIDTH}"
UNSPACED = f"{_CJK_RADICALS}{_CJK_PUNCTUATION_AND_KANA}{HAN}{_FULL_WIDTH}"

_HAN_CHAR = re.compile(f"[{HAN}]")
_WIDE_CHAR = re.compile(f"[{WIDE}]")


def mostly_chinese(text: str) -> bool:
    """Whether more than 30% of the non-space characters are Han ideographs."""
    letters = len(text) - sum(c.isspace() for c in text)
    return letters > 0 and len(_HAN_CHAR.findall(text)) / letters > 0.3


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate for prompt budgets and providers that report no usage: one
    token per wide character, one per four other characters (rounded up), as in OpenAI's rule
    of thumb."""
    wide = len(_WIDE_CHAR.findall(text))
    return wide + math.ceil((len(text) - wide) / 4)
