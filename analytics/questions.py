"""Reads: the questions customers asked in a period, and what followed each one.

A *question* is a customer message that starts a subject:

- the first customer message of a conversation;
- the first customer message after ``NEW_SUBJECT_SILENCE`` (30 minutes) in which nobody in the
  conversation wrote anything;
- the first customer message after the conversation was reopened.

A message with no retrieval tokens ("hi", "你好", "?") starts nothing: the subject starts with
the customer's next message. Internal notes and system messages are not part of the exchange.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from analytics.clustering import has_subject
from analytics.models import ReportRow
from analytics.rollups import local_day_bounds, tenant_zone
from conversations.models import Message
from tenants.models import Tenant

NEW_SUBJECT_SILENCE = timedelta(minutes=30)
_EXCHANGE_ROLES = [Message.Role.CUSTOMER, Message.Role.ASSISTANT, Message.Role.AGENT]


@dataclass(frozen=True)
class Question:
    message_id: int
    conversation_id: int
    customer_id: int
    text: str
    asked_at: datetime


@dataclass
class Reply:
    """What followed a customer message before the customer's next one."""

    assistant_text: str = ""
    assistant_source: str = ""
    assistant_confidence: float | None = None
    assistant_feedback: str = ""
    agent_text: str = ""


@dataclass
class Exchange:
    """A customer message with what came after it (the agent's answer: the conversation's next
    agent reply, even after further customer messages)."""

    question: Question
    reply: Reply
    is_question: bool  # starts a subject (the module docstring)


def period_bounds(*, tenant: Tenant, since: date, until: date) -> tuple[datetime, datetime]:
    """The UTC instants of the tenant's local ``since`` 00:00 and the day after ``until``."""
    zone = tenant_zone(tenant)
    return local_day_bounds(since, zone)[0], local_day_bounds(until, zone)[1]


def _reopenings(*, tenant: Tenant, start: datetime, end: datetime) -> dict[int, list[datetime]]:
    found: dict[int, list[datetime]] = {}
    rows = ReportRow.objects.filter(
        tenant=tenant,
        kind=ReportRow.Kind.REOPENED,
        occurred_at__gte=start - NEW_SUBJECT_SILENCE,
        occurred_at__lt=end,
    ).values_list("conversation_id", "occurred_at")
    for conversation_id, occurred_at in rows:
        if conversation_id is not None:
            found.setdefault(conversation_id, []).append(occurred_at)
    return found


def exchanges(*, tenant: Tenant, start: datetime, end: datetime) -> Iterator[Exchange]:
    """Every customer message of ``[start, end)`` with its reply, in conversation order.

    Messages from ``NEW_SUBJECT_SILENCE`` before ``start`` are read too, so that a message
    just after ``start`` knows whether the conversation was silent before it.
    """
    reopened = _reopenings(tenant=tenant, start=start, end=end)
    rows = (
        Message.objects.filter(
            tenant=tenant,
            internal=False,
            role__in=_EXCHANGE_ROLES,
            created_at__gte=start - NEW_SUBJECT_SILENCE,
            created_at__lt=end,
        )
        .order_by("conversation_id", "created_at", "id")
        .values_list(
            "id",
            "conversation_id",
            "conversation__customer_id",
            "role",
            "content",
            "created_at",
            "source",
            "confidence",
            "feedback",
        )
    )
    conversation: int | None = None
    previous_at: datetime | None = None
    subject_pending = False
    open_exchanges: list[Exchange] = []  # this conversation's, waiting for their replies
    last: Exchange | None = None
    for (
        message_id,
        conversation_id,
        customer_id,
        role,
        content,
        created_at,
        source,
        confidence,
        feedback,
    ) in rows.iterator(chunk_size=5000):
        if conversation_id != conversation:
            yield from open_exchanges
            conversation, previous_at, last, open_exchanges = conversation_id, None, None, []
            subject_pending = False
        if role == Message.Role.CUSTOMER:
            starts = (
                previous_at is None
                or created_at - previous_at >= NEW_SUBJECT_SILENCE
                or any(previous_at <= t <= created_at for t in reopened.get(conversation_id, ()))
            )
            if created_at >= start:
                meaningful = has_subject(content)
                is_question = (starts or subject_pending) and meaningful
                subject_pending = (starts or subject_pending) and not meaningful
                last = Exchange(
                    question=Question(
                        message_id, conversation_id, customer_id, content, created_at
                    ),
                    reply=Reply(),
                    is_question=is_question,
                )
                open_exchanges.append(last)
        elif last is not None:
            if role == Message.Role.ASSISTANT and not last.reply.assistant_text:
                last.reply.assistant_text = content
                last.reply.assistant_source = source
                last.reply.assistant_confidence = confidence
                last.reply.assistant_feedback = feedback
            elif role == Message.Role.AGENT:
                for waiting in open_exchanges:
                    if not waiting.reply.agent_text:
                        waiting.reply.agent_text = content
        previous_at = created_at
    yield from open_exchanges


def questions(*, tenant: Tenant, start: datetime, end: datetime) -> list[Question]:
    """The questions (the module docstring) asked in ``[start, end)``."""
    return [e.question for e in exchanges(tenant=tenant, start=start, end=end) if e.is_question]
