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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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
# Dense entry similarity: closest phrasing and centroid count half each (BANKING77 10-shot
# with all-MiniLM-L6-v2: closest 0.817, centroid 0.802, both 0.840 top-1).
DENSE_CLOSEST_SHARE = 0.5
# Fused ranking: dense similarity plus this share of the BM25 score relative to the best one
# (0.840 -> 0.841 top-1; a larger share or reciprocal-rank fusion hurt).
FUSED_LEXICAL_SHARE = 0.05


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


def chunk_text(chunk: ChunkRecord) -> str:
    return f"{chunk.document_title}\n{chunk.heading}\n{chunk.content}"


@dataclass(frozen=True)
class LexicalIndex:
    """BM25 over a list of token lists, with what confidence estimates need."""

    bm25: bm25s.BM25 | None
    token_ceiling: np.ndarray  # per vocabulary id: the highest score the token gives any doc
    doc_freq: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    documents: int = 0

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
        return cls(
            bm25=bm25,
            token_ceiling=ceiling,
            doc_freq=np.diff(indptr).astype(np.int64),
            documents=len(corpus),
        )

    def idf(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25's (Lucene) inverse document frequency of each token; a token no document has
        gets the highest."""
        vocabulary: dict[str, int] = self.bm25.vocab_dict if self.bm25 is not None else {}
        frequency = np.array(
            [self.doc_freq[vocabulary[t]] if t in vocabulary else 0 for t in tokens],
            dtype=np.float64,
        )
        return np.log(1 + (self.documents - frequency + 0.5) / (frequency + 0.5))

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

    Only a shortlist of entries appears (those sharing a token with the query, and with
    embeddings on the semantically closest ones), best first; the rest score lower.
    """

    entry_positions: np.ndarray  # shortlisted entries, best first
    entry_scores: np.ndarray  # their ranking scores (lexical, or fused with dense)
    best_phrasing: np.ndarray  # position of their best phrasing
    best_phrasing_score: np.ndarray  # BM25 score of their best lexical phrasing
    dense_scores: np.ndarray | None  # their dense similarity, when the query was embedded
    query_tokens: list[str]
    known_token_ids: list[int]
    ceiling: float


@dataclass(frozen=True)
class DenseVectors:
    """Embeddings of an index's phrasings and chunks (zero rows: no vector yet)."""

    embedder: Any  # knowledge.dense embedder: .name, .multilingual, .embed()
    phrasings: np.ndarray  # one row per phrasing
    chunks: np.ndarray  # one row per chunk
    centroids: np.ndarray  # one row per entry: its phrasings' mean direction
    entry_has_vector: np.ndarray  # bool per entry

    @classmethod
    def build(
        cls, embedder: Any, phrasings: np.ndarray, chunks: np.ndarray, entry_starts: np.ndarray
    ) -> "DenseVectors":
        sums = np.add.reduceat(phrasings, entry_starts, axis=0) if len(entry_starts) else phrasings
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        return cls(
            embedder=embedder,
            phrasings=phrasings,
            chunks=chunks,
            centroids=(sums / np.where(norms == 0, 1, norms)).astype(np.float32),
            entry_has_vector=norms[:, 0] > 0,
        )

    def entry_similarity(self, query_vector: np.ndarray, entry_starts: np.ndarray) -> np.ndarray:
        """Per entry: the mean of its closest phrasing's and its centroid's cosine."""
        phrasing_cosine = self.phrasings @ query_vector
        closest = np.maximum.reduceat(phrasing_cosine, entry_starts)
        similarity = DENSE_CLOSEST_SHARE * closest + (1 - DENSE_CLOSEST_SHARE) * (
            self.centroids @ query_vector
        )
        return np.where(self.entry_has_vector, similarity, 0.0).astype(np.float32)


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
    phrasing_counts: np.ndarray  # entry position -> how many phrasings it has
    phrasings: LexicalIndex
    content: LexicalIndex
    exact: dict[str, int]  # normalised phrasing -> entry position
    dense: DenseVectors | None = None

    @classmethod
    def build(
        cls,
        *,
        tenant_id: int,
        version: int,
        entries: Sequence[EntryRecord],
        chunks: Sequence[ChunkRecord],
        vectors: Callable[[list[str], list[str]], tuple[Any, np.ndarray, np.ndarray] | None]
        | None = None,
    ) -> "TenantIndex":
        """``vectors(phrasings, chunk_texts)`` returns (embedder, phrasing rows, chunk rows),
        or None when the tenant has no dense retrieval."""
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
            tokenize(chunk_text(c)) for c in chunks
        ]
        dense = None
        if vectors is not None:
            phrasing_texts = [p for entry in entries for p in entry.phrasings]
            found = vectors(phrasing_texts, [chunk_text(c) for c in chunks])
            if found is not None:
                embedder, phrasing_rows, chunk_rows = found
                dense = DenseVectors.build(
                    embedder, phrasing_rows, chunk_rows, np.asarray(entry_starts, dtype=np.int64)
                )
        return cls(
            tenant_id=tenant_id,
            version=version,
            dense=dense,
            entries=list(entries),
            chunks=list(chunks),
            phrasing_tokens=phrasing_tokens,
            phrasing_entry=np.asarray(phrasing_entry, dtype=np.int64),
            entry_starts=np.asarray(entry_starts, dtype=np.int64),
            phrasing_matrix=phrasing_matrix,
            phrasing_counts=np.asarray([len(e.phrasings) for e in entries], dtype=np.int64),
            phrasings=LexicalIndex.build(phrasing_tokens),
            content=LexicalIndex.build(content_tokens),
            exact=exact,
        )

    @property
    def size(self) -> int:
        return len(self.entries) + len(self.chunks)

    def faq_scores(self, query: str, query_vector: np.ndarray | None = None) -> FaqScores | None:
        if not self.entries:
            return None
        tokens = tokenize(query)
        token_ids = self.phrasings.token_ids(tokens)
        phrasing_scores = self.phrasings.scores(token_ids, len(self.phrasing_tokens))
        shortlist = [self._lexical_shortlist(phrasing_scores)]
        dense = None
        vectors = self.dense
        if query_vector is not None and vectors is not None:
            dense = vectors.entry_similarity(query_vector, self.entry_starts)
            shortlist.append(_top(dense, CANDIDATE_ENTRIES))
        candidates = np.unique(np.concatenate(shortlist))
        if not len(candidates):
            return None

        # Each candidate's phrasing scores in a row (padding scores 0), best first.
        padded = np.append(phrasing_scores, np.float32(0))[self.phrasing_matrix[candidates]]
        columns = np.argsort(-padded, axis=1, kind="stable")[:, : len(PHRASING_WEIGHTS)]
        ranked = np.take_along_axis(padded, columns, axis=1)
        best_phrasing = self.phrasing_matrix[candidates, columns[:, 0]]
        # Entries with more phrasings than the matrix holds: find their best one in full.
        for row in np.flatnonzero(self.phrasing_counts[candidates] > self.phrasing_matrix.shape[1]):
            start = int(self.entry_starts[candidates[row]])
            end = start + int(self.phrasing_counts[candidates[row]])
            best_phrasing[row] = start + int(np.argmax(phrasing_scores[start:end]))
            ranked[row, 0] = phrasing_scores[best_phrasing[row]]
        best_lexical = ranked[:, 0].copy()
        lexical = ranked @ PHRASING_WEIGHTS[: ranked.shape[1]]

        if dense is None or vectors is None or query_vector is None:
            ranking = lexical
            dense_scores = None
        else:
            dense_scores = dense[candidates]
            top_lexical = float(lexical.max())
            ranking = dense_scores + FUSED_LEXICAL_SHARE * (
                lexical / top_lexical if top_lexical > 0 else lexical
            )
            # Without lexical evidence the closest phrasing is the semantically closest one.
            for row in np.flatnonzero(lexical == 0):
                start = int(self.entry_starts[candidates[row]])
                end = start + int(self.phrasing_counts[candidates[row]])
                cosine = vectors.phrasings[start:end] @ query_vector
                best_phrasing[row] = start + int(np.argmax(cosine))
        order = np.argsort(-ranking, kind="stable")
        return FaqScores(
            entry_positions=candidates[order],
            entry_scores=ranking[order],
            best_phrasing=best_phrasing[order],
            best_phrasing_score=best_lexical[order],
            dense_scores=None if dense_scores is None else dense_scores[order],
            query_tokens=tokens,
            known_token_ids=token_ids,
            ceiling=self.phrasings.ceiling(token_ids),
        )

    def _lexical_shortlist(self, phrasing_scores: np.ndarray) -> np.ndarray:
        """Entries with a phrasing that shares a token with the query, best ones only.

        The weighted sum is at most PHRASING_WEIGHTS.sum() times an entry's best phrasing, so
        the entries ranked by best phrasing are a safe shortlist.
        """
        matched = np.flatnonzero(phrasing_scores > 0)
        if not len(matched):
            return np.zeros(0, dtype=np.int64)
        owners = self.phrasing_entry[matched]  # in position order: each entry's are contiguous
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        touched = owners[starts]
        best = np.maximum.reduceat(phrasing_scores[matched], starts)
        return touched[_top(best, CANDIDATE_ENTRIES)]

    def content_relevance(self, query: str, unit_text: str) -> float:
        """How much of the question a unit of content speaks to: the share of the question's
        words, weighted by their rarity in this knowledge base, that the unit contains. A word
        the knowledge base never uses counts fully against it: "weather in Paris" is not
        answered by a passage about water damage."""
        asked = list(dict.fromkeys(tokenize(query)))
        if not asked:
            return 0.0
        weights = self.content.idf(asked)
        present = set(tokenize(unit_text))
        found = sum(
            weight for token, weight in zip(asked, weights, strict=True) if token in present
        )
        total = float(weights.sum())
        return found / total if total > 0 else 0.0

    def content_scores(self, query: str) -> np.ndarray:
        size = len(self.entries) + len(self.chunks)
        return self.content.scores(self.content.token_ids(tokenize(query)), size)

    def content_similarity(self, query_vector: np.ndarray) -> np.ndarray | None:
        """Dense similarity of entries (by their phrasings) and chunks, in content order."""
        if self.dense is None:
            return None
        entries = self.dense.entry_similarity(query_vector, self.entry_starts)
        return np.concatenate([entries, self.dense.chunks @ query_vector])


def _top(scores: np.ndarray, count: int) -> np.ndarray:
    """Positions of the ``count`` highest positive scores (unordered)."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) <= count:
        return positive
    return positive[np.argpartition(-scores[positive], count - 1)[:count]]
