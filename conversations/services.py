"""Writes for customers, conversations and messages. Sync ORM code: async callers wrap these
in ``database_sync_to_async`` (one thread hop per call, so each function does one job whole)."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from decimal import Decimal

from django.core import signing
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from conversations.handoff import repeated_question, unanswered_streak
from conversations.models import Channel, Conversation, Customer, Message
from knowledge.services import knowledge_entry_record_hit
from tenants.models import Tenant

VISITOR_SIGNING_NAMESPACE = "kefu.widget.visitor"
HISTORY_ON_RESUME = 50


@dataclass(frozen=True)
class HistoryItem:
    id: int
    role: str
    content: str
    source: str
    created_at: str  # ISO 8601


@dataclass(frozen=True)
class VisitorIdentity:
    """Who the tenant's site says the visitor is, vouched for by an HMAC of ``external_id``."""

    external_id: str
    signature: str
    name: str = ""
    email: str = ""


def identity_signature(*, secret: str, external_id: str) -> str:
    """What the tenant's server computes: hex HMAC-SHA256 of the user id with the secret."""
    return hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).hexdigest()


def identity_verified(*, tenant: Tenant, identity: VisitorIdentity) -> bool:
    if not tenant.identity_secret or not identity.external_id or len(identity.external_id) > 100:
        return False
    expected = identity_signature(secret=tenant.identity_secret, external_id=identity.external_id)
    return hmac.compare_digest(expected, identity.signature.lower())


@dataclass(frozen=True)
class WidgetSession:
    customer_id: int
    external_id: str
    conversation_id: int
    conversation_status: str
    visitor_token: str
    resumed: bool
    history: list[HistoryItem]
    identity_rejected: bool = False


def visitor_token_issue(*, tenant_id: int, external_id: str) -> str:
    """A signed token that lets a browser come back as the same visitor of the same tenant."""
    return signing.dumps(
        {"t": tenant_id, "v": external_id}, salt=VISITOR_SIGNING_NAMESPACE, compress=True
    )


def visitor_token_read(*, tenant_id: int, token: str) -> str | None:
    """The visitor id in ``token``, or None if it is forged, damaged or another tenant's."""
    try:
        payload = signing.loads(token, salt=VISITOR_SIGNING_NAMESPACE)
    except signing.BadSignature:
        return None
    if not isinstance(payload, dict) or payload.get("t") != tenant_id:
        return None
    external_id = payload.get("v")
    return external_id if isinstance(external_id, str) and external_id else None


def _history(conversation: Conversation) -> list[HistoryItem]:
    messages = (
        Message.objects.filter(conversation=conversation, internal=False)
        .exclude(role=Message.Role.SYSTEM)
        .order_by("-created_at", "-id")[:HISTORY_ON_RESUME]
    )
    return [
        HistoryItem(m.pk, m.role, m.content, m.source, m.created_at.isoformat())
        for m in reversed(list(messages))
    ]


@transaction.atomic
def widget_session_start(
    *,
    tenant: Tenant,
    visitor_token: str | None,
    language: str,
    identity: VisitorIdentity | None = None,
) -> WidgetSession:
    """Resumes the visitor of ``visitor_token`` (with their open conversation and its history)
    or starts a new visitor and conversation. A verified ``identity`` picks the tenant's own
    customer record instead (the same person on every device); a forged one is ignored."""
    now = timezone.now()
    rejected = identity is not None and not identity_verified(tenant=tenant, identity=identity)
    customer: Customer | None = None
    if identity is not None and not rejected:
        customer, _created = Customer.objects.update_or_create(
            tenant=tenant,
            channel=Channel.WIDGET,
            external_id=f"user:{identity.external_id}",
            defaults={
                "identified": True,
                **({"display_name": identity.name[:120]} if identity.name else {}),
                **({"email": identity.email[:254]} if identity.email else {}),
            },
        )
    elif visitor_token:
        external_id = visitor_token_read(tenant_id=tenant.pk, token=visitor_token)
        if external_id is not None:
            customer = Customer.objects.filter(
                tenant=tenant, channel=Channel.WIDGET, external_id=external_id
            ).first()
    resumed = customer is not None
    if customer is None:
        customer = Customer.objects.create(
            tenant=tenant, channel=Channel.WIDGET, external_id=secrets.token_urlsafe(16)
        )
    Customer.objects.filter(pk=customer.pk).update(last_seen_at=now)
    conversation = (
        Conversation.objects.filter(tenant=tenant, customer=customer)
        .exclude(status=Conversation.Status.CLOSED)
        .order_by("-created_at", "-id")
        .first()
    )
    if conversation is None:
        conversation = Conversation.objects.create(
            tenant=tenant, customer=customer, channel=Channel.WIDGET, language=language
        )
    return WidgetSession(
        customer_id=customer.pk,
        external_id=customer.external_id,
        conversation_id=conversation.pk,
        conversation_status=conversation.status,
        visitor_token=visitor_token_issue(tenant_id=tenant.pk, external_id=customer.external_id),
        resumed=resumed,
        history=_history(conversation) if resumed else [],
        identity_rejected=rejected,
    )


@dataclass(frozen=True)
class RecordedMessage:
    id: int
    created: bool  # False: this client message id was seen before
    conversation_status: str
    repeated: bool = False  # the customer asked the same thing moments ago


def customer_message_record(
    *,
    tenant_id: int,
    conversation_id: int,
    client_message_id: str,
    content: str,
    moderation_flags: list[str],
    check_repeat: bool = False,
) -> RecordedMessage:
    """Stores a customer's message before anything else happens to it. A repeated client
    message id (a resend after a reconnect) returns the stored message instead.

    ``check_repeat`` also tells whether the customer asked the same question moments ago (one
    database round trip for both: this runs for every message)."""
    conversation = Conversation.objects.only("status").get(pk=conversation_id, tenant_id=tenant_id)
    if client_message_id:
        existing = Message.objects.filter(
            conversation_id=conversation_id, client_message_id=client_message_id
        ).first()
        if existing is not None:
            return RecordedMessage(existing.pk, False, conversation.status)
    now = timezone.now()
    try:
        # One commit for the message and the conversation's activity time: commits (disk
        # flushes), not queries, are what a busy database waits on.
        with transaction.atomic():
            message = Message.objects.create(
                tenant_id=tenant_id,
                conversation_id=conversation_id,
                role=Message.Role.CUSTOMER,
                content=content,
                client_message_id=client_message_id,
                moderation_flags=moderation_flags,
            )
            Conversation.objects.filter(pk=conversation_id).update(last_message_at=now)
    except IntegrityError:  # the same resend raced us through another process
        existing = Message.objects.get(
            conversation_id=conversation_id, client_message_id=client_message_id
        )
        return RecordedMessage(existing.pk, False, conversation.status)
    repeated = check_repeat and repeated_question(
        tenant_id=tenant_id, conversation_id=conversation_id, text=content
    )
    return RecordedMessage(message.pk, True, conversation.status, repeated)


@dataclass(frozen=True)
class AnswerRecord:
    content: str
    source: str
    provider: str = ""
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal("0")
    first_token_ms: int | None = None
    latency_ms: int | None = None
    confidence: float | None = None
    knowledge_refs: tuple[str, ...] = ()
    moderation_flags: tuple[str, ...] = ()
    error_code: str = ""


@dataclass(frozen=True)
class RecordedAnswer:
    id: int
    unanswered_streak: bool  # this and the answers before it all found no knowledge


def assistant_message_record(
    *,
    tenant_id: int,
    conversation_id: int,
    answer: AnswerRecord,
    faq_entry_id: int | None,
    unanswered_limit: int = 0,
) -> RecordedAnswer:
    """Stores the assistant's answer with its accounting; counts a FAQ hit for direct answers;
    tells whether the last ``unanswered_limit`` answers all found nothing."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # An answer and a hit count can be recreated; the customer's own message (stored
            # first, with a synchronous commit) cannot. Not waiting for this commit's disk flush
            # saves a flush per answer; a database crash could lose the last moments' answers.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        message = Message.objects.create(
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            role=Message.Role.ASSISTANT,
            content=answer.content,
            source=answer.source,
            provider=answer.provider,
            model=answer.model,
            tokens_in=answer.tokens_in,
            tokens_out=answer.tokens_out,
            cost=answer.cost,
            first_token_ms=answer.first_token_ms,
            latency_ms=answer.latency_ms,
            confidence=answer.confidence,
            knowledge_refs=list(answer.knowledge_refs),
            moderation_flags=list(answer.moderation_flags),
            error_code=answer.error_code,
        )
        Conversation.objects.filter(pk=conversation_id, tenant_id=tenant_id).update(
            last_message_at=message.created_at
        )
        if faq_entry_id is not None:
            knowledge_entry_record_hit(tenant=Tenant(pk=tenant_id), entry_id=faq_entry_id)
    streak = not answer.knowledge_refs and unanswered_streak(
        tenant_id=tenant_id, conversation_id=conversation_id, limit=unanswered_limit
    )
    return RecordedAnswer(message.pk, streak)


def message_feedback_record(
    *, tenant_id: int, conversation_id: int, message_id: int, value: str
) -> bool:
    """Records a customer's thumbs up or down on one of the assistant's answers in their own
    conversation; False when there is no such answer."""
    if value not in Message.Feedback.values:
        return False
    return bool(
        Message.objects.filter(
            pk=message_id,
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            role=Message.Role.ASSISTANT,
        ).update(feedback=value)
    )


def conversation_handoff_request(*, tenant_id: int, conversation_id: int, reason: str) -> str:
    """Moves a conversation with the assistant to the human queue; returns its status.

    A conversation already queued or with an agent stays as it is (no duplicate handoff).
    """
    now = timezone.now()
    Conversation.objects.filter(
        pk=conversation_id,
        tenant_id=tenant_id,
        status__in=[Conversation.Status.BOT, Conversation.Status.RESOLVED],
    ).update(
        status=Conversation.Status.QUEUED,
        queued_at=now,
        handoff_reason=reason,
        resolution_kind="",
        resolved_at=None,
    )
    return (
        Conversation.objects.filter(pk=conversation_id, tenant_id=tenant_id)
        .values_list("status", flat=True)
        .get()
    )


def conversation_rate(*, tenant_id: int, conversation_id: int, rating: int, comment: str) -> bool:
    """The customer's 1–5 rating of a conversation a person resolved."""
    if not 1 <= rating <= 5:
        return False
    return bool(
        Conversation.objects.filter(
            pk=conversation_id, tenant_id=tenant_id, status=Conversation.Status.RESOLVED
        ).update(csat_rating=rating, csat_comment=comment)
    )
