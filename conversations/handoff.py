"""Human handoff: when a person takes over, who, and telling everyone concerned.

Sync ORM services (async callers use ``database_sync_to_async``). Notifications go out after
commit through the channel layer, to two kinds of groups that carry the tenant id:
``agents.<tenant>`` (every agent console of the tenant) and ``conversation.<tenant>.<id>`` (the
customer's widget sockets).
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from conversations.models import AgentPresence, Conversation, Customer, Message
from helpdesk_site.asyncdb import async_twin
from knowledge.text import normalize, tokenize
from tenants.models import Membership, Role, Tenant

logger = logging.getLogger(__name__)

PRESENCE_FRESH = timedelta(seconds=90)
AGENT_ROLES = (Role.OWNER, Role.ADMIN, Role.AGENT)
REPEAT_LOOKBACK = 3


def agents_group(tenant_id: int) -> str:
    return f"agents.{tenant_id}"


def conversation_group(tenant_id: int, conversation_id: int) -> str:
    return f"conversation.{tenant_id}.{conversation_id}"


def broadcast(group: str, event: dict[str, Any]) -> None:
    """Sends a channel-layer event once the current transaction commits."""

    def send() -> None:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(group, event)

    transaction.on_commit(send, robust=True)


def agents_reachable(*, tenant_id: int) -> bool:
    """Whether the tenant's agent consoles can be told of a handoff live.

    Always, unless the channel layer lost Redis: then only consoles connected to this process
    can be, and a customer must not be promised a person that nobody will hear of.
    """
    layer = get_channel_layer()
    if layer is None or not getattr(layer, "is_degraded", lambda: False)():
        return True
    return bool(layer.group_has_local_members(agents_group(tenant_id)))


# Triggers ---------------------------------------------------------------------------------------


def asks_for_person(*, tenant: Tenant, text: str) -> bool:
    folded = normalize(text)
    return any(normalize(phrase) in folded for phrase in tenant.handoff_phrases if phrase.strip())


def repeated_question(*, text: str, earlier: Sequence[str]) -> bool:
    """The customer asked the same thing again (after an answer that did not help): ``text``
    equals one of the last ``REPEAT_LOOKBACK`` of their ``earlier`` messages (oldest first)."""
    # Token equality: "Where is the store?" and "where is the store" are the same question.
    asked = tokenize(text)
    return bool(asked) and any(tokenize(content) == asked for content in earlier[-REPEAT_LOOKBACK:])


def unanswered_streak(*, tenant_id: int, conversation_id: int, limit: int) -> bool:
    """The last ``limit`` assistant answers all found nothing in the knowledge base."""
    if limit <= 0:
        return False
    recent = list(
        Message.objects.filter(
            tenant_id=tenant_id, conversation_id=conversation_id, role=Message.Role.ASSISTANT
        )
        .order_by("-created_at", "-id")
        .values_list("knowledge_refs", flat=True)[:limit]
    )
    return len(recent) == limit and all(not refs for refs in recent)


# Handoff ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandoffOutcome:
    status: str  # the conversation's status afterwards
    moved: bool  # False when it was already with a person (or closed)
    position: int | None  # place in the queue, when queued
    agents_available: bool
    assignee_name: str = ""


def within_business_hours(tenant: Tenant, now: datetime | None = None) -> bool:
    hours = tenant.business_hours or {}
    if not hours:
        return True
    try:
        local = (now or timezone.now()).astimezone(ZoneInfo(hours.get("timezone", "UTC")))
        days = hours.get("days", list(range(7)))
        opening, closing = hours.get("open", "00:00"), hours.get("close", "23:59")
    except (KeyError, ValueError):  # a malformed setting must not hide the agents
        logger.warning("tenant %s has malformed business hours", tenant.pk)
        return True
    return local.weekday() in days and opening <= local.strftime("%H:%M") < closing


def online_agent_ids(*, tenant_id: int) -> list[int]:
    fresh = timezone.now() - PRESENCE_FRESH
    members = Membership.objects.filter(tenant_id=tenant_id, role__in=AGENT_ROLES).values("user_id")
    return list(
        AgentPresence.objects.filter(
            tenant_id=tenant_id,
            status=AgentPresence.Status.ONLINE,
            last_seen_at__gte=fresh,
            user_id__in=members,
        ).values_list("user_id", flat=True)
    )


def agents_available(*, tenant: Tenant) -> bool:
    """Someone could take a conversation now: an agent is online within business hours."""
    return within_business_hours(tenant) and bool(online_agent_ids(tenant_id=tenant.pk))


def queue_position(*, tenant_id: int, conversation: Conversation) -> int | None:
    if conversation.status != Conversation.Status.QUEUED or conversation.queued_at is None:
        return None
    return Conversation.objects.filter(
        tenant_id=tenant_id,
        status=Conversation.Status.QUEUED,
        queued_at__lte=conversation.queued_at,
    ).count()


def _least_busy(tenant_id: int, candidates: list[int]) -> int | None:
    if not candidates:
        return None
    load = dict(
        Conversation.objects.filter(
            tenant_id=tenant_id, status=Conversation.Status.HUMAN, assignee_id__in=candidates
        )
        .values_list("assignee_id")
        .annotate(n=Count("id"))
        .values_list("assignee_id", "n")
    )
    return min(candidates, key=lambda user_id: (load.get(user_id, 0), user_id))


@transaction.atomic
def conversation_handoff(
    *,
    tenant: Tenant,
    conversation_id: int,
    reason: str,
    by_customer: bool,
    agents_reachable: bool = True,
) -> HandoffOutcome:
    """Moves a conversation from the assistant to the people.

    Automatic triggers only move a conversation that is with the assistant, or that counts as
    resolved by it (a thumbs-down afterwards says it was not); a customer who asks for a person
    also reopens one a person resolved, or one closed as abandoned in the queue. A conversation
    already queued or with an agent is left as it is, so handoff never loops.
    ``agents_reachable`` False (agents cannot be told live) queues it without assigning anyone,
    and the customer is offered the contact form.
    """
    conversation = (
        # of=("self",): PostgreSQL cannot lock the nullable side of the assignee join.
        Conversation.objects.select_for_update(of=("self",))
        .select_related("assignee")
        .get(pk=conversation_id, tenant=tenant)
    )
    movable = conversation.status == Conversation.Status.BOT or (
        conversation.status == Conversation.Status.RESOLVED
        and (by_customer or conversation.resolution_kind == Conversation.ResolutionKind.AI)
    )
    if by_customer and conversation.status == Conversation.Status.CLOSED:
        movable = conversation.resolution_kind == Conversation.ResolutionKind.ABANDONED
    online = online_agent_ids(tenant_id=tenant.pk)
    available = agents_reachable and bool(online) and within_business_hours(tenant)
    if not movable:
        return HandoffOutcome(
            status=conversation.status,
            moved=False,
            position=queue_position(tenant_id=tenant.pk, conversation=conversation),
            agents_available=available,
            assignee_name=str(conversation.assignee or ""),
        )
    now = timezone.now()
    conversation.status = Conversation.Status.QUEUED
    conversation.queued_at = now
    conversation.handoff_reason = reason
    conversation.resolution_kind = ""
    conversation.resolved_at = None
    conversation.closed_at = None
    conversation.assignee = None
    fields = [
        "status",
        "queued_at",
        "handoff_reason",
        "resolution_kind",
        "resolved_at",
        "closed_at",
    ]
    assignee_id = _least_busy(tenant.pk, online) if tenant.auto_assign and available else None
    if assignee_id is not None:
        conversation.status = Conversation.Status.HUMAN
        conversation.assignee_id = assignee_id
        conversation.assigned_at = now
        fields += ["assignee", "assigned_at"]
    conversation.save(update_fields=[*fields, "assignee", "updated_at"])
    conversation.refresh_from_db(fields=["assignee"])
    broadcast(agents_group(tenant.pk), {"type": "queue.changed"})
    return HandoffOutcome(
        status=conversation.status,
        moved=True,
        position=queue_position(tenant_id=tenant.pk, conversation=conversation),
        agents_available=available,
        assignee_name=str(conversation.assignee or ""),
    )


def customer_card(customer: Customer) -> dict[str, Any]:
    """How the agent console names a customer: the name or e-mail they gave, else (``name``
    empty) the console shows "Visitor #<id>" in the agent's language."""
    return {"id": customer.pk, "name": customer.display_name or customer.email}


def open_conversations_for_agents(*, tenant_id: int, user_id: int) -> dict[str, list[dict]]:
    """The agent console's lists: the tenant's queue, and the agent's own conversations."""
    rows = (
        Conversation.objects.filter(
            Q(status=Conversation.Status.QUEUED)
            | Q(status=Conversation.Status.HUMAN, assignee_id=user_id),
            tenant_id=tenant_id,
        )
        .select_related("customer")
        .order_by("queued_at", "id")
    )
    queue: list[dict] = []
    mine: list[dict] = []
    for conversation in rows:
        item = {
            "id": conversation.pk,
            "customer": customer_card(conversation.customer),
            "status": conversation.status,
            "reason": conversation.handoff_reason,
            "queued_at": conversation.queued_at.isoformat() if conversation.queued_at else None,
        }
        (queue if conversation.status == Conversation.Status.QUEUED else mine).append(item)
    return {"queue": queue, "mine": mine}


# Async twins, for consumers (helpdesk_site/asyncdb.py) ----------------------------------------

aconversation_handoff = async_twin(conversation_handoff)
aopen_conversations_for_agents = async_twin(open_conversations_for_agents)
