"""Background work on conversations. Tasks take ids and are safe to run more than once."""

import logging
from smtplib import SMTPException, SMTPRecipientsRefused
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db import InterfaceError, OperationalError
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from conversations.lifecycle import conversations_sweep, tickets_sla_sweep
from conversations.models import Ticket, TicketReply
from conversations.selectors import ticket_agent_emails
from tenants.scoping import tenant_or_all_tenants, tenant_scoped_task
from tenants.tasks import SCHEDULED_TASK_OPTIONS

logger = logging.getLogger(__name__)


@shared_task(**SCHEDULED_TASK_OPTIONS)
def conversations_sweep_task(tenant_id: int | None = None) -> dict[int, dict[str, int]]:
    """Records resolved-by-the-assistant and abandoned conversations (``conversations_sweep``)
    and tickets past their SLA (``tickets_sla_sweep``); run every
    ``CONVERSATION_SWEEP_SECONDS`` by Celery beat."""
    with tenant_or_all_tenants(tenant_id, "the scheduled sweep covers every tenant"):
        counts = conversations_sweep(tenant_id=tenant_id)
        breached = tickets_sla_sweep(tenant_id=tenant_id)
    for tenant, tickets in breached.items():
        logger.info("tickets past their SLA tenant=%s tickets=%s", tenant, tickets)
    for tenant, changed in counts.items():
        logger.info(
            "conversations sweep tenant=%s resolved_by_ai=%s abandoned=%s",
            tenant,
            changed.resolved_by_ai,
            changed.abandoned,
        )
    return {
        tenant: {"resolved_by_ai": changed.resolved_by_ai, "abandoned": changed.abandoned}
        for tenant, changed in counts.items()
    }


# SMTP errors and refused connections are worth retrying (refused recipients are not: ``_send``).
MAIL_RETRY_ERRORS = (SMTPException, OSError, OperationalError, InterfaceError)


# Ticket e-mails: retried on mail-server errors with backoff, never left running.
MAIL_TASK_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": MAIL_RETRY_ERRORS,
    "max_retries": 5,
    "retry_backoff": 30,
    "retry_backoff_max": 900,
    "retry_jitter": True,
    "soft_time_limit": 60,
    "time_limit": 90,
}


def _send(subject: str, body: str, recipients: list[str], *, what: str) -> bool:
    """Sends one e-mail; False when the server refused every recipient (retrying would not
    help). Other SMTP errors are raised for the task to retry."""
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except SMTPRecipientsRefused:
        # The error names the addresses: log what the mail was about instead.
        logger.warning("the mail server refused the recipients of %s", what)
        return False
    return True


@shared_task(**MAIL_TASK_OPTIONS)
@tenant_scoped_task
def ticket_created_email_task(tenant_id: int, ticket_id: int) -> bool:
    """E-mails the tenant's agents about a new ticket, once (``Ticket.agents_emailed_at``).
    Returns whether an e-mail went out."""
    ticket = (
        Ticket.objects.select_related("tenant").filter(pk=ticket_id, tenant_id=tenant_id).first()
    )
    if ticket is None or ticket.agents_emailed_at is not None:
        return False
    recipients = ticket_agent_emails(tenant_id=ticket.tenant_id)
    if not recipients:
        return False
    url = settings.SITE_URL + reverse("admin:conversations_ticket_change", args=[ticket.pk])
    sent = _send(
        f"[{ticket.tenant.name}] New ticket #{ticket.pk}: {ticket.subject}",
        f"A customer left a request while nobody was available.\n\n"
        f"Ticket #{ticket.pk}: {ticket.subject}\n"
        f"Open it in the console: {url}\n",
        recipients,
        what=f"ticket tenant={ticket.tenant_id} ticket={ticket.pk}",
    )
    if not sent:
        return False
    Ticket.objects.filter(pk=ticket.pk).update(agents_emailed_at=timezone.now())
    logger.info("ticket e-mailed to agents tenant=%s ticket=%s", ticket.tenant_id, ticket.pk)
    return True


@shared_task(**MAIL_TASK_OPTIONS)
@tenant_scoped_task
def ticket_reply_email_task(tenant_id: int, reply_id: int) -> bool:
    """E-mails an agent's ticket reply to the customer, once (``TicketReply.emailed_at``).
    Returns whether an e-mail went out."""
    reply = (
        TicketReply.objects.select_related("ticket__tenant", "ticket__customer")
        .filter(pk=reply_id, tenant_id=tenant_id, from_customer=False)
        .first()
    )
    if reply is None or reply.emailed_at is not None:
        return False
    ticket, tenant = reply.ticket, reply.ticket.tenant
    address = ticket.contact_email or ticket.customer.email
    if not address:
        return False
    with override(tenant.default_language):
        subject = _("Re: %(subject)s") % {"subject": ticket.subject}
    if not _send(
        f"[{tenant.name}] {subject}",
        reply.content,
        [address],
        what=f"ticket reply tenant={tenant.pk} reply={reply.pk}",
    ):
        return False
    TicketReply.objects.filter(pk=reply.pk).update(emailed_at=timezone.now())
    logger.info("ticket reply e-mailed tenant=%s reply=%s", tenant.pk, reply.pk)
    return True
