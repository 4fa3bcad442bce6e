"""Human handoff: when a person takes over, who, and telling everyone concerned.

Sync ORM services (async callers use ``database_sync_to_async``). What changed is published as
an event (``conversations.events``) after commit; the reads it relies on are in
``conversations.selectors``.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from conversations import events
from conversations.models import Conversation
from conversations.selectors import (
    least_busy_agent,
    online_agent_ids,
    queue_position,
    within_business_hours,
)
from helpdesk_site.asyncdb import async_twin
from knowledge.text import normalize, tokenize
from tenants.models import Tenant

REPEAT_LOOKBACK = 3


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


# Handoff ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandoffOutcome:
    status: str  # the conversation's status afterwards
    moved: bool  # False when it was already with a person (or closed)
    position: int | None  # place in the queue, when queued
    agents_available: bool
    assignee_name: str = ""


def handoff_text(outcome: HandoffOutcome, language: str) -> str:
    with translation.override(language):
        if outcome.status == Conversation.Status.HUMAN:
            return _("%(name)s has joined the conversation.") % {"name": outcome.assignee_name}
        if not outcome.agents_available:
            return _(
                "Nobody is available right now. Leave your contact details and we will get "
                "back to you."
            )
        if outcome.position:
            return _(
                "A person will be with you shortly. You are number %(position)d in the queue."
            ) % {"position": outcome.position}
        return _("A person will be with you shortly.")


@transaction.atomic
def conversation_handoff(
    *,
    tenant: Tenant,
    conversation_id: int,
    reason: str,
    by_customer: bool,
    agents_reachable: bool = True,
    announce: bool = False,
) -> HandoffOutcome:
    """Moves a conversation from the assistant to the people.

    Automatic triggers only move a conversation that is with the assistant, or that counts as
    resolved by it (a thumbs-down afterwards says it was not); a customer who asks for a person
    also reopens one a person resolved, or one closed as abandoned in the queue. A conversation
    already queued or with an agent is left as it is, so handoff never loops.
    ``agents_reachable`` False (agents cannot be told live) queues it without assigning anyone,
    and the customer is offered the contact form. ``announce``: the customer's widget is told
    through the event (a handoff made by an integration or an agent); the answer pipeline tells
    the customer itself.
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
    assignee_id = (
        least_busy_agent(tenant_id=tenant.pk, candidates=online)
        if tenant.auto_assign and available
        else None
    )
    if assignee_id is not None:
        conversation.status = Conversation.Status.HUMAN
        conversation.assignee_id = assignee_id
        conversation.assigned_at = now
        fields += ["assignee", "assigned_at"]
    conversation.save(update_fields=[*fields, "assignee", "updated_at"])
    conversation.refresh_from_db(fields=["assignee"])
    outcome = HandoffOutcome(
        status=conversation.status,
        moved=True,
        position=queue_position(tenant_id=tenant.pk, conversation=conversation),
        agents_available=available,
        assignee_name=str(conversation.assignee or ""),
    )
    language = conversation.language or tenant.default_language
    # Without ``announce`` the answer pipeline tells the customer itself.
    customer_text = handoff_text(outcome, language) if announce else ""
    position = outcome.position if announce else None
    agents = outcome.agents_available if announce else None
    if assignee_id is None:
        payload = events.conversation_queued(
            conversation_id=conversation.pk,
            status=conversation.status,
            reason=reason,
            customer_text=customer_text,
            position=position,
            agents_available=agents,
        )
        events.publish(events.Event.CONVERSATION_QUEUED, payload, tenant_id=tenant.pk)
    else:
        payload = events.conversation_assigned(
            conversation_id=conversation.pk,
            status=conversation.status,
            reason=reason,
            assignee_id=assignee_id,
            customer_text=customer_text,
            position=position,
            agents_available=agents,
        )
        events.publish(events.Event.CONVERSATION_ASSIGNED, payload, tenant_id=tenant.pk)
    return outcome


# Async twins, for consumers (helpdesk_site/asyncdb.py) ----------------------------------------

aconversation_handoff = async_twin(conversation_handoff)
