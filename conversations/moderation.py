"""Content safety for the answer pipeline: sensitive words in and out, personal data in.

Sensitive words come from ``knowledge.models.SensitiveWordList``: the global lists (no tenant)
and the tenant's own lists apply together. They are compiled into one Aho-Corasick automaton
(``ahocorasick_rs``, searched over UTF-8 bytes): a whole ``WordFilter.scan`` of a 200-character
message against 10,000 words takes about 4 µs, most of it the automaton's walk.

Matching ignores case and full-width/half-width differences. Text is folded one character at a
time (NFKC, then casefold), and a character whose fold is not exactly one character keeps its
plain ``lower()`` (or itself): "ＤＡＭＮ" and "Damn" both fold to "damn", while "ﬁ" (NFKC "fi")
and "ß" (casefold "ss") stay single characters. Folding therefore never changes the length, so a
match's position in the folded text is its position in the original, and masking the original
needs no position map. The price is that the rare words which fold to several characters only
match as themselves, and decomposed accents (e + U+0301) do not match a precomposed "é"; both
are far rarer in support chat than full-width letters, which this gets right.

Folding a whole message costs about as much as searching it, and most messages need none of
it beyond ASCII lower case: ``WordFilter`` folds only text that holds a character whose fold
could still make or break a match (``WordFilter._locate``).

Each process caches one compiled ``WordFilter`` per tenant. At most every
``MODERATION_CHECK_SECONDS`` (default 1 s) a lookup reads a version stamp of the relevant
enabled lists (count, newest ``updated_at``, sum of ids) in one aggregate query and rebuilds
when it moved. Edits through ``save()`` (the admin, the demo loader) move it, and so do
deleting, adding, enabling and disabling lists in any way; only a bare
``QuerySet.update(words=...)``, which leaves ``updated_at`` alone, goes unseen until something
else moves the stamp or the process restarts.
"""

import functools
import threading
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import NamedTuple

import numpy as np
from ahocorasick_rs import BytesAhoCorasick
from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet, Sum

from conversations.pii import pii_apply, pii_spans
from knowledge.models import SensitiveWordList

Action = SensitiveWordList.Action

# When one word is in several lists, the strongest action wins.
_STRENGTH: dict[str, int] = {Action.REVIEW: 1, Action.MASK: 2, Action.BLOCK: 3}

LEAK_WINDOW = 24  # characters of the system prompt an answer may not reproduce
LEAK_REASON = "system_prompt_leak"
BLOCKED_WORD_REASON = "blocked_word"

_FOLD_CACHE_LIMIT = 65_536  # bounds the fold table against text made of every code point
_ARRAY_FOLD_MIN_LENGTH = 48  # below this, the array lookup's fixed cost exceeds ``translate``
# In UTF-8 these bytes only ever start a character outside the BMP (U+10000 and up).
_ASTRAL_LEAD_BYTES = tuple(bytes([lead]) for lead in range(0xF0, 0xF5))
_UTF16 = np.dtype("<u2")
_UTF32 = np.dtype("<u4")

BmpTable = np.ndarray[tuple[int], np.dtype[np.uint16]]


def _fold_char(char: str) -> str:
    """One character folded for matching: NFKC then casefold when that gives one character,
    else ``lower()`` when that does, else the character itself. A BMP character never folds
    outside the BMP, so the UTF-16 table in ``fold`` and ``str.translate`` always agree."""
    lowered = char.lower()
    if len(lowered) != 1:
        lowered = char
    folded = unicodedata.normalize("NFKC", lowered).casefold()
    if len(folded) != 1 or (ord(char) <= 0xFFFF < ord(folded)):
        return lowered
    return folded


class _FoldTable(dict[int, str]):
    """A ``str.translate`` table that folds each code point on first sight and remembers it."""

    def __missing__(self, codepoint: int) -> str:
        folded = _fold_char(chr(codepoint))
        if len(self) < _FOLD_CACHE_LIMIT:
            self[codepoint] = folded
        return folded


_FOLD_TABLE = _FoldTable()


@functools.cache
def _bmp_fold_array() -> BmpTable:
    """Every BMP code point's fold, as an array: built once per process (about 25 ms)."""
    table = np.arange(0x10000, dtype=np.uint16)
    for codepoint in range(0x10000):
        if not 0xD800 <= codepoint <= 0xDFFF:  # lone surrogates fold to themselves
            table[codepoint] = ord(_fold_char(chr(codepoint)))
    return table


def fold(text: str) -> str:
    """``text`` folded for matching (module docstring); always exactly as long as ``text``."""
    if text.isascii():
        return text.lower()  # NFKC is the identity on ASCII, and casefold is lower()
    if len(text) < _ARRAY_FOLD_MIN_LENGTH:
        return text.translate(_FOLD_TABLE)
    # ``str.translate`` costs about 40 ns a character; one table lookup over all the UTF-16
    # code units costs about 1.5 µs for a 200-character message.
    encoded = text.encode("utf-16-le", "surrogatepass")
    if len(encoded) == 2 * len(text):
        units = _bmp_fold_array().take(np.frombuffer(encoded, _UTF16))
        folded = units.tobytes().decode("utf-16-le", "surrogatepass")
        # A lone high surrogate followed by a lone low one decodes as one character: the
        # length check sends such (malformed) text to ``translate``.
        if len(folded) == len(text):
            return folded
        return text.translate(_FOLD_TABLE)
    # Characters outside the BMP (emoji): the same lookup over UTF-32, and the cached
    # ``translate`` table for the few code points the BMP table does not cover.
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), _UTF32)
    astral = points > 0xFFFF
    folded_points = _bmp_fold_array().take(np.where(astral, 0, points)).astype(_UTF32)
    folded_points[astral] = [ord(_FOLD_TABLE[point]) for point in points[astral].tolist()]
    return folded_points.tobytes().decode("utf-32-le", "surrogatepass")


def _bmp_chars_folding_into(chars: Iterable[str], *, unchanged: bool = True) -> list[str]:
    """Every BMP character whose fold is one of ``chars``; with ``unchanged=False``, only those
    the fold changes."""
    table = _bmp_fold_array()
    wanted = np.array([ord(char) for char in chars if ord(char) <= 0xFFFF], dtype=np.uint16)
    selected = np.isin(table, wanted)
    if not unchanged:
        selected &= table != np.arange(0x10000, dtype=np.uint16)
    return [chr(point) for point in np.flatnonzero(selected).tolist()]


@dataclass(frozen=True)
class WordEntry:
    """One listed word with the action of its list."""

    word: str
    action: str  # a SensitiveWordList.Action value
    list_name: str = ""


@dataclass(frozen=True)
class Match:
    """A listed word found at ``text[start:end]``. ``word`` mirrors what the customer or the
    LLM wrote: never log it; log ``list_name`` and ``action``."""

    word: str
    action: str
    list_name: str
    start: int
    end: int


class ScanResult(NamedTuple):
    """What ``WordFilter.scan`` found. A named tuple rather than a frozen dataclass: every
    message makes one, and a frozen dataclass takes twice as long to build."""

    text: str  # the scanned text with every mask word replaced by "*" of the same length
    blocked: bool
    review: bool
    matches: tuple[Match, ...]  # every occurrence, overlapping ones included, by position


@dataclass(frozen=True)
class WordHit:
    """Which list matched, and its action: what may be logged about a match."""

    list_name: str
    action: str


Span = tuple[int, int, int]  # start, end, index of the entry


class WordFilter:
    """An immutable compiled matcher for a set of sensitive words.

    A word listed several times (after folding) keeps its strongest action: block > mask >
    review; among equally strong lists the first one given names the match.
    """

    __slots__ = ("_automaton", "_endings", "_entries", "_lengths", "longest")

    _automaton: BytesAhoCorasick | None
    _endings: frozenset[str]  # every BMP character whose fold ends a word
    _entries: tuple[WordEntry, ...]
    _lengths: tuple[int, ...]  # of each entry's folded word, in characters
    longest: int  # length of the longest word, in characters

    def __init__(self, entries: Iterable[WordEntry]) -> None:
        strongest: dict[str, WordEntry] = {}
        for entry in entries:
            key = fold(entry.word.strip())
            if not key:
                continue
            entry = WordEntry(entry.word.strip(), Action(entry.action), entry.list_name)
            current = strongest.get(key)
            if current is None or _STRENGTH[entry.action] > _STRENGTH[current.action]:
                strongest[key] = entry
        keys = list(strongest)
        endings = _bmp_chars_folding_into({key[-1] for key in keys}) if keys else []
        object.__setattr__(self, "_automaton", _compile(keys) if keys else None)
        object.__setattr__(self, "_endings", frozenset(endings))
        object.__setattr__(self, "_entries", tuple(strongest.values()))
        object.__setattr__(self, "_lengths", tuple(map(len, keys)))
        object.__setattr__(self, "longest", max(map(len, keys), default=0))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"WordFilter is immutable: cannot set {name}")

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, text: str) -> list[Match]:
        """Every occurrence of every word in ``text``, overlapping ones included, sorted by
        (start, end)."""
        return self._matches(self._locate(text), 0)

    def find_new(self, text: str, seen: int) -> list[Match]:
        """The occurrences in ``text`` that end after ``text[:seen]``: what a stream gains when
        ``text[seen:]`` arrives, ``find(text[:seen])`` having given the rest. Searches only
        the new text and the ``longest - 1`` characters before it, and nothing at all when no
        character of the new text can end a word. Called once per streamed token: every
        step counts."""
        added = text[seen:]
        # ``_endings`` only knows the BMP: for a character beyond it, the search decides.
        if self._endings.isdisjoint(added) and (added.isascii() or max(added) <= "\uffff"):
            return []
        start = seen - self.longest + 1
        if start <= 0:
            return self._matches([span for span in self._locate(text) if span[1] > seen], 0)
        spans = self._locate(text[start:])
        if not spans:
            return []
        return self._matches([span for span in spans if span[1] + start > seen], start)

    def scan(self, text: str) -> ScanResult:
        """``text`` checked against every word: mask words masked (overlaps masked as their
        union), and whether a block or review word is present."""
        spans = self._locate(text)
        if not spans:
            return ScanResult(text, False, False, ())
        matches = self._matches(spans, 0)
        return ScanResult(
            text=_mask(text, [(m.start, m.end) for m in matches if m.action == Action.MASK]),
            blocked=any(m.action == Action.BLOCK for m in matches),
            review=any(m.action == Action.REVIEW for m in matches),
            matches=tuple(matches),
        )

    def _locate(self, text: str) -> list[Span]:
        """Every occurrence in ``text`` as (start, end, entry index), sorted.

        Folding costs about as much as searching, and few messages need it: ``bytes.lower()``
        of the UTF-8 text (ASCII letters only, and far cheaper than ``str.lower()``) is
        usually enough. So after the words, the automaton also holds each BMP character that
        the fold turns into a character of some word, and the UTF-8 lead bytes of the
        characters beyond the BMP (which no table here covers). Where the lowered text holds
        none of those, each of its characters equals a word's character exactly when its fold
        does, since a word's characters are folds and folding twice changes nothing (a test
        pins that), so searching it is searching the folded text.

        The first walk skips overlapping matches, which is cheaper and still reports a match
        when there is any; none of those characters is part of a word, so no word reported
        there can hide one. Text with a word is walked again for the overlaps; text with such
        a character is folded and walked again.
        """
        automaton = self._automaton
        if automaton is None or not text:
            return []
        words = len(self._entries)
        haystack = text.encode("utf-8", "surrogatepass").lower()
        found = automaton.find_matches_as_indexes(haystack)
        if not found:
            return []
        if all(index < words for index, _start, _end in found):
            found = automaton.find_matches_as_indexes(haystack, overlapping=True)
            return self._char_spans(found, haystack, len(text))
        haystack = fold(text).encode("utf-8", "surrogatepass")
        found = automaton.find_matches_as_indexes(haystack, overlapping=True)
        found = [hit for hit in found if hit[0] < words]
        return self._char_spans(found, haystack, len(text))

    def _char_spans(
        self, found: list[tuple[int, int, int]], haystack: bytes, length: int
    ) -> list[Span]:
        """The automaton's (index, start byte, end byte) as sorted character spans."""
        if len(haystack) == length:  # one byte a character
            spans = [(start, end, index) for index, start, end in found]
        else:
            lengths = self._lengths
            spans = []
            char = byte = 0
            for index, start, _end in sorted(found, key=itemgetter(1)):
                char += len(haystack[byte:start].decode("utf-8", "surrogatepass"))
                byte = start
                spans.append((char, char + lengths[index], index))
        spans.sort()
        return spans

    def _matches(self, spans: list[Span], offset: int) -> list[Match]:
        entries = self._entries
        matches = []
        for start, end, index in spans:
            entry = entries[index]
            matches.append(
                Match(entry.word, entry.action, entry.list_name, start + offset, end + offset)
            )
        return matches


def _compile(keys: list[str]) -> BytesAhoCorasick:
    """The automaton ``WordFilter._locate`` searches: the folded words, then the characters
    that force a fold, then the lead bytes of characters beyond the BMP."""
    patterns = [key.encode("utf-8", "surrogatepass") for key in keys]
    alphabet = set().union(*keys)
    patterns.extend(c.encode("utf-8") for c in _bmp_chars_folding_into(alphabet, unchanged=False))
    patterns.extend(_ASTRAL_LEAD_BYTES)
    # The default (standard) match kind: the only one that reports overlapping matches. The
    # crate picks the implementation: a DFA for a few patterns, else a contiguous NFA; a DFA of
    # 10,000 words would take 13 times the memory (37 MB) and search no faster.
    return BytesAhoCorasick(patterns)


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with every character inside any of ``spans`` (sorted by start) replaced by
    "*"."""
    if not spans:
        return text
    parts: list[str] = []
    position = 0
    for start, end in spans:
        start = max(start, position)
        if end <= start:
            continue
        parts.append(text[position:start])
        parts.append("*" * (end - start))
        position = end
    parts.append(text[position:])
    return "".join(parts)


def _hits(matches: Iterable[Match]) -> tuple[WordHit, ...]:
    return tuple(dict.fromkeys(WordHit(m.list_name, m.action) for m in matches))


# --- Per-tenant filters ---------------------------------------------------------------------

Stamp = tuple[int, datetime | None, int | None]


def _lists_for_tenant(tenant_id: int) -> QuerySet[SensitiveWordList]:
    """The enabled lists that apply to the tenant: the global ones and its own, never another
    tenant's."""
    return SensitiveWordList.objects.filter(
        Q(tenant__isnull=True) | Q(tenant_id=tenant_id), enabled=True
    )


def _current_stamp(tenant_id: int) -> Stamp:
    row = _lists_for_tenant(tenant_id).aggregate(
        count=Count("id"), newest=Max("updated_at"), ids=Sum("id")
    )
    return (row["count"], row["newest"], row["ids"])


def _build(tenant_id: int) -> tuple[Stamp, WordFilter]:
    lists = list(
        _lists_for_tenant(tenant_id)
        .only("id", "name", "action", "words", "updated_at")
        .order_by("name", "id")
    )
    # The stamp of exactly the rows compiled, computed as ``_current_stamp`` computes it: a
    # list saved after this read moves the stamp, and the next check rebuilds.
    stamp: Stamp = (
        len(lists),
        max((wl.updated_at for wl in lists), default=None),
        sum(wl.pk for wl in lists) if lists else None,
    )
    entries = (WordEntry(word, wl.action, wl.name) for wl in lists for word in wl.word_set())
    return stamp, WordFilter(entries)


@dataclass(frozen=True)
class _Cached:
    stamp: Stamp
    word_filter: WordFilter
    checked_at: float


class WordFilterCache:
    """Per-process compiled filters, one per tenant, kept fresh against the lists' stamp.

    Not a TTL cache: a filter past its check interval is kept when the stamp has not moved."""

    def __init__(self) -> None:
        self._filters: dict[int, _Cached] = {}
        self._lock = threading.Lock()
        self._tenant_locks: dict[int, threading.Lock] = {}

    def peek(self, tenant_id: int) -> WordFilter | None:
        """The tenant's filter when it needs no freshness check now (no I/O); else None."""
        cached = self._filters.get(tenant_id)
        if cached is not None and time.monotonic() - cached.checked_at < _check_seconds():
            return cached.word_filter
        return None

    def get(self, tenant_id: int) -> WordFilter:
        word_filter = self.peek(tenant_id)
        if word_filter is not None:
            return word_filter
        # One check (and one build) per tenant at a time: threads arriving meanwhile wait and
        # then find the fresh filter in ``peek``.
        with self._tenant_lock(tenant_id):
            word_filter = self.peek(tenant_id)
            if word_filter is not None:
                return word_filter
            cached = self._filters.get(tenant_id)
            if cached is not None and cached.stamp == _current_stamp(tenant_id):
                self._filters[tenant_id] = _Cached(
                    cached.stamp, cached.word_filter, time.monotonic()
                )
                return cached.word_filter
            stamp, word_filter = _build(tenant_id)
            self._filters[tenant_id] = _Cached(stamp, word_filter, time.monotonic())
            return word_filter

    def forget(self, tenant_id: int | None = None) -> None:
        with self._lock:
            if tenant_id is None:
                self._filters.clear()
            else:
                self._filters.pop(tenant_id, None)

    def _tenant_lock(self, tenant_id: int) -> threading.Lock:
        with self._lock:
            return self._tenant_locks.setdefault(tenant_id, threading.Lock())


def _check_seconds() -> float:
    return float(settings.MODERATION_CHECK_SECONDS)


filter_cache = WordFilterCache()


def word_filter_for_tenant(*, tenant_id: int) -> WordFilter:
    """The tenant's compiled filter (global lists and its own). Reads the database when the
    cached filter is due for a check: call it from sync code only."""
    return filter_cache.get(tenant_id)


async def aword_filter_for_tenant(*, tenant_id: int) -> WordFilter:
    """``word_filter_for_tenant`` for the event loop: no database hop while the cached filter
    is fresh; otherwise the check (and any rebuild) runs in a worker thread."""
    word_filter = filter_cache.peek(tenant_id)
    if word_filter is not None:
        return word_filter
    return await database_sync_to_async(filter_cache.get)(tenant_id)


# --- Customer input -------------------------------------------------------------------------


@dataclass(frozen=True)
class InputModeration:
    text: str  # mask words and personal data masked: what may be stored, logged, sent to the LLM
    blocked: bool
    review: bool
    # "blocked_word", "masked_word", "review_word", then "pii:<kind>" per kind of personal data
    flags: tuple[str, ...]
    hits: tuple[WordHit, ...]  # the lists that matched: safe to log, unlike the words


def moderate_with(word_filter: WordFilter, text: str) -> InputModeration:
    """A customer message checked against ``word_filter`` and masked for personal data.

    Words and personal data are both found in the original text, so masking one never hides
    the other. Word masks keep the length, so the personal-data spans still line up and are
    applied on top: inside such a span the personal-data mask decides what shows.
    """
    scan = word_filter.scan(text)
    spans = pii_spans(text)
    if not scan.matches and not spans:
        return InputModeration(text=text, blocked=False, review=False, flags=(), hits=())
    flags = []
    if scan.blocked:
        flags.append("blocked_word")
    if any(m.action == Action.MASK for m in scan.matches):
        flags.append("masked_word")
    if scan.review:
        flags.append("review_word")
    flags.extend(f"pii:{kind}" for kind in dict.fromkeys(span.kind for span in spans))
    return InputModeration(
        text=pii_apply(scan.text, spans),
        blocked=scan.blocked,
        review=scan.review,
        flags=tuple(flags),
        hits=_hits(scan.matches),
    )


# --- LLM output stream ----------------------------------------------------------------------


class StreamVerdict(NamedTuple):
    """What to do after a delta: one per token, so a named tuple (as ``ScanResult``)."""

    emit: str  # text now safe to show, mask words masked; "" once the stream is blocked
    blocked: bool  # stop the stream and withhold the rest (stays True for later calls)
    reason: str = ""  # BLOCKED_WORD_REASON or LEAK_REASON when blocked
    review: bool = False  # a review word has appeared so far (stays True)


class _LeakDetector:
    """Finds an answer reproducing ``LEAK_WINDOW`` characters of the system prompt.

    Both sides are folded and their whitespace runs collapsed to one space. It tracks the
    longest suffix of the answer that occurs in the prompt (the matching statistic): a leak is
    that suffix reaching the window, and the suffix is exactly the text that must be held back,
    since any future leak has to start inside it. Each new character grows the suffix by one
    and then drops characters from its front until it occurs in the prompt again; as each
    character is dropped at most once, a stream costs two substring searches per character
    on average, and no per-prompt index is built or kept.
    """

    __slots__ = ("_after_space", "_prompt", "_starts", "_suffix")

    def __init__(self, prompt: str) -> None:
        self._prompt = prompt
        self._suffix = ""
        self._starts: list[int] = []  # the answer index of each character of ``_suffix``
        self._after_space = True  # leading whitespace is dropped, as in the prompt

    def feed(self, text: str, offset: int) -> bool:
        """Reads ``text`` (the answer from index ``offset``); True on a leak."""
        suffix, starts = self._suffix, self._starts
        for index, char in enumerate(fold(text), start=offset):
            if char.isspace():
                if self._after_space:
                    continue
                char = " "
                self._after_space = True
            else:
                self._after_space = False
            suffix += char
            starts.append(index)
            while suffix not in self._prompt:
                suffix = suffix[1:]
                del starts[0]
            if len(suffix) >= LEAK_WINDOW:
                return True
        self._suffix = suffix
        return False

    @property
    def hold_from(self) -> int | None:
        """The answer index from which text may still become part of a leak."""
        return self._starts[0] if self._starts else None


def _leak_prompt(system_prompt: str) -> str:
    return " ".join(fold(system_prompt).split())


class StreamModerator:
    """Moderates an LLM answer as it streams, holding back only what the next delta could
    still turn into a problem.

    Held back: the last ``longest word - 1`` characters (a word may continue in the next
    delta) and, with a system prompt of at least ``LEAK_WINDOW`` characters, the tail of the
    answer that is still a piece of the prompt. So a word split across deltas is masked or
    blocked before any of it is shown, and a 24-character copy of the prompt is stopped before
    its last character. ``finish()`` releases the rest; for a clean answer the emitted pieces
    join to exactly the answer.
    """

    def __init__(self, word_filter: WordFilter, *, system_prompt: str = "") -> None:
        self._filter = word_filter
        self._word_hold = max(word_filter.longest - 1, 0)
        prompt = _leak_prompt(system_prompt)
        self._leak = _LeakDetector(prompt) if len(prompt) >= LEAK_WINDOW else None
        self._pending = ""  # received, not yet emitted
        self._masks: list[tuple[int, int]] = []  # answer spans of mask words not yet all emitted
        self._offset = 0  # answer index of ``_pending[0]``
        self._reason = ""
        self._review = False
        self._hits: dict[WordHit, None] = {}

    @property
    def hits(self) -> tuple[WordHit, ...]:
        """The lists whose words appeared in the answer so far: safe to log."""
        return tuple(self._hits)

    def feed(self, delta: str) -> StreamVerdict:
        if self._reason or not delta:
            return self._verdict("")
        seen = len(self._pending)
        if self._leak is not None and self._leak.feed(delta, self._offset + seen):
            return self._block(LEAK_REASON)
        self._pending += delta
        if not self._scan(seen):
            return self._block(BLOCKED_WORD_REASON)
        cut = len(self._pending) - self._word_hold
        if self._leak is not None and (hold_from := self._leak.hold_from) is not None:
            cut = min(cut, hold_from - self._offset)
        return self._verdict(self._release(max(cut, 0)))

    def finish(self) -> StreamVerdict:
        """Releases everything held back; call once, after the last delta."""
        if self._reason:
            return self._verdict("")
        return self._verdict(self._release(len(self._pending)))

    def _scan(self, seen: int) -> bool:
        """Finds the words that end in the pending text after ``_pending[:seen]`` (the earlier
        calls found the others) and notes mask words; False on a block word.

        A word that began in text already emitted cannot be missed here: whatever was emitted
        lay at least ``longest - 1`` characters before the end, so any word starting there was
        already whole and found (and its held-back part is in ``_masks``).
        """
        for match in self._filter.find_new(self._pending, seen):
            self._hits.setdefault(WordHit(match.list_name, match.action), None)
            if match.action == Action.BLOCK:
                return False
            if match.action == Action.MASK:
                self._masks.append((self._offset + match.start, self._offset + match.end))
            else:
                self._review = True
        return True

    def _release(self, cut: int) -> str:
        if cut <= 0:
            return ""
        start, end = self._offset, self._offset + cut
        text, self._pending = self._pending[:cut], self._pending[cut:]
        self._offset = end
        if self._masks:
            spans = sorted((max(s, start) - start, min(e, end) - start) for s, e in self._masks)
            text = _mask(text, [span for span in spans if span[0] < cut])
            self._masks = [(s, e) for s, e in self._masks if e > end]
        return text

    def _block(self, reason: str) -> StreamVerdict:
        self._reason = reason
        self._pending, self._masks = "", []
        return self._verdict("")

    def _verdict(self, emit: str) -> StreamVerdict:
        # Positional: a named tuple takes three times as long to build from keywords.
        return StreamVerdict(emit, bool(self._reason), self._reason, self._review)
