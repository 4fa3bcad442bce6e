"""Tickets made when nobody could take a conversation: what the agents' e-mail says."""

import re

import pytest
from django.core import mail
from django.test import override_settings

from conversations.tickets import ticket_from_conversation
from tenants.models import Role
from tests.support import factories


@pytest.mark.django_db(transaction=True)
@override_settings(SITE_URL="https://help.example.com")
def test_the_agents_e_mail_links_to_the_ticket_with_an_absolute_url() -> None:
    # Given a conversation waiting for a person while no agent is online, and an agent with an
    # e-mail address
    tenant = factories.TenantFactory()
    factories.MembershipFactory(tenant=tenant, role=Role.AGENT, user__email="agent@example.com")
    message = factories.MessageFactory(
        conversation__tenant=tenant, conversation__status="queued", content="My kettle leaks"
    )

    # When the customer leaves a request
    contact = ticket_from_conversation(
        tenant=tenant,
        conversation_id=message.conversation_id,
        name="Wang",
        email="wang@example.com",
        phone="",
        note="",
    )

    # Then the agent's e-mail carries a link that works outside the console
    (email,) = mail.outbox
    assert email.to == ["agent@example.com"]
    links = re.findall(r"\S+/console/\S+", email.body)
    assert links == [
        f"https://help.example.com/console/conversations/ticket/{contact.ticket.pk}/change/"
    ]
