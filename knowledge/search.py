"""The knowledge engine's service API: ``faq_match`` and ``knowledge_search``.

Each process keeps every active tenant's index in memory (``IndexRegistry``). Freshness: a change
is announced after commit to every process (``knowledge.freshness``: directly in this one, over
Redis to the others), which starts the rebuild at once in a background thread; besides, at most
every ``KNOWLEDGE_INDEX_CHECK_SECONDS`` a lookup compares the index's knowledge version with the
tenant's current one (from the cache, falling back to the database). Once a newer version is
known, lookups wait for the new index rather than answer from the old one, so the first question
after an edit sees it. Only a small tenant's very first lookup in a process builds
synchronously; a large tenant's first lookup finds no index (no FAQ answer, no passages) until
its background build completes.
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

import numpy as np
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from redis.exceptions import RedisError

from helpdesk_site.redis import redis_failure_log
from knowledge.confidence import MatchFeatures, match_confidence
from knowledge.dense import stored_vectors
from knowledge.freshness import knowledge_change_listen, knowledge_change_subscribe
from knowledge.index import FaqScores, TenantIndex, UnitKind, chunk_text
from knowledge.selectors import knowledge_entry_count, knowledge_index_records
from knowledge.services import KNOWLEDGE_VERSION_CACHE_SECONDS, knowledge_version_cache_key
from knowledge.text import normalize
from llm.text import mostly_chinese
from tenants.models import Tenant
from tenants.scoping import tenant_scope

logger = logging.getLogger(__name__)

RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al.): damps the very top ranks
FUSION_DEPTH = 50  # how deep each ranking is read before fusing


@dataclass(frozen=True)
class FaqMatch:
    entry_id: int
    question: str
    answer: str
    matched_phrasing: str
    confidence: float
    score: float
    threshold: float

    @property
    def answers_directly(self) -> bool:
        """Confident enough to answer at once, without the LLM."""
        return self.confidence >= self.threshold


class HitSource(StrEnum):
    FAQ = UnitKind.FAQ
    CHUNK = UnitKind.CHUNK


@dataclass(frozen=True)
class SearchHit:
    kind: HitSource
    id: int
    title: str  # the FAQ question, or the document title and heading
    text: str  # the FAQ answer, or the chunk's text
    score: float  # fused score: higher is better, comparable within one result list
    document_id: int | None = None
    # Share of the question (by word rarity) the unit speaks to, in [0, 1]; comparable across
    # questions, unlike the score (see ``relevance_floor``).
    relevance: float = 0.0

    @property
    def relevant(self) -> bool:
        """Worth showing on its own, without an LLM to judge it."""
        return self.relevance >= settings.KNOWLEDGE_RELEVANCE_FLOOR


class IndexRegistry:
    """Per-process cache of tenant indexes, kept fresh against the knowledge version.

    A lookup never returns an index older than the newest version this process has read: once
    a check (periodic, or prompted by a change announcement) finds the version moved, lookups
    wait for the rebuild (one per tenant at a time) instead of answering from the old index.
    """

    def __init__(self) -> None:
        self._indexes: dict[int, TenantIndex] = {}
        self._checked_at: dict[int, float] = {}
        # The newest knowledge version read per tenant: an index behind it is not served.
        self._wanted: dict[int, int] = {}
        self._building: set[int] = set()
        self._lock = threading.Lock()
        self._tenant_locks: dict[int, threading.Lock] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-index")
        knowledge_change_listen(self._change_heard)

    def get(self, tenant_id: int) -> TenantIndex | None:
        knowledge_change_subscribe()
        index = self._indexes.get(tenant_id)
        now = time.monotonic()
        if index is None:
            if knowledge_entry_count(tenant_id=tenant_id) <= settings.KNOWLEDGE_INDEX_SYNC_LIMIT:
                return self._build_fresh(tenant_id)
            self._schedule(tenant_id)
            return None
        if now - self._checked_at.get(tenant_id, 0.0) >= settings.KNOWLEDGE_INDEX_CHECK_SECONDS:
            self._version_read(tenant_id, current_knowledge_version(tenant_id))
        if not self._fresh(tenant_id, index):
            return self._build_fresh(tenant_id)
        return index

    def peek(self, tenant_id: int) -> TenantIndex | None:
        """The tenant's index when it needs no freshness check now (no I/O at all); else None."""
        index = self._indexes.get(tenant_id)
        if index is None or not self._fresh(tenant_id, index):
            return None
        due = time.monotonic() - self._checked_at.get(tenant_id, 0.0)
        return index if due < settings.KNOWLEDGE_INDEX_CHECK_SECONDS else None

    async def aget(self, tenant_id: int) -> TenantIndex | None:
        """``get`` for the event loop: the version check and any build run in a worker thread,
        and only when due (a check interval passed, or a change was announced)."""
        index = self.peek(tenant_id)
        if index is not None:
            return index
        # database_sync_to_async: the worker thread's connection is closed like a request's.
        return await database_sync_to_async(self.get, thread_sensitive=False)(tenant_id)

    def forget(self, tenant_id: int | None = None) -> None:
        with self._lock:
            if tenant_id is None:
                self._indexes.clear()
                self._checked_at.clear()
                self._wanted.clear()
            else:
                self._indexes.pop(tenant_id, None)
                self._checked_at.pop(tenant_id, None)
                self._wanted.pop(tenant_id, None)

    def _fresh(self, tenant_id: int, index: TenantIndex) -> bool:
        return index.version == self._wanted.get(tenant_id, index.version)

    def _version_read(self, tenant_id: int, version: int) -> None:
        with self._lock:
            self._checked_at[tenant_id] = time.monotonic()
            self._wanted[tenant_id] = version

    def _change_heard(self, tenant_id: int | None) -> None:
        """A change was announced: the next lookup checks the version; with background
        rebuilds on, the check and the rebuild start now, so that the lookup seldom waits."""
        with self._lock:
            if tenant_id is None:
                self._checked_at.clear()
                return
            if tenant_id not in self._indexes:
                return
            self._checked_at.pop(tenant_id, None)
        if settings.KNOWLEDGE_INDEX_BACKGROUND_REBUILD:
            self._schedule(tenant_id)

    def _build_fresh(self, tenant_id: int) -> TenantIndex:
        """An index at least as new as the newest version read: the current one if it is, else
        one built now, or by the build already running (waited for)."""
        with self._lock:
            tenant_lock = self._tenant_locks.setdefault(tenant_id, threading.Lock())
        with tenant_lock:
            index = self._indexes.get(tenant_id)
            if index is not None and self._fresh(tenant_id, index):
                return index
            return self._build(tenant_id)

    def _build(self, tenant_id: int) -> TenantIndex:
        version, entries, chunks = knowledge_index_records(tenant_id=tenant_id)
        index = TenantIndex.build(
            tenant_id=tenant_id,
            version=version,
            entries=entries,
            chunks=chunks,
            vectors=partial(stored_vectors, tenant_id),
        )
        with self._lock:
            current = self._indexes.get(tenant_id)
            if current is None or current.version <= index.version:
                self._indexes[tenant_id] = index
            # Read from the database: newer than the cache's copy, unless a change since.
            if self._wanted.get(tenant_id, index.version) <= index.version:
                self._wanted[tenant_id] = index.version
            self._checked_at[tenant_id] = time.monotonic()
        return index

    def _schedule(self, tenant_id: int) -> None:
        with self._lock:
            if tenant_id in self._building:
                return
            self._building.add(tenant_id)
        self._executor.submit(self._build_in_background, tenant_id)

    def _build_in_background(self, tenant_id: int) -> None:
        started = time.monotonic()
        try:
            # A pool thread: it starts with no scope, whoever scheduled the build.
            with tenant_scope(tenant_id):
                if tenant_id in self._indexes:
                    self._version_read(tenant_id, current_knowledge_version(tenant_id))
                index = self._build_fresh(tenant_id)
            logger.info(
                "knowledge index ready tenant=%s version=%s units=%s in %.0f ms",
                tenant_id,
                index.version,
                index.size,
                (time.monotonic() - started) * 1000,
            )
        except Exception:  # a failed rebuild keeps the old index; the next check retries
            logger.exception("knowledge index rebuild failed tenant=%s", tenant_id)
        finally:
            with self._lock:
                self._building.discard(tenant_id)
            # Rebuilds are rare: the pool thread does not keep a connection open meanwhile.
            connections.close_all()


registry = IndexRegistry()


def current_knowledge_version(tenant_id: int) -> int:
    key = knowledge_version_cache_key(tenant_id)
    try:
        version = cache.get(key)
        if version is None:
            version = _knowledge_version_stored(tenant_id)
            # ``add``, not ``set``: a version published at commit must win over one read
            # before it.
            cache.add(key, version, timeout=KNOWLEDGE_VERSION_CACHE_SECONDS)
    except (RedisError, OSError) as exc:
        # The database holds the version: questions are answered while the cache is down.
        redis_failure_log(logger=logger, operation="knowledge version read", error=exc)
        version = _knowledge_version_stored(tenant_id)
    return int(version)


def _knowledge_version_stored(tenant_id: int) -> int:
    return (
        Tenant.objects.filter(pk=tenant_id).values_list("knowledge_version", flat=True).first()
    ) or 0


def faq_match(*, tenant: Tenant, query: str) -> FaqMatch | None:
    """The FAQ entry that best answers ``query``, with a calibrated confidence; or None."""
    candidates = faq_candidates(tenant=tenant, query=query, k=1)
    return candidates[0] if candidates else None


def faq_candidates(*, tenant: Tenant, query: str, k: int = 3) -> list[FaqMatch]:
    """The ``k`` best FAQ entries for ``query``, best first. Only the first carries a
    confidence (that it is the right entry); the others carry 0."""
    index = registry.get(tenant.pk)
    if index is None or not query.strip():
        return []
    exact = index.exact.get(normalize(query))
    vector = None if exact is not None else query_vector(index, query)
    return _candidates(index, tenant, query, vector, k)


async def afaq_match(*, tenant: Tenant, query: str) -> FaqMatch | None:
    """``faq_match`` for the event loop: embedding a question (CPU or network) runs in a
    worker thread; the lexical path stays on the loop (well under a millisecond)."""
    index = await registry.aget(tenant.pk)
    if index is None or not query.strip():
        return None
    vector = None
    if index.dense is not None and index.exact.get(normalize(query)) is None:
        vector = await sync_to_async(query_vector, thread_sensitive=False)(index, query)
    candidates = _candidates(index, tenant, query, vector, 1)
    return candidates[0] if candidates else None


def _candidates(
    index: TenantIndex, tenant: Tenant, query: str, vector: np.ndarray | None, k: int
) -> list[FaqMatch]:
    exact = index.exact.get(normalize(query))
    scores = index.faq_scores(query, vector)
    if exact is not None:
        entry = index.entries[exact]
        first = FaqMatch(
            entry_id=entry.id,
            question=entry.question,
            answer=entry.answer,
            matched_phrasing=query.strip(),
            confidence=1.0,
            score=float(scores.entry_scores[0]) if scores is not None else 0.0,
            threshold=tenant.faq_threshold,
        )
        others = [] if scores is None else _matches(index, scores, tenant, 0.0, k + 1)
        return [first, *[m for m in others if m.entry_id != entry.id]][:k]
    if scores is None:
        return []
    confidence = match_confidence(MatchFeatures.of(index, scores))
    return _matches(index, scores, tenant, confidence, k)


def _matches(
    index: TenantIndex, scores: FaqScores, tenant: Tenant, confidence: float, k: int
) -> list[FaqMatch]:
    matches = []
    for rank in range(min(k, len(scores.entry_positions))):
        entry = index.entries[int(scores.entry_positions[rank])]
        matches.append(
            FaqMatch(
                entry_id=entry.id,
                question=entry.question,
                answer=entry.answer,
                matched_phrasing=index_phrasing(index, int(scores.best_phrasing[rank])),
                confidence=confidence if rank == 0 else 0.0,
                score=float(scores.entry_scores[rank]),
                threshold=tenant.faq_threshold,
            )
        )
    return matches


def index_phrasing(index: TenantIndex, phrasing_position: int) -> str:
    entry_position = int(index.phrasing_entry[phrasing_position])
    offset = phrasing_position - int(index.entry_starts[entry_position])
    return index.entries[entry_position].phrasings[offset]


def query_vector(index: TenantIndex, query: str) -> np.ndarray | None:
    """The query's embedding in the index's vector space, when the index has one and the
    embedder reads the query's language."""
    dense = index.dense
    if dense is None or (not dense.embedder.multilingual and mostly_chinese(query)):
        return None
    try:
        return dense.embedder.embed([query])[0]
    except Exception:  # an embedding outage degrades to lexical search, never to an error
        logger.warning("query embedding failed tenant=%s", index.tenant_id, exc_info=True)
        return None


def knowledge_search(*, tenant: Tenant, query: str, k: int = 5) -> list[SearchHit]:
    """FAQ entries and document chunks ranked for ``query``: what an LLM answer should draw on.

    Entries (question and answer) and chunks are ranked together by BM25; with embeddings on,
    that ranking and the dense one are fused by reciprocal rank.
    """
    index = registry.get(tenant.pk)
    if index is None or not query.strip() or k <= 0:
        return []
    return _search(index, query, query_vector(index, query), k)


async def aknowledge_search(*, tenant: Tenant, query: str, k: int = 5) -> list[SearchHit]:
    """``knowledge_search`` for the event loop (see ``afaq_match``)."""
    index = await registry.aget(tenant.pk)
    if index is None or not query.strip() or k <= 0:
        return []
    vector = None
    if index.dense is not None:
        vector = await sync_to_async(query_vector, thread_sensitive=False)(index, query)
    return _search(index, query, vector, k)


@dataclass(frozen=True)
class HitTest:
    """What the knowledge engine would do with a question, and why (console and API)."""

    candidates: list[FaqMatch]  # best first; only the first carries a confidence
    hits: list[SearchHit]  # what an LLM answer would draw on, best first

    @property
    def best(self) -> FaqMatch | None:
        return self.candidates[0] if self.candidates else None

    @property
    def direct(self) -> FaqMatch | None:
        """The entry answered at once, without the LLM, if any."""
        return self.best if self.best is not None and self.best.answers_directly else None


def knowledge_hit_test(*, tenant: Tenant, query: str, faq_k: int = 5, k: int = 8) -> HitTest:
    """The FAQ decision for ``query`` with the runner-up entries, and the ranked passages."""
    return HitTest(
        candidates=faq_candidates(tenant=tenant, query=query, k=faq_k),
        hits=knowledge_search(tenant=tenant, query=query, k=k),
    )


def _search(index: TenantIndex, query: str, vector: np.ndarray | None, k: int) -> list[SearchHit]:
    depth = max(k, FUSION_DEPTH)
    rankings = [_ranking(index.content_scores(query), depth)]
    if vector is not None:
        similarity = index.content_similarity(vector)
        if similarity is not None:
            rankings.append(_ranking(similarity, depth))
    fused: dict[int, float] = {}  # unit position (entries first, then chunks) -> score
    for ranking in rankings:
        for rank, unit in enumerate(ranking):
            fused[int(unit)] = fused.get(int(unit), 0.0) + 1.0 / (RRF_K + rank + 1)

    hits = []
    for unit, score in sorted(fused.items(), key=lambda item: -item[1])[:k]:
        if unit < len(index.entries):
            entry = index.entries[unit]
            # An entry speaks to every way of asking it, not only to its main question.
            relevance = index.content_relevance(
                query, "\n".join([entry.question, *entry.phrasings, entry.answer])
            )
            hits.append(
                SearchHit(
                    HitSource.FAQ, entry.id, entry.question, entry.answer, score, None, relevance
                )
            )
        else:
            chunk = index.chunks[unit - len(index.entries)]
            title = " · ".join(part for part in (chunk.document_title, chunk.heading) if part)
            relevance = index.content_relevance(query, chunk_text(chunk))
            hits.append(
                SearchHit(
                    HitSource.CHUNK,
                    chunk.id,
                    title,
                    chunk.content,
                    score,
                    chunk.document_id,
                    relevance,
                )
            )
    return hits


def _ranking(scores: np.ndarray, depth: int) -> np.ndarray:
    positive = np.flatnonzero(scores > 0)
    return positive[np.argsort(-scores[positive], kind="stable")][:depth]
