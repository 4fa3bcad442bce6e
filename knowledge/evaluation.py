"""Measures FAQ matching on a labelled set: a knowledge base and queries with their answers.

Used by ``manage.py kb_eval`` and the development benchmark. The knowledge base is loaded into a
throwaway tenant inside a transaction that is rolled back, so nothing is left behind.
"""

import csv
import io
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.test.utils import override_settings

from knowledge.models import KnowledgeEntry
from knowledge.search import faq_candidates, registry
from knowledge.services import knowledge_embeddings_refresh
from llm.embeddings import INSTALL_HINT, local_embeddings_available
from tenants.models import Tenant
from tenants.scoping import tenant_scope

SWEEP = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


class EvaluationError(ValueError):
    pass


@dataclass(frozen=True)
class KbRow:
    key: str
    question: str
    answer: str


@dataclass(frozen=True)
class LabelledQuery:
    question: str
    expected_key: str


@dataclass(frozen=True)
class DirectAnswers:
    threshold: float
    precision: float | None  # None when nothing was answered directly
    coverage: float


@dataclass(frozen=True)
class EvaluationResult:
    queries: int
    top1: float
    top3: float
    direct: DirectAnswers
    sweep: list[DirectAnswers] = field(default_factory=list)
    mean_query_ms: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "queries": self.queries,
            "top1": round(self.top1, 4),
            "top3": round(self.top3, 4),
            "threshold": self.direct.threshold,
            "direct_precision": None
            if self.direct.precision is None
            else round(self.direct.precision, 4),
            "direct_coverage": round(self.direct.coverage, 4),
            "mean_query_ms": round(self.mean_query_ms, 3),
            "sweep": [
                {
                    "threshold": point.threshold,
                    "direct_precision": None
                    if point.precision is None
                    else round(point.precision, 4),
                    "direct_coverage": round(point.coverage, 4),
                }
                for point in self.sweep
            ],
        }


def _read_csv(text: str, required: Sequence[str], what: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    columns = [name.strip().lower() for name in reader.fieldnames or []]
    missing = [name for name in required if name not in columns]
    if missing:
        raise EvaluationError(f"{what}: missing columns {', '.join(missing)}")
    rows = []
    for line, row in enumerate(reader, start=2):
        values = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if not any(values.values()):
            continue
        if any(not values.get(name) for name in required if name != "answer"):
            raise EvaluationError(f"{what}: row {line} has an empty {'/'.join(required)} value")
        rows.append(values)
    if not rows:
        raise EvaluationError(f"{what}: no rows")
    return rows


def read_kb(text: str) -> list[KbRow]:
    return [
        KbRow(key=r["key"], question=r["question"], answer=r.get("answer", ""))
        for r in _read_csv(text, ["key", "question", "answer"], "knowledge base")
    ]


def read_queries(text: str) -> list[LabelledQuery]:
    return [
        LabelledQuery(question=r["question"], expected_key=r["expected_key"])
        for r in _read_csv(text, ["question", "expected_key"], "queries")
    ]


def _direct(outcomes: Iterable[tuple[float, bool]], total: int, threshold: float) -> DirectAnswers:
    answered = [correct for confidence, correct in outcomes if confidence >= threshold]
    return DirectAnswers(
        threshold=threshold,
        precision=sum(answered) / len(answered) if answered else None,
        coverage=len(answered) / total if total else 0.0,
    )


def evaluate(
    *,
    kb: Sequence[KbRow],
    queries: Sequence[LabelledQuery],
    threshold: float | None = None,
    embeddings: str = "off",
) -> EvaluationResult:
    """Scores ``queries`` against ``kb``. Rows sharing a key are one entry's phrasings.

    ``embeddings="local"`` embeds the knowledge base with the local model first (dense
    retrieval fused with BM25); ``"off"`` measures BM25 alone.
    """
    if embeddings == "local" and not local_embeddings_available():
        raise EvaluationError(f"local embeddings are not installed: {INSTALL_HINT}")
    with override_settings(KNOWLEDGE_EMBEDDINGS=embeddings):
        return _evaluate(kb=kb, queries=queries, threshold=threshold)


def _evaluate(
    *, kb: Sequence[KbRow], queries: Sequence[LabelledQuery], threshold: float | None
) -> EvaluationResult:
    grouped: dict[str, list[KbRow]] = {}
    for row in kb:
        grouped.setdefault(row.key, []).append(row)
    unknown = {q.expected_key for q in queries} - set(grouped)
    if unknown:
        sample = ", ".join(sorted(unknown)[:5])
        raise EvaluationError(f"queries expect keys that the knowledge base lacks: {sample}")

    with transaction.atomic():
        tenant = Tenant.objects.create(name="kb_eval", slug=f"kb-eval-{time.time_ns()}")
        with tenant_scope(tenant.pk):
            if threshold is None:
                threshold = tenant.faq_threshold
            entries = KnowledgeEntry.objects.bulk_create(
                KnowledgeEntry(
                    tenant=tenant,
                    question=rows[0].question,
                    alternate_questions=[row.question for row in rows[1:]],
                    answer=next((row.answer for row in rows if row.answer), rows[0].question),
                )
                for rows in grouped.values()
            )
            key_of = {entry.pk: key for entry, key in zip(entries, grouped, strict=True)}
            knowledge_embeddings_refresh(tenant_id=tenant.pk)
            try:
                outcomes: list[tuple[float, bool]] = []
                top1 = top3 = 0
                started = time.perf_counter()
                for query in queries:
                    candidates = faq_candidates(tenant=tenant, query=query.question, k=3)
                    keys = [key_of[c.entry_id] for c in candidates]
                    correct = bool(keys) and keys[0] == query.expected_key
                    top1 += correct
                    top3 += query.expected_key in keys
                    outcomes.append((candidates[0].confidence if candidates else 0.0, correct))
                elapsed = time.perf_counter() - started
            finally:
                registry.forget(tenant.pk)
                transaction.set_rollback(True)

    total = len(queries)
    return EvaluationResult(
        queries=total,
        top1=top1 / total,
        top3=top3 / total,
        direct=_direct(outcomes, total, threshold),
        sweep=[_direct(outcomes, total, t) for t in SWEEP],
        mean_query_ms=elapsed * 1000 / total,
    )
