"""Knowledge gaps: questions the assistant could not answer well (docs/analytics.md).

A customer message (with retrieval tokens) is a gap signal when what followed it shows the
knowledge base fell short:

- ``low_confidence``: the assistant's answer had a retrieval confidence under the tenant's FAQ
  threshold;
- ``fallback``: the answer came from the offline responder or the fallback text (no LLM, no
  FAQ entry);
- ``thumbs_down``: the customer marked the answer not helpful;
- ``handoff`` / ``repeated_question``: the conversation went to a person before the customer's
  next message (the second when the assistant handed it over because the question came again).

``gaps_refresh`` clusters the signalled messages of a period as topics are clustered
(analytics/clustering.py); each cluster (or a question alone) is a ``KnowledgeGap``, ranked by
the distinct customers it hit. Re-running matches the stored gaps (as topics are matched, by
their signature): an open gap is updated, a covered or dismissed one stays so; nothing is
duplicated.
"""

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
from django.db import transaction
from django.utils.translation import gettext as _

from analytics.clustering import has_subject
from analytics.models import KnowledgeGap, ReportRow
from analytics.questions import Exchange, exchanges, period_bounds
from analytics.topics import (
    SAMPLE_CONVERSATIONS,
    SIGNATURE_SIZE,
    Group,
    cluster_questions,
    groups_match,
)
from conversations.models import Conversation, Message
from knowledge.models import KnowledgeEntry
from knowledge.text import normalize
from tenants.models import Tenant
from tenants.scoping import tenant_scope

# Stored phrasings of a gap, and new gaps a run may add (the most customers first).
GAP_QUESTIONS = 20
MAX_NEW_GAPS = 200
FAQ_ALTERNATES = 10
FALLBACK_SOURCES = frozenset({Message.Source.OFFLINE, Message.Source.FALLBACK})


class GapError(ValueError):
    """A change to a gap that cannot be made (an entry of another tenant)."""


def exchange_signals(
    exchange: Exchange, *, threshold: float, handoff_reason: str | None
) -> list[str]:
    """The gap signals (the module docstring) of one customer message."""
    reply = exchange.reply
    signals = []
    if reply.assistant_confidence is not None and reply.assistant_confidence < threshold:
        signals.append("low_confidence")
    if reply.assistant_source in FALLBACK_SOURCES:
        signals.append("fallback")
    if reply.assistant_feedback == Message.Feedback.DOWN:
        signals.append("thumbs_down")
    if handoff_reason is not None:
        if handoff_reason == Conversation.HandoffReason.REPEATED_QUESTION:
            signals.append("repeated_question")
        else:
            signals.append("handoff")
    return signals


def _handoffs(*, tenant: Tenant, start: datetime, end: datetime) -> dict[int, list]:
    found: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    rows = ReportRow.objects.filter(
        tenant=tenant, kind=ReportRow.Kind.HANDOFF, occurred_at__gte=start, occurred_at__lt=end
    ).values_list("conversation_id", "occurred_at", "reason")
    for conversation_id, occurred_at, reason in rows:
        if conversation_id is not None:
            found[conversation_id].append((occurred_at, reason))
    return found


@dataclass
class _Flagged:
    exchange: Exchange
    signals: list[str]


def signalled(
    *, tenant: Tenant, start: datetime, end: datetime, all_texts: list[str] | None = None
) -> list[_Flagged]:
    """The customer messages of ``[start, end)`` with at least one gap signal (``all_texts``:
    a list that receives the text of every customer message of the period)."""
    handoffs = _handoffs(tenant=tenant, start=start, end=end)
    threshold = tenant.faq_threshold
    by_conversation: dict[int, list[Exchange]] = defaultdict(list)
    for exchange in exchanges(tenant=tenant, start=start, end=end):
        by_conversation[exchange.question.conversation_id].append(exchange)
        if all_texts is not None:
            all_texts.append(exchange.question.text)
    flagged = []
    for conversation_id, conversation in by_conversation.items():
        for i, exchange in enumerate(conversation):
            asked = exchange.question.asked_at
            following = conversation[i + 1].question.asked_at if i + 1 < len(conversation) else end
            reason = next(
                (r for t, r in handoffs.get(conversation_id, ()) if asked <= t < following), None
            )
            signals = exchange_signals(exchange, threshold=threshold, handoff_reason=reason)
            if signals and has_subject(exchange.question.text):
                flagged.append(_Flagged(exchange, signals))
    return flagged


@dataclass
class _Found:
    """One gap of this run: its questions (normalised text -> flagged messages)."""

    texts: dict[str, list[_Flagged]] = field(default_factory=dict)
    centroid: np.ndarray | None = None
    representative: str = ""

    def flagged(self) -> list[_Flagged]:
        return [f for group in self.texts.values() for f in group]


@dataclass(frozen=True)
class GapsRun:
    signalled: int
    gaps: int  # found in the period
    new_gaps: int
    seconds: float


def _gap_fields(found: _Found, original: dict[str, str]) -> dict:
    flagged = sorted(found.flagged(), key=lambda f: f.exchange.question.asked_at, reverse=True)
    by_count = sorted(found.texts, key=lambda t: (-len(found.texts[t]), t != found.representative))
    phrasings = [original[t] for t in by_count]
    signals = Counter(s for f in flagged for s in f.signals)
    return {
        "question": original[found.representative][:500],
        "questions": phrasings[:GAP_QUESTIONS],
        "customers": len({f.exchange.question.customer_id for f in flagged}),
        "occurrences": len(flagged),
        "signals": dict(sorted(signals.items())),
        "assistant_answer": next(
            (f.exchange.reply.assistant_text for f in flagged if f.exchange.reply.assistant_text),
            "",
        ),
        "agent_answer": next(
            (f.exchange.reply.agent_text for f in flagged if f.exchange.reply.agent_text), ""
        ),
        "sample_conversation_ids": list(
            dict.fromkeys(f.exchange.question.conversation_id for f in flagged)
        )[:SAMPLE_CONVERSATIONS],
        "signature": by_count[:SIGNATURE_SIZE],
    }


def gaps_refresh(*, tenant: Tenant, since: date, until: date) -> GapsRun:
    """Finds the knowledge gaps of ``since``–``until`` (the tenant's local days) and stores
    them (the module docstring). Idempotent."""
    started = time.perf_counter()
    with tenant_scope(tenant.pk):
        start, end = period_bounds(tenant=tenant, since=since, until=until)
        every_text: list[str] = []
        flagged = signalled(tenant=tenant, start=start, end=end, all_texts=every_text)
        original: dict[str, str] = {}
        by_text: dict[str, list[_Flagged]] = defaultdict(list)
        for item in flagged:
            text = normalize(item.exchange.question.text)
            original.setdefault(text, " ".join(item.exchange.question.text.split()))
            by_text[text].append(item)
        # Words weigh what they weigh among all the period's questions: the gaps alone may be
        # mostly one subject, whose shared word would weigh nothing among them.
        clustering = cluster_questions(tenant=tenant, texts=list(by_text), background=every_text)
        found: list[_Found] = []
        clustered: set[str] = set()
        for cluster in clustering.clusters:
            texts = [clustering.texts[m] for m in cluster.members]
            clustered.update(texts)
            found.append(
                _Found(
                    {t: by_text[t] for t in texts},
                    cluster.centroid,
                    clustering.texts[cluster.representative],
                )
            )
        row_of = {text: row for row, text in enumerate(clustering.texts)}
        for text, items in by_text.items():
            if text not in clustered:
                vector = clustering.vectors[row_of[text]] if text in row_of else None
                found.append(_Found({text: items}, vector, text))
        width = clustering.vectors.shape[1]
        groups = [
            Group(
                frozenset(f.texts),
                f.centroid if f.centroid is not None else np.zeros(width, dtype=np.float32),
            )
            for f in found
        ]
        stored = list(KnowledgeGap.objects.filter(tenant=tenant).order_by("pk"))
        matched = groups_match(groups, clustering.space, [g.signature for g in stored])
        new = 0
        with transaction.atomic():
            unmatched = []
            for index, gap_found in enumerate(found):
                fields = _gap_fields(gap_found, original)
                group = matched[index]
                if group is None:
                    unmatched.append(fields)
                    continue
                gap = stored[group]
                if gap.status != KnowledgeGap.Status.OPEN:
                    continue
                for name, value in fields.items():
                    setattr(gap, name, value)
                gap.since, gap.until = since, until
                gap.save()
            unmatched.sort(key=lambda f: (-f["customers"], -f["occurrences"], f["question"]))
            for fields in unmatched[:MAX_NEW_GAPS]:
                KnowledgeGap.objects.create(tenant=tenant, since=since, until=until, **fields)
                new += 1
    return GapsRun(
        signalled=len(flagged),
        gaps=len(found),
        new_gaps=new,
        seconds=round(time.perf_counter() - started, 3),
    )


# Admins' changes and the FAQ form ---------------------------------------------------------------


def knowledge_gap_cover(*, gap: KnowledgeGap, entry: KnowledgeEntry) -> KnowledgeGap:
    """Marks ``gap`` covered by the FAQ ``entry`` (of the same tenant)."""
    if entry.tenant_id != gap.tenant_id:
        raise GapError(_("That FAQ entry belongs to another tenant."))
    gap.status = KnowledgeGap.Status.COVERED
    gap.entry = entry
    gap.save(update_fields=["status", "entry", "updated_at"])
    return gap


def knowledge_gap_set_status(*, gap: KnowledgeGap, status: str) -> KnowledgeGap:
    """Dismisses a gap, or opens it again (``KnowledgeGap.Status``)."""
    gap.status = KnowledgeGap.Status(status)
    gap.save(update_fields=["status", "updated_at"])
    return gap


def knowledge_gap_get(*, tenant: Tenant, gap_id: object) -> KnowledgeGap | None:
    """The tenant's gap ``gap_id`` (any value from a query string), or None."""
    try:
        pk = int(str(gap_id))
    except ValueError:
        return None
    with tenant_scope(tenant.pk):
        return KnowledgeGap.objects.filter(tenant=tenant, pk=pk).first()


def gap_entry_initial(*, gap: KnowledgeGap) -> dict[str, object]:
    """The FAQ add form's values for ``gap``: its representative question, its other
    phrasings (distinct, at most ``FAQ_ALTERNATES``) and the agent's answer."""
    seen = {normalize(gap.question)}
    alternates: list[str] = []
    for phrasing in gap.questions:
        key = normalize(phrasing)
        if key and key not in seen and len(alternates) < FAQ_ALTERNATES:
            seen.add(key)
            alternates.append(phrasing)
    return {"question": gap.question, "alternate_questions": alternates, "answer": gap.agent_answer}


def entry_source_initial(tenant: Tenant, value: str) -> dict[str, object] | None:
    gap = knowledge_gap_get(tenant=tenant, gap_id=value)
    return gap_entry_initial(gap=gap) if gap is not None else None


def entry_source_saved(tenant: Tenant, value: str, entry: KnowledgeEntry) -> None:
    gap = knowledge_gap_get(tenant=tenant, gap_id=value)
    if gap is not None:
        with tenant_scope(tenant.pk):
            knowledge_gap_cover(gap=gap, entry=entry)
