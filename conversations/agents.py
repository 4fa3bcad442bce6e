"""What agents do with conversations: sync ORM services for the agent console's consumer and
the REST API.

Every console function takes the acting agent (``selectors.Agent``, who carries the tenant) and
checks them; the tenant-level ones (``conversation_assign``, ``conversation_resolve_for_tenant``:
the tenant's integration acts, not a person) take the tenant. What changed is published as an
event (``conversations.events``) after commit. A refusal raises ``PermissionDenied``.
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
from tenants.models import Membership, Tenant

# Whom an agent may take a conversation from: the queue, and (a reply through the API) the
# assistant.
TAKEABLE = frozenset({Conversation.Status.BOT, Conversation.Status.QUEUED})
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


def _customer_text(tenant: Tenant, conversation: Conversation, message: str, **values: str) -> str:
    with override(conversation.language or tenant.default_language):
        return _(message) % values


@transaction.atomic
def conversation_accept(
    *, agent: Agent, conversation_id: int, from_assistant: bool = False
) -> Conversation:
    """The agent takes the conversation from the queue or, ``from_assistant``, also from the
    assistant (an integration replying as the agent); the customer is told they joined."""
    conversation = _conversation(agent, conversation_id, lock=True)
    if conversation.status not in (TAKEABLE if from_assistant else {Conversation.Status.QUEUED}):
        raise PermissionDenied("not in the queue")
    conversation.status = Conversation.Status.HUMAN
    conversation.assignee_id = agent.user_id
    conversation.assigned_at = timezone.now()
    conversation.save(update_fields=["status", "assignee", "assigned_at", "updated_at"])
    payload = events.conversation_accepted(
        conversation_id=conversation.pk,
        status=conversation.status,
        assignee_id=agent.user_id,
        customer_text=_customer_text(agent.tenant, conversation, JOINED, name=agent.name),
    )
    events.publish(events.Event.CONVERSATION_ACCEPTED, payload, tenant_id=agent.tenant.pk)
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
def agent_reply_taking(*, agent: Agent, conversation_id: int, text: str, internal: bool) -> Message:
    """``agent_reply`` from outside the console (the REST API): a reply to a conversation still
    with the assistant or in the queue first takes it for the agent, as the console's accept
    then reply do (a note takes nothing)."""
    conversation = _conversation(agent, conversation_id, lock=True)
    if not internal and conversation.status in TAKEABLE:
        conversation_accept(agent=agent, conversation_id=conversation_id, from_assistant=True)
    return agent_reply(agent=agent, conversation_id=conversation_id, text=text, internal=internal)


@transaction.atomic
def conversation_transfer(*, agent: Agent, conversation_id: int, to_user_id: int) -> Conversation:
    conversation = _owned(agent, conversation_id)
    return _transfer(agent.tenant, conversation, to_user_id)


def _transfer(tenant: Tenant, conversation: Conversation, to_user_id: int) -> Conversation:
    target = (
        Membership.objects.filter(tenant=tenant, user_id=to_user_id, role__in=AGENT_ROLES)
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
        customer_text=_customer_text(tenant, conversation, JOINED, name=target.user.get_username()),
    )
    events.publish(events.Event.CONVERSATION_TRANSFERRED, payload, tenant_id=tenant.pk)
    return conversation


@transaction.atomic
def conversation_hand_back(*, agent: Agent, conversation_id: int) -> Conversation:
    conversation = _owned(agent, conversation_id)
    return _hand_back(agent.tenant, conversation)


def _hand_back(tenant: Tenant, conversation: Conversation) -> Conversation:
    conversation.status = Conversation.Status.BOT
    conversation.assignee = None
    conversation.save(update_fields=["status", "assignee", "updated_at"])
    payload = events.conversation_handed_back(
        conversation_id=conversation.pk,
        status=conversation.status,
        customer_text=_customer_text(tenant, conversation, HANDED_BACK),
    )
    events.publish(events.Event.CONVERSATION_HANDED_BACK, payload, tenant_id=tenant.pk)
    return conversation


@transaction.atomic
def conversation_resolve(*, agent: Agent, conversation_id: int) -> Conversation:
    conversation = _owned(agent, conversation_id)
    return _resolve(agent.tenant, conversation, Conversation.ResolutionKind.AGENT)


def _resolve(tenant: Tenant, conversation: Conversation, kind: str) -> Conversation:
    conversation.status = Conversation.Status.RESOLVED
    conversation.resolution_kind = kind
    conversation.resolved_at = timezone.now()
    conversation.save(update_fields=["status", "resolution_kind", "resolved_at", "updated_at"])
    payload = events.conversation_resolved(
        conversation_id=conversation.pk,
        status=conversation.status,
        resolution_kind=conversation.resolution_kind,
        assignee_id=conversation.assignee_id,
        # The assistant's resolution is not announced (as the sweep's): the widget says
        # nothing and asks for no rating.
        customer_text=(
            _customer_text(tenant, conversation, RESOLVED)
            if kind == Conversation.ResolutionKind.AGENT
            else ""
        ),
    )
    events.publish(events.Event.CONVERSATION_RESOLVED, payload, tenant_id=tenant.pk)
    return conversation


# The tenant acts (its integration, through the REST API) ---------------------------------------


def _tenant_conversation(tenant: Tenant, conversation_id: int) -> Conversation:
    conversation = (
        Conversation.objects.select_for_update().filter(pk=conversation_id, tenant=tenant).first()
    )
    if conversation is None:
        raise PermissionDenied("no such conversation")
    return conversation


@transaction.atomic
def conversation_resolve_for_tenant(*, tenant: Tenant, conversation_id: int) -> Conversation:
    """Resolves the conversation: by the assistant while it is with the assistant, else by an
    agent (the customer's widget is told and asked for a rating, as when an agent resolves it
    in the console). A resolved conversation stays as it is; a closed one is refused."""
    conversation = _tenant_conversation(tenant, conversation_id)
    if conversation.status == Conversation.Status.CLOSED:
        raise PermissionDenied("closed")
    if conversation.status == Conversation.Status.RESOLVED:
        return conversation
    kind = (
        Conversation.ResolutionKind.AI
        if conversation.status == Conversation.Status.BOT
        else Conversation.ResolutionKind.AGENT
    )
    return _resolve(tenant, conversation, kind)


@transaction.atomic
def conversation_assign(
    *, tenant: Tenant, conversation_id: int, assignee: Agent | None
) -> Conversation:
    """Gives the conversation to ``assignee`` as the console would: taken from the assistant or
    the queue (``conversation_accept``), or transferred from another agent; None hands a
    conversation an agent has back to the assistant (a person's conversation always has one),
    and clears the assignee of any other. A resolved or closed conversation cannot be given."""
    conversation = _tenant_conversation(tenant, conversation_id)
    if assignee is None:
        if conversation.status == Conversation.Status.HUMAN:
            return _hand_back(tenant, conversation)
        if conversation.assignee_id is not None:
            conversation.assignee = None
            conversation.save(update_fields=["assignee", "updated_at"])
        return conversation
    if conversation.status in TAKEABLE:
        return conversation_accept(
            agent=assignee, conversation_id=conversation_id, from_assistant=True
        )
    if conversation.status != Conversation.Status.HUMAN:
        raise PermissionDenied("ended")
    if conversation.assignee_id == assignee.user_id:
        return conversation
    return _transfer(tenant, conversation, assignee.user_id)


# Async twins, for consumers (helpdesk_site/asyncdb.py) ----------------------------------------

apresence_set = async_twin(presence_set)
aconversation_accept = async_twin(conversation_accept)
aagent_reply = async_twin(agent_reply)
aconversation_transfer = async_twin(conversation_transfer)
aconversation_hand_back = async_twin(conversation_hand_back)
aconversation_resolve = async_twin(conversation_resolve)
