"""Writes for customers, conversations and messages. Sync ORM code: async callers wrap these
in ``database_sync_to_async`` (one thread hop per call, so each function does one job whole)."""

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core import signing
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from conversations import agents, events, lifecycle
from conversations.events import PEOPLE_OWN
from conversations.models import Channel, Conversation, Customer, Message
from conversations.selectors import Agent, agents_available, unanswered_streak
from helpdesk_site.asyncdb import async_twin
from tenants.models import Tenant

# An argument left out of an update service (``customers.customer_update``,
# ``tickets.ticket_update``): the field keeps its value (``None`` may be a value to set).
UNCHANGED: Any = object()

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
    """A visitor on one socket. A new visitor has no rows yet (``customer_id`` None) and a
    visitor without an open conversation has no conversation (``conversation_id`` None): both
    are written by ``widget_conversation_start`` on the first message, handoff request or
    contact, so that page views without a word cost no rows."""

    external_id: str
    visitor_token: str
    customer_id: int | None
    conversation_id: int | None
    conversation_key: str | None  # names its memory (Conversation.cache_key)
    conversation_status: str
    resumed: bool
    history: list[HistoryItem]
    identity_rejected: bool = False
    # What the customer was asked for and has not answered yet ("contact", "rating").
    pending: tuple[str, ...] = ()


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
    identity: VisitorIdentity | None = None,
) -> WidgetSession:
    """Resumes the visitor of ``visitor_token`` (with their open conversation, its history and
    what it still asks of them) or names a new visitor. A verified ``identity`` picks the
    tenant's own customer record instead (the same person on every device); a forged one is
    ignored. Writes nothing for a visitor who has no customer row yet."""
    rejected = identity is not None and not identity_verified(tenant=tenant, identity=identity)
    customer: Customer | None = None
    external_id: str | None = None
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
    conversation = None
    if customer is not None:
        external_id = customer.external_id
        Customer.objects.filter(pk=customer.pk).update(last_seen_at=timezone.now())
        conversation = _open_conversation(tenant=tenant, customer=customer)
    elif external_id is None:  # a new visitor: named now, stored when they first write
        external_id = secrets.token_urlsafe(16)
    return WidgetSession(
        external_id=external_id,
        visitor_token=visitor_token_issue(tenant_id=tenant.pk, external_id=external_id),
        customer_id=customer.pk if customer is not None else None,
        conversation_id=conversation.pk if conversation is not None else None,
        conversation_key=conversation.cache_key if conversation is not None else None,
        conversation_status=conversation.status if conversation else Conversation.Status.BOT,
        resumed=customer is not None,
        history=_history(conversation) if conversation is not None else [],
        identity_rejected=rejected,
        pending=_pending_requests(tenant=tenant, conversation=conversation) if conversation else (),
    )


def _open_conversation(*, tenant: Tenant, customer: Customer) -> Conversation | None:
    return (
        Conversation.objects.filter(tenant=tenant, customer=customer)
        .exclude(status=Conversation.Status.CLOSED)
        .order_by("-created_at", "-id")
        .first()
    )


def _pending_requests(*, tenant: Tenant, conversation: Conversation) -> tuple[str, ...]:
    """What the widget asked the customer for and is still waiting for: contact details
    (queued with nobody available) or a rating (a person resolved it, not rated yet)."""
    if conversation.status == Conversation.Status.QUEUED:
        return () if agents_available(tenant=tenant) else ("contact",)
    if (
        conversation.status == Conversation.Status.RESOLVED
        and conversation.resolution_kind == Conversation.ResolutionKind.AGENT
        and conversation.csat_rating is None
    ):
        return ("rating",)
    return ()


@dataclass(frozen=True)
class ConversationStarted:
    customer_id: int
    conversation_id: int
    conversation_key: str  # Conversation.cache_key
    new_conversation: bool  # no messages yet


@transaction.atomic
def widget_conversation_start(
    *, tenant: Tenant, external_id: str, language: str
) -> ConversationStarted:
    """The visitor's open conversation, started (with the customer row, for a new visitor) when
    they first write, ask for a person or leave details. Two tabs of one visitor that start at
    once get the same conversation: the customer row is locked while one is looked up."""
    customer, created = Customer.objects.get_or_create(
        tenant=tenant,
        channel=Channel.WIDGET,
        external_id=external_id,
        defaults={"last_seen_at": timezone.now()},
    )
    if not created:  # a new customer has no conversation; another may have one by now
        Customer.objects.select_for_update().filter(pk=customer.pk).values_list("pk").get()
        conversation = _open_conversation(tenant=tenant, customer=customer)
        if conversation is not None:
            return ConversationStarted(
                customer.pk, conversation.pk, conversation.cache_key, new_conversation=False
            )
    conversation = Conversation.objects.create(
        tenant=tenant, customer=customer, channel=Channel.WIDGET, language=language
    )
    conversation_created_publish(conversation)
    return ConversationStarted(
        customer.pk, conversation.pk, conversation.cache_key, new_conversation=True
    )


def conversation_created_publish(conversation: Conversation) -> None:
    """Tells the subscribers (reporting) of a conversation just created, after commit."""
    payload = events.conversation_created(
        conversation_id=conversation.pk,
        customer_id=conversation.customer_id,
        channel=conversation.channel,
    )
    events.publish(events.Event.CONVERSATION_CREATED, payload, tenant_id=conversation.tenant_id)


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
class CustomerText:
    client_message_id: str  # the widget's id for the message: a resend carries the same one
    content: str  # already moderated and masked
    moderation_flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class MessageWrite:
    """What one step of the answer path stores: a customer's message, an assistant's answer,
    or both at once (a FAQ answer computed in advance, stored and sent only if the assistant
    still has the conversation when the customer's message is stored)."""

    tenant_id: int
    conversation_id: int
    customer: CustomerText | None = None
    answer: AnswerRecord | None = None
    faq_entry_id: int | None = None  # the answer came straight from this FAQ entry
    unanswered_limit: int = 0  # > 0: tell whether the last this many answers found nothing


@dataclass(frozen=True)
class MessageWritten:
    conversation_status: str  # as it was when the messages were stored
    customer_message_id: int | None = None
    duplicate: bool = False  # the customer message id was seen before: nothing was stored
    answer_id: int | None = None  # None: no answer stored (duplicate, or a person owns it)
    unanswered_streak: bool = False  # this and the answers before it all found no knowledge


# What one row can cause: a unique or foreign key refused, a value the database cannot hold
# (a NUL on PostgreSQL), text that cannot be encoded (a lone surrogate: UnicodeEncodeError).
ROW_ERRORS = (IntegrityError, DataError, ValueError)


def messages_record(*, writes: Sequence[MessageWrite]) -> list[MessageWritten | Exception]:
    """Stores a batch of the answer path's messages in one transaction (one commit for many
    customers: commits, not queries, are what a busy database waits on). Returns one result per
    write, in order: what was stored, or the error that write alone met (a conversation that
    does not exist for its tenant, text the database cannot store) — one bad write never fails
    the others.

    A customer message whose client id was stored before (a resend after a reconnect) is not
    stored again, and neither is the answer that came with it.
    """
    try:
        with transaction.atomic():
            return _messages_insert(writes)
    except ROW_ERRORS as exc:
        if len(writes) == 1:
            return [_refused(writes[0], exc)]
    # A row the database refused (a resend that raced us through another process or came
    # twice in one batch, text it cannot store): the halves are tried on their own, down to the
    # write at fault, so that one bad row costs a few more transactions and fails nobody else.
    # Errors of the whole batch (a lock timeout, a lost connection) fail it: smaller batches
    # would only meet them again, each after its own wait.
    half = len(writes) // 2
    return [*messages_record(writes=writes[:half]), *messages_record(writes=writes[half:])]


def _refused(write: MessageWrite, error: Exception) -> MessageWritten | Exception:
    """The result of a single write the database refused with ``error``."""
    if isinstance(error, IntegrityError) and write.customer is not None:
        try:
            return _resent(write)
        except ObjectDoesNotExist:  # not a resend: a conversation deleted meanwhile
            return error
    return error


def _messages_insert(writes: Sequence[MessageWrite]) -> list[MessageWritten | Exception]:
    statuses = _conversations_touch({(write.tenant_id, write.conversation_id) for write in writes})
    rows: list[Message] = []
    planned: list[tuple[str, Message | None, Message | None] | Exception] = []
    for write in writes:
        tenant_id, status = statuses.get(write.conversation_id, (None, ""))
        if tenant_id != write.tenant_id:
            planned.append(
                Conversation.DoesNotExist(f"no conversation {write.conversation_id} for the tenant")
            )
            continue
        customer = answer = None
        if write.customer is not None:
            customer = _customer_row(write, write.customer)
            rows.append(customer)
        if write.answer is not None and (write.customer is None or status not in PEOPLE_OWN):
            answer = _answer_row(write, write.answer)
            rows.append(answer)
        planned.append((status, customer, answer))
    if not rows:
        return [
            plan if isinstance(plan, Exception) else MessageWritten(plan[0]) for plan in planned
        ]
    answers_only = all(row.role == Message.Role.ASSISTANT for row in rows)
    if answers_only and connection.vendor == "postgresql":
        # An answer and a hit count can be recreated; a customer's own message (always stored
        # with a synchronous commit) cannot. Not waiting for the disk flush saves one per batch;
        # a database crash could lose the last moments' answers.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
    Message.objects.bulk_create(rows)
    results: list[MessageWritten | Exception] = []
    for write, plan in zip(writes, planned, strict=True):
        if isinstance(plan, Exception):
            results.append(plan)
            continue
        status, customer, answer = plan
        streak = (
            answer is not None
            and not answer.knowledge_refs
            and unanswered_streak(
                tenant_id=write.tenant_id,
                conversation_id=write.conversation_id,
                limit=write.unanswered_limit,
            )
        )
        results.append(
            MessageWritten(
                conversation_status=status,
                customer_message_id=customer.pk if customer is not None else None,
                answer_id=answer.pk if answer is not None else None,
                unanswered_streak=streak,
            )
        )
    return results


def _conversations_touch(keys: set[tuple[int, int]]) -> dict[int, tuple[int, str]]:
    """Marks the conversations of ``(tenant id, conversation id)`` as active now and returns
    their tenant and status, ``{conversation id: (tenant id, status)}``, in one statement."""
    now = timezone.now()
    scoped = Q()
    for tenant_id, conversation_id in sorted(keys):  # one lock order for every process
        scoped |= Q(pk=conversation_id, tenant_id=tenant_id)
    conversations = Conversation.objects.filter(scoped)
    if not connection.features.can_return_columns_from_insert:  # no UPDATE … RETURNING
        found = {
            pk: (tenant, status)
            for pk, tenant, status in conversations.values_list("pk", "tenant_id", "status")
        }
        conversations.update(last_message_at=now)
        return found
    # Django's update() cannot return rows: the same statement, with RETURNING.
    where, params = conversations.query.get_compiler(connection=connection).compile(
        conversations.query.where
    )
    table, quote = Conversation._meta.db_table, connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(table)} SET {quote('last_message_at')} = %s WHERE {where} "  # noqa: S608 - compiled by the ORM
            f"RETURNING {quote('id')}, {quote('tenant_id')}, {quote('status')}",
            [connection.ops.adapt_datetimefield_value(now), *params],
        )
        return {pk: (tenant, status) for pk, tenant, status in cursor.fetchall()}


def _customer_row(write: MessageWrite, customer: CustomerText) -> Message:
    return Message(
        tenant_id=write.tenant_id,
        conversation_id=write.conversation_id,
        role=Message.Role.CUSTOMER,
        content=customer.content,
        client_message_id=customer.client_message_id,
        moderation_flags=list(customer.moderation_flags),
    )


def _answer_row(write: MessageWrite, answer: AnswerRecord) -> Message:
    return Message(
        tenant_id=write.tenant_id,
        conversation_id=write.conversation_id,
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


def _resent(write: MessageWrite) -> MessageWritten:
    """The write's customer message id is already stored: what is there."""
    if write.customer is None:  # only customer messages have a unique client id
        raise ValueError("only a customer message can be a resend")
    conversation = Conversation.objects.only("status").get(
        pk=write.conversation_id, tenant_id=write.tenant_id
    )
    existing = Message.objects.only("pk").get(
        conversation_id=write.conversation_id,
        client_message_id=write.customer.client_message_id,
    )
    return MessageWritten(conversation.status, existing.pk, duplicate=True)


def message_feedback_record(
    *, tenant_id: int, conversation_id: int, message_id: int, value: str
) -> bool:
    """Records a customer's thumbs up or down on one of the assistant's answers in their own
    conversation; False when there is no such answer."""
    if value not in Message.Feedback.values:
        return False
    recorded = bool(
        Message.objects.filter(
            pk=message_id,
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            role=Message.Role.ASSISTANT,
        ).update(feedback=value)
    )
    if recorded:
        payload = events.message_feedback(
            conversation_id=conversation_id, message_id=message_id, value=value
        )
        events.publish(events.Event.MESSAGE_FEEDBACK, payload, tenant_id=tenant_id)
    return recorded


def conversation_rate(*, tenant_id: int, conversation_id: int, rating: int, comment: str) -> bool:
    """The customer's 1–5 rating of a conversation a person resolved."""
    if not 1 <= rating <= 5:
        return False
    rated = bool(
        Conversation.objects.filter(
            pk=conversation_id, tenant_id=tenant_id, status=Conversation.Status.RESOLVED
        ).update(csat_rating=rating, csat_comment=comment)
    )
    if rated:
        payload = events.conversation_rated(conversation_id=conversation_id, rating=rating)
        events.publish(events.Event.CONVERSATION_RATED, payload, tenant_id=tenant_id)
    return rated


@dataclass(frozen=True)
class ConversationChanges:
    """What ``conversation_update`` changes; None leaves a field as it is (``assign`` says
    whether ``assignee`` is to be set, None then meaning nobody)."""

    status: str | None = None
    priority: str | None = None
    tags: tuple[str, ...] | None = None
    assign: bool = False
    assignee: Agent | None = None


# The statuses the tenant may set: resolved, and back to the assistant (reopening what the
# sweep ended). Queueing is a handoff (``handoff.conversation_handoff``); closing is the sweep's.
SETTABLE_STATUSES = (Conversation.Status.BOT, Conversation.Status.RESOLVED)


@transaction.atomic
def conversation_update(
    *, tenant: Tenant, conversation_id: int, changes: ConversationChanges
) -> None:
    """Changes the conversation for the tenant (its integration), all or nothing: priority and
    tags; the assignee as the console would (``agents.conversation_assign``); then the status,
    resolved (``agents.conversation_resolve_for_tenant``) or, for a conversation the sweep
    ended, back to the assistant (``lifecycle.conversation_reopen``). Raises
    ``PermissionDenied`` for a change the conversation's state does not allow."""
    rows = Conversation.objects.filter(pk=conversation_id, tenant=tenant)
    status = rows.select_for_update().values_list("status", flat=True).first()
    if status is None:
        raise PermissionDenied("no such conversation")
    fields: dict[str, object] = {}
    if changes.priority is not None:
        fields["priority"] = changes.priority
    if changes.tags is not None:
        fields["tags"] = list(changes.tags)
    if fields:
        rows.update(**fields, updated_at=Now())
    if changes.assign:
        status = agents.conversation_assign(
            tenant=tenant, conversation_id=conversation_id, assignee=changes.assignee
        ).status
    if changes.status is None or changes.status == status:
        return
    if changes.status == Conversation.Status.RESOLVED:
        agents.conversation_resolve_for_tenant(tenant=tenant, conversation_id=conversation_id)
    elif changes.status == Conversation.Status.BOT:
        if (
            lifecycle.conversation_reopen(tenant_id=tenant.pk, conversation_id=conversation_id)
            is None
        ):
            raise PermissionDenied("not ended by the sweep")
    else:
        raise PermissionDenied("status not settable")


# Async twins, for consumers (helpdesk_site/asyncdb.py) ----------------------------------------

awidget_session_start = async_twin(widget_session_start, parallel=True)
awidget_conversation_start = async_twin(widget_conversation_start, parallel=True)
amessage_feedback_record = async_twin(message_feedback_record)
aconversation_rate = async_twin(conversation_rate)
