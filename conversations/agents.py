"""What agents do with conversations: sync ORM services for the agent console's consumer.

Every function takes the tenant and the acting agent and checks them; notifications go out
after commit through ``conversations.handoff.broadcast``.
"""

from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, override

from conversations.handoff import (
    AGENT_ROLES,
    agents_group,
    broadcast,
    conversation_group,
    customer_card,
)
from conversations.models import AgentPresence, CannedResponse, Conversation, Message
from tenants.models import Membership, Tenant
from tenants.scoping import all_tenants

JOINED = gettext_noop("%(name)s has joined the conversation.")
HANDED_BACK = gettext_noop("The assistant is back to help you.")
RESOLVED = gettext_noop("This conversation has been resolved.")


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


def presence_set(*, agent: Agent, status: str) -> None:
    AgentPresence.objects.update_or_create(
        tenant=agent.tenant,
        user_id=agent.user_id,
        defaults={"status": status, "last_seen_at": timezone.now()},
    )


def _conversation(agent: Agent, conversation_id: int, *, lock: bool = False) -> Conversation:
    rows = Conversation.objects.select_for_update() if lock else Conversation.objects
    conversation = rows.filter(pk=conversation_id, tenant=agent.tenant).first()
    if conversation is None:
        raise PermissionDenied("no such conversation")
    return conversation


def _tell_customer(agent: Agent, conversation: Conversation, status: str, text: str) -> None:
    broadcast(
        conversation_group(agent.tenant.pk, conversation.pk),
        {"type": "conversation.status", "status": status, "text": text},
    )
    broadcast(agents_group(agent.tenant.pk), {"type": "queue.changed"})


def _customer_text(agent: Agent, conversation: Conversation, message: str, **values: str) -> str:
    with override(conversation.language or agent.tenant.default_language):
        return _(message) % values


@transaction.atomic
def conversation_accept(*, agent: Agent, conversation_id: int) -> Conversation:
    conversation = _conversation(agent, conversation_id, lock=True)
    if conversation.status != Conversation.Status.QUEUED:
        raise PermissionDenied("not in the queue")
    conversation.status = Conversation.Status.HUMAN
    conversation.assignee_id = agent.user_id
    conversation.assigned_at = timezone.now()
    conversation.save(update_fields=["status", "assignee", "assigned_at", "updated_at"])
    _tell_customer(
        agent,
        conversation,
        conversation.status,
        _customer_text(agent, conversation, JOINED, name=agent.name),
    )
    return conversation


def _owned(agent: Agent, conversation_id: int) -> Conversation:
    conversation = _conversation(agent, conversation_id, lock=True)
    if conversation.status != Conversation.Status.HUMAN or (
        conversation.assignee_id != agent.user_id and agent.role == "agent"
    ):
        raise PermissionDenied("not your conversation")
    return conversation


@transaction.atomic
def agent_reply(*, agent: Agent, conversation_id: int, text: str, internal: bool) -> Message:
    """A reply the customer sees live, or an internal note only agents see."""
    conversation = (
        _owned(agent, conversation_id) if not internal else _conversation(agent, conversation_id)
    )
    message = Message.objects.create(
        tenant=agent.tenant,
        conversation=conversation,
        role=Message.Role.AGENT,
        source=Message.Source.AGENT,
        content=text,
        author_id=agent.user_id,
        internal=internal,
    )
    if not internal:
        Conversation.objects.filter(pk=conversation.pk).update(last_message_at=message.created_at)
        broadcast(
            conversation_group(agent.tenant.pk, conversation.pk),
            {"type": "agent.message", "message_id": message.pk, "text": text, "author": agent.name},
        )
    broadcast(
        agents_group(agent.tenant.pk),
        {"type": "conversation.message", "conversation_id": conversation.pk},
    )
    return message


@transaction.atomic
def conversation_transfer(*, agent: Agent, conversation_id: int, to_user_id: int) -> Conversation:
    conversation = _owned(agent, conversation_id)
    target = (
        Membership.objects.filter(tenant=agent.tenant, user_id=to_user_id, role__in=AGENT_ROLES)
        .select_related("user")
        .first()
    )
    if target is None:
        raise PermissionDenied("not an agent of this tenant")
    conversation.assignee_id = to_user_id
    conversation.assigned_at = timezone.now()
    conversation.save(update_fields=["assignee", "assigned_at", "updated_at"])
    _tell_customer(
        agent,
        conversation,
        conversation.status,
        _customer_text(
            agent,
            conversation,
            JOINED,
            name=target.user.get_username(),
        ),
    )
    return conversation


@transaction.atomic
def conversation_hand_back(*, agent: Agent, conversation_id: int) -> Conversation:
    conversation = _owned(agent, conversation_id)
    conversation.status = Conversation.Status.BOT
    conversation.assignee = None
    conversation.save(update_fields=["status", "assignee", "updated_at"])
    _tell_customer(
        agent,
        conversation,
        conversation.status,
        _customer_text(agent, conversation, HANDED_BACK),
    )
    return conversation


@transaction.atomic
def conversation_resolve(*, agent: Agent, conversation_id: int) -> Conversation:
    conversation = _owned(agent, conversation_id)
    conversation.status = Conversation.Status.RESOLVED
    conversation.resolution_kind = Conversation.ResolutionKind.AGENT
    conversation.resolved_at = timezone.now()
    conversation.save(update_fields=["status", "resolution_kind", "resolved_at", "updated_at"])
    _tell_customer(
        agent,
        conversation,
        conversation.status,
        _customer_text(agent, conversation, RESOLVED),
    )
    broadcast(conversation_group(agent.tenant.pk, conversation.pk), {"type": "rating.request"})
    return conversation


def conversation_detail(*, agent: Agent, conversation_id: int) -> dict[str, Any]:
    """Everything an agent needs: the customer, the status, and the whole history including
    what the assistant answered, from which knowledge, and internal notes."""
    conversation = _conversation(agent, conversation_id)
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


def agent_directory(*, agent: Agent) -> list[dict[str, Any]]:
    """The tenant's agents with their presence, for transfers."""
    presence = dict(
        AgentPresence.objects.filter(tenant=agent.tenant).values_list("user_id", "status")
    )
    users = get_user_model().objects.filter(
        memberships__tenant=agent.tenant, memberships__role__in=AGENT_ROLES
    )
    return [
        {"id": u.pk, "name": u.get_username(), "presence": presence.get(u.pk, "offline")}
        for u in users.order_by("username")
    ]


def canned_responses(*, agent: Agent) -> list[dict[str, Any]]:
    return [
        {"id": c.pk, "title": c.title, "text": c.text}
        for c in CannedResponse.objects.filter(tenant=agent.tenant)
    ]


def last_customer_question(*, agent: Agent, conversation_id: int) -> str:
    conversation = _conversation(agent, conversation_id)
    return (
        conversation.messages.filter(role=Message.Role.CUSTOMER)
        .order_by("-created_at", "-id")
        .values_list("content", flat=True)
        .first()
        or ""
    )
