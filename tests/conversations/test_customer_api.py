"""REST API: customers (create, read, search, update, anonymise) and their conversations and
tickets, through the real stack (API key, scope, tenant scope, services, database, Redis)."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from analytics.selectors import tenant_overview
from conversations.customers import ERASED_TEXT
from conversations.memory import MEMORY_KEY_PREFIX, Turn, memory_recent
from conversations.models import Channel, Conversation, Customer, Message, Ticket, TicketReply
from helpdesk_site.redis import redis_close
from tenants.models import ApiKey, IdempotencyRecord, Tenant
from tests.support.api import api_client, page_ids
from tests.support.factories import (
    ConversationFactory,
    CustomerFactory,
    MessageFactory,
    TenantFactory,
    TicketFactory,
)

pytestmark = pytest.mark.django_db

Scope = ApiKey.Scope


# Create ------------------------------------------------------------------------------------------


def test_a_customer_is_created_as_an_api_customer(tenant_a: Tenant) -> None:
    response = api_client(tenant_a).post(
        "/api/v1/customers",
        {
            "external_id": "user-981",
            "name": "Li Wei",
            "email": "li.wei@example.com",
            "phone": "+86 138-0013-8000",
            "attributes": {"plan": "gold", "orders": 12, "vip": True},
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    customer = Customer.objects.get(pk=body["id"])
    assert (customer.tenant_id, customer.channel, customer.external_id) == (
        tenant_a.pk,
        Channel.API,
        "user-981",
    )
    assert customer.metadata == {"plan": "gold", "orders": 12, "vip": True}
    assert body["name"] == "Li Wei"
    assert body["email"] == "li.wei@example.com"
    assert body["phone"] == "+86 138-0013-8000"
    assert body["attributes"] == {"plan": "gold", "orders": 12, "vip": True}
    assert body["channel"] == "api"
    assert body["conversation_count"] == 0
    assert body["anonymized"] is False
    assert body["anonymized_at"] is None
    assert body["created_at"].endswith("Z")
    assert "tenant" not in body and "tenant_id" not in body


def test_an_existing_external_id_is_a_conflict_naming_the_customer(tenant_a: Tenant) -> None:
    existing = CustomerFactory(tenant=tenant_a, channel=Channel.API, external_id="user-1")
    CustomerFactory(tenant=tenant_a, channel=Channel.WIDGET, external_id="user-2")

    client = api_client(tenant_a)
    conflict = client.post("/api/v1/customers", {"external_id": "user-1"}, format="json")
    # The same id on another channel (a widget visitor) is another customer.
    other_channel = client.post("/api/v1/customers", {"external_id": "user-2"}, format="json")

    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "conflict"
    assert f"id {existing.pk}" in conflict.json()["error"]["message"]
    assert other_channel.status_code == 201
    assert Customer.objects.filter(tenant=tenant_a, external_id="user-1").count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "external_id"),
        ({"external_id": ""}, "external_id"),
        ({"external_id": "x" * 129}, "external_id"),
        ({"external_id": "u", "email": "not-an-address"}, "email"),
        ({"external_id": "u", "phone": "call me maybe"}, "phone"),
        ({"external_id": "u", "phone": "12"}, "phone"),
        ({"external_id": "u", "phone": "+1 234 567 890 123 456 78"}, "phone"),
        ({"external_id": "u", "name": "n" * 121}, "name"),
        ({"external_id": "u", "attributes": ["a list"]}, "attributes"),
        ({"external_id": "u", "attributes": {"nested": {"a": 1}}}, "attributes"),
        ({"external_id": "u", "attributes": {"k": None}}, "attributes"),
        ({"external_id": "u", "attributes": {"long": "x" * 501}}, "attributes"),
        ({"external_id": "u", "attributes": {f"k{i}": i for i in range(51)}}, "attributes"),
        ({"external_id": "u", "attributes": {"k" * 65: 1}}, "attributes"),
    ],
)
def test_an_invalid_customer_is_refused_naming_the_field(
    tenant_a: Tenant, body: dict[str, Any], field: str
) -> None:
    response = api_client(tenant_a).post("/api/v1/customers", body, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == [field]
    assert not Customer.objects.filter(tenant=tenant_a).exists()


def test_a_read_only_key_cannot_create(tenant_a: Tenant) -> None:
    response = api_client(tenant_a, Scope.CONVERSATIONS_READ).post(
        "/api/v1/customers", {"external_id": "u"}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"
    assert not Customer.objects.exists()


# Read and search ---------------------------------------------------------------------------------


def test_the_list_is_searched_and_filtered(tenant_a: Tenant, tenant_b: Tenant) -> None:
    li = CustomerFactory(
        tenant=tenant_a,
        channel=Channel.API,
        external_id="crm-17",
        display_name="Li Wei",
        email="Li.Wei@Example.com",
        phone="+86 138 0013 8000",
    )
    visitor = CustomerFactory(tenant=tenant_a, display_name="", external_id="v-1")
    known = CustomerFactory(
        tenant=tenant_a, display_name="Zhang San", email="zs@example.org", identified=True
    )
    Customer.objects.filter(pk=visitor.pk).update(created_at=timezone.now() - timedelta(days=10))
    CustomerFactory(tenant=tenant_b, display_name="Li Wei", email="li.wei@example.com")
    ConversationFactory.create_batch(2, tenant=tenant_a, customer=li)
    client = api_client(tenant_a, Scope.CONVERSATIONS_READ)

    def listed(**params: Any) -> list[int]:
        return page_ids(client.get("/api/v1/customers", params))

    assert listed() == [known.pk, visitor.pk, li.pk]  # newest id first
    assert listed(q="li wei") == [li.pk]
    assert listed(q="example") == [known.pk, li.pk]
    assert listed(q="0013") == [li.pk]
    assert listed(q="crm-") == [li.pk]
    assert listed(channel="api") == [li.pk]
    assert listed(channel="widget") == [known.pk, visitor.pk]
    assert listed(external_id="crm-17") == [li.pk]
    assert listed(external_id="crm-1") == []
    assert listed(email="li.wei@example.com") == [li.pk]
    assert listed(email="li.wei@example") == []
    assert listed(identified="true") == [known.pk]
    assert listed(identified="false") == [visitor.pk, li.pk]
    week_ago = (timezone.now() - timedelta(days=7)).isoformat()
    assert listed(created_after=week_ago) == [known.pk, li.pk]
    assert listed(created_before=week_ago) == [visitor.pk]
    row = client.get("/api/v1/customers", {"q": "crm-17"}).json()["data"][0]
    assert row["conversation_count"] == 2


def test_the_list_is_paginated(tenant_a: Tenant) -> None:
    customers = CustomerFactory.create_batch(3, tenant=tenant_a)
    client = api_client(tenant_a, Scope.CONVERSATIONS_READ)

    first = client.get("/api/v1/customers", {"limit": 2}).json()
    second = client.get("/api/v1/customers", {"limit": 2, "cursor": first["next_cursor"]}).json()

    assert [row["id"] for row in first["data"]] == [customers[2].pk, customers[1].pk]
    assert first["has_more"] is True
    assert [row["id"] for row in second["data"]] == [customers[0].pk]
    assert second["has_more"] is False
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [({"channel": "fax"}, "channel"), ({"created_after": "yesterday"}, "created_after")],
)
def test_a_bad_filter_is_refused_naming_it(
    tenant_a: Tenant, params: dict[str, str], field: str
) -> None:
    response = api_client(tenant_a).get("/api/v1/customers", params)

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_a_customer_is_read_with_its_conversation_count(tenant_a: Tenant) -> None:
    customer = CustomerFactory(tenant=tenant_a, phone="13800138000", metadata={"plan": "gold"})
    ConversationFactory.create_batch(3, tenant=tenant_a, customer=customer)

    body = (
        api_client(tenant_a, Scope.CONVERSATIONS_READ)
        .get(f"/api/v1/customers/{customer.pk}")
        .json()
    )

    assert body["id"] == customer.pk
    assert body["external_id"] == customer.external_id
    assert body["channel"] == "widget"
    assert body["name"] == customer.display_name
    assert body["phone"] == "13800138000"
    assert body["attributes"] == {"plan": "gold"}
    assert body["identified"] is False
    assert body["last_seen_at"] is None
    assert body["conversation_count"] == 3


# Update ------------------------------------------------------------------------------------------


def test_an_update_merges_attributes_and_null_deletes_a_key(tenant_a: Tenant) -> None:
    customer = CustomerFactory(
        tenant=tenant_a, email="old@example.com", metadata={"plan": "gold", "coupon": "X1"}
    )
    client = api_client(tenant_a, Scope.CONVERSATIONS_WRITE, Scope.CONVERSATIONS_READ)

    response = client.patch(
        f"/api/v1/customers/{customer.pk}",
        {"name": "Wang Fang", "attributes": {"plan": "platinum", "coupon": None, "orders": 3}},
        format="json",
    )

    assert response.status_code == 200, response.content
    customer.refresh_from_db()
    assert customer.display_name == "Wang Fang"
    assert customer.email == "old@example.com"  # not sent: unchanged
    assert customer.metadata == {"plan": "platinum", "orders": 3}
    assert response.json()["attributes"] == {"plan": "platinum", "orders": 3}

    cleared = client.patch(
        f"/api/v1/customers/{customer.pk}", {"attributes": None, "email": ""}, format="json"
    )
    assert cleared.status_code == 200
    customer.refresh_from_db()
    assert (customer.metadata, customer.email) == ({}, "")


def test_an_update_past_the_attribute_limit_is_refused(tenant_a: Tenant) -> None:
    customer = CustomerFactory(tenant=tenant_a, metadata={f"k{i}": i for i in range(50)})

    response = api_client(tenant_a).patch(
        f"/api/v1/customers/{customer.pk}", {"attributes": {"one_more": 1}}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["attributes"]
    customer.refresh_from_db()
    assert len(customer.metadata) == 50


@pytest.mark.parametrize(
    ("body", "field"), [({"email": "nope"}, "email"), ({"phone": "abc"}, "phone")]
)
def test_an_invalid_update_is_refused_naming_the_field(
    tenant_a: Tenant, body: dict[str, str], field: str
) -> None:
    customer = CustomerFactory(tenant=tenant_a, email="kept@example.com", phone="13800138000")

    response = api_client(tenant_a).patch(f"/api/v1/customers/{customer.pk}", body, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]
    customer.refresh_from_db()
    assert (customer.email, customer.phone) == ("kept@example.com", "13800138000")


# Other tenants -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", ""),
        ("patch", ""),
        ("delete", ""),
        ("get", "/conversations"),
        ("get", "/tickets"),
    ],
)
def test_another_tenants_customer_is_not_found(
    tenant_a: Tenant, tenant_b: Tenant, method: str, suffix: str
) -> None:
    theirs = CustomerFactory(tenant=tenant_b, display_name="Theirs", email="t@example.com")

    response = getattr(api_client(tenant_a), method)(
        f"/api/v1/customers/{theirs.pk}{suffix}", {"name": "Mine now"}, format="json"
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    theirs.refresh_from_db()
    assert (theirs.display_name, theirs.email, theirs.anonymized_at) == (
        "Theirs",
        "t@example.com",
        None,
    )


# The customer's conversations and tickets -------------------------------------------------------


def test_the_customers_conversations_are_listed(tenant_a: Tenant) -> None:
    customer = CustomerFactory(tenant=tenant_a)
    older = ConversationFactory(tenant=tenant_a, customer=customer)
    newer = ConversationFactory(
        tenant=tenant_a, customer=customer, status=Conversation.Status.RESOLVED, csat_rating=4
    )
    MessageFactory.create_batch(2, conversation=newer)
    ConversationFactory(tenant=tenant_a)  # someone else's

    client = api_client(tenant_a, Scope.CONVERSATIONS_READ)
    response = client.get(f"/api/v1/customers/{customer.pk}/conversations")
    filtered = client.get(f"/api/v1/conversations?customer={customer.pk}")

    assert page_ids(response) == [newer.pk, older.pk]
    first = response.json()["data"][0]
    assert first["status"] == "resolved"
    assert first["csat"]["rating"] == 4
    assert first["message_count"] == 2
    assert first["priority"] == "normal"
    assert first["customer"]["id"] == customer.pk
    # The conversation list's own shape, row for row.
    assert response.json() == filtered.json()


def test_the_customers_tickets_need_the_tickets_scope(tenant_a: Tenant) -> None:
    customer = CustomerFactory(tenant=tenant_a)
    open_ticket = TicketFactory(tenant=tenant_a, customer=customer)
    solved = TicketFactory(tenant=tenant_a, customer=customer, status=Ticket.Status.SOLVED)
    TicketFactory(tenant=tenant_a)  # someone else's
    url = f"/api/v1/customers/{customer.pk}/tickets"

    refused = api_client(tenant_a, Scope.CONVERSATIONS_READ).get(url)
    client = api_client(tenant_a, Scope.TICKETS_READ)

    assert refused.status_code == 403
    assert page_ids(client.get(url)) == [solved.pk, open_ticket.pk]
    assert page_ids(client.get(url, {"status": "open"})) == [open_ticket.pk]
    assert client.get(url).json()["data"][0]["customer_id"] == customer.pk


# Anonymisation -----------------------------------------------------------------------------------


def _customer_with_history(tenant: Tenant) -> dict[str, Any]:
    """A customer with a resolved conversation (their words, the assistant's answer with its
    usage, a rating with a comment) and a ticket from it with replies both ways."""
    customer = CustomerFactory(
        tenant=tenant,
        channel=Channel.API,
        external_id="crm-4711",
        display_name="Li Wei",
        email="li.wei@example.com",
        phone="13800138000",
        identified=True,
        metadata={"address": "1 Nanjing Road"},
        last_seen_at=timezone.now(),
    )
    conversation = ConversationFactory(
        tenant=tenant,
        customer=customer,
        status=Conversation.Status.RESOLVED,
        resolution_kind=Conversation.ResolutionKind.TICKET,
        handoff_reason=Conversation.HandoffReason.CUSTOMER_REQUEST,
        csat_rating=2,
        csat_comment="Li Wei here, call me on 13800138000",
    )
    question = MessageFactory(
        conversation=conversation, content="My card 6222 0212 3456 7890 128 was charged twice"
    )
    answer = MessageFactory(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        source=Message.Source.RAG,
        content="I am sorry to hear that. A colleague will look into it.",
        tokens_in=120,
        tokens_out=40,
        cost=Decimal("0.001200"),
    )
    ticket = TicketFactory.create(
        tenant=tenant,
        customer=customer,
        conversation=conversation,
        subject="My card was charged twice",
        description="[2026-12-01] Customer: My card 6222 … was charged twice",
        contact_email="li.wei@example.com",
        contact_phone="13800138000",
        status=Ticket.Status.PENDING,
    )
    agent_reply = TicketReply.objects.create(
        tenant=tenant, ticket=ticket, content="We refunded the second charge."
    )
    customer_reply = TicketReply.objects.create(
        tenant=tenant, ticket=ticket, from_customer=True, content="Thanks, I live at 1 Nanjing Rd"
    )
    return {
        "customer": customer,
        "conversation": conversation,
        "question": question,
        "answer": answer,
        "ticket": ticket,
        "agent_reply": agent_reply,
        "customer_reply": customer_reply,
    }


def test_anonymising_erases_personal_data_and_keeps_the_statistics(
    tenant_a: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    scene = _customer_with_history(tenant_a)
    customer: Customer = scene["customer"]
    other = _customer_with_history(TenantFactory(name="Another shop", slug="another-shop"))
    overview_before = tenant_overview(tenant=tenant_a)
    counts_before = _counts(tenant_a)
    client = api_client(tenant_a)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(f"/api/v1/customers/{customer.pk}")

    assert response.status_code == 204
    assert response.content == b""
    customer.refresh_from_db()
    assert customer.display_name == customer.email == customer.phone == ""
    assert customer.metadata == {}
    assert "4711" not in customer.external_id
    assert customer.external_id.startswith("anonymized:")
    assert customer.anonymized_at is not None
    assert customer.channel == Channel.API and customer.identified is True
    scene["question"].refresh_from_db()
    assert scene["question"].content == ERASED_TEXT
    scene["answer"].refresh_from_db()
    assert scene["answer"].content.startswith("I am sorry")  # the tenant's own words
    assert (scene["answer"].tokens_in, scene["answer"].tokens_out) == (120, 40)
    assert scene["answer"].cost == Decimal("0.001200")
    conversation = Conversation.objects.get(pk=scene["conversation"].pk)
    assert conversation.csat_comment == ERASED_TEXT
    assert (conversation.status, conversation.csat_rating) == (Conversation.Status.RESOLVED, 2)
    assert conversation.resolution_kind == Conversation.ResolutionKind.TICKET
    ticket = Ticket.objects.get(pk=scene["ticket"].pk)
    assert (ticket.subject, ticket.description) == (ERASED_TEXT, ERASED_TEXT)
    assert (ticket.contact_email, ticket.contact_phone) == ("", "")
    assert ticket.status == Ticket.Status.PENDING
    assert TicketReply.objects.get(pk=scene["customer_reply"].pk).content == ERASED_TEXT
    assert TicketReply.objects.get(pk=scene["agent_reply"].pk).content.startswith("We refunded")
    assert _counts(tenant_a) == counts_before
    assert tenant_overview(tenant=tenant_a) == overview_before
    # Another tenant's customer with the same history is untouched.
    other["customer"].refresh_from_db()
    other["question"].refresh_from_db()
    assert other["customer"].email == "li.wei@example.com"
    assert other["question"].content.startswith("My card")

    read = client.get(f"/api/v1/customers/{customer.pk}").json()
    assert read["anonymized"] is True
    assert read["name"] == read["email"] == read["phone"] == ""
    assert read["attributes"] == {}
    assert read["conversation_count"] == 1
    # The integrator's id finds nobody now, and may name a new customer.
    assert page_ids(client.get("/api/v1/customers", {"external_id": "crm-4711"})) == []
    assert page_ids(client.get("/api/v1/customers", {"q": "Li Wei"})) == []
    assert client.post("/api/v1/customers", {"external_id": "crm-4711"}).status_code == 201


def test_anonymising_again_changes_nothing(tenant_a: Tenant) -> None:
    customer = _customer_with_history(tenant_a)["customer"]
    client = api_client(tenant_a)

    first = client.delete(f"/api/v1/customers/{customer.pk}")
    customer.refresh_from_db()
    token, at = customer.external_id, customer.anonymized_at
    second = client.delete(f"/api/v1/customers/{customer.pk}")

    assert (first.status_code, second.status_code) == (204, 204)
    customer.refresh_from_db()
    assert (customer.external_id, customer.anonymized_at) == (token, at)


def test_an_anonymised_customer_takes_no_personal_data_again(tenant_a: Tenant) -> None:
    customer = _customer_with_history(tenant_a)["customer"]
    client = api_client(tenant_a)
    client.delete(f"/api/v1/customers/{customer.pk}")

    update = client.patch(
        f"/api/v1/customers/{customer.pk}", {"email": "back@example.com"}, format="json"
    )
    ticket = client.post(
        "/api/v1/tickets", {"subject": "Hello", "customer_id": customer.pk}, format="json"
    )

    assert update.status_code == ticket.status_code == 409
    customer.refresh_from_db()
    assert customer.email == ""
    assert Ticket.objects.filter(customer=customer).count() == 1


def test_anonymising_forgets_stored_api_responses_that_show_the_customer(
    tenant_a: Tenant,
) -> None:
    client = api_client(tenant_a)
    created = client.post(
        "/api/v1/customers",
        {"external_id": "crm-9", "email": "nine@example.com"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="create-crm-9",
    )
    other = client.post(
        "/api/v1/customers",
        {"external_id": "crm-10", "email": "ten@example.com"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="create-crm-10",
    )
    ticket = client.post(
        "/api/v1/tickets",
        {"subject": "Where is my order", "customer_id": created.json()["id"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="ticket-crm-9",
    )
    assert (created.status_code, other.status_code, ticket.status_code) == (201, 201, 201)

    client.delete(f"/api/v1/customers/{created.json()['id']}")

    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["create-crm-10"]


@pytest.fixture(params=["local", "redis"])
def memory_backend(request: pytest.FixtureRequest, settings: Any) -> str:
    if request.param == "redis":
        request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
    return request.param


@pytest.mark.django_db(transaction=True)
def test_anonymising_forgets_the_conversation_memory(memory_backend: str) -> None:
    tenant = TenantFactory()
    scene = _customer_with_history(tenant)
    conversation: Conversation = scene["conversation"]
    key = {
        "tenant_id": tenant.pk,
        "conversation_id": conversation.pk,
        "conversation_key": conversation.cache_key,
    }

    async def recent() -> list[Turn]:
        try:
            return await memory_recent(**key)
        finally:
            await redis_close()

    assert async_to_sync(recent)()[0].content.startswith("My card")
    redis_key = f"{MEMORY_KEY_PREFIX}{tenant.pk}:{conversation.pk}:{conversation.cache_key}"
    if memory_backend == "redis":
        assert redis.Redis.from_url(settings.REDIS_URL).exists(redis_key) == 1

    response = api_client(tenant).delete(f"/api/v1/customers/{scene['customer'].pk}")

    assert response.status_code == 204
    if memory_backend == "redis":
        assert redis.Redis.from_url(settings.REDIS_URL).exists(redis_key) == 0
    turns = async_to_sync(recent)()
    assert [turn.content for turn in turns] == [ERASED_TEXT, scene["answer"].content]


# Helpers -----------------------------------------------------------------------------------------


def _counts(tenant: Tenant) -> dict[str, Any]:
    return {
        "customers": Customer.objects.filter(tenant=tenant).count(),
        "conversations": list(
            Conversation.objects.filter(tenant=tenant)
            .order_by("pk")
            .values_list("status", "resolution_kind", "csat_rating", "created_at", "resolved_at")
        ),
        "messages": list(
            Message.objects.filter(tenant=tenant)
            .order_by("pk")
            .values_list("role", "tokens_in", "tokens_out", "cost", "created_at")
        ),
        "tickets": list(
            Ticket.objects.filter(tenant=tenant)
            .order_by("pk")
            .values_list("status", "priority", "sla_due_at", "solved_at", "created_at")
        ),
        "replies": TicketReply.objects.filter(tenant=tenant).count(),
    }
