"""Tickets in the console: replies e-mailed to the customer, status workflow; the agent page."""

from django.core import mail
from django.urls import reverse

from conversations.models import Ticket, TicketReply
from tests.support import factories


def test_a_reply_in_the_console_is_emailed_to_the_customer(
    agent_client_a, tenant_a, django_capture_on_commit_callbacks
) -> None:
    ticket = factories.TicketFactory(
        tenant=tenant_a, subject="Broken kettle", contact_email="wang@example.com"
    )
    url = reverse("admin:conversations_ticket_change", args=[ticket.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client_a.post(
            url,
            {
                "subject": "Broken kettle",
                "contact_email": "wang@example.com",
                "customer": str(ticket.customer_id),
                "status": "open",
                "priority": "high",
                "replies-TOTAL_FORMS": "1",
                "replies-INITIAL_FORMS": "0",
                "replies-0-content": "A new kettle is on its way.",
            },
        )
    assert response.status_code == 302, response.context["adminform"].form.errors
    reply = TicketReply.objects.get(ticket_id=ticket.pk)
    assert (reply.content, reply.author, reply.emailed_at is not None) == (
        "A new kettle is on its way.",
        agent_client_a.user,
        True,
    )
    assert mail.outbox[-1].to == ["wang@example.com"]
    assert "Broken kettle" in mail.outbox[-1].subject
    ticket.refresh_from_db()
    assert (ticket.status, ticket.priority) == ("pending", "high")


def test_solving_a_ticket_records_when(agent_client_a, tenant_a) -> None:
    ticket = factories.TicketFactory(tenant=tenant_a)
    agent_client_a.post(
        reverse("admin:conversations_ticket_changelist"),
        {"action": "mark_solved", "_selected_action": [str(ticket.pk)]},
    )
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.SOLVED and ticket.solved_at is not None


def test_the_agent_console_page(agent_client_a, viewer_client_a) -> None:
    page = agent_client_a.get(reverse("admin:agent_console"))
    assert page.status_code == 200
    assert b"kefu/agent.js" in page.content and b'id="kefu-agent-strings"' in page.content
    assert viewer_client_a.get(reverse("admin:agent_console")).status_code == 403


def test_the_agent_console_names_visitors_in_the_agents_language(agent_client_a) -> None:
    page = agent_client_a.get(reverse("admin:agent_console"), HTTP_ACCEPT_LANGUAGE="zh-CN")
    strings = page.context["strings"]
    assert (strings["visitor"], strings["accessLost"]) == (
        "访客 #{number}",
        "你已无权使用坐席工作台。",
    )
    assert b"kefu/markdown.js" in page.content  # the widget's renderer, for answers
