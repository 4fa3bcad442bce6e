"""Headless chat: the integrator's own customers talking to the assistant over the REST API.

A customer of the API channel is ``Customer(channel="api", external_id=<the integrator's user
id>)``, made on first use. They have one open conversation at a time (``channel="api"``),
continued by every message that names none; a resolved one reopens as in the widget (the
pipeline does it). The answer itself is the widget's answer pipeline with a sink of its own
(``conversations/chat_stream.py``).

Sync ORM code, with async twins at the end for the answer path.
"""

import hashlib
import secrets
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from conversations.handoff import HandoffOutcome, conversation_handoff
from conversations.models import ANSWER_CUT_OFF, Channel, Conversation, Customer, Message
from conversations.selectors import agents_reachable
from conversations.services import (
    ConversationStarted,
    conversation_created_publish,
    message_feedback_record,
)
from helpdesk_site.asyncdb import async_twin
from tenants.models import Tenant

# Message.client_message_id holds 64 characters; an Idempotency-Key may have 255.
CLIENT_ID_PREFIX = "idem-"


class ApiConversationNotFound(Exception):
    """The conversation named does not exist for the tenant or belongs to another customer."""


@dataclass(frozen=True)
class ApiChat:
    """Who is talking over the API and in which conversation (``ChatContext``'s ingredients)."""

    started: ConversationStarted
    language: str


def api_chat_start(
    *,
    tenant: Tenant,
    user: str,
    name: str = "",
    email: str = "",
    language: str = "",
    conversation_id: int | None = None,
) -> ApiChat:
    """The API customer ``user`` (made on first use; ``name`` and ``email`` update them) and the
    conversation their message goes to: ``conversation_id`` if it is theirs (else
    ``ApiConversationNotFound``), else their open API conversation, else a new one.

    Every message of a headless chat comes this way, so the usual case (a known customer with
    nothing to update, continuing a conversation) is one read and writes nothing."""
    # The customer's tenant is named too: the lookup then starts from the customer's unique
    # index (tenant, channel, external id) instead of scanning the tenant's customers.
    conversations = Conversation.objects.filter(
        tenant=tenant,
        customer__tenant=tenant,
        customer__channel=Channel.API,
        customer__external_id=user,
    )
    if conversation_id is not None:
        conversations = conversations.filter(pk=conversation_id)
    else:
        conversations = conversations.exclude(status=Conversation.Status.CLOSED).order_by(
            "-created_at", "-id"
        )
    found = conversations.values(
        "pk", "cache_key", "language", "customer_id", "customer__display_name", "customer__email"
    ).first()
    if found is None and conversation_id is not None:
        raise ApiConversationNotFound(conversation_id)
    unchanged = found is not None and (
        (not name or found["customer__display_name"] == name[:120])
        and (not email or found["customer__email"] == email[:254])
    )
    if found is not None and unchanged:
        return ApiChat(
            ConversationStarted(found["customer_id"], found["pk"], found["cache_key"], False),
            language or found["language"] or tenant.default_language,
        )
    return _api_chat_write(
        tenant=tenant,
        user=user,
        details={
            **({"display_name": name[:120]} if name else {}),
            **({"email": email[:254]} if email else {}),
        },
        language=language,
        conversation_id=found["pk"] if found is not None else None,
    )


@transaction.atomic
def _api_chat_write(
    *,
    tenant: Tenant,
    user: str,
    details: dict[str, str],
    language: str,
    conversation_id: int | None,
) -> ApiChat:
    """``api_chat_start``'s writes: the customer made or updated, and a conversation started
    unless ``conversation_id`` is given. Two first messages at once get one conversation: the
    customer row is locked while their open conversation is looked up again."""
    customer, created = Customer.objects.get_or_create(
        tenant=tenant,
        channel=Channel.API,
        external_id=user,
        defaults={"last_seen_at": timezone.now(), **details},
    )
    if not created:
        Customer.objects.select_for_update().filter(pk=customer.pk).update(
            last_seen_at=timezone.now(), **details
        )
    conversations = Conversation.objects.filter(tenant=tenant, customer=customer)
    conversation = (
        conversations.filter(pk=conversation_id).first()
        if conversation_id is not None
        else conversations.exclude(status=Conversation.Status.CLOSED)
        .order_by("-created_at", "-id")
        .first()
    )
    if conversation is not None:
        return ApiChat(
            ConversationStarted(customer.pk, conversation.pk, conversation.cache_key, False),
            language or conversation.language or tenant.default_language,
        )
    language = language or tenant.default_language
    conversation = Conversation.objects.create(
        tenant=tenant, customer=customer, channel=Channel.API, language=language
    )
    conversation_created_publish(conversation)
    return ApiChat(
        ConversationStarted(customer.pk, conversation.pk, conversation.cache_key, True), language
    )


def api_client_message_id(*, idempotency_key: str | None) -> str:
    """The pipeline's client message id of a message sent with ``idempotency_key``: a retry
    with the same key is then stored once (the pipeline acknowledges it as a duplicate). A
    message without a key gets a fresh id."""
    if idempotency_key is None:
        return f"api-{secrets.token_hex(16)}"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"{CLIENT_ID_PREFIX}{digest}"


@dataclass(frozen=True)
class StoredAnswer:
    """An assistant's answer as stored, for ``message_end`` and the blocking response."""

    message_id: int
    text: str
    source: str
    citations: tuple[str, ...]
    tokens_in: int
    tokens_out: int
    cost: Decimal
    latency_ms: int | None
    first_token_ms: int | None
    interrupted: bool


def _stored(message: Message) -> StoredAnswer:
    return StoredAnswer(
        message_id=message.pk,
        text=message.content,
        source=message.source,
        citations=tuple(message.knowledge_refs),
        tokens_in=message.tokens_in,
        tokens_out=message.tokens_out,
        cost=message.cost,
        latency_ms=message.latency_ms,
        first_token_ms=message.first_token_ms,
        interrupted=message.error_code == ANSWER_CUT_OFF,
    )


def stored_answer_to(
    *, tenant_id: int, conversation_id: int, customer_message_id: int
) -> StoredAnswer | None:
    """The assistant's first answer after the customer's message ``customer_message_id``
    (what a retried request is answered with), or None while there is none."""
    message = (
        Message.objects.filter(
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            role=Message.Role.ASSISTANT,
            pk__gt=customer_message_id,
        )
        .order_by("id")
        .first()
    )
    return _stored(message) if message is not None else None


@dataclass(frozen=True)
class FeedbackRecorded:
    rating: str
    handoff: HandoffOutcome | None  # a thumbs-down handed the conversation to a person


def api_message_feedback(
    *, tenant: Tenant, user: str, message_id: int, rating: str
) -> FeedbackRecorded | None:
    """The API customer ``user`` rates the assistant's answer ``message_id`` in one of their
    conversations (None: no such answer of theirs). A thumbs-down hands the conversation to a
    person when the tenant wants it, as in the widget."""
    conversation_id = (
        Message.objects.filter(
            pk=message_id,
            tenant=tenant,
            role=Message.Role.ASSISTANT,
            conversation__customer__channel=Channel.API,
            conversation__customer__external_id=user,
        )
        .values_list("conversation_id", flat=True)
        .first()
    )
    if conversation_id is None or not message_feedback_record(
        tenant_id=tenant.pk, conversation_id=conversation_id, message_id=message_id, value=rating
    ):
        return None
    if rating != Message.Feedback.DOWN or not tenant.handoff_on_negative_feedback:
        return FeedbackRecorded(rating=rating, handoff=None)
    return FeedbackRecorded(
        rating=rating,
        handoff=conversation_handoff(
            tenant=tenant,
            conversation_id=conversation_id,
            reason=Conversation.HandoffReason.NEGATIVE_FEEDBACK,
            by_customer=False,
            agents_reachable=agents_reachable(tenant_id=tenant.pk),
        ),
    )


# Async twins, for the answer path (helpdesk_site/asyncdb.py) -----------------------------------

aapi_chat_start = async_twin(api_chat_start, parallel=True)
astored_answer_to = async_twin(stored_answer_to, parallel=True)
aapi_message_feedback = async_twin(api_message_feedback)
