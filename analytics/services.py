"""Reporting rows: what happened, written when it happened (after commit).

``report_rows_record`` subscribes to ``conversations.events`` (analytics/apps.py) and turns each
published batch into reporting rows with one bulk insert (plus at most a few indexed reads of
what the rows need to know: a conversation's channel, start and first answer). It runs after
the change it describes has committed, never after a rollback, and the events module logs and
swallows its failures: a reporting row never breaks the change it reports.

Only real traffic publishes events: the console's hit-testing page and agents' draft replies
store nothing and publish nothing, so they are never counted.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from analytics.models import ReportRow
from conversations import events
from conversations.events import Event, Published
from conversations.models import Conversation, Message, Ticket
from knowledge.models import Chunk
from tenants.scoping import tenant_scope

Kind = ReportRow.Kind


@dataclass(frozen=True)
class _ConversationFacts:
    channel: str
    customer_id: int | None
    created_at: datetime
    assignee_id: int | None = None
    queued_at: datetime | None = None
    assigned_at: datetime | None = None


def report_rows_record(published: Sequence[Published]) -> None:
    """Writes the reporting rows of a batch of events (each tenant's in its own scope)."""
    by_tenant: dict[int, list[Published]] = defaultdict(list)
    for item in published:
        by_tenant[item.tenant_id].append(item)
    for tenant_id, items in by_tenant.items():
        with tenant_scope(tenant_id):
            rows = _Rows(tenant_id, timezone.now()).build(items)
            if rows:
                _rows_insert(rows)


def _rows_insert(rows: list[ReportRow]) -> None:
    """One INSERT, with no transaction of its own in autocommit (where subscribers run, after
    the commit); inside a transaction (code that runs the commit hooks at once), in a
    savepoint, so that a refused row does not spoil the caller's transaction."""
    if transaction.get_connection().in_atomic_block:
        with transaction.atomic():
            ReportRow.objects.bulk_create(rows)
    elif len(rows) == 1:
        rows[0].save(force_insert=True)  # bulk_create would add BEGIN and COMMIT
    else:
        ReportRow.objects.bulk_create(rows)


def _ms(start: datetime | None, end: datetime) -> int | None:
    return None if start is None else max(0, int((end - start).total_seconds() * 1000))


class _Rows:
    """The rows of one tenant's events, with the facts they need read once per batch."""

    def __init__(self, tenant_id: int, now: datetime) -> None:
        self.tenant_id = tenant_id
        self.now = now
        self.rows: list[ReportRow] = []
        self._facts: dict[int, _ConversationFacts] = {}
        self._answered: set[int] = set()  # conversations that have their first answer
        self._documents: dict[int, int] = {}  # chunk id → its document's id

    def row(self, kind: str, **fields: object) -> ReportRow:
        row = ReportRow(tenant_id=self.tenant_id, kind=kind, occurred_at=self.now, **fields)
        self.rows.append(row)
        return row

    def build(self, items: Sequence[Published]) -> list[ReportRow]:
        self._facts_read(items)
        for item in items:
            self._add(item.event, item.payload)
        return self.rows

    # What the rows need to know, read once for the batch ------------------------------------

    def _facts_read(self, items: Sequence[Published]) -> None:
        answered = {
            p.conversation_id
            for p in (item.payload for item in items)
            if isinstance(p, events.AnswerRecorded)
            or (
                isinstance(p, events.MessageCreated)
                and p.role == Message.Role.AGENT
                and not p.internal
            )
        }
        needed = {
            item.payload.conversation_id
            for item in items
            if isinstance(
                item.payload,
                events.ConversationChange | events.ConversationRated | events.MessageFeedback,
            )
            or (
                isinstance(item.payload, events.MessageCreated)
                and item.payload.role != Message.Role.ASSISTANT
                and not item.payload.internal
                and not (item.payload.channel and item.payload.role == Message.Role.CUSTOMER)
            )
            or (
                isinstance(item.payload, events.TicketChange)
                and item.payload.conversation_id is not None
            )
        }
        if answered:
            # The conversation's start (its first row) and whether it was answered before.
            known = ReportRow.objects.filter(
                tenant_id=self.tenant_id,
                conversation_id__in=answered,
                kind__in=[Kind.CONVERSATION_CREATED, Kind.FIRST_ANSWER],
            ).values_list("conversation_id", "kind", "occurred_at", "channel", "customer_id")
            for conversation_id, kind, occurred_at, channel, customer_id in known:
                if conversation_id is None:
                    continue
                if kind == Kind.FIRST_ANSWER:
                    self._answered.add(conversation_id)
                else:
                    self._facts[conversation_id] = _ConversationFacts(
                        channel, customer_id, occurred_at
                    )
        # Human replies, resolutions and ratings need the conversation's people and times;
        # conversations started before reporting began have no row to read them from.
        needed |= {c for c in answered if c not in self._facts}
        needed.discard(None)
        if needed:
            self._conversations_read(c for c in needed if c is not None)
        chunk_ids = {
            chunk_id
            for item in items
            if isinstance(item.payload, events.AnswerRecorded)
            for chunk_id in item.payload.chunk_ids
        }
        if chunk_ids:
            # A chunk deleted since (its document reprocessed or removed) counts for nothing.
            self._documents = dict(
                Chunk.objects.filter(tenant_id=self.tenant_id, pk__in=chunk_ids).values_list(
                    "pk", "document_id"
                )
            )

    def _conversations_read(self, ids: Iterable[int]) -> None:
        rows = Conversation.objects.filter(tenant_id=self.tenant_id, pk__in=list(ids)).values_list(
            "pk", "channel", "customer_id", "created_at", "assignee_id", "queued_at", "assigned_at"
        )
        for pk, channel, customer_id, created_at, assignee_id, queued_at, assigned_at in rows:
            self._facts[pk] = _ConversationFacts(
                channel, customer_id, created_at, assignee_id, queued_at, assigned_at
            )

    def _of(self, conversation_id: int | None) -> dict[str, object]:
        """The conversation's ids and channel, as every row about it carries them."""
        facts = self._facts.get(conversation_id) if conversation_id is not None else None
        return {
            "conversation_id": conversation_id,
            "channel": facts.channel if facts else "",
            "customer_id": facts.customer_id if facts else None,
        }

    # One event's rows ---------------------------------------------------------------------

    def _add(self, event: Event, payload: events.Payload) -> None:
        if isinstance(payload, events.ConversationCreated):
            self.row(
                Kind.CONVERSATION_CREATED,
                conversation_id=payload.conversation_id,
                customer_id=payload.customer_id,
                channel=payload.channel,
            )
        elif isinstance(payload, events.MessageCreated):
            self._message(payload)
        elif isinstance(payload, events.AnswerRecorded):
            self._answer(payload)
        elif isinstance(payload, events.ConversationChange):
            self._conversation_change(event, payload)
        elif isinstance(payload, events.ConversationRated):
            facts = self._facts.get(payload.conversation_id)
            self.row(
                Kind.RATING,
                value=payload.rating,
                agent_id=facts.assignee_id if facts else None,
                **self._of(payload.conversation_id),
            )
        elif isinstance(payload, events.MessageFeedback):
            self.row(
                Kind.FEEDBACK,
                reason=payload.value,
                message_id=payload.message_id,
                **self._of(payload.conversation_id),
            )
        elif isinstance(payload, events.TicketChange):
            self._ticket(event, payload)

    def _message(self, payload: events.MessageCreated) -> None:
        if payload.internal:
            return
        if payload.role == Message.Role.CUSTOMER:
            fields = self._of(payload.conversation_id)
            if payload.channel:
                fields |= {"channel": payload.channel, "customer_id": payload.customer_id}
            self.row(Kind.CUSTOMER_MESSAGE, message_id=payload.message_id, **fields)
        elif payload.role == Message.Role.AGENT:
            self.row(
                Kind.AGENT_REPLY,
                message_id=payload.message_id,
                agent_id=payload.author_id,
                **self._of(payload.conversation_id),
            )
            self._first_answer(payload.conversation_id, payload.message_id)
            self._first_human_response(payload)

    def _answer(self, payload: events.AnswerRecorded) -> None:
        fields = self._of(payload.conversation_id)
        self.row(
            Kind.ANSWER,
            message_id=payload.message_id,
            reason=payload.source,
            provider=payload.provider,
            model=payload.model,
            tokens_in=payload.tokens_in,
            tokens_out=payload.tokens_out,
            cost=payload.cost,
            latency_ms=payload.latency_ms,
            **fields,
        )
        if payload.faq_entry_id is not None:
            self.row(
                Kind.FAQ_HIT, message_id=payload.message_id, entry_id=payload.faq_entry_id, **fields
            )
        documents = (self._documents.get(chunk_id) for chunk_id in payload.chunk_ids)
        for document_id in dict.fromkeys(d for d in documents if d is not None):
            self.row(
                Kind.DOCUMENT_HIT, message_id=payload.message_id, entry_id=document_id, **fields
            )
        self._first_answer(payload.conversation_id, payload.message_id)

    def _first_answer(self, conversation_id: int, message_id: int) -> None:
        facts = self._facts.get(conversation_id)
        if conversation_id in self._answered or facts is None:
            return
        self._answered.add(conversation_id)
        self.row(
            Kind.FIRST_ANSWER,
            message_id=message_id,
            duration_ms=_ms(facts.created_at, self.now),
            **self._of(conversation_id),
        )

    def _first_human_response(self, payload: events.MessageCreated) -> None:
        """The agent's reply is the first a person gave since the conversation was handed over
        (or, taken from the assistant without a handoff, since an agent took it)."""
        facts = self._facts.get(payload.conversation_id)
        start = (facts.queued_at or facts.assigned_at) if facts is not None else None
        if start is None:
            return
        earlier = ReportRow.objects.filter(
            tenant_id=self.tenant_id,
            conversation_id=payload.conversation_id,
            kind=Kind.AGENT_REPLY,
            occurred_at__gte=start,
        ).exists()
        if earlier:
            return
        self.row(
            Kind.FIRST_HUMAN_RESPONSE,
            message_id=payload.message_id,
            agent_id=payload.author_id,
            duration_ms=_ms(start, self.now),
            **self._of(payload.conversation_id),
        )

    def _conversation_change(self, event: Event, payload: events.ConversationChange) -> None:
        fields = self._of(payload.conversation_id)
        facts = self._facts.get(payload.conversation_id)
        started = facts.created_at if facts else None
        if event in (Event.CONVERSATION_QUEUED, Event.CONVERSATION_ASSIGNED):
            self.row(Kind.HANDOFF, reason=payload.reason, agent_id=payload.assignee_id, **fields)
        elif event == Event.CONVERSATION_RESOLVED:
            confirmed = None
            if payload.resolution_kind == Conversation.ResolutionKind.AI:
                confirmed = int(
                    ReportRow.objects.filter(
                        tenant_id=self.tenant_id,
                        conversation_id=payload.conversation_id,
                        kind=Kind.FEEDBACK,
                        reason=Message.Feedback.UP,
                    ).exists()
                )
            self.row(
                Kind.RESOLVED,
                reason=payload.resolution_kind,
                agent_id=payload.assignee_id,
                duration_ms=_ms(started, self.now),
                value=confirmed,
                **fields,
            )
        elif event == Event.CONVERSATION_ABANDONED:
            self.row(Kind.ABANDONED, duration_ms=_ms(started, self.now), **fields)
        elif event == Event.CONVERSATION_REOPENED:
            self.row(Kind.REOPENED, reason=payload.resolution_kind, **fields)

    def _ticket(self, event: Event, payload: events.TicketChange) -> None:
        if event not in (Event.TICKET_CREATED, Event.TICKET_SOLVED, Event.TICKET_SLA_BREACHED):
            return
        ticket = (
            Ticket.objects.filter(tenant_id=self.tenant_id, pk=payload.ticket_id)
            .values("customer_id", "assignee_id", "created_at", "sla_due_at")
            .first()
        )
        if ticket is None:
            return
        fields = self._of(payload.conversation_id) | {
            "ticket_id": payload.ticket_id,
            "customer_id": ticket["customer_id"],
        }
        due = ticket["sla_due_at"]
        if event == Event.TICKET_CREATED:
            self.row(Kind.TICKET_OPENED, **fields)
            return
        if event == Event.TICKET_SLA_BREACHED:
            self.row(
                Kind.TICKET_SLA_BREACHED,
                agent_id=ticket["assignee_id"],
                duration_ms=_ms(ticket["created_at"], due) if due else None,
                **fields,
            )
            return
        self.row(
            Kind.TICKET_SOLVED,
            agent_id=ticket["assignee_id"],
            duration_ms=_ms(ticket["created_at"], self.now),
            value=None if due is None else int(self.now <= due),
            **fields,
        )
