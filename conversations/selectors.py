"""Reads of conversations, agents and tickets, every one scoped by the tenant (or the agent,
who carries it). Writes live in the workflow modules (``handoff``, ``agents``, ``tickets``) and
``services``.
"""

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from conversations.events import agents_group
from conversations.models import (
    CannedResponse,
    Conversation,
    Customer,
    Message,
    Ticket,
    TicketReply,
)
from conversations.presence import presence_online, presence_statuses
from helpdesk_site.asyncdb import async_twin
from tenants.business_hours import business_hours
from tenants.models import Membership, Role, Tenant
from tenants.scoping import all_tenants

logger = logging.getLogger(__name__)

AGENT_ROLES = (Role.OWNER, Role.ADMIN, Role.AGENT)
TRANSCRIPT_MESSAGES = 100


# Agents -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agent:
    tenant: Tenant
    user_id: int
    name: str
    role: str


def _agent_memberships(user_id: int) -> QuerySet[Membership]:
    with all_tenants("a user's memberships decide which tenant scope the socket enters"):
        return Membership.objects.filter(
            user_id=user_id, user__is_active=True, role__in=AGENT_ROLES, tenant__is_active=True
        ).select_related("tenant", "user")


def _agent(membership: Membership) -> Agent:
    return Agent(
        membership.tenant, membership.user_id, membership.user.get_username(), membership.role
    )


def agent_for_user(*, user: Any, tenant_id: int | None) -> Agent | None:
    """The user as an agent of their active tenant (or the given one), if their role allows."""
    memberships = _agent_memberships(user.pk)
    membership = (
        memberships.filter(tenant_id=tenant_id).first() if tenant_id is not None else None
    ) or memberships.order_by("tenant__name").first()
    return _agent(membership) if membership is not None else None


def agent_access_check(*, agent: Agent, session_key: str | None = None) -> Agent | None:
    """The agent as they are now in the same tenant: None once they were removed from it,
    demoted below agent, deactivated, or the tenant was, or (given the ``session_key`` they
    signed in with) once that session ended: signed out, expired, or their password changed;
    otherwise with their current role."""
    membership = _agent_memberships(agent.user_id).filter(tenant_id=agent.tenant.pk).first()
    if membership is None:
        return None
    if session_key is not None:
        session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        # Django's own check for a request: the session names the user, and its hash of the
        # user's password still matches.
        user = auth.get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]
        if user.pk != agent.user_id:
            return None
    return _agent(membership)


def agent_for_member(*, tenant: Tenant, user: int | str) -> Agent | None:
    """The tenant's active member ``user`` (a user id, or an e-mail address that names one
    user) as an agent, if their role works conversations; None otherwise."""
    memberships = Membership.objects.filter(
        tenant=tenant, role__in=AGENT_ROLES, user__is_active=True
    ).select_related("tenant", "user")
    if isinstance(user, int):
        memberships = memberships.filter(user_id=user)
    else:
        memberships = memberships.filter(user__email__iexact=user)
    found = list(memberships[:2])
    return _agent(found[0]) if len(found) == 1 else None


def agent_directory(*, agent: Agent) -> list[dict[str, Any]]:
    """The tenant's agents with their presence (online, away or offline), for transfers."""
    presence = presence_statuses(tenant_id=agent.tenant.pk)
    users = get_user_model().objects.filter(
        memberships__tenant=agent.tenant, memberships__role__in=AGENT_ROLES
    )
    return [
        {"id": u.pk, "name": u.get_username(), "presence": presence.get(u.pk, "offline")}
        for u in users.order_by("username")
    ]


def online_agent_ids(*, tenant_id: int) -> list[int]:
    """The tenant's agents (by user id, ascending) online now."""
    online = presence_online(tenant_id=tenant_id)
    if not online:
        return []
    return sorted(
        Membership.objects.filter(
            tenant_id=tenant_id, role__in=AGENT_ROLES, user_id__in=online
        ).values_list("user_id", flat=True)
    )


def agents_reachable(*, tenant_id: int) -> bool:
    """Whether the tenant's agent consoles can be told of a handoff live.

    Always, unless the channel layer lost Redis: then only consoles connected to this process
    can be, and a customer must not be promised a person that nobody will hear of.
    """
    layer = get_channel_layer()
    if layer is None or not getattr(layer, "is_degraded", lambda: False)():
        return True
    return bool(layer.group_has_local_members(agents_group(tenant_id)))


def within_business_hours(tenant: Tenant, now: datetime | None = None) -> bool:
    hours = business_hours(tenant)
    return hours is None or hours.is_open(now or timezone.now())


def agents_available(*, tenant: Tenant) -> bool:
    """Someone could take a conversation now: an agent is online within business hours."""
    return within_business_hours(tenant) and bool(online_agent_ids(tenant_id=tenant.pk))


def least_busy_agent(*, tenant_id: int, candidates: list[int]) -> int | None:
    """Of ``candidates`` (user ids), the one with the fewest conversations now (lowest id on a
    tie); None without candidates."""
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


# Conversations ----------------------------------------------------------------------------------


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


def queue_position(*, tenant_id: int, conversation: Conversation) -> int | None:
    if conversation.status != Conversation.Status.QUEUED or conversation.queued_at is None:
        return None
    return Conversation.objects.filter(
        tenant_id=tenant_id,
        status=Conversation.Status.QUEUED,
        queued_at__lte=conversation.queued_at,
    ).count()


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


@dataclass(frozen=True)
class ConversationFilters:
    """What ``conversation_list`` narrows to; None (or empty) leaves a filter out."""

    statuses: tuple[str, ...] = ()
    channel: str | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    tag: str | None = None
    customer_id: int | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    text: str | None = None  # in any of its messages, case-insensitive


def conversation_list(*, tenant: Tenant, filters: ConversationFilters) -> QuerySet[Conversation]:
    """The tenant's conversations matching ``filters``, with their customer, assignee and
    message count (unordered: the caller pages them)."""
    rows = Conversation.objects.filter(tenant=tenant)
    if filters.statuses:
        rows = rows.filter(status__in=filters.statuses)
    if filters.channel:
        rows = rows.filter(channel=filters.channel)
    if filters.unassigned:
        rows = rows.filter(assignee__isnull=True)
    elif filters.assignee_id is not None:
        rows = rows.filter(assignee_id=filters.assignee_id)
    if filters.tag:
        rows = rows.filter(_tagged(filters.tag))
    if filters.customer_id is not None:
        rows = rows.filter(customer_id=filters.customer_id)
    for field, bound in (
        ("created_at__gte", filters.created_after),
        ("created_at__lt", filters.created_before),
        ("updated_at__gte", filters.updated_after),
        ("updated_at__lt", filters.updated_before),
    ):
        if bound is not None:
            rows = rows.filter(**{field: bound})
    if filters.text:
        rows = rows.filter(
            Exists(
                Message.objects.filter(
                    tenant=tenant, conversation_id=OuterRef("pk"), content__icontains=filters.text
                )
            )
        )
    return _with_details(rows)


def _tagged(tag: str) -> Q:
    if connection.features.supports_json_field_contains:
        return Q(tags__contains=[tag])
    # SQLite (development) has no JSON containment: the tag is matched whole, quotes included,
    # in the list's JSON text as Django stores it there.
    return Q(tags__icontains=json.dumps(tag))


def _with_details(rows: QuerySet[Conversation]) -> QuerySet[Conversation]:
    return rows.select_related("customer", "assignee").annotate(message_count=Count("messages"))


def conversation_get(*, tenant: Tenant, conversation_id: int) -> Conversation | None:
    """The tenant's conversation with its customer, assignee and message count; None for any
    other."""
    return _with_details(Conversation.objects.filter(tenant=tenant, pk=conversation_id)).first()


def conversation_messages(*, tenant: Tenant, conversation: Conversation) -> QuerySet[Message]:
    """Every message of the conversation, internal notes included, with its author."""
    return Message.objects.filter(tenant=tenant, conversation=conversation).select_related("author")


def conversation_for_agent(*, agent: Agent, conversation_id: int) -> Conversation:
    """The agent's tenant's conversation; ``PermissionDenied`` for any other."""
    conversation = Conversation.objects.filter(pk=conversation_id, tenant=agent.tenant).first()
    if conversation is None:
        raise PermissionDenied("no such conversation")
    return conversation


def conversation_exists(*, agent: Agent, conversation_id: int) -> bool:
    """Whether the agent's tenant has conversation ``conversation_id`` (not whether the agent
    may act on it)."""
    return Conversation.objects.filter(pk=conversation_id, tenant_id=agent.tenant.pk).exists()


def conversation_detail(*, agent: Agent, conversation_id: int) -> dict[str, Any]:
    """Everything an agent needs: the customer, the status, and the whole history including
    what the assistant answered, from which knowledge, and internal notes."""
    conversation = conversation_for_agent(agent=agent, conversation_id=conversation_id)
    customer = conversation.customer
    return {
        "id": conversation.pk,
        "status": conversation.status,
        "assignee_id": conversation.assignee_id,
        "reason": conversation.handoff_reason,
        "customer": {
            **customer_card(customer),
            "email": customer.email,
            "phone": customer.phone,
            "identified": customer.identified,
        },
        "messages": [
            {
                "id": m.pk,
                "role": m.role,
                "text": m.content,
                "source": m.source,
                "internal": m.internal,
                "knowledge": m.knowledge_refs,
                "confidence": m.confidence,
                "at": m.created_at.isoformat(),
            }
            for m in conversation.messages.order_by("created_at", "id")
        ],
    }


def canned_responses(*, agent: Agent) -> list[dict[str, Any]]:
    return [
        {"id": c.pk, "title": c.title, "text": c.text}
        for c in CannedResponse.objects.filter(tenant=agent.tenant)
    ]


def canned_response_list(*, tenant: Tenant, q: str = "") -> QuerySet[CannedResponse]:
    """A tenant's canned responses; ``q`` in the title or text."""
    responses = CannedResponse.objects.filter(tenant=tenant)
    if q:
        responses = responses.filter(Q(title__icontains=q) | Q(text__icontains=q))
    return responses


def canned_response_get(*, tenant: Tenant, canned_response_id: int) -> CannedResponse:
    """Raises ``CannedResponse.DoesNotExist`` for another tenant's response."""
    return CannedResponse.objects.get(tenant=tenant, pk=canned_response_id)


def last_customer_question(*, agent: Agent, conversation_id: int) -> str:
    conversation = conversation_for_agent(agent=agent, conversation_id=conversation_id)
    return (
        conversation.messages.filter(role=Message.Role.CUSTOMER)
        .order_by("-created_at", "-id")
        .values_list("content", flat=True)
        .first()
        or ""
    )


def conversation_transcript(*, tenant_id: int, conversation_id: int) -> str:
    """The conversation as text, one line per message the customer saw (at most
    ``TRANSCRIPT_MESSAGES``), for its ticket."""
    lines = []
    for message in Message.objects.filter(
        tenant_id=tenant_id, conversation_id=conversation_id, internal=False
    ).order_by("created_at", "id")[:TRANSCRIPT_MESSAGES]:
        lines.append(
            f"[{message.created_at:%Y-%m-%d %H:%M}] {message.get_role_display()}: {message.content}"
        )
    return "\n".join(lines)


def message_exists(*, tenant_id: int, message_id: int, role: str) -> bool:
    """The tenant has a message of ``role`` with this id (what a headless-chat stop or rating
    names, looked up before its body is read)."""
    return Message.objects.filter(tenant_id=tenant_id, pk=message_id, role=role).exists()


def first_customer_question(*, tenant_id: int, conversation_id: int) -> str | None:
    return (
        Message.objects.filter(
            tenant_id=tenant_id, conversation_id=conversation_id, role=Message.Role.CUSTOMER
        )
        .order_by("created_at", "id")
        .values_list("content", flat=True)
        .first()
    )


# Customers (REST API) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerFilters:
    """What a list of customers is narrowed to; a ``None`` (or empty ``q``) filters nothing."""

    q: str = ""  # part of the name, e-mail, phone or external id
    channel: str | None = None
    external_id: str | None = None
    email: str | None = None  # the whole address, in any case
    identified: bool | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def customer_list(*, tenant: Tenant, filters: CustomerFilters) -> QuerySet[Customer]:
    """The tenant's customers matching ``filters``, with their ``conversation_count``."""
    customers = Customer.objects.filter(tenant=tenant)
    if filters.q:
        customers = customers.filter(
            Q(display_name__icontains=filters.q)
            | Q(email__icontains=filters.q)
            | Q(phone__icontains=filters.q)
            | Q(external_id__icontains=filters.q)
        )
    if filters.channel is not None:
        customers = customers.filter(channel=filters.channel)
    if filters.external_id is not None:
        customers = customers.filter(external_id=filters.external_id)
    if filters.email is not None:
        customers = customers.filter(email__iexact=filters.email)
    if filters.identified is not None:
        customers = customers.filter(identified=filters.identified)
    if filters.created_after is not None:
        customers = customers.filter(created_at__gte=filters.created_after)
    if filters.created_before is not None:
        customers = customers.filter(created_at__lt=filters.created_before)
    return customers.annotate(conversation_count=Count("conversations"))


def customer_get(*, tenant: Tenant, customer_id: int) -> Customer | None:
    """The tenant's customer, with its ``conversation_count``; None for any other."""
    return (
        Customer.objects.filter(tenant=tenant, pk=customer_id)
        .annotate(conversation_count=Count("conversations"))
        .first()
    )


def conversation_of_tenant(*, tenant: Tenant, conversation_id: int) -> Conversation | None:
    return Conversation.objects.filter(tenant=tenant, pk=conversation_id).first()


# Tickets ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketView:
    id: int
    subject: str
    status: str
    replies: list[dict[str, str | bool]]


def tickets_for_customer(*, tenant_id: int, customer_id: int) -> list[TicketView]:
    """The customer's tickets with their replies, for the widget (newest first, at most 5)."""
    tickets = Ticket.objects.filter(tenant_id=tenant_id, customer_id=customer_id).order_by(
        "-created_at"
    )[:5]
    return [
        TicketView(
            id=ticket.pk,
            subject=ticket.subject,
            status=ticket.status,
            replies=[
                {
                    "text": r.content,
                    "at": r.created_at.isoformat(),
                    "from_customer": r.from_customer,
                }
                for r in ticket.replies.order_by("created_at", "id")
            ],
        )
        for ticket in tickets
    ]


@dataclass(frozen=True)
class TicketFilters:
    """What a list of tickets is narrowed to; a ``None`` (or empty ``q``) filters nothing."""

    status: str | None = None
    priority: str | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    customer_id: int | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    overdue: bool | None = None  # past its SLA and not solved
    q: str = ""  # part of the subject or description


def _overdue(now: datetime) -> Q:
    return Q(sla_due_at__lt=now) & ~Q(status=Ticket.Status.SOLVED)


def ticket_list(*, tenant: Tenant, filters: TicketFilters) -> QuerySet[Ticket]:
    """The tenant's tickets matching ``filters``, with their ``reply_count``."""
    tickets = Ticket.objects.filter(tenant=tenant)
    exact = {
        "status": filters.status,
        "priority": filters.priority,
        "assignee_id": filters.assignee_id,
        "customer_id": filters.customer_id,
        "created_at__gte": filters.created_after,
        "created_at__lt": filters.created_before,
        "updated_at__gte": filters.updated_after,
        "updated_at__lt": filters.updated_before,
    }
    tickets = tickets.filter(**{key: value for key, value in exact.items() if value is not None})
    if filters.unassigned:
        tickets = tickets.filter(assignee__isnull=True)
    if filters.overdue is not None:
        overdue = _overdue(timezone.now())
        tickets = tickets.filter(overdue if filters.overdue else ~overdue)
    if filters.q:
        tickets = tickets.filter(
            Q(subject__icontains=filters.q) | Q(description__icontains=filters.q)
        )
    return tickets.annotate(reply_count=Count("replies"))


def ticket_get(*, tenant: Tenant, ticket_id: int) -> Ticket | None:
    """The tenant's ticket, with its ``reply_count``; None for any other."""
    return (
        Ticket.objects.filter(tenant=tenant, pk=ticket_id)
        .select_related("customer", "assignee")
        .annotate(reply_count=Count("replies"))
        .first()
    )


def ticket_replies(*, tenant: Tenant, ticket_id: int) -> QuerySet[TicketReply]:
    return TicketReply.objects.filter(tenant=tenant, ticket_id=ticket_id)


def conversation_ticket(*, tenant: Tenant, conversation: Conversation) -> Ticket | None:
    """The conversation's ticket (the newest, should there be several)."""
    return (
        Ticket.objects.filter(tenant=tenant, conversation=conversation)
        .order_by("-created_at", "-id")
        .first()
    )


def ticket_agent_emails(*, tenant_id: int) -> list[str]:
    """The addresses of the tenant's active agents who have one."""
    return list(
        get_user_model()
        .objects.filter(
            memberships__tenant_id=tenant_id, memberships__role__in=AGENT_ROLES, is_active=True
        )
        .exclude(email="")
        .values_list("email", flat=True)
    )


# Async twins, for consumers (helpdesk_site/asyncdb.py) ----------------------------------------

aagent_for_user = async_twin(agent_for_user)
aagent_access_check = async_twin(agent_access_check)
aconversation_detail = async_twin(conversation_detail)
aconversation_exists = async_twin(conversation_exists)
aagent_directory = async_twin(agent_directory)
acanned_responses = async_twin(canned_responses)
alast_customer_question = async_twin(last_customer_question)
aopen_conversations_for_agents = async_twin(open_conversations_for_agents)
atickets_for_customer = async_twin(tickets_for_customer, parallel=True)
