"""Tickets: follow-up work when nobody could take a conversation live."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations import events
from conversations.models import Conversation, Customer, Ticket, TicketReply
from conversations.selectors import (
    agents_available,
    conversation_ticket,
    conversation_transcript,
    first_customer_question,
)
from conversations.services import UNCHANGED
from conversations.tasks import ticket_created_email_task, ticket_reply_email_task
from helpdesk_site.asyncdb import async_twin
from tenants.models import Tenant


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
    ticket = conversation_ticket(tenant=tenant, conversation=conversation)
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
        resolved = events.conversation_resolved(
            conversation_id=conversation.pk,
            status=conversation.status,
            resolution_kind=conversation.resolution_kind,
        )
        events.publish(events.Event.CONVERSATION_RESOLVED, resolved, tenant_id=tenant.pk)
    if ticket is not None:
        _ticket_contact_update(ticket=ticket, email=email, phone=phone, note=note)
        return ContactTicket(ticket, updated=True)
    first_question = first_customer_question(tenant_id=tenant.pk, conversation_id=conversation.pk)
    subject = (note or first_question or _("Conversation")).strip().splitlines()[0][:200]
    ticket = ticket_create(
        tenant=tenant,
        customer_id=conversation.customer_id,
        conversation_id=conversation.pk,
        subject=subject,
        description=(note + "\n\n" if note else "")
        + conversation_transcript(tenant_id=tenant.pk, conversation_id=conversation.pk),
        contact_email=email,
        contact_phone=phone[:40],
    )
    return ContactTicket(ticket, updated=False)


@transaction.atomic
def ticket_create(
    *,
    tenant: Tenant,
    customer_id: int,
    subject: str,
    description: str = "",
    conversation_id: int | None = None,
    contact_email: str = "",
    contact_phone: str = "",
    priority: str = Ticket.Priority.NORMAL,
    assignee_id: int | None = None,
    sla_due_at: datetime | None = None,
) -> Ticket:
    """A new open ticket, due ``sla_due_at`` or the tenant's ``ticket_sla_hours`` from now; the
    tenant's agents are e-mailed about it after commit (by a task)."""
    ticket = Ticket.objects.create(
        tenant=tenant,
        customer_id=customer_id,
        conversation_id=conversation_id,
        subject=subject,
        description=description,
        contact_email=contact_email,
        contact_phone=contact_phone,
        priority=priority,
        assignee_id=assignee_id,
        sla_due_at=sla_due_at or timezone.now() + timedelta(hours=tenant.ticket_sla_hours),
    )
    ticket_id = ticket.pk
    transaction.on_commit(
        lambda: ticket_created_email_task.delay(tenant.pk, ticket_id), robust=True
    )
    payload = events.ticket_created(
        ticket_id=ticket_id, status=ticket.status, conversation_id=conversation_id
    )
    events.publish(events.Event.TICKET_CREATED, payload, tenant_id=tenant.pk)
    return ticket


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
    payload = events.ticket_updated(
        ticket_id=ticket.pk,
        status=fields.get("status", ticket.status),
        conversation_id=ticket.conversation_id,
    )
    events.publish(events.Event.TICKET_UPDATED, payload, tenant_id=ticket.tenant_id)


@transaction.atomic
def ticket_reply_send(*, ticket: Ticket, author_id: int | None, content: str) -> TicketReply:
    """An agent's reply: stored, e-mailed to the customer after commit (by a task), shown in
    the widget."""
    reply = TicketReply.objects.create(
        tenant_id=ticket.tenant_id, ticket=ticket, author_id=author_id, content=content
    )
    status = ticket.status
    if status == Ticket.Status.OPEN:
        status = Ticket.Status.PENDING
        Ticket.objects.filter(pk=ticket.pk).update(status=status)
    if ticket.contact_email or ticket.customer.email:
        tenant_id, reply_id = ticket.tenant_id, reply.pk
        transaction.on_commit(
            lambda: ticket_reply_email_task.delay(tenant_id, reply_id), robust=True
        )
    payload = events.ticket_replied(
        ticket_id=ticket.pk,
        status=status,
        conversation_id=ticket.conversation_id,
        reply_id=reply.pk,
    )
    events.publish(events.Event.TICKET_REPLIED, payload, tenant_id=ticket.tenant_id)
    return reply


@transaction.atomic
def ticket_customer_reply(*, ticket: Ticket, content: str) -> TicketReply:
    """The customer's reply (through the API): stored, and a solved ticket opened again, as
    it needs a look."""
    reply = TicketReply.objects.create(
        tenant_id=ticket.tenant_id, ticket=ticket, from_customer=True, content=content
    )
    status = ticket.status
    if status == Ticket.Status.SOLVED:
        status = Ticket.Status.OPEN
        Ticket.objects.filter(pk=ticket.pk).update(
            status=status, solved_at=None, updated_at=timezone.now()
        )
    payload = events.ticket_updated(
        ticket_id=ticket.pk, status=status, conversation_id=ticket.conversation_id
    )
    events.publish(events.Event.TICKET_UPDATED, payload, tenant_id=ticket.tenant_id)
    return reply


@transaction.atomic
def ticket_update(
    *,
    ticket: Ticket,
    status: str | None = None,
    priority: str | None = None,
    assignee_id: int | None = UNCHANGED,
    sla_due_at: datetime | None = UNCHANGED,
) -> Ticket:
    """Changes what the API may change on a ticket; ``None`` (``UNCHANGED`` for the nullable
    ones) keeps a field. A new status goes through ``ticket_status_set`` (solved time, event);
    other changes publish ``ticket.updated`` once. The assignee must be checked by the caller
    (``selectors.agent_for_member``)."""
    fields: list[str] = []
    if priority is not None and priority != ticket.priority:
        ticket.priority = priority
        fields.append("priority")
    if assignee_id is not UNCHANGED and assignee_id != ticket.assignee_id:
        ticket.assignee_id = assignee_id
        fields.append("assignee")
    if sla_due_at is not UNCHANGED and sla_due_at != ticket.sla_due_at:
        ticket.sla_due_at = sla_due_at
        fields.append("sla_due_at")
    if fields:
        ticket.save(update_fields=[*fields, "updated_at"])
    if status is not None and status != ticket.status:
        return ticket_status_set(ticket=ticket, status=status)
    if fields:
        payload = events.ticket_updated(
            ticket_id=ticket.pk, status=ticket.status, conversation_id=ticket.conversation_id
        )
        events.publish(events.Event.TICKET_UPDATED, payload, tenant_id=ticket.tenant_id)
    return ticket


def ticket_status_set(*, ticket: Ticket, status: str) -> Ticket:
    ticket.status = status
    ticket.solved_at = timezone.now() if status == Ticket.Status.SOLVED else None
    ticket.save(update_fields=["status", "solved_at", "updated_at"])
    payload = events.ticket_updated(
        ticket_id=ticket.pk, status=status, conversation_id=ticket.conversation_id
    )
    events.publish(events.Event.TICKET_UPDATED, payload, tenant_id=ticket.tenant_id)
    if status == Ticket.Status.SOLVED:
        solved = events.ticket_solved(ticket_id=ticket.pk, conversation_id=ticket.conversation_id)
        events.publish(events.Event.TICKET_SOLVED, solved, tenant_id=ticket.tenant_id)
    return ticket


# Async twins, for consumers (helpdesk_site/asyncdb.py) ----------------------------------------

aticket_from_conversation = async_twin(ticket_from_conversation)
