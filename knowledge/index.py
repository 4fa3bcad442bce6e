"""A tenant's knowledge, indexed in memory for lexical (BM25) and optional dense retrieval.

Two BM25 indexes per tenant:
- *phrasings*: every FAQ question and alternate phrasing, one document each. An entry's score is
  its best phrasing's score, so an entry with many phrasings is not diluted and a customer's
  wording only has to be close to one way of asking.
- *content*: every entry's question with its answer, and every document chunk; this is what
  retrieval-augmented answers draw on.

An index is immutable once built; a newer knowledge version gets a new index (see
``knowledge.search``), so readers never see a half-built one.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import bm25s
import numpy as np

from knowledge.text import normalize, tokenize

BM25_K1 = 1.2
BM25_B = 0.75
# An entry's score: its best phrasings' scores with diminishing weights. Several phrasings that
# all resemble the question are stronger evidence than one, but never more than ~2.2 of them.
# (On the BANKING77 10-shot split: best phrasing only 0.62 top-1, these weights 0.67.)
PHRASING_WEIGHTS = np.array([1.0, 0.6, 0.36, 0.2], dtype=np.float32)
# Entries whose best phrasing ranks below this many others cannot reach the top results.
CANDIDATE_ENTRIES = 64
# Phrasings per entry kept in the scoring matrix; the best one always counts in full.
MATRIX_WIDTH = 32


class UnitKind(StrEnum):
    FAQ = "faq"
    CHUNK = "chunk"


@dataclass(frozen=True)
class EntryRecord:
    id: int
    question: str
    answer: str
    phrasings: tuple[str, ...]


@dataclass(frozen=True)
class ChunkRecord:
    id: int
    document_id: int
    document_title: str
    heading: str
    content: str


@dataclass(frozen=True)
class LexicalIndex:
    """BM25 over a list of token lists, with what confidence estimates need."""

    bm25: bm25s.BM25 | None
    token_ceiling: np.ndarray  # per vocabulary id: the highest score the token gives any doc

    @classmethod
    def build(cls, corpus_tokens: list[list[str]]) -> "LexicalIndex":
        if not any(corpus_tokens):
            return cls(bm25=None, token_ceiling=np.zeros(0, dtype=np.float32))
        # bm25s refuses empty documents; a placeholder token that no query produces keeps
        # positions aligned with the records.
        corpus = [tokens or ["\x00"] for tokens in corpus_tokens]
        bm25 = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
        bm25.index(corpus, show_progress=False)
        data, indptr = bm25.scores["data"], bm25.scores["indptr"]
        ceiling = np.zeros(len(indptr) - 1, dtype=np.float32)
        nonempty = np.flatnonzero(np.diff(indptr) > 0)
        if len(nonempty):
            ceiling[nonempty] = np.maximum.reduceat(data, indptr[:-1][nonempty])
        return cls(bm25=bm25, token_ceiling=ceiling)

    def token_ids(self, tokens: Sequence[str]) -> list[int]:
        return [] if self.bm25 is None else self.bm25.get_tokens_ids(list(tokens))

    def scores(self, token_ids: Sequence[int], size: int) -> np.ndarray:
        if self.bm25 is None or not token_ids:
            return np.zeros(size, dtype=np.float32)
        return self.bm25.get_scores_from_ids(list(token_ids))

    def ceiling(self, token_ids: Sequence[int]) -> float:
        """The best score any single document could reach for these tokens."""
        return float(self.token_ceiling[list(token_ids)].sum()) if token_ids else 0.0


@dataclass(frozen=True)
class FaqScores:
    """How a query scores against the entries, with the evidence a confidence is made from.

    Only entries that share a token with the query appear; the rest score zero.
    """

    entry_positions: np.ndarray  # entries with a positive score, best first
    entry_scores: np.ndarray  # their aggregated scores, aligned with entry_positions
    best_phrasing: np.ndarray  # their best phrasing's position
    best_phrasing_score: np.ndarray
    query_tokens: list[str]
    known_token_ids: list[int]
    ceiling: float


@dataclass
class TenantIndex:
    tenant_id: int
    version: int
    entries: list[EntryRecord]
    chunks: list[ChunkRecord]
    phrasing_tokens: list[list[str]]
    phrasing_entry: np.ndarray  # phrasing position -> entry position
    entry_starts: np.ndarray  # entry position -> its first phrasing position
    phrasing_matrix: np.ndarray  # entry position -> its phrasing positions, padded
    phrasings: LexicalIndex
    content: LexicalIndex
    exact: dict[str, int]  # normalised phrasing -> entry position
    entry_vectors: np.ndarray | None = None  # dense: one row per phrasing, L2-normalised
    chunk_vectors: np.ndarray | None = None
    embedder_name: str = ""
    _entry_position: dict[int, int] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        tenant_id: int,
        version: int,
        entries: Sequence[EntryRecord],
        chunks: Sequence[ChunkRecord],
    ) -> "TenantIndex":
        entries = [entry for entry in entries if entry.phrasings]
        phrasing_tokens: list[list[str]] = []
        phrasing_entry: list[int] = []
        entry_starts: list[int] = []
        exact: dict[str, int] = {}
        for position, entry in enumerate(entries):
            entry_starts.append(len(phrasing_tokens))
            for phrasing in entry.phrasings:
                phrasing_tokens.append(tokenize(phrasing))
                phrasing_entry.append(position)
                exact.setdefault(normalize(phrasing), position)
        width = min(MATRIX_WIDTH, max((len(e.phrasings) for e in entries), default=1))
        # Padding points one past the last phrasing, where a scoring pass puts a zero.
        phrasing_matrix = np.full((len(entries), width), len(phrasing_tokens), dtype=np.int64)
        for position, start in enumerate(entry_starts):
            count = min(width, len(entries[position].phrasings))
            phrasing_matrix[position, :count] = np.arange(start, start + count)
        content_tokens = [tokenize(f"{e.question}\n{e.answer}") for e in entries] + [
            tokenize(f"{c.document_title}\n{c.heading}\n{c.content}") for c in chunks
        ]
        return cls(
            tenant_id=tenant_id,
            version=version,
            entries=list(entries),
            chunks=list(chunks),
            phrasing_tokens=phrasing_tokens,
            phrasing_entry=np.asarray(phrasing_entry, dtype=np.int64),
            entry_starts=np.asarray(entry_starts, dtype=np.int64),
            phrasing_matrix=phrasing_matrix,
            phrasings=LexicalIndex.build(phrasing_tokens),
            content=LexicalIndex.build(content_tokens),
            exact=exact,
            _entry_position={entry.id: position for position, entry in enumerate(entries)},
        )

    @property
    def size(self) -> int:
        return len(self.entries) + len(self.chunks)

    def entry_by_id(self, entry_id: int) -> EntryRecord | None:
        position = self._entry_position.get(entry_id)
        return None if position is None else self.entries[position]

    def faq_scores(self, query: str) -> FaqScores | None:
        if not self.entries:
            return None
        tokens = tokenize(query)
        token_ids = self.phrasings.token_ids(tokens)
        if not token_ids:
            return None
        phrasing_scores = self.phrasings.scores(token_ids, len(self.phrasing_tokens))
        # Only phrasings that share a token with the query matter. They come in position
        # order, so each entry's phrasings are contiguous.
        matched = np.flatnonzero(phrasing_scores > 0)
        if not len(matched):
            return None
        owners = self.phrasing_entry[matched]
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        touched = owners[starts]
        touched_best = np.maximum.reduceat(phrasing_scores[matched], starts)
        if len(touched) > CANDIDATE_ENTRIES:
            # The weighted sum is at most PHRASING_WEIGHTS.sum() times an entry's best
            # phrasing, so the entries ranked by best phrasing are a safe shortlist.
            keep = np.argpartition(-touched_best, CANDIDATE_ENTRIES - 1)[:CANDIDATE_ENTRIES]
            touched, touched_best = touched[keep], touched_best[keep]
        # Each candidate's phrasing scores in a row (padding scores 0), best first.
        padded = np.append(phrasing_scores, np.float32(0))[self.phrasing_matrix[touched]]
        columns = np.argsort(-padded, axis=1, kind="stable")[:, : len(PHRASING_WEIGHTS)]
        ranked = np.take_along_axis(padded, columns, axis=1)
        ranked[:, 0] = touched_best  # an entry with more phrasings than the matrix holds
        entry_scores = ranked @ PHRASING_WEIGHTS[: ranked.shape[1]]
        best_phrasing = self.phrasing_matrix[touched, columns[:, 0]]
        for row in np.flatnonzero(padded[np.arange(len(touched)), columns[:, 0]] < touched_best):
            start = int(self.entry_starts[touched[row]])
            best_phrasing[row] = start + int(
                np.argmax(phrasing_scores[start:][: self._width(touched[row])])
            )
        order = np.argsort(-entry_scores, kind="stable")
        return FaqScores(
            entry_positions=touched[order],
            entry_scores=entry_scores[order],
            best_phrasing=best_phrasing[order],
            best_phrasing_score=touched_best[order],
            query_tokens=tokens,
            known_token_ids=token_ids,
            ceiling=self.phrasings.ceiling(token_ids),
        )

    def _width(self, entry_position: int) -> int:
        return len(self.entries[entry_position].phrasings)

    def content_scores(self, query: str) -> np.ndarray:
        size = len(self.entries) + len(self.chunks)
        return self.content.scores(self.content.token_ids(tokenize(query)), size)
