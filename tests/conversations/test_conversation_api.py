"""The REST API's conversations and messages: lists and filters, detail, changes, agents'
replies and notes (live to the customer's widget, or not), handoff and resolve."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.models import Conversation, Message
from tenants.models import Role
from tests.support import factories
from tests.support.api import api_client, page_ids
from tests.support.console import member
from tests.support.widget import Widget

WRITE_AND_READ = ["conversations:read", "conversations:write"]


def at(day: int) -> datetime:
    return datetime(2026, 11, day, 12, 0, tzinfo=UTC)


# Lists and filters --------------------------------------------------------------------------


@pytest.fixture
def listed(tenant_a, tenant_b):
    """Four conversations of tenant A (and one of B's), each set apart by one filter."""
    li = member(tenant_a, "li")
    queued = factories.ConversationFactory(tenant=tenant_a, status="queued", tags=["refund"])
    human = factories.ConversationFactory(
        tenant=tenant_a, status="human", assignee=li, channel="api", tags=["vip", "refund"]
    )
    resolved = factories.ConversationFactory(tenant=tenant_a, status="resolved")
    bot = factories.ConversationFactory(tenant=tenant_a, status="bot")
    factories.MessageFactory(conversation=bot, content="Where is my PARCEL, please?")
    factories.MessageFactory(conversation=queued, content="Refund", internal=True)
    for day, conversation in zip((1, 2, 3, 4), (queued, human, resolved, bot), strict=True):
        Conversation.objects.filter(pk=conversation.pk).update(
            created_at=at(day), updated_at=at(day + 10)
        )
    factories.ConversationFactory(tenant=tenant_b, status="queued", tags=["refund"])
    return {"li": li, "queued": queued, "human": human, "resolved": resolved, "bot": bot}


def test_lists_the_tenants_conversations_newest_first(tenant_a, listed) -> None:
    response = api_client(tenant_a, *WRITE_AND_READ).get("/api/v1/conversations")

    assert page_ids(response) == [
        listed[name].pk for name in ("bot", "resolved", "human", "queued")
    ]  # not tenant B's
    assert response.json()["has_more"] is False


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=queued&status=human", ["human", "queued"]),
        ("status=queued,resolved", ["resolved", "queued"]),
        ("channel=api", ["human"]),
        ("assignee=none", ["bot", "resolved", "queued"]),
        ("tag=refund", ["human", "queued"]),
        ("tag=vip", ["human"]),
        ("created_after=2026-11-02T12:00:00Z", ["bot", "resolved", "human"]),
        ("created_before=2026-11-02T12:00:00Z", ["queued"]),
        ("updated_after=2026-11-14T00:00:00Z", ["bot"]),
        ("updated_before=2026-11-12T13:00:00Z", ["human", "queued"]),
        ("q=parcel", ["bot"]),
        ("q=refund", ["queued"]),  # internal notes are searched too
        ("status=queued&tag=vip", []),
    ],
)
def test_filters(tenant_a, listed, query: str, expected: list[str]) -> None:
    response = api_client(tenant_a, *WRITE_AND_READ).get(f"/api/v1/conversations?{query}")

    assert page_ids(response) == [listed[name].pk for name in expected]


def test_filters_by_assignee_and_customer(tenant_a, listed) -> None:
    client = api_client(tenant_a, *WRITE_AND_READ)
    human = listed["human"]

    by_assignee = client.get(f"/api/v1/conversations?assignee={listed['li'].pk}")
    by_customer = client.get(f"/api/v1/conversations?customer={human.customer_id}")

    assert page_ids(by_assignee) == [human.pk]
    assert page_ids(by_customer) == [human.pk]


def test_bad_filter_values_are_refused_by_name(tenant_a) -> None:
    response = api_client(tenant_a, *WRITE_AND_READ).get(
        "/api/v1/conversations?status=open&channel=fax&assignee=bob&customer=x"
        "&created_after=yesterday&updated_before=2026-13-01"
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {
        "status.0",
        "channel",
        "assignee",
        "customer",
        "created_after",
        "updated_before",
    }


def test_the_list_pages_with_a_cursor(tenant_a) -> None:
    made = [factories.ConversationFactory(tenant=tenant_a).pk for _ in range(3)]
    client = api_client(tenant_a, *WRITE_AND_READ)

    first = client.get("/api/v1/conversations?limit=2").json()
    second = client.get(f"/api/v1/conversations?limit=2&cursor={first['next_cursor']}").json()

    assert [row["id"] for row in first["data"] + second["data"]] == made[::-1]
    assert (first["has_more"], second["has_more"]) == (True, False)


def test_a_page_costs_the_same_queries_however_many_rows(
    tenant_a, django_assert_num_queries
) -> None:
    client = api_client(tenant_a, *WRITE_AND_READ)
    conversation = factories.ConversationFactory(tenant=tenant_a, assignee=member(tenant_a, "li"))
    factories.MessageFactory(conversation=conversation, role="agent", author=conversation.assignee)
    urls = ("/api/v1/conversations", f"/api/v1/conversations/{conversation.pk}/messages")
    client.get("/api/v1/tenant")  # the key's first use is recorded once
    with CaptureQueriesContext(connection) as one:
        for url in urls:
            assert client.get(url).status_code == 200
    for n in range(5):
        more = factories.ConversationFactory(tenant=tenant_a, assignee=member(tenant_a, f"a{n}"))
        factories.MessageFactory(conversation=more)
        factories.MessageFactory(conversation=conversation, role="agent", author=more.assignee)

    with django_assert_num_queries(len(one.captured_queries)):
        for url in urls:
            assert len(client.get(url).json()["data"]) == 6


# Detail -------------------------------------------------------------------------------------


def test_detail(tenant_a) -> None:
    li = member(tenant_a, "li")
    customer = factories.CustomerFactory(tenant=tenant_a, external_id="crm-7", display_name="Ann")
    conversation = factories.ConversationFactory(
        tenant=tenant_a,
        customer=customer,
        status="resolved",
        resolution_kind="agent",
        handoff_reason="customer_request",
        assignee=li,
        tags=["vip"],
        language="en",
        csat_rating=4,
        csat_comment="Quick",
    )
    factories.MessageFactory.create_batch(2, conversation=conversation)

    body = (
        api_client(tenant_a, *WRITE_AND_READ).get(f"/api/v1/conversations/{conversation.pk}").json()
    )

    assert body["customer"] == {"id": customer.pk, "external_id": "crm-7", "name": "Ann"}
    assert body["assignee"] == {"id": li.pk, "name": "li", "email": li.email}
    assert (body["status"], body["resolution_kind"], body["handoff_reason"]) == (
        "resolved",
        "agent",
        "customer_request",
    )
    assert (body["priority"], body["tags"], body["language"]) == ("normal", ["vip"], "en")
    assert body["csat"] == {"rating": 4, "comment": "Quick"}
    assert body["message_count"] == 2
    assert body["created_at"].endswith("Z") and body["closed_at"] is None


def test_an_open_conversation_has_nulls_where_nothing_happened(tenant_a) -> None:
    conversation = factories.ConversationFactory(tenant=tenant_a)

    body = (
        api_client(tenant_a, *WRITE_AND_READ).get(f"/api/v1/conversations/{conversation.pk}").json()
    )

    assert (body["assignee"], body["csat"], body["resolution_kind"], body["message_count"]) == (
        None,
        None,
        None,
        0,
    )


def test_another_tenants_conversation_is_not_found(tenant_a, tenant_b) -> None:
    theirs = factories.ConversationFactory(tenant=tenant_b, status="queued")
    factories.MessageFactory(conversation=theirs)
    agent = member(tenant_a, "li")
    client = api_client(tenant_a, *WRITE_AND_READ)
    base = f"/api/v1/conversations/{theirs.pk}"

    responses = [
        client.get(base),
        client.patch(base, {"priority": "high"}, format="json"),
        client.get(f"{base}/messages"),
        client.post(f"{base}/messages", {"text": "hi", "agent": agent.pk}, format="json"),
        client.post(f"{base}/handoff", {}, format="json"),
        client.post(f"{base}/resolve"),
    ]

    assert [r.status_code for r in responses] == [404] * 6
    assert {r.json()["error"]["code"] for r in responses} == {"not_found"}
    theirs.refresh_from_db()
    assert (theirs.status, theirs.priority, theirs.messages.count()) == ("queued", "normal", 1)


# Messages -----------------------------------------------------------------------------------


def test_messages_page_both_ways(tenant_a) -> None:
    conversation = factories.ConversationFactory(tenant=tenant_a)
    made = [factories.MessageFactory(conversation=conversation).pk for _ in range(5)]
    client = api_client(tenant_a, *WRITE_AND_READ)
    url = f"/api/v1/conversations/{conversation.pk}/messages"

    def walk(query: str) -> list[int]:
        seen, cursor = [], None
        while True:
            page = client.get(f"{url}?{query}" + (f"&cursor={cursor}" if cursor else "")).json()
            assert len(page["data"]) <= 2
            seen += [row["id"] for row in page["data"]]
            if not page["has_more"]:
                return seen
            cursor = page["next_cursor"]

    assert walk("limit=2") == made  # oldest first by default
    assert walk("limit=2&order=desc") == made[::-1]


def test_each_message_says_who_wrote_it_and_how_it_was_answered(tenant_a) -> None:
    li = member(tenant_a, "li")
    conversation = factories.ConversationFactory(tenant=tenant_a)
    factories.MessageFactory(conversation=conversation, content="Where is it?")
    factories.MessageFactory(
        conversation=conversation,
        role="assistant",
        source="rag",
        content="On its way.",
        knowledge_refs=["faq-3", "chunk-9"],
        provider="Primary",
        model="kefu-mock",
        tokens_in=120,
        tokens_out=30,
        cost=Decimal("0.000450"),
        first_token_ms=200,
        latency_ms=900,
        confidence=0.8,
        feedback="up",
    )
    factories.MessageFactory(
        conversation=conversation,
        role="agent",
        source="agent",
        content="VIP",
        author=li,
        internal=True,
    )

    customer, answer, note = (
        api_client(tenant_a, *WRITE_AND_READ)
        .get(f"/api/v1/conversations/{conversation.pk}/messages")
        .json()["data"]
    )

    assert (customer["role"], customer["text"], customer["source"], customer["author"]) == (
        "customer",
        "Where is it?",
        None,
        None,
    )
    assert customer["answer"] is None and customer["internal"] is False
    assert (answer["role"], answer["source"], answer["feedback"]) == ("assistant", "rag", "up")
    assert answer["answer"] == {
        "citations": ["faq-3", "chunk-9"],
        "provider": "Primary",
        "model": "kefu-mock",
        "tokens_in": 120,
        "tokens_out": 30,
        "cost": "0.000450",
        "first_token_ms": 200,
        "latency_ms": 900,
        "confidence": 0.8,
    }
    assert (note["internal"], note["author"]) == (
        True,
        {"id": li.pk, "name": "li", "email": li.email},
    )


# Changes ------------------------------------------------------------------------------------


def test_priority_and_tags_are_set_and_tags_normalised(tenant_a) -> None:
    conversation = factories.ConversationFactory(tenant=tenant_a, tags=["old"])

    response = api_client(tenant_a, *WRITE_AND_READ).patch(
        f"/api/v1/conversations/{conversation.pk}",
        {"priority": "urgent", "tags": [" vip ", "refund", "vip", "refund "]},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["priority"], response.json()["tags"]) == ("urgent", ["vip", "refund"])
    conversation.refresh_from_db()
    assert (conversation.priority, conversation.tags) == ("urgent", ["vip", "refund"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tags": [f"t{n}" for n in range(21)]}, "tags"),
        ({"tags": ["x" * 51]}, "tags.0"),
        ({"tags": ["  "]}, "tags.0"),
        ({"tags": "vip"}, "tags"),
        ({"priority": "asap"}, "priority"),
        ({"status": "closed"}, "status"),
        ({"status": "queued"}, "status"),
        ({"assignee": "somebody"}, "assignee"),
    ],
)
def test_invalid_changes_are_refused_by_name(tenant_a, body: dict, field: str) -> None:
    conversation = factories.ConversationFactory(tenant=tenant_a, tags=["old"])

    response = api_client(tenant_a, *WRITE_AND_READ).patch(
        f"/api/v1/conversations/{conversation.pk}", body, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]
    conversation.refresh_from_db()
    assert (conversation.tags, conversation.priority) == (["old"], "normal")


def test_only_active_members_who_work_conversations_can_be_assigned(tenant_a, tenant_b) -> None:
    viewer = member(tenant_a, "viewer", Role.VIEWER)
    gone = member(tenant_a, "gone")
    gone.is_active = False
    gone.save()
    outsider = member(tenant_b, "outsider")
    stranger = factories.UserFactory()
    conversation = factories.ConversationFactory(tenant=tenant_a, status="queued")
    client = api_client(tenant_a, *WRITE_AND_READ)

    for user in (viewer, gone, outsider, stranger):
        for reference in (user.pk, user.email):
            response = client.patch(
                f"/api/v1/conversations/{conversation.pk}",
                {"assignee": reference, "priority": "high"},
                format="json",
            )
            assert response.status_code == 400, (user.username, reference)
            assert list(response.json()["error"]["fields"]) == ["assignee"]
    conversation.refresh_from_db()
    assert (conversation.status, conversation.assignee_id, conversation.priority) == (
        "queued",
        None,
        "normal",
    )


def test_assigning_takes_transfers_and_unassigning_hands_back(tenant_a) -> None:
    li = member(tenant_a, "li")
    wang = member(tenant_a, "wang", Role.ADMIN)
    conversation = factories.ConversationFactory(tenant=tenant_a, status="queued")
    client = api_client(tenant_a, *WRITE_AND_READ)
    url = f"/api/v1/conversations/{conversation.pk}"

    taken = client.patch(url, {"assignee": li.email}, format="json").json()
    moved = client.patch(url, {"assignee": wang.pk}, format="json").json()
    back = client.patch(url, {"assignee": None}, format="json").json()

    assert (taken["status"], taken["assignee"]["id"]) == ("human", li.pk)
    assert taken["assigned_at"] is not None
    assert (moved["status"], moved["assignee"]["id"]) == ("human", wang.pk)
    assert (back["status"], back["assignee"]) == ("bot", None)


def test_status_changes_follow_the_lifecycle(tenant_a) -> None:
    client = api_client(tenant_a, *WRITE_AND_READ)
    by_agent = factories.ConversationFactory(
        tenant=tenant_a, status="resolved", resolution_kind="agent"
    )
    by_assistant = factories.ConversationFactory(
        tenant=tenant_a, status="resolved", resolution_kind="ai"
    )
    abandoned = factories.ConversationFactory(
        tenant=tenant_a, status="closed", resolution_kind="abandoned"
    )

    reopened = client.patch(
        f"/api/v1/conversations/{by_assistant.pk}", {"status": "bot"}, format="json"
    )
    refused = client.patch(
        f"/api/v1/conversations/{by_agent.pk}", {"status": "bot", "priority": "high"}, format="json"
    )
    closed = client.patch(
        f"/api/v1/conversations/{abandoned.pk}", {"status": "resolved"}, format="json"
    )
    assign_closed = client.patch(
        f"/api/v1/conversations/{abandoned.pk}",
        {"assignee": member(tenant_a, "li").pk},
        format="json",
    )

    assert (reopened.status_code, reopened.json()["status"]) == (200, "bot")
    assert reopened.json()["resolution_kind"] is None
    for response in (refused, closed, assign_closed):
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "conflict"
    by_agent.refresh_from_db()
    assert (by_agent.status, by_agent.priority) == ("resolved", "normal")  # all or nothing
    abandoned.refresh_from_db()
    assert (abandoned.status, abandoned.assignee_id) == ("closed", None)


# Handoff and resolve ------------------------------------------------------------------------


def test_handoff_queues_the_conversation(tenant_a) -> None:
    conversation = factories.ConversationFactory(tenant=tenant_a, status="bot")
    waiting = factories.ConversationFactory(tenant=tenant_a, status="queued")
    Conversation.objects.filter(pk=waiting.pk).update(queued_at=at(1))
    client = api_client(tenant_a, *WRITE_AND_READ)

    first = client.post(
        f"/api/v1/conversations/{conversation.pk}/handoff",
        {"reason": "negative_feedback"},
        format="json",
    )
    again = client.post(f"/api/v1/conversations/{conversation.pk}/handoff", {}, format="json")
    bad = client.post(
        f"/api/v1/conversations/{conversation.pk}/handoff", {"reason": "bored"}, format="json"
    )

    assert first.status_code == 200, first.json()
    assert first.json() == {
        "status": "queued",
        "moved": True,
        "queue_position": 2,
        "agents_available": False,
    }
    assert (again.json()["moved"], again.json()["queue_position"]) == (False, 2)
    assert list(bad.json()["error"]["fields"]) == ["reason"]
    conversation.refresh_from_db()
    assert (conversation.status, conversation.handoff_reason) == ("queued", "negative_feedback")


@pytest.mark.parametrize(
    ("before", "status", "kind"),
    [
        ({"status": "bot"}, "resolved", "ai"),
        ({"status": "queued"}, "resolved", "agent"),
        ({"status": "human"}, "resolved", "agent"),
        ({"status": "resolved", "resolution_kind": "ticket"}, "resolved", "ticket"),
    ],
)
def test_resolve(tenant_a, before: dict, status: str, kind: str) -> None:
    conversation = factories.ConversationFactory(tenant=tenant_a, **before)

    response = api_client(tenant_a, *WRITE_AND_READ).post(
        f"/api/v1/conversations/{conversation.pk}/resolve"
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["resolution_kind"]) == (status, kind)
    conversation.refresh_from_db()
    assert (conversation.status, conversation.resolution_kind) == (status, kind)


def test_a_closed_conversation_cannot_be_resolved(tenant_a) -> None:
    conversation = factories.ConversationFactory(
        tenant=tenant_a, status="closed", resolution_kind="abandoned"
    )

    response = api_client(tenant_a, *WRITE_AND_READ).post(
        f"/api/v1/conversations/{conversation.pk}/resolve"
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


# Scopes -------------------------------------------------------------------------------------


def test_a_read_only_key_reads_but_does_not_write(tenant_a) -> None:
    li = member(tenant_a, "li")
    conversation = factories.ConversationFactory(tenant=tenant_a, status="queued")
    client = api_client(tenant_a, "conversations:read")
    base = f"/api/v1/conversations/{conversation.pk}"

    reads = [client.get("/api/v1/conversations"), client.get(base), client.get(f"{base}/messages")]
    writes = [
        client.patch(base, {"priority": "high"}, format="json"),
        client.post(f"{base}/messages", {"text": "hi", "agent": li.pk}, format="json"),
        client.post(f"{base}/handoff", {}, format="json"),
        client.post(f"{base}/resolve"),
    ]

    assert [r.status_code for r in reads] == [200, 200, 200]
    assert [r.status_code for r in writes] == [403] * 4
    assert {r.json()["error"]["code"] for r in writes} == {"missing_scope"}
    conversation.refresh_from_db()
    assert (conversation.status, conversation.priority) == ("queued", "normal")
    assert not conversation.messages.exists()


def test_a_key_without_conversation_scopes_reads_nothing(tenant_a) -> None:
    conversation = factories.ConversationFactory(tenant=tenant_a)
    client = api_client(tenant_a, "knowledge:read")

    responses = [
        client.get("/api/v1/conversations"),
        client.get(f"/api/v1/conversations/{conversation.pk}/messages"),
    ]

    assert [r.status_code for r in responses] == [403, 403]


# Replies and notes --------------------------------------------------------------------------


def test_replies_need_a_member_who_works_conversations(tenant_a, tenant_b) -> None:
    conversation = factories.ConversationFactory(tenant=tenant_a, status="queued")
    viewer = member(tenant_a, "viewer", Role.VIEWER)
    outsider = member(tenant_b, "outsider")
    client = api_client(tenant_a, *WRITE_AND_READ)
    url = f"/api/v1/conversations/{conversation.pk}/messages"

    responses = [
        client.post(url, {"text": "hi", "agent": viewer.pk}, format="json"),
        client.post(url, {"text": "hi", "agent": outsider.email}, format="json"),
        client.post(url, {"text": "hi"}, format="json"),
        client.post(url, {"text": "", "agent": viewer.pk}, format="json"),
    ]

    assert [list(r.json()["error"]["fields"]) for r in responses] == [
        ["agent"],
        ["agent"],
        ["agent"],
        ["text"],
    ]
    assert not conversation.messages.exists()


def test_a_reply_takes_a_queued_conversation_for_the_agent(tenant_a) -> None:
    li = member(tenant_a, "li")
    conversation = factories.ConversationFactory(tenant=tenant_a, status="queued")

    response = api_client(tenant_a, *WRITE_AND_READ).post(
        f"/api/v1/conversations/{conversation.pk}/messages",
        {"text": "  Hello, Li here.  ", "agent": li.email.upper()},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["role"], body["source"], body["text"], body["internal"]) == (
        "agent",
        "agent",
        "Hello, Li here.",
        False,
    )
    assert body["author"] == {"id": li.pk, "name": "li", "email": li.email}
    conversation.refresh_from_db()
    assert (conversation.status, conversation.assignee_id) == ("human", li.pk)
    assert conversation.last_message_at is not None


def test_an_agent_cannot_reply_in_another_agents_conversation(tenant_a) -> None:
    li = member(tenant_a, "li")
    wang = member(tenant_a, "wang")
    conversation = factories.ConversationFactory(tenant=tenant_a, status="human", assignee=li)
    client = api_client(tenant_a, *WRITE_AND_READ)
    url = f"/api/v1/conversations/{conversation.pk}/messages"

    refused = client.post(url, {"text": "Mine now", "agent": wang.pk}, format="json")
    note = client.post(
        url, {"text": "Li is on it", "agent": wang.pk, "internal": True}, format="json"
    )

    assert refused.status_code == 409
    assert note.status_code == 201  # anyone may leave a note
    assert [m.content for m in conversation.messages.all()] == ["Li is on it"]


async def frame_of(widget: Widget, kind: str) -> dict:
    while True:
        frame = await widget.receive()
        if frame["type"] == kind:
            return frame


@pytest.mark.django_db(transaction=True)
async def test_an_agent_reply_reaches_the_customers_widget_live_and_a_note_does_not(shop) -> None:
    li = await database_sync_to_async(member)(shop, "li")
    client = await database_sync_to_async(api_client)(shop, *WRITE_AND_READ)
    widget = Widget(shop)
    try:
        await widget.open()
        await widget.ask("How long does delivery take?", "m1")  # answered by the assistant
        conversation_id = widget.welcome["conversation_id"]
        url = f"/api/v1/conversations/{conversation_id}/messages"

        note = await sync_to_async(client.post)(
            url, {"text": "VIP customer", "agent": li.pk, "internal": True}, format="json"
        )
        assert note.status_code == 201, note.json()
        assert (note.json()["internal"], note.json()["author"]["id"]) == (True, li.pk)
        assert await widget.communicator.receive_nothing(timeout=0.5) is True

        reply = await sync_to_async(client.post)(
            url, {"text": "Hi, I'm Li.", "agent": li.email}, format="json"
        )
        assert reply.status_code == 201, reply.json()
        joined = await frame_of(widget, "status")
        assert (joined["status"], joined["text"]) == ("human", "li has joined the conversation.")
        live = await frame_of(widget, "agent_message")
        assert (live["message_id"], live["text"], live["author"]) == (
            reply.json()["id"],
            "Hi, I'm Li.",
            "li",
        )

        resolved = await sync_to_async(client.post)(
            f"/api/v1/conversations/{conversation_id}/resolve"
        )
        assert resolved.json()["resolution_kind"] == "agent"
        assert (await frame_of(widget, "status"))["status"] == "resolved"
        assert (await frame_of(widget, "rating_request"))["text"]
    finally:
        await widget.close()

    conversation = await Conversation.objects.aget(pk=conversation_id)
    assert (conversation.status, conversation.assignee_id) == ("resolved", li.pk)
    notes = [m async for m in Message.objects.filter(conversation_id=conversation_id, role="agent")]
    assert [(m.content, m.internal) for m in notes] == [
        ("VIP customer", True),
        ("Hi, I'm Li.", False),
    ]


def test_times_are_utc(tenant_a) -> None:
    """Times in the output are UTC, whatever the server's zone (``…Z``)."""
    conversation = factories.ConversationFactory(tenant=tenant_a)
    Conversation.objects.filter(pk=conversation.pk).update(created_at=at(5) + timedelta(hours=3))

    body = (
        api_client(tenant_a, *WRITE_AND_READ).get(f"/api/v1/conversations/{conversation.pk}").json()
    )

    assert body["created_at"] == "2026-11-05T15:00:00Z"


@pytest.mark.django_db(transaction=True)
async def test_a_handoff_through_the_api_is_shown_in_the_customers_widget(shop) -> None:
    client = await database_sync_to_async(api_client)(shop, *WRITE_AND_READ)
    widget = Widget(shop)
    try:
        await widget.open()
        await widget.ask("How long does delivery take?", "m1")  # answered by the assistant
        conversation_id = widget.welcome["conversation_id"]

        handed = await sync_to_async(client.post)(
            f"/api/v1/conversations/{conversation_id}/handoff", {}, format="json"
        )

        assert handed.status_code == 200, handed.json()
        shown = await frame_of(widget, "status")
        # Nobody is online: the widget offers the contact form, as for a handoff it asked for.
        assert shown == {
            "v": 1,
            "type": "status",
            "status": "queued",
            "position": handed.json()["queue_position"],
            "agents_available": False,
            "collect_contact": True,
            "text": "Nobody is available right now. Leave your contact details and we will "
            "get back to you.",
        }
        assert await widget.communicator.receive_nothing(timeout=0.3) is True  # once
    finally:
        await widget.close()
