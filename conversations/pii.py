"""Personal-data masking for what Kefu stores, logs and sends to the LLM.

``pii_mask`` finds Chinese mobile numbers, Chinese resident ID numbers, bank cards and e-mail
addresses and replaces each with a mask that keeps what an agent needs to recognise the value
("the card ending 0123") and nothing that identifies the person:

- ``phone``: ``13800138000``, ``138 0013 8000``, ``+86 138-0013-8000`` become ``138****8000``
  (``+86 138****8000``): the first 3 and last 4 digits; a country prefix stays as written and
  separators inside the number go.
- ``id_card``: ``11010519491231002X`` becomes ``110105********002X``: the region code (first 6)
  and the last 4, always 18 characters.
- ``bank_card``: ``6222 0212 3456 7890 128`` becomes ``**** **** **** 0128``: the last 4 digits
  only, in the same shape whatever the card's length.
- ``email``: ``zhang.san@example.com`` becomes ``z***@example.com``: the first character of the
  local part, and the domain.

Regexes only propose candidates; each candidate is then validated in Python, so digit strings
that merely look like personal data (order numbers, timestamps, prices) stay as they are:

- a phone is 11 digits ``1[3-9]…`` not inside a longer digit run;
- an ID needs a valid ISO 7064 MOD 11-2 check character and a real birth date in 1900..today;
- a bank card is 13-19 digits with a valid Luhn check digit, not glued to Latin letters.

Candidates are matched on the original text with digit look-arounds rather than ``\\b``, because
Chinese text puts numbers right next to letters ("手机13800138000谢谢") and ``\\b`` sees no
boundary there. ``\\d`` deliberately matches full-width digits too (１３８…): a customer typing on
a full-width keyboard is owed the same protection. When candidates overlap, the one that starts
first wins, then the longer one, then the stronger kind (ID, phone, card, e-mail); so
``13800138000@163.com`` is masked once, as an e-mail.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from stdnum.cn import ric

PHONE = "phone"
ID_CARD = "id_card"
BANK_CARD = "bank_card"
EMAIL = "email"

# Lower rank wins when two candidates start at the same place and have the same length.
_KIND_RANK = {ID_CARD: 0, PHONE: 1, BANK_CARD: 2, EMAIL: 3}

_PHONE_RE = re.compile(
    r"(?<!\d)(?P<prefix>(?:\+|00)?86[ -]?)?"
    r"(?P<head>[1１][3-9３-９]\d)[ -]?\d{4}[ -]?(?P<tail>\d{4})(?!\d)"
)
# 17 digits and a check character, optionally written in its natural groups (region, birth
# date, sequence) with a space between them.
_ID_RE = re.compile(r"(?<!\d)\d{6} ?\d{8} ?\d{3}[\dXx](?!\d)")
# Either one unbroken run, or groups of four (the last group shorter) or Amex's 4-6-5. A grouped
# card must not continue with another group, or "…7890 1234 5678" would yield its last 16
# digits as a card. Digits glued to Latin letters are a code, not a card: one in ten SF Express
# waybills ("SF" and 13 digits) would pass Luhn.
_CARD_RE = re.compile(
    r"(?<![\dA-Za-z])(?<!\d[ -])"
    r"(?:\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,4})?|\d{4}[ -]\d{6}[ -]\d{4,5})"
    r"(?![ -]?\d)(?![A-Za-z])"
    r"|(?<![\dA-Za-z])\d{13,19}(?![\dA-Za-z])"
)
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])(?P<local>[A-Za-z0-9][A-Za-z0-9._%+-]*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,})(?![A-Za-z0-9-])"
)
# Maximal runs of at least 11 digits, consecutive digits at most one space or hyphen apart. The
# phone, ID and card patterns allow no more than one separator between two digits, so each of
# their matches lies inside one such run: the run itself, but for a phone's "+" just before it
# and an ID's "X" just after it, and their look-arounds read at most two characters past it.
# The patterns therefore only search each run's window, and only those patterns whose validated
# matches fit in the run's digits: a phone has 11, a card 13 to 19, an ID 17 and a check
# character. Most messages with digits (prices, dates, short order numbers) have no such run,
# and a long order number costs a search of a few characters instead of the whole message.
_DIGIT_RUN_RE = re.compile(r"\d(?:[ -]?\d){10,}")
_CARD_DIGITS = 13
_ID_DIGITS = 17
_SEPARATORS = str.maketrans("", "", " -")

_EARLIEST_BIRTH = date(1900, 1, 1)


@dataclass(frozen=True)
class PiiSpan:
    """One piece of personal data: ``text[start:end]`` is replaced by ``replacement``."""

    start: int
    end: int
    kind: str
    replacement: str


@dataclass(frozen=True)
class PiiResult:
    text: str  # the input with every piece of personal data masked
    kinds: tuple[str, ...]  # the kinds found, each once, in order of first appearance


def pii_mask(text: str) -> PiiResult:
    """``text`` with phones, ID numbers, bank cards and e-mails masked (formats in the module
    docstring), and the kinds found."""
    spans = pii_spans(text)
    return PiiResult(
        text=pii_apply(text, spans), kinds=tuple(dict.fromkeys(span.kind for span in spans))
    )


def pii_apply(text: str, spans: tuple[PiiSpan, ...]) -> str:
    """``text`` with each span replaced; ``spans`` are sorted and disjoint, as
    ``pii_spans`` returns them (and still valid for any length-preserving edit of ``text``)."""
    parts: list[str] = []
    position = 0
    for span in spans:
        parts.append(text[position : span.start])
        parts.append(span.replacement)
        position = span.end
    parts.append(text[position:])
    return "".join(parts)


def pii_spans(text: str) -> tuple[PiiSpan, ...]:
    """Every piece of personal data in ``text``, sorted by position and not overlapping."""
    candidates: list[PiiSpan] = []
    for run in _DIGIT_RUN_RE.finditer(text):
        digits = len(run[0]) - run[0].count(" ") - run[0].count("-")
        window = (max(run.start() - 1, 0), run.end() + 2)
        if digits >= _ID_DIGITS:
            candidates.extend(_id_cards(text, *window))
        candidates.extend(_phones(text, *window))
        if digits >= _CARD_DIGITS:
            candidates.extend(_bank_cards(text, *window))
    if "@" in text:  # the e-mail pattern knows only the ASCII "@"
        candidates.extend(_emails(text))
    return _disjoint(candidates)


def _disjoint(candidates: list[PiiSpan]) -> tuple[PiiSpan, ...]:
    """The candidates that win their overlaps: the earliest, then the longest, then the
    strongest kind."""
    if not candidates:
        return ()
    candidates.sort(key=lambda s: (s.start, s.start - s.end, _KIND_RANK[s.kind]))
    chosen: list[PiiSpan] = []
    for span in candidates:
        if not chosen or span.start >= chosen[-1].end:
            chosen.append(span)
    return tuple(chosen)


# The finders below search ``text[start:end]``, a run's window (``pii_spans``): look-behinds
# still read the text before ``start``; look-aheads see the text end at ``end``.


def _phones(text: str, start: int, end: int) -> list[PiiSpan]:
    spans = []
    for m in _PHONE_RE.finditer(text, start, end):
        prefix = m["prefix"] or ""
        spans.append(PiiSpan(m.start(), m.end(), PHONE, f"{prefix}{m['head']}****{m['tail']}"))
    return spans


def _id_cards(text: str, start: int, end: int) -> list[PiiSpan]:
    spans = []
    for m in _ID_RE.finditer(text, start, end):
        number = m[0].replace(" ", "")
        if id_card_is_valid(number):
            spans.append(PiiSpan(m.start(), m.end(), ID_CARD, f"{number[:6]}********{number[-4:]}"))
    return spans


def _bank_cards(text: str, start: int, end: int) -> list[PiiSpan]:
    spans = []
    for m in _CARD_RE.finditer(text, start, end):
        digits = m[0].translate(_SEPARATORS)
        if 13 <= len(digits) <= 19 and luhn_is_valid(digits):
            spans.append(PiiSpan(m.start(), m.end(), BANK_CARD, f"**** **** **** {digits[-4:]}"))
    return spans


def _emails(text: str) -> list[PiiSpan]:
    return [
        PiiSpan(m.start(), m.end(), EMAIL, f"{m['local'][0]}***@{m['domain']}")
        for m in _EMAIL_RE.finditer(text)
    ]


def id_card_is_valid(number: str) -> bool:
    """An 18-character Chinese resident ID with a correct MOD 11-2 check character and a
    birth date between 1900-01-01 and today."""
    if len(number) != 18 or not number[:17].isdecimal():
        return False
    # Only the check character from python-stdnum: its ``ric.is_valid`` also looks the region up
    # in a table (36 µs a call, against 2.4 µs here) and refuses full-width digits.
    if ric.calc_check_digit(number) != number[17].upper():
        return False
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    # "Today" where the calendar is furthest ahead (UTC+14), so no real birthday is rejected.
    latest = datetime.now(tz=UTC).date() + timedelta(days=1)
    return _EARLIEST_BIRTH <= born <= latest


def luhn_is_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every bank card number carries, UnionPay's 19 digits included."""
    # Hand-written: stdnum.luhn takes 4.3 µs a 19-digit card against 3.2 µs, 6.2 µs once
    # full-width digits (which it refuses) are converted, on every customer message with a card.
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0
