"""Tickets: follow-up work when nobody could take a conversation live."""

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from conversations.handoff import AGENT_ROLES, agents_available
from conversations.models import Conversation, Customer, Message, Ticket, TicketReply
from helpdesk_site.asyncdb import async_twin
from tenants.models import Tenant

logger = logging.getLogger(__name__)

TRANSCRIPT_MESSAGES = 100


def _transcript(conversation_id: int) -> str:
    lines = []
    for message in Message.objects.filter(conversation_id=conversation_id, internal=False).order_by(
        "created_at", "id"
    )[:TRANSCRIPT_MESSAGES]:
        lines.append(
            f"[{message.created_at:%Y-%m-%d %H:%M}] {message.get_role_display()}: {message.content}"
        )
    return "\n".join(lines)


class ContactNotExpected(Exception):
    """The conversation is not waiting for contact details: nobody was asked for a person, or
    somebody is available to take it live."""


@dataclass(frozen=True)
class ContactTicket:
    ticket: Ticket
    updated: bool  # the conversation's ticket existed: the details were added to it


@transaction.atomic
def ticket_from_conversation(
    *,
    tenant: Tenant,
    conversation_id: int,
    name: str,
    email: str,
    phone: str,
    note: str,
) -> ContactTicket:
    """Turns a conversation nobody could take into a ticket with its transcript, tells the
    tenant's agents by e-mail, and closes the live conversation (the ticket carries on).

    Accepted only while the conversation waits for a person with nobody available, or once it
    has become a ticket: one ticket per conversation, later details update it (a new ``note``
    is added as the customer's reply) and the agents are e-mailed once, for the new ticket.
    ``email`` and ``phone`` are the customer's own contact data and are kept whole; ``note`` is
    free text and arrives masked like every customer message. Raises ``ContactNotExpected``.
    """
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id, tenant=tenant)
    ticket = (
        Ticket.objects.filter(tenant=tenant, conversation=conversation)
        .order_by("-created_at", "-id")
        .first()
    )
    waiting = conversation.status == Conversation.Status.QUEUED and not agents_available(
        tenant=tenant
    )
    is_ticket = conversation.resolution_kind == Conversation.ResolutionKind.TICKET
    if not waiting and not (ticket is not None and is_ticket):
        raise ContactNotExpected
    customer_fields = {"display_name": name[:120]} if name else {}
    if email:
        customer_fields["email"] = email
    if phone:
        customer_fields["phone"] = phone[:40]
    if customer_fields:
        Customer.objects.filter(pk=conversation.customer_id, tenant=tenant).update(
            **customer_fields
        )
    if waiting:
        conversation.status = Conversation.Status.RESOLVED
        conversation.resolution_kind = Conversation.ResolutionKind.TICKET
        conversation.resolved_at = timezone.now()
        conversation.save(update_fields=["status", "resolution_kind", "resolved_at", "updated_at"])
    if ticket is not None:
        _ticket_contact_update(ticket=ticket, email=email, phone=phone, note=note)
        return ContactTicket(ticket, updated=True)
    first_question = (
        Message.objects.filter(conversation=conversation, role=Message.Role.CUSTOMER)
        .order_by("created_at", "id")
        .values_list("content", flat=True)
        .first()
    )
    subject = (note or first_question or _("Conversation")).strip().splitlines()[0][:200]
    ticket = Ticket.objects.create(
        tenant=tenant,
        customer_id=conversation.customer_id,
        conversation=conversation,
        subject=subject,
        description=(note + "\n\n" if note else "") + _transcript(conversation.pk),
        contact_email=email,
        contact_phone=phone[:40],
        sla_due_at=timezone.now() + timedelta(hours=tenant.ticket_sla_hours),
    )
    recipients = list(
        get_user_model()
        .objects.filter(
            memberships__tenant=tenant, memberships__role__in=AGENT_ROLES, is_active=True
        )
        .exclude(email="")
        .values_list("email", flat=True)
    )
    ticket_id, ticket_subject = ticket.pk, ticket.subject
    ticket_url = settings.SITE_URL + reverse("admin:conversations_ticket_change", args=[ticket_id])

    def notify() -> None:
        if recipients:
            send_mail(
                f"[{tenant.name}] New ticket #{ticket_id}: {ticket_subject}",
                f"A customer left a request while nobody was available.\n\n"
                f"Ticket #{ticket_id}: {ticket_subject}\n"
                f"Open it in the console: {ticket_url}\n",
                settings.DEFAULT_FROM_EMAIL,
                recipients,
                fail_silently=True,
            )

    transaction.on_commit(notify, robust=True)
    return ContactTicket(ticket, updated=False)


def _ticket_contact_update(*, ticket: Ticket, email: str, phone: str, note: str) -> None:
    fields: dict[str, Any] = {"contact_email": email} if email else {}
    if phone:
        fields["contact_phone"] = phone[:40]
    if ticket.status == Ticket.Status.SOLVED:  # the customer wrote again: it needs a look
        fields |= {"status": Ticket.Status.OPEN, "solved_at": None}
    if fields:
        Ticket.objects.filter(pk=ticket.pk).update(**fields, updated_at=timezone.now())
    if note:
        TicketReply.objects.create(
            tenant_id=ticket.tenant_id, ticket=ticket, from_customer=True, content=note
        )


@transaction.atomic
def ticket_reply_send(*, ticket: Ticket, author_id: int | None, content: str) -> TicketReply:
    """An agent's reply: stored, e-mailed to the customer after commit, shown in the widget."""
    reply = TicketReply.objects.create(
        tenant_id=ticket.tenant_id, ticket=ticket, author_id=author_id, content=content
    )
    if ticket.status == Ticket.Status.OPEN:
        Ticket.objects.filter(pk=ticket.pk).update(status=Ticket.Status.PENDING)
    address = ticket.contact_email or ticket.customer.email
    if address:
        tenant = ticket.tenant

        def deliver() -> None:
            with override(tenant.default_language):
                subject = _("Re: %(subject)s") % {"subject": ticket.subject}
            sent = send_mail(
                f"[{tenant.name}] {subject}",
                content,
                settings.DEFAULT_FROM_EMAIL,
                [address],
                fail_silently=True,
            )
            if sent:
                TicketReply.objects.filter(pk=reply.pk).update(emailed_at=timezone.now())

        transaction.on_commit(deliver, robust=True)
    return reply


def ticket_status_set(*, ticket: Ticket, status: str) -> Ticket:
    ticket.status = status
    ticket.solved_at = timezone.now() if status == Ticket.Status.SOLVED else None
    ticket.save(update_fields=["status", "solved_at", "updated_at"])
    return ticket


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


# Async twins, for consumers (helpdesk_site/asyncdb.py) ----------------------------------------

aticket_from_conversation = async_twin(ticket_from_conversation)
atickets_for_customer = async_twin(tickets_for_customer, parallel=True)
