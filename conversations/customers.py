"""Writes for customers that an integration manages through the REST API: created with the
integrator's own id, updated, and anonymised (their personal data erased, their statistics kept).

Customers of the API are ``Customer(channel="api", external_id=<the integrator's id>)``; widget
visitors and WeChat users arrive through their channels (``services``).
"""

import json
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.memory import memory_forget
from conversations.models import Channel, Conversation, Customer, Message, Ticket, TicketReply
from conversations.services import UNCHANGED
from tenants.models import IdempotencyRecord, Tenant

logger = logging.getLogger(__name__)

# What replaces text a customer wrote once they are anonymised: the row (and its place in the
# statistics) stays, the words go.
ERASED_TEXT = "[erased]"
ANONYMIZED_EXTERNAL_ID_PREFIX = "anonymized:"

# Custom attributes: a flat JSON object of string keys to scalars, small enough to travel with
# every customer read.
ATTRIBUTES_MAX_KEYS = 50
ATTRIBUTE_KEY_MAX = 64
ATTRIBUTE_STRING_MAX = 500
ATTRIBUTES_MAX_BYTES = 8 * 1024

# An international or national phone number: digits with an optional leading +, and the
# spaces, dots, dashes and parentheses people write between groups; 6 to 15 digits (E.164).
_PHONE_RE = re.compile(r"^\+?[0-9()][0-9 ().\-]*$")


class CustomerExists(Exception):
    """A customer with this external id exists already (``customer_id`` names it)."""

    def __init__(self, customer_id: int) -> None:
        super().__init__(customer_id)
        self.customer_id = customer_id


class CustomerAnonymized(Exception):
    """The customer was anonymised: their personal data does not come back."""


def phone_validate(value: str) -> None:
    """Raises ``ValidationError`` unless ``value`` reads as a phone number."""
    digits = sum(c.isdigit() for c in value)
    if not _PHONE_RE.match(value) or not 6 <= digits <= 15:
        raise ValidationError(
            _("Enter a phone number: digits, optionally with a leading + and separators.")
        )


def attributes_validate(attributes: Mapping[str, Any], *, allow_null: bool = False) -> None:
    """Raises ``ValidationError`` unless ``attributes`` is a flat object of short string keys
    to strings, numbers or booleans (``None`` too with ``allow_null``: a key to delete), within
    the size limits."""
    if len(attributes) > ATTRIBUTES_MAX_KEYS:
        raise ValidationError(_("At most %(count)d attributes.") % {"count": ATTRIBUTES_MAX_KEYS})
    for key, value in attributes.items():
        if not isinstance(key, str) or not 1 <= len(key) <= ATTRIBUTE_KEY_MAX:
            raise ValidationError(
                _("Attribute names have 1 to %(max)d characters.") % {"max": ATTRIBUTE_KEY_MAX}
            )
        if value is None and allow_null:
            continue
        if isinstance(value, str) and len(value) > ATTRIBUTE_STRING_MAX:
            raise ValidationError(
                _("Attribute “%(key)s” is longer than %(max)d characters.")
                % {"key": key, "max": ATTRIBUTE_STRING_MAX}
            )
        if not isinstance(value, str | int | float | bool):
            raise ValidationError(
                _("Attribute “%(key)s” must be a string, a number or a boolean.") % {"key": key}
            )
    if len(json.dumps(attributes, ensure_ascii=False).encode()) > ATTRIBUTES_MAX_BYTES:
        raise ValidationError(
            _("The attributes take more than %(max)d bytes.") % {"max": ATTRIBUTES_MAX_BYTES}
        )


@transaction.atomic
def customer_create(
    *,
    tenant: Tenant,
    external_id: str,
    name: str = "",
    email: str = "",
    phone: str = "",
    attributes: Mapping[str, Any] | None = None,
) -> Customer:
    """A new API customer named by the integrator's ``external_id``. Raises ``CustomerExists``
    when the tenant has one with that id (creation is not an upsert: PATCH updates)."""
    attributes = dict(attributes or {})
    try:
        attributes_validate(attributes)
    except ValidationError as error:
        raise ValidationError({"attributes": error.messages}) from error
    try:
        with transaction.atomic():
            return Customer.objects.create(
                tenant=tenant,
                channel=Channel.API,
                external_id=external_id,
                display_name=name,
                email=email,
                phone=phone,
                metadata=attributes,
            )
    except IntegrityError:
        existing = Customer.objects.filter(
            tenant=tenant, channel=Channel.API, external_id=external_id
        ).first()
        if existing is None:  # another constraint refused it: not ours to explain
            raise
        raise CustomerExists(existing.pk) from None


def customer_for_ticket(*, tenant: Tenant, external_id: str, name: str, email: str) -> Customer:
    """The API customer with the integrator's ``external_id``, created with ``name`` and
    ``email`` if the tenant has none (an existing one is left as it is: PATCH changes it)."""
    customer, _created = Customer.objects.get_or_create(
        tenant=tenant,
        channel=Channel.API,
        external_id=external_id,
        defaults={"display_name": name, "email": email},
    )
    return customer


@transaction.atomic
def customer_update(
    *,
    customer: Customer,
    name: str = UNCHANGED,
    email: str = UNCHANGED,
    phone: str = UNCHANGED,
    attributes: Mapping[str, Any] | None = UNCHANGED,
) -> Customer:
    """Changes the customer's contact details and attributes. ``attributes`` are merged into
    the stored ones: a key with ``None`` is deleted, others are set; ``attributes=None`` deletes
    them all. Raises ``CustomerAnonymized`` for an anonymised customer."""
    locked = Customer.objects.select_for_update().get(pk=customer.pk, tenant_id=customer.tenant_id)
    if locked.anonymized_at is not None:
        raise CustomerAnonymized
    fields = ["updated_at"]
    for field, value in (("display_name", name), ("email", email), ("phone", phone)):
        if value is not UNCHANGED:
            setattr(locked, field, value)
            fields.append(field)
    if attributes is not UNCHANGED:
        merged = {} if attributes is None else dict(locked.metadata or {})
        for key, value in (attributes or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        try:
            attributes_validate(merged)
        except ValidationError as error:
            raise ValidationError({"attributes": error.messages}) from error
        locked.metadata = merged
        fields.append("metadata")
    locked.save(update_fields=fields)
    return locked


@dataclass(frozen=True)
class Anonymized:
    customer: Customer
    erased_now: bool  # False: the customer was anonymised before, nothing changed


@transaction.atomic
def customer_anonymize(*, customer: Customer) -> Anonymized:
    """Erases the customer's personal data and keeps their rows and statistics.

    Erased: name, e-mail, phone, custom attributes, and the external id (replaced by a random
    token, so that the integrator's id, or a widget visitor's token, finds nobody); the text
    of the customer's own messages and ticket replies, the subject and description of their
    tickets (written from what they said) and the tickets' contact e-mail and phone, and the
    comments of their satisfaction ratings, each replaced by ``ERASED_TEXT`` (or emptied);
    the conversations' memory (Redis or in-process, after commit); and the stored responses to
    idempotent API requests that show the customer or their tickets.

    Kept: every row with its ids, statuses, timestamps, ratings, token counts and costs, so the
    tenant's counts and reports do not change; the assistant's and agents' messages and
    replies (the tenant's own words). Safe to call again: an anonymised customer is left as it
    is.
    """
    locked = Customer.objects.select_for_update().get(pk=customer.pk, tenant_id=customer.tenant_id)
    if locked.anonymized_at is not None:
        return Anonymized(locked, erased_now=False)
    tenant_id = locked.tenant_id
    old_external_id = locked.external_id
    conversations = Conversation.objects.filter(tenant_id=tenant_id, customer_id=locked.pk)
    memory_keys = list(conversations.values_list("pk", "cache_key"))
    conversation_ids = [pk for pk, _key in memory_keys]
    Message.objects.filter(
        tenant_id=tenant_id, conversation_id__in=conversation_ids, role=Message.Role.CUSTOMER
    ).update(content=ERASED_TEXT)
    conversations.exclude(csat_comment="").update(csat_comment=ERASED_TEXT)
    tickets = Ticket.objects.filter(
        Q(customer_id=locked.pk) | Q(conversation_id__in=conversation_ids), tenant_id=tenant_id
    )
    ticket_ids = list(tickets.values_list("pk", flat=True))
    Ticket.objects.filter(pk__in=ticket_ids).update(
        subject=ERASED_TEXT, contact_email="", contact_phone="", updated_at=timezone.now()
    )
    Ticket.objects.filter(pk__in=ticket_ids).exclude(description="").update(description=ERASED_TEXT)
    TicketReply.objects.filter(
        tenant_id=tenant_id, ticket_id__in=ticket_ids, from_customer=True
    ).update(content=ERASED_TEXT)
    IdempotencyRecord.objects.filter(
        Q(body__external_id=old_external_id, body__channel=locked.channel)
        | Q(body__customer_id=locked.pk)
        | Q(body__ticket_id__in=ticket_ids),
        tenant_id=tenant_id,
    ).delete()
    locked.external_id = ANONYMIZED_EXTERNAL_ID_PREFIX + secrets.token_urlsafe(24)
    locked.display_name = locked.email = locked.phone = ""
    locked.metadata = {}
    locked.anonymized_at = timezone.now()
    locked.save(
        update_fields=[
            "external_id",
            "display_name",
            "email",
            "phone",
            "metadata",
            "anonymized_at",
            "updated_at",
        ]
    )
    logger.info(
        "customer anonymised tenant=%s customer=%s conversations=%s tickets=%s",
        tenant_id,
        locked.pk,
        len(conversation_ids),
        len(ticket_ids),
    )
    if memory_keys:
        transaction.on_commit(
            lambda: async_to_sync(_memories_forget)(tenant_id=tenant_id, memory_keys=memory_keys),
            robust=True,
        )
    return Anonymized(locked, erased_now=True)


async def _memories_forget(*, tenant_id: int, memory_keys: list[tuple[int, str]]) -> None:
    """Drops the conversations' memories (which hold the customer's words) once the erasure is
    committed; a memory rebuilt afterwards reads the erased rows."""
    for conversation_id, conversation_key in memory_keys:
        await memory_forget(
            tenant_id=tenant_id, conversation_id=conversation_id, conversation_key=conversation_key
        )
