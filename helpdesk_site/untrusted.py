"""Text from outside (sockets, forms, uploads) made storable, before it reaches a service.

PostgreSQL cannot store a NUL character, and neither database can store a lone surrogate
(``"\\ud800"``, which JSON can carry as an escape but UTF-8 cannot encode): such text fails
the statement that writes it. The widget's text is cleaned once, at the edge, so that what a
customer typed is stored and shown as it reads, whatever their client sent.
"""

import re
from typing import Any

# C0 control characters other than tab, line feed and carriage return (NUL among them): they
# carry no text and some cannot be stored.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Surrogates (alone: a valid pair is already one character in a Python string) and Unicode's
# noncharacters (U+FDD0–U+FDEF and the last two code points of every plane), which no
# interchanged text may contain.
_UNENCODABLE = re.compile(
    "[\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)
REPLACEMENT_CHARACTER = "\ufffd"
# The sockets' frames nest two levels (the widget's hello identity); a little room for what
# comes.
MAX_FRAME_DEPTH = 8


def untrusted_text_clean(text: str) -> str:
    """``text`` without control characters, and with every lone surrogate and noncharacter
    replaced by U+FFFD (the replacement character): text any database stores and shows."""
    return _UNENCODABLE.sub(REPLACEMENT_CHARACTER, _CONTROLS.sub("", text))


class FrameTooDeep(Exception):
    """A frame nests deeper than ``MAX_FRAME_DEPTH``."""


def frame_clean(value: Any, *, depth: int = 0) -> Any:
    """A parsed frame with every string in it, keys too, made storable
    (``untrusted_text_clean``): every field a client sends is cleaned here, once, before any
    handler sees it. Frames nest at most ``MAX_FRAME_DEPTH`` levels (``FrameTooDeep``)."""
    if isinstance(value, str):
        return untrusted_text_clean(value)
    if isinstance(value, dict | list) and depth >= MAX_FRAME_DEPTH:
        raise FrameTooDeep
    if isinstance(value, dict):
        return {
            untrusted_text_clean(key): frame_clean(item, depth=depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [frame_clean(item, depth=depth + 1) for item in value]
    return value
