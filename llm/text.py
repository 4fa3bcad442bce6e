"""Script detection and token estimates shared by every app (one definition of "Chinese").

``HAN`` is the Han ideographs (unified, extension A, compatibility): what Chinese text is made
of. ``WIDE`` adds the other scripts a tokenizer counts about one token per character (kana,
CJK punctuation, Hangul, full-width forms). Both are regex character-class bodies.
"""

import math
import re

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
WIDE = f"\u3000-\u30ff{HAN}\uac00-\ud7af\uff00-\uffef"

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
