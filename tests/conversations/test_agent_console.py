"""The agent console's socket: queue, accept, replies both ways, notes, transfer, resolve."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from conversations.agent_consumer import AgentConsumer
from conversations.models import Conversation, Message
from knowledge import services as knowledge_services
from tenants.models import Role
from tests import factories
from tests.conversations.test_pipeline import Widget

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop(db):
    tenant = factories.TenantFactory(
        slug="shop", allowed_origins=["https://shop.example.com"], default_language="en"
    )
    factories.KnowledgeEntryFactory(
        tenant=tenant, question="How long does delivery take?", answer="3–5 working days."
    )
    knowledge_services.knowledge_changed(tenant_id=tenant.pk)
    return tenant


def member(tenant, username: str, role: str = Role.AGENT):
    user = factories.UserFactory(username=username)
    factories.MembershipFactory(user=user, tenant=tenant, role=role)
    return user


class Console:
    def __init__(self, user) -> None:
        self.communicator = WebsocketCommunicator(AgentConsumer.as_asgi(), "/ws/agent/")
        self.communicator.scope["user"] = user
        self.communicator.scope["session"] = {}

    async def open(self) -> dict:
        connected, code = await self.communicator.connect()
        assert connected, code
        return await self.receive("lists")

    async def send(self, frame: dict) -> None:
        await self.communicator.send_json_to(frame)

    async def receive(self, kind: str) -> dict:
        """The next frame of type ``kind`` (others, such as list refreshes, are skipped)."""
        while True:
            frame = await self.communicator.receive_json_from(timeout=5)
            if frame["type"] == kind:
                return frame

    async def close(self) -> None:
        await self.communicator.disconnect()


async def customer_frame(widget: Widget, kind: str) -> dict:
    while True:
        frame = await widget.receive()
        if frame["type"] == kind:
            return frame


async def test_the_whole_human_flow(shop) -> None:
    agent_user = await database_sync_to_async(member)(shop, "li")
    console = Console(agent_user)
    widget = Widget(shop)
    try:
        empty = await console.open()
        assert empty["queue"] == [] and empty["mine"] == []

        welcome = await widget.open()
        conversation_id = welcome["conversation_id"]
        await widget.ask("How long does delivery take?", "m1")
        await widget.send({"type": "handoff"})
        queued = await customer_frame(widget, "status")
        assert queued["status"] == "queued" and queued["agents_available"] is True

        lists = await console.receive("lists")
        assert [item["id"] for item in lists["queue"]] == [conversation_id]

        await console.send({"type": "accept", "conversation_id": conversation_id})
        detail = await console.receive("conversation")
        assert detail["status"] == "human"
        assert [(m["role"], m["source"]) for m in detail["messages"]] == [
            ("customer", ""),
            ("assistant", "faq"),
        ]
        assert detail["messages"][1]["knowledge"]  # what the assistant answered from
        joined = await customer_frame(widget, "status")
        assert (joined["status"], joined["text"]) == ("human", "li has joined the conversation.")

        await console.send(
            {"type": "reply", "conversation_id": conversation_id, "text": "Hi, I'm Li."}
        )
        reply = await customer_frame(widget, "agent_message")
        assert (reply["text"], reply["author"]) == ("Hi, I'm Li.", "li")

        await console.send(
            {"type": "reply", "conversation_id": conversation_id, "text": "VIP", "internal": True}
        )
        await console.send({"type": "typing", "conversation_id": conversation_id})
        assert (await customer_frame(widget, "typing"))["author"] == "li"  # the note never came

        await widget.send({"type": "typing"})
        typing = await console.receive("customer_typing")
        assert typing["conversation_id"] == conversation_id
        await widget.send({"type": "message", "id": "m2", "text": "How long is delivery?"})
        forwarded = await console.receive("customer_message")
        assert (forwarded["conversation_id"], forwarded["text"]) == (
            conversation_id,
            "How long is delivery?",
        )
        assert await widget.communicator.receive_nothing(timeout=0.3) is False  # the ack
        await widget.receive()

        await console.send({"type": "suggest", "conversation_id": conversation_id})
        draft = await console.receive("draft")
        assert draft["text"] == "3–5 working days."  # no LLM: the best knowledge

        await console.send({"type": "resolve", "conversation_id": conversation_id})
        resolved = await customer_frame(widget, "status")
        assert resolved["status"] == "resolved"
        assert (await customer_frame(widget, "rating_request"))["text"]
        await widget.send({"type": "rating", "value": 5, "comment": "Great"})
        assert (await customer_frame(widget, "ack"))["rating"] == 5
    finally:
        await widget.close()
        await console.close()

    conversation = await Conversation.objects.aget(pk=conversation_id)
    assert (conversation.status, conversation.resolution_kind, conversation.csat_rating) == (
        "resolved",
        "agent",
        5,
    )
    notes = [
        m async for m in Message.objects.filter(conversation_id=conversation_id, internal=True)
    ]
    assert [n.content for n in notes] == ["VIP"]
    assistant_answers = await Message.objects.filter(
        conversation_id=conversation_id, role="assistant"
    ).acount()
    assert assistant_answers == 1  # the assistant stayed silent while a person owned it


async def test_transfer_and_hand_back(shop) -> None:
    li = await database_sync_to_async(member)(shop, "li")
    wang = await database_sync_to_async(member)(shop, "wang")
    outsider = await database_sync_to_async(member)(
        await database_sync_to_async(factories.TenantFactory)(slug="other"), "outsider"
    )
    item = await database_sync_to_async(factories.ConversationFactory)(
        tenant=shop, status="human", assignee=li
    )
    console = Console(li)
    try:
        await console.open()
        await console.send(
            {"type": "transfer", "conversation_id": item.pk, "agent_id": outsider.pk}
        )
        assert (await console.receive("error"))["code"] == "forbidden"
        await console.send({"type": "transfer", "conversation_id": item.pk, "agent_id": wang.pk})
        await console.receive("lists")
        assert (await Conversation.objects.aget(pk=item.pk)).assignee_id == wang.pk
        # No longer Li's: she cannot hand it back.
        await console.send({"type": "handback", "conversation_id": item.pk})
        assert (await console.receive("error"))["code"] == "forbidden"
    finally:
        await console.close()
    console = Console(wang)
    try:
        await console.open()
        await console.send({"type": "handback", "conversation_id": item.pk})
        await console.receive("lists")
    finally:
        await console.close()
    back = await Conversation.objects.aget(pk=item.pk)
    assert (back.status, back.assignee_id) == ("bot", None)


async def test_other_tenants_conversations_are_out_of_reach(shop) -> None:
    li = await database_sync_to_async(member)(shop, "li")
    other = await database_sync_to_async(factories.ConversationFactory)(status="queued")
    console = Console(li)
    try:
        lists = await console.open()
        assert other.pk not in [item["id"] for item in lists["queue"]]
        for frame in (
            {"type": "open", "conversation_id": other.pk},
            {"type": "accept", "conversation_id": other.pk},
            {"type": "reply", "conversation_id": other.pk, "text": "hi", "internal": True},
        ):
            await console.send(frame)
            assert (await console.receive("error"))["code"] == "forbidden"
    finally:
        await console.close()
    assert (await Conversation.objects.aget(pk=other.pk)).status == "queued"


async def test_only_signed_in_agents_connect(shop) -> None:
    viewer = await database_sync_to_async(member)(shop, "viewer", Role.VIEWER)
    for user, code in ((viewer, 4403),):
        console = Console(user)
        connected, close_code = await console.communicator.connect()
        assert (connected, close_code) == (False, code)
        await console.communicator.disconnect()
    from django.contrib.auth.models import AnonymousUser

    console = Console(AnonymousUser())
    connected, close_code = await console.communicator.connect()
    assert (connected, close_code) == (False, 4401)
    await console.communicator.disconnect()
