"""Ticket e-mails are sent by Celery tasks queued on commit: ids only, once, retried on SMTP
errors."""

import logging
from smtplib import SMTPRecipientsRefused, SMTPServerDisconnected

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import transaction
from django.test import override_settings

from conversations.models import Ticket, TicketReply
from conversations.tasks import ticket_created_email_task, ticket_reply_email_task
from conversations.tickets import ticket_from_conversation, ticket_reply_send
from tenants.models import Role
from tests.support import factories

pytestmark = pytest.mark.django_db(transaction=True)


class FlakyBackend(EmailBackend):
    """The locmem backend behind an SMTP server that drops the first ``failures`` connections."""

    failures = 0

    def send_messages(self, messages):
        if FlakyBackend.failures > 0:
            FlakyBackend.failures -= 1
            raise SMTPServerDisconnected("Connection unexpectedly closed")
        return super().send_messages(messages)


class RefusingBackend(EmailBackend):
    """An SMTP server that knows none of the recipients."""

    sent = 0

    def send_messages(self, messages):
        RefusingBackend.sent += 1
        raise SMTPRecipientsRefused({m.to[0]: (550, b"No such user") for m in messages})


@pytest.fixture
def waiting():
    """A conversation waiting for a person while no agent is online; an agent with e-mail."""
    tenant = factories.TenantFactory(name="Kettles")
    factories.MembershipFactory(tenant=tenant, role=Role.AGENT, user__email="agent@example.com")
    message = factories.MessageFactory(
        conversation__tenant=tenant, conversation__status="queued", content="My kettle leaks"
    )
    return tenant, message.conversation_id


def _leave_details(tenant, conversation_id: int):
    return ticket_from_conversation(
        tenant=tenant,
        conversation_id=conversation_id,
        name="Wang",
        email="wang@example.com",
        phone="",
        note="",
    ).ticket


def test_the_agents_are_e_mailed_once_the_ticket_is_committed(waiting) -> None:
    tenant, conversation_id = waiting
    with transaction.atomic():
        ticket = _leave_details(tenant, conversation_id)
        assert mail.outbox == []  # nothing before the commit

    (email,) = mail.outbox
    assert (email.to, email.subject) == (
        ["agent@example.com"],
        f"[Kettles] New ticket #{ticket.pk}: My kettle leaks",
    )
    assert Ticket.objects.get(pk=ticket.pk).agents_emailed_at is not None


def test_no_e_mail_for_a_ticket_that_was_rolled_back(waiting) -> None:
    tenant, conversation_id = waiting
    with pytest.raises(RuntimeError), transaction.atomic():
        _leave_details(tenant, conversation_id)
        raise RuntimeError("rolled back")

    assert mail.outbox == []
    assert not Ticket.objects.exists()


def test_the_agents_task_is_idempotent_and_scoped_by_tenant(waiting) -> None:
    tenant, conversation_id = waiting
    ticket = _leave_details(tenant, conversation_id)
    other = factories.TenantFactory()

    assert ticket_created_email_task(tenant.pk, ticket.pk) is False  # already sent
    assert ticket_created_email_task(other.pk, ticket.pk) is False  # not that tenant's ticket
    assert len(mail.outbox) == 1


@override_settings(EMAIL_BACKEND="tests.conversations.test_tasks.FlakyBackend")
def test_an_smtp_error_is_retried(waiting, monkeypatch) -> None:
    tenant, conversation_id = waiting
    FlakyBackend.failures = 2
    # Eager tasks retry as a worker does once a retry is not raised to the caller.
    monkeypatch.setitem(ticket_created_email_task.app.conf, "task_eager_propagates", False)

    ticket = _leave_details(tenant, conversation_id)

    (email,) = mail.outbox
    assert f"#{ticket.pk}" in email.subject
    assert FlakyBackend.failures == 0


def test_an_agents_reply_is_e_mailed_to_the_customer_once() -> None:
    ticket = factories.TicketFactory(
        tenant__default_language="en", subject="Broken kettle", contact_email="wang@example.com"
    )

    with transaction.atomic():
        reply = ticket_reply_send(ticket=ticket, author_id=None, content="A new one is coming.")
        assert mail.outbox == []

    (email,) = mail.outbox
    assert (email.to, email.subject, email.body) == (
        ["wang@example.com"],
        f"[{ticket.tenant.name}] Re: Broken kettle",
        "A new one is coming.",
    )
    assert TicketReply.objects.get(pk=reply.pk).emailed_at is not None
    assert ticket_reply_email_task(ticket.tenant_id, reply.pk) is False
    assert len(mail.outbox) == 1


@override_settings(EMAIL_BACKEND="tests.conversations.test_tasks.RefusingBackend")
def test_a_refused_address_is_not_retried_nor_logged(caplog) -> None:
    ticket = factories.TicketFactory(contact_email="wang@example.com")
    RefusingBackend.sent = 0

    with caplog.at_level(logging.WARNING, logger="conversations.tasks"):
        reply = ticket_reply_send(ticket=ticket, author_id=None, content="Hello")

    assert RefusingBackend.sent == 1
    assert TicketReply.objects.get(pk=reply.pk).emailed_at is None
    assert [r.getMessage() for r in caplog.records if r.name == "conversations.tasks"] == [
        f"the mail server refused the recipients of ticket reply tenant={ticket.tenant_id} "
        f"reply={reply.pk}"
    ]
