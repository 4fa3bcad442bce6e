"""How conversations end when nobody ends them: resolved by the assistant, or abandoned in the
queue. A periodic sweep (``conversations_sweep``) records both; a customer who writes again
reopens what the sweep ended (``conversation_reopen``). The same beat task records the tickets
that went past their SLA due time unsolved (``tickets_sla_sweep``).

The rules (the idle times are settings, in minutes):

- **Resolved by the assistant** (status *resolved*, resolution *ai*): the conversation is with
  the assistant and was never handed to a person; at least one of the assistant's answers found
  knowledge (an FAQ entry or a document passage); the customer's last message was answered, and
  that last answer was neither a thumbs-down nor the fallback given when every AI provider
  failed; and nothing has been written for ``CONVERSATION_AI_RESOLVED_AFTER_MINUTES`` (30).
  Conversations idle for more than ``LOOKBACK`` beyond that are not examined again: one that did
  not qualify then never will.
- **Abandoned** (status *closed*, resolution *abandoned*): the conversation waited in the queue
  (nobody accepted it, so no agent replied) and neither the customer nor anyone else has written
  for ``CONVERSATION_ABANDONED_AFTER_MINUTES`` (60) since it was queued, and no ticket was left.
  Leaving contact details closes the queue entry at once (``tickets.ticket_from_conversation``,
  resolution *ticket*): the ticket carries the request, so it is never counted as abandoned.

Every transition is a conditional UPDATE on rows locked with SKIP LOCKED and re-checked in the
UPDATE's WHERE against the database clock: two sweeps at once, or a sweep racing a customer's
new message, never end a conversation twice or end one that just came back to life.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Now

from conversations import events
from conversations.models import Conversation, Message, Ticket
from helpdesk_site.asyncdb import async_twin

logger = logging.getLogger(__name__)

LOOKBACK = timedelta(days=7)
# What the sweep ends and a customer's new message reopens; a person's resolution stays.
AUTO_ENDED = Q(
    status=Conversation.Status.RESOLVED, resolution_kind=Conversation.ResolutionKind.AI
) | Q(status=Conversation.Status.CLOSED, resolution_kind=Conversation.ResolutionKind.ABANDONED)
AUTO_ENDED_STATUSES = frozenset({Conversation.Status.RESOLVED, Conversation.Status.CLOSED})


@dataclass(frozen=True)
class SweepCounts:
    resolved_by_ai: int = 0
    abandoned: int = 0


def _ai_idle() -> Q:
    idle = timedelta(minutes=settings.CONVERSATION_AI_RESOLVED_AFTER_MINUTES)
    return Q(
        status=Conversation.Status.BOT,
        handoff_reason="",
        last_message_at__lt=Now() - idle,
        last_message_at__gte=Now() - (idle + LOOKBACK),
    )


def _queue_idle() -> Q:
    cutoff = Now() - timedelta(minutes=settings.CONVERSATION_ABANDONED_AFTER_MINUTES)
    return Q(status=Conversation.Status.QUEUED, queued_at__lt=cutoff) & (
        Q(last_message_at__isnull=True) | Q(last_message_at__lt=cutoff)
    )


def _ai_resolved_candidates() -> QuerySet[Conversation]:
    answers = Message.objects.filter(
        conversation_id=OuterRef("pk"), role=Message.Role.ASSISTANT, internal=False
    )
    return (
        Conversation.objects.filter(_ai_idle())
        .annotate(last_answer_id=Subquery(answers.order_by("-id").values("id")[:1]))
        .filter(
            Exists(answers.exclude(knowledge_refs=[])),
            ~Exists(
                Message.objects.filter(
                    conversation_id=OuterRef("pk"),
                    role=Message.Role.CUSTOMER,
                    id__gt=OuterRef("last_answer_id"),
                )
            ),
            ~Exists(
                Message.objects.filter(id=OuterRef("last_answer_id")).filter(
                    Q(feedback=Message.Feedback.DOWN) | Q(source=Message.Source.FALLBACK)
                )
            ),
        )
    )


def _abandoned_candidates() -> QuerySet[Conversation]:
    # A queued conversation has no assignee: an agent can reply only after accepting it.
    return Conversation.objects.filter(_queue_idle()).filter(
        ~Exists(Ticket.objects.filter(conversation_id=OuterRef("pk")))
    )


def _end_batch(
    candidates: QuerySet[Conversation], still: Q, changes: dict, batch_size: int
) -> dict[int, list[int]]:
    """Ends up to ``batch_size`` of ``candidates`` with ``changes``; returns the ended
    conversations' ids by tenant."""
    with transaction.atomic():
        picked = list(
            # of=("self",): rows of other tables are only read. SKIP LOCKED: a second sweep
            # takes other rows instead of waiting for these.
            candidates.select_for_update(of=("self",), skip_locked=True)
            .order_by("last_message_at", "id")
            .values_list("tenant_id", "id")[:batch_size]
        )
        ended: dict[int, list[int]] = defaultdict(list)
        for tenant_id, conversation_id in picked:
            ended[tenant_id].append(conversation_id)
        for tenant_id, ids in ended.items():
            updated = Conversation.objects.filter(still, tenant_id=tenant_id, pk__in=ids).update(
                **changes, updated_at=Now()
            )
            if updated != len(ids):  # locked rows cannot change: only a broken invariant
                logger.warning(
                    "sweep of tenant %s ended %s of %s conversations", tenant_id, updated, len(ids)
                )
    return ended


def conversations_sweep(
    *, tenant_id: int | None = None, batch_size: int | None = None, max_batches: int = 20
) -> dict[int, SweepCounts]:
    """Records the conversations the assistant resolved and those abandoned in the queue (the
    rules are in this module's docstring), ``tenant_id``'s alone or every tenant's. Works in
    batches of ``batch_size`` (default: the ``CONVERSATION_SWEEP_BATCH`` setting), at most
    ``max_batches`` of each kind per call; what is left waits for the next call. Idempotent.

    Returns what this call changed, by tenant: ``{tenant id: SweepCounts}``.
    """
    size = batch_size or settings.CONVERSATION_SWEEP_BATCH
    scope = Q() if tenant_id is None else Q(tenant_id=tenant_id)
    resolved = _end_all(
        _ai_resolved_candidates().filter(scope),
        _ai_idle(),
        {
            "status": Conversation.Status.RESOLVED,
            "resolution_kind": Conversation.ResolutionKind.AI,
            "resolved_at": Now(),
        },
        size,
        max_batches,
    )
    abandoned = _end_all(
        _abandoned_candidates().filter(scope),
        _queue_idle(),
        {
            "status": Conversation.Status.CLOSED,
            "resolution_kind": Conversation.ResolutionKind.ABANDONED,
            "closed_at": Now(),
        },
        size,
        max_batches,
    )
    for tenant, ids in resolved.items():
        events.publish_batch(
            [
                events.Published(
                    events.Event.CONVERSATION_RESOLVED,
                    events.conversation_resolved(
                        conversation_id=conversation_id,
                        status=Conversation.Status.RESOLVED,
                        resolution_kind=Conversation.ResolutionKind.AI,
                    ),
                    tenant,
                )
                for conversation_id in ids
            ]
        )
    for tenant, ids in abandoned.items():
        # A customer whose page is still open learns the request was closed (the widget says so
        # in its own language); the agents' queue drops it (one update for the whole batch).
        events.publish_batch(
            [
                events.Published(
                    events.Event.CONVERSATION_ABANDONED,
                    events.conversation_abandoned(
                        conversation_id=conversation_id, status=Conversation.Status.CLOSED
                    ),
                    tenant,
                )
                for conversation_id in ids
            ]
        )
    return {
        tenant: SweepCounts(
            resolved_by_ai=len(resolved.get(tenant, [])), abandoned=len(abandoned.get(tenant, []))
        )
        for tenant in sorted(resolved.keys() | abandoned.keys())
    }


def _end_all(
    candidates: QuerySet[Conversation],
    still: Q,
    changes: dict[str, object],
    batch_size: int,
    max_batches: int,
) -> dict[int, list[int]]:
    """``_end_batch`` until a batch is not full or ``max_batches`` ran."""
    ended: dict[int, list[int]] = defaultdict(list)
    for _batch in range(max_batches):
        batch = _end_batch(candidates, still, changes, batch_size)
        for tenant, ids in batch.items():
            ended[tenant] += ids
        if sum(len(ids) for ids in batch.values()) < batch_size:
            break
    return ended


def conversation_reopen(*, tenant_id: int, conversation_id: int) -> str | None:
    """A customer wrote again in a conversation the sweep ended: it goes back to the assistant
    (and no longer counts as resolved by it, or as abandoned). Returns the status it had, or
    None when it was not ended by the sweep (a person's resolution stays)."""
    with transaction.atomic():
        ended = (
            Conversation.objects.select_for_update()
            .filter(AUTO_ENDED, pk=conversation_id, tenant_id=tenant_id)
            .values_list("status", "resolution_kind")
            .first()
        )
        if ended is None:
            return None
        previous, resolution_kind = ended
        Conversation.objects.filter(pk=conversation_id, tenant_id=tenant_id).update(
            status=Conversation.Status.BOT,
            resolution_kind="",
            resolved_at=None,
            closed_at=None,
            updated_at=Now(),
        )
        payload = events.conversation_reopened(
            conversation_id=conversation_id,
            status=Conversation.Status.BOT,
            resolution_kind=resolution_kind,
        )
        events.publish(events.Event.CONVERSATION_REOPENED, payload, tenant_id=tenant_id)
    return previous


def tickets_sla_sweep(*, tenant_id: int | None = None, batch_size: int = 500) -> dict[int, int]:
    """Records the tickets that went past their SLA due time unsolved: each once
    (``sla_breached_at``), with a ``ticket.sla_breached`` event after commit. ``tenant_id``'s
    tickets alone or every tenant's, at most ``batch_size`` per call (the rest wait for the
    next). Idempotent; two sweeps at once take different tickets (SKIP LOCKED). Returns the
    tickets recorded, by tenant."""
    overdue = Q(sla_due_at__lt=Now(), sla_breached_at__isnull=True) & ~Q(
        status=Ticket.Status.SOLVED
    )
    scope = Q() if tenant_id is None else Q(tenant_id=tenant_id)
    with transaction.atomic():
        picked = list(
            Ticket.objects.filter(scope, overdue)
            .select_for_update(skip_locked=True)
            .order_by("sla_due_at", "id")
            .values_list("tenant_id", "id", "status", "conversation_id")[:batch_size]
        )
        by_tenant: dict[int, list[tuple[int, str, int | None]]] = defaultdict(list)
        for tenant, ticket_id, status, conversation_id in picked:
            by_tenant[tenant].append((ticket_id, status, conversation_id))
        for tenant, tickets in by_tenant.items():
            Ticket.objects.filter(
                overdue, tenant_id=tenant, pk__in=[ticket_id for ticket_id, _s, _c in tickets]
            ).update(sla_breached_at=Now())
            events.publish_batch(
                [
                    events.Published(
                        events.Event.TICKET_SLA_BREACHED,
                        events.ticket_sla_breached(
                            ticket_id=ticket_id, status=status, conversation_id=conversation_id
                        ),
                        tenant,
                    )
                    for ticket_id, status, conversation_id in tickets
                ]
            )
    return {tenant: len(tickets) for tenant, tickets in by_tenant.items()}


# Async twins, for consumers (helpdesk_site/asyncdb.py) ----------------------------------------

aconversation_reopen = async_twin(conversation_reopen)
