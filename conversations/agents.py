"""What agents do with conversations: sync ORM services for the agent console's consumer.

Every function takes the acting agent (``selectors.Agent``, who carries the tenant) and checks
them; what changed is published as an event (``conversations.events``) after commit.
"""

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, override

from conversations import events, presence
from conversations.models import Conversation, Message
from conversations.selectors import AGENT_ROLES, Agent
from helpdesk_site.asyncdb import async_twin
from tenants.models import Membership

JOINED = gettext_noop("%(name)s has joined the conversation.")
HANDED_BACK = gettext_noop("The assistant is back to help you.")
RESOLVED = gettext_noop("This conversation has been resolved.")


def presence_set(*, agent: Agent, status: str) -> None:
    """The agent's heartbeat: seen now, ``online`` or ``away`` (see ``conversations.presence``)."""
    presence.presence_set(tenant_id=agent.tenant.pk, user_id=agent.user_id, status=status)


def _conversation(agent: Agent, conversation_id: int, *, lock: bool = False) -> Conversation:
    """The agent's tenant's conversation, locked for the change (``lock``) or not."""
    rows = Conversation.objects.select_for_update() if lock else Conversation.objects
    conversation = rows.filter(pk=conversation_id, tenant=agent.tenant).first()
    if conversation is None:
        raise PermissionDenied("no such conversation")
    return conversation


def _tell(agent: Agent, event: events.Event, payload: events.ConversationChange) -> None:
    events.publish(event, payload, tenant_id=agent.tenant.pk)


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
    payload = events.conversation_accepted(
        conversation_id=conversation.pk,
        status=conversation.status,
        assignee_id=agent.user_id,
        customer_text=_customer_text(agent, conversation, JOINED, name=agent.name),
    )
    _tell(agent, events.Event.CONVERSATION_ACCEPTED, payload)
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
    payload = events.message_created(
        conversation_id=conversation.pk,
        message_id=message.pk,
        role=message.role,
        internal=internal,
        text=text,
        author_id=agent.user_id,
        author_name=agent.name,
    )
    events.publish(events.Event.MESSAGE_CREATED, payload, tenant_id=agent.tenant.pk)
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
    payload = events.conversation_transferred(
        conversation_id=conversation.pk,
        status=conversation.status,
        assignee_id=to_user_id,
        customer_text=_customer_text(agent, conversation, JOINED, name=target.user.get_username()),
    )
    _tell(agent, events.Event.CONVERSATION_TRANSFERRED, payload)
    return conversation


@transaction.atomic
def conversation_hand_back(*, agent: Agent, conversation_id: int) -> Conversation:
    conversation = _owned(agent, conversation_id)
    conversation.status = Conversation.Status.BOT
    conversation.assignee = None
    conversation.save(update_fields=["status", "assignee", "updated_at"])
    payload = events.conversation_handed_back(
        conversation_id=conversation.pk,
        status=conversation.status,
        customer_text=_customer_text(agent, conversation, HANDED_BACK),
    )
    _tell(agent, events.Event.CONVERSATION_HANDED_BACK, payload)
    return conversation


@transaction.atomic
def conversation_resolve(*, agent: Agent, conversation_id: int) -> Conversation:
    conversation = _owned(agent, conversation_id)
    conversation.status = Conversation.Status.RESOLVED
    conversation.resolution_kind = Conversation.ResolutionKind.AGENT
    conversation.resolved_at = timezone.now()
    conversation.save(update_fields=["status", "resolution_kind", "resolved_at", "updated_at"])
    payload = events.conversation_resolved(
        conversation_id=conversation.pk,
        status=conversation.status,
        resolution_kind=conversation.resolution_kind,
        assignee_id=conversation.assignee_id,
        customer_text=_customer_text(agent, conversation, RESOLVED),
    )
    _tell(agent, events.Event.CONVERSATION_RESOLVED, payload)
    return conversation


# Async twins, for consumers (helpdesk_site/asyncdb.py) ----------------------------------------

apresence_set = async_twin(presence_set)
aconversation_accept = async_twin(conversation_accept)
aagent_reply = async_twin(agent_reply)
aconversation_transfer = async_twin(conversation_transfer)
aconversation_hand_back = async_twin(conversation_hand_back)
aconversation_resolve = async_twin(conversation_resolve)
