"""REST API: tickets and their replies, through the real stack (API key, scope, tenant scope,
services, e-mail tasks run eagerly into Django's mail outbox)."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from conversations import events
from conversations.models import Channel, Customer, Ticket, TicketReply
from tenants.models import ApiKey, Role, Tenant
from tests.support.api import api_client, page_ids
from tests.support.console import member
from tests.support.factories import (
    ConversationFactory,
    CustomerFactory,
    TicketFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

Scope = ApiKey.Scope


@pytest.fixture
def captured(django_capture_on_commit_callbacks: Any) -> Any:
    """Runs what the request queued for after its commit (the e-mail tasks, eager in tests)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


# Create ------------------------------------------------------------------------------------------


def test_a_ticket_is_created_and_the_agents_are_emailed(tenant_a: Tenant, captured: Any) -> None:
    tenant_a.ticket_sla_hours = 8
    tenant_a.save()
    agent = member(tenant_a, email="agent@example.com")
    member(tenant_a, role=Role.VIEWER, email="viewer@example.com")
    member(tenant_a, role=Role.AGENT, email="gone@example.com", is_active=False)

    with captured():
        response = api_client(tenant_a, Scope.TICKETS_WRITE).post(
            "/api/v1/tickets",
            {
                "subject": "Refund for order 1042",
                "description": "The parcel arrived damaged.",
                "customer": {"external_id": "user-981", "name": "Li Wei"},
                "contact_email": "li.wei@example.com",
                "contact_phone": "+86 138 0013 8000",
                "priority": "high",
            },
            format="json",
        )

    assert response.status_code == 201, response.content
    body = response.json()
    ticket = Ticket.objects.get(pk=body["id"])
    customer = Customer.objects.get(pk=body["customer_id"])
    assert (customer.tenant_id, customer.channel, customer.external_id) == (
        tenant_a.pk,
        Channel.API,
        "user-981",
    )
    assert customer.display_name == "Li Wei"
    assert (ticket.status, ticket.priority) == (Ticket.Status.OPEN, "high")
    assert ticket.contact_phone == "+86 138 0013 8000"
    expected_due = ticket.created_at + timedelta(hours=8)
    assert ticket.sla_due_at is not None
    assert abs(ticket.sla_due_at - expected_due) < timedelta(seconds=5)
    assert body["sla_due_at"].endswith("Z")
    assert body["overdue"] is False
    assert body["assignee"] is None
    assert [message.to for message in mail.outbox] == [[agent.email]]
    assert f"#{ticket.pk}" in mail.outbox[0].subject
    assert "Refund for order 1042" in mail.outbox[0].subject
    ticket.refresh_from_db()
    assert ticket.agents_emailed_at is not None


def test_a_ticket_names_an_existing_customer_and_an_assignee(
    tenant_a: Tenant, captured: Any
) -> None:
    customer = CustomerFactory(
        tenant=tenant_a, channel=Channel.API, external_id="user-5", display_name="Kept"
    )
    agent = member(tenant_a, email="Agent@Example.com")
    due = timezone.now() + timedelta(hours=2)

    with captured():
        by_ref = api_client(tenant_a).post(
            "/api/v1/tickets",
            {
                "subject": "A",
                "customer": {"external_id": "user-5", "name": "Not applied"},
                "assignee": "agent@example.com",
                "sla_due_at": due.isoformat(),
            },
            format="json",
        )
        by_id = api_client(tenant_a).post(
            "/api/v1/tickets",
            {"subject": "B", "customer_id": customer.pk, "assignee": agent.pk},
            format="json",
        )

    assert (by_ref.status_code, by_id.status_code) == (201, 201)
    assert by_ref.json()["customer_id"] == by_id.json()["customer_id"] == customer.pk
    assert by_ref.json()["assignee"] == {
        "id": agent.pk,
        "name": agent.username,
        "email": agent.email,
    }
    assert parse_datetime(by_ref.json()["sla_due_at"]) == due
    customer.refresh_from_db()
    assert customer.display_name == "Kept"
    assert Customer.objects.filter(tenant=tenant_a).count() == 1


def test_a_ticket_from_a_conversation_is_the_conversations_customers(tenant_a: Tenant) -> None:
    conversation = ConversationFactory(tenant=tenant_a)
    client = api_client(tenant_a)

    created = client.post(
        "/api/v1/tickets",
        {"subject": "Follow up", "conversation_id": conversation.pk},
        format="json",
    )
    mismatched = client.post(
        "/api/v1/tickets",
        {
            "subject": "Follow up",
            "conversation_id": conversation.pk,
            "customer_id": CustomerFactory(tenant=tenant_a).pk,
        },
        format="json",
    )

    assert created.status_code == 201
    assert created.json()["conversation_id"] == conversation.pk
    assert created.json()["customer_id"] == conversation.customer_id
    assert mismatched.status_code == 400
    assert list(mismatched.json()["error"]["fields"]) == ["conversation_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer_id": "CUSTOMER"}, "subject"),
        ({"subject": "x" * 201, "customer_id": "CUSTOMER"}, "subject"),
        ({"subject": "Hi"}, "customer_id"),
        (
            {"subject": "Hi", "customer_id": "CUSTOMER", "customer": {"external_id": "u"}},
            "customer",
        ),
        ({"subject": "Hi", "customer": {"name": "No id"}}, "customer.external_id"),
        ({"subject": "Hi", "customer_id": "THEIR_CUSTOMER"}, "customer_id"),
        ({"subject": "Hi", "conversation_id": "THEIR_CONVERSATION"}, "conversation_id"),
        ({"subject": "Hi", "customer_id": "CUSTOMER", "priority": "asap"}, "priority"),
        ({"subject": "Hi", "customer_id": "CUSTOMER", "contact_email": "x@"}, "contact_email"),
        ({"subject": "Hi", "customer_id": "CUSTOMER", "contact_phone": "phone"}, "contact_phone"),
        ({"subject": "Hi", "customer_id": "CUSTOMER", "assignee": "OUTSIDER"}, "assignee"),
        ({"subject": "Hi", "customer_id": "CUSTOMER", "assignee": "VIEWER"}, "assignee"),
        ({"subject": "Hi", "customer_id": "CUSTOMER", "assignee": "INACTIVE"}, "assignee"),
        ({"subject": "Hi", "customer_id": "CUSTOMER", "assignee": "THEIR_AGENT"}, "assignee"),
        ({"subject": "Hi", "customer_id": "CUSTOMER", "assignee": "nobody@x.org"}, "assignee"),
        ({"subject": "Hi", "customer_id": "CUSTOMER", "assignee": True}, "assignee"),
    ],
)
def test_an_invalid_ticket_is_refused_naming_the_field(
    tenant_a: Tenant, tenant_b: Tenant, body: dict[str, Any], field: str
) -> None:
    names = {
        "CUSTOMER": CustomerFactory(tenant=tenant_a).pk,
        "THEIR_CUSTOMER": CustomerFactory(tenant=tenant_b).pk,
        "THEIR_CONVERSATION": ConversationFactory(tenant=tenant_b).pk,
        "OUTSIDER": UserFactory().pk,
        "VIEWER": member(tenant_a, role=Role.VIEWER).pk,
        "INACTIVE": member(tenant_a, is_active=False).pk,
        "THEIR_AGENT": member(tenant_b).email,
    }
    body = {
        key: names.get(value, value) if isinstance(value, str) else value
        for key, value in body.items()
    }

    response = api_client(tenant_a).post("/api/v1/tickets", body, format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == [field]
    assert not Ticket.objects.exists()


def test_a_read_only_key_cannot_create_a_ticket(tenant_a: Tenant) -> None:
    customer = CustomerFactory(tenant=tenant_a)

    response = api_client(tenant_a, Scope.TICKETS_READ, Scope.CONVERSATIONS_WRITE).post(
        "/api/v1/tickets", {"subject": "Hi", "customer_id": customer.pk}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"


# Read and filter ---------------------------------------------------------------------------------


def test_the_list_is_filtered(tenant_a: Tenant, tenant_b: Tenant) -> None:
    now = timezone.now()
    agent = member(tenant_a)
    customer = CustomerFactory(tenant=tenant_a)
    overdue = TicketFactory(
        tenant=tenant_a,
        customer=customer,
        subject="Broken zipper",
        sla_due_at=now - timedelta(hours=1),
        priority="urgent",
    )
    solved_late = TicketFactory(
        tenant=tenant_a,
        status=Ticket.Status.SOLVED,
        sla_due_at=now - timedelta(hours=1),
        description="The zipper was replaced.",
    )
    assigned = TicketFactory(
        tenant=tenant_a,
        assignee=agent,
        status=Ticket.Status.PENDING,
        sla_due_at=now + timedelta(hours=3),
    )
    Ticket.objects.filter(pk=overdue.pk).update(created_at=now - timedelta(days=3))
    Ticket.objects.filter(pk=solved_late.pk).update(updated_at=now - timedelta(days=2))
    TicketFactory(tenant=tenant_b, subject="Broken zipper")
    client = api_client(tenant_a, Scope.TICKETS_READ)

    def listed(**params: Any) -> list[int]:
        return page_ids(client.get("/api/v1/tickets", params))

    assert listed() == [assigned.pk, solved_late.pk, overdue.pk]
    assert listed(status="solved") == [solved_late.pk]
    assert listed(priority="urgent") == [overdue.pk]
    assert listed(assignee=str(agent.pk)) == [assigned.pk]
    assert listed(assignee="none") == [solved_late.pk, overdue.pk]
    assert listed(customer=customer.pk) == [overdue.pk]
    assert listed(overdue="true") == [overdue.pk]
    assert listed(overdue="false") == [assigned.pk, solved_late.pk]
    assert listed(q="zipper") == [solved_late.pk, overdue.pk]
    day_ago = (now - timedelta(days=1)).isoformat()
    assert listed(created_before=day_ago) == [overdue.pk]
    assert listed(created_after=day_ago) == [assigned.pk, solved_late.pk]
    assert listed(updated_before=day_ago) == [solved_late.pk]
    assert listed(updated_after=day_ago) == [assigned.pk, overdue.pk]
    rows = {row["id"]: row for row in client.get("/api/v1/tickets").json()["data"]}
    assert rows[overdue.pk]["overdue"] is True
    assert rows[solved_late.pk]["overdue"] is False
    assert rows[assigned.pk]["assignee"]["id"] == agent.pk
    bad = client.get("/api/v1/tickets", {"assignee": "someone"})
    assert bad.status_code == 400
    assert list(bad.json()["error"]["fields"]) == ["assignee"]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("get", ""), ("patch", ""), ("get", "/replies"), ("post", "/replies")],
)
def test_another_tenants_ticket_is_not_found(
    tenant_a: Tenant, tenant_b: Tenant, method: str, suffix: str
) -> None:
    theirs = TicketFactory(tenant=tenant_b)
    body = {"status": "solved", "text": "Hi", "from_customer": True}

    response = getattr(api_client(tenant_a), method)(
        f"/api/v1/tickets/{theirs.pk}{suffix}", body, format="json"
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.status == Ticket.Status.OPEN
    assert not TicketReply.objects.exists()


# Update ------------------------------------------------------------------------------------------


def test_status_changes_go_through_the_ticket_workflow(tenant_a: Tenant) -> None:
    ticket = TicketFactory(tenant=tenant_a)
    agent = member(tenant_a)
    client = api_client(tenant_a, Scope.TICKETS_WRITE, Scope.TICKETS_READ)
    url = f"/api/v1/tickets/{ticket.pk}"

    solved = client.patch(url, {"status": "solved", "assignee": agent.pk}, format="json")
    ticket.refresh_from_db()
    solved_at = ticket.solved_at
    reopened = client.patch(url, {"status": "open", "priority": "low"}, format="json")

    assert solved.status_code == 200, solved.content
    assert solved.json()["status"] == "solved"
    assert solved_at is not None
    assert solved.json()["solved_at"] is not None
    assert solved.json()["assignee"]["id"] == agent.pk
    assert reopened.status_code == 200
    ticket.refresh_from_db()
    assert (ticket.status, ticket.solved_at, ticket.priority) == (Ticket.Status.OPEN, None, "low")
    assert ticket.assignee_id == agent.pk  # not sent: unchanged


def test_the_assignee_and_sla_can_be_cleared_and_must_be_a_member(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    agent = member(tenant_a)
    ticket = TicketFactory(tenant=tenant_a, assignee=agent, sla_due_at=timezone.now())
    client = api_client(tenant_a)
    url = f"/api/v1/tickets/{ticket.pk}"

    refused = client.patch(url, {"assignee": member(tenant_b).pk}, format="json")
    ticket.refresh_from_db()
    assert refused.status_code == 400
    assert list(refused.json()["error"]["fields"]) == ["assignee"]
    assert ticket.assignee_id == agent.pk

    cleared = client.patch(url, {"assignee": None, "sla_due_at": None}, format="json")
    assert cleared.status_code == 200
    ticket.refresh_from_db()
    assert (ticket.assignee_id, ticket.sla_due_at) == (None, None)
    bad_status = client.patch(url, {"status": "closed"}, format="json")
    assert list(bad_status.json()["error"]["fields"]) == ["status"]


# Replies -----------------------------------------------------------------------------------------


def test_an_agents_reply_is_emailed_to_the_customer(tenant_a: Tenant, captured: Any) -> None:
    ticket = TicketFactory(tenant=tenant_a, subject="Refund", contact_email="li.wei@example.com")
    agent = member(tenant_a, email="agent@example.com")

    with captured():
        response = api_client(tenant_a, Scope.TICKETS_WRITE).post(
            f"/api/v1/tickets/{ticket.pk}/replies",
            {"text": "Your refund is on its way.", "agent": "agent@example.com"},
            format="json",
        )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["from_customer"] is False
    assert body["author"]["id"] == agent.pk
    assert body["ticket_id"] == ticket.pk
    assert [message.to for message in mail.outbox] == [["li.wei@example.com"]]
    assert mail.outbox[0].body == "Your refund is on its way."
    assert mail.outbox[0].subject.startswith("[Tenant A] ")  # "Re: Refund" in its language
    assert mail.outbox[0].subject.endswith("Refund")
    reply = TicketReply.objects.get(pk=body["id"])
    assert reply.emailed_at is not None
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.PENDING


def test_a_customers_reply_is_stored_and_reopens_a_solved_ticket(
    tenant_a: Tenant, captured: Any
) -> None:
    ticket = TicketFactory(
        tenant=tenant_a,
        status=Ticket.Status.SOLVED,
        solved_at=timezone.now(),
        contact_email="li.wei@example.com",
    )

    with captured():
        response = api_client(tenant_a).post(
            f"/api/v1/tickets/{ticket.pk}/replies",
            {"text": "It broke again.", "from_customer": True},
            format="json",
        )

    assert response.status_code == 201
    assert response.json()["from_customer"] is True
    assert response.json()["author"] is None
    assert mail.outbox == []
    ticket.refresh_from_db()
    assert (ticket.status, ticket.solved_at) == (Ticket.Status.OPEN, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "Hi"}, "agent"),
        ({"text": "Hi", "agent": "AGENT", "from_customer": True}, "agent"),
        ({"text": "Hi", "agent": "VIEWER"}, "agent"),
        ({"text": "Hi", "agent": "outsider@example.com"}, "agent"),
        ({"text": "", "from_customer": True}, "text"),
    ],
)
def test_an_invalid_reply_is_refused_naming_the_field(
    tenant_a: Tenant, body: dict[str, Any], field: str
) -> None:
    ticket = TicketFactory(tenant=tenant_a)
    UserFactory(email="outsider@example.com")
    names = {"AGENT": member(tenant_a).pk, "VIEWER": member(tenant_a, role=Role.VIEWER).email}
    body = {
        key: names.get(value, value) if isinstance(value, str) else value
        for key, value in body.items()
    }

    response = api_client(tenant_a).post(
        f"/api/v1/tickets/{ticket.pk}/replies", body, format="json"
    )

    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == [field]
    assert not TicketReply.objects.exists()


def test_replies_are_listed_oldest_first(tenant_a: Tenant) -> None:
    ticket = TicketFactory.create(tenant=tenant_a)
    first = TicketReply.objects.create(tenant=tenant_a, ticket=ticket, content="One")
    second = TicketReply.objects.create(
        tenant=tenant_a, ticket=ticket, content="Two", from_customer=True
    )
    TicketReply.objects.create(
        tenant=tenant_a, ticket=TicketFactory.create(tenant=tenant_a), content="x"
    )
    client = api_client(tenant_a, Scope.TICKETS_READ)

    response = client.get(f"/api/v1/tickets/{ticket.pk}/replies")
    detail = client.get(f"/api/v1/tickets/{ticket.pk}").json()

    assert page_ids(response) == [first.pk, second.pk]
    assert [row["text"] for row in response.json()["data"]] == ["One", "Two"]
    assert detail["reply_count"] == 2


# Events ------------------------------------------------------------------------------------------


@pytest.fixture
def heard() -> Iterator[list[events.Published]]:
    received: list[events.Published] = []
    events.subscribe(received.append)
    yield received
    events.unsubscribe(received.append)


def test_the_ticket_workflow_publishes_its_events(
    tenant_a: Tenant, captured: Any, heard: list[events.Published]
) -> None:
    customer = CustomerFactory(tenant=tenant_a)
    agent = member(tenant_a)
    client = api_client(tenant_a)

    with captured():
        ticket_id = client.post(
            "/api/v1/tickets", {"subject": "Hi", "customer_id": customer.pk}, format="json"
        ).json()["id"]
    with captured():
        client.patch(f"/api/v1/tickets/{ticket_id}", {"priority": "high"}, format="json")
    with captured():
        client.post(f"/api/v1/tickets/{ticket_id}/replies", {"text": "On it.", "agent": agent.pk})
    with captured():
        client.patch(f"/api/v1/tickets/{ticket_id}", {"status": "solved"}, format="json")

    assert [(p.event, p.payload.ticket_id, p.payload.status) for p in heard] == [
        (events.Event.TICKET_CREATED, ticket_id, "open"),
        (events.Event.TICKET_UPDATED, ticket_id, "open"),
        (events.Event.TICKET_REPLIED, ticket_id, "pending"),
        (events.Event.TICKET_UPDATED, ticket_id, "solved"),
        (events.Event.TICKET_SOLVED, ticket_id, "solved"),
    ]
    assert {p.tenant_id for p in heard} == {tenant_a.pk}


def test_tickets_and_conversations_refuse_a_non_agent_member_alike(tenant_a: Tenant) -> None:
    viewer = member(tenant_a, role=Role.VIEWER, email="viewer@example.com")
    ticket = TicketFactory(tenant=tenant_a)
    conversation = ConversationFactory(tenant=tenant_a)
    client = api_client(tenant_a)

    refusals = [
        client.patch(f"/api/v1/tickets/{ticket.pk}", {"assignee": viewer.email}),
        client.patch(f"/api/v1/conversations/{conversation.pk}", {"assignee": viewer.pk}),
    ]

    fields = [response.json()["error"]["fields"] for response in refusals]
    assert [response.status_code for response in refusals] == [400, 400]
    assert (
        fields[0]
        == fields[1]
        == {
            "assignee": ["Not an active member of this tenant who works conversations and tickets."]
        }
    )
