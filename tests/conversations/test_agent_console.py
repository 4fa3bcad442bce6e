"""The agent console's socket: queue, accept, replies both ways, notes, transfer, resolve."""

import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from conversations.events import agents_group
from conversations.models import Conversation, Message
from conversations.presence import PresenceStatus, presence_statuses
from tenants.models import Membership, Role, Tenant
from tests.support import factories
from tests.support.console import Console, member
from tests.support.sockets import SOCKET_WAIT
from tests.support.widget import Widget

pytestmark = pytest.mark.django_db(transaction=True)


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
        await widget.ask("How long does delivery take?", "m1")
        conversation_id = welcome["conversation_id"]  # started by the first message
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
        connected, close_code = await console.communicator.connect(timeout=SOCKET_WAIT)
        assert (connected, close_code) == (False, code)
        await console.communicator.disconnect()
    from django.contrib.auth.models import AnonymousUser

    console = Console(AnonymousUser())
    connected, close_code = await console.communicator.connect(timeout=SOCKET_WAIT)
    assert (connected, close_code) == (False, 4401)
    await console.communicator.disconnect()


async def _closed_with(console: Console) -> int:
    """Reads the console's output up to the close; every frame before it must be the notice
    that access was revoked (nothing else may reach an agent who lost access)."""
    while True:
        output = await console.communicator.receive_output(timeout=SOCKET_WAIT)
        if output["type"] == "websocket.close":
            return int(output["code"])
        assert json.loads(output["text"]) == {
            "type": "error",
            "code": "access_revoked",
            "text": "You no longer have access to this console.",
        }


@database_sync_to_async
def _revoke(tenant, user, how: str) -> None:
    memberships = Membership.objects.filter(tenant=tenant, user=user)
    if how == "demoted":
        memberships.update(role=Role.VIEWER)
    elif how == "removed":
        memberships.delete()
    elif how == "deactivated":
        type(user).objects.filter(pk=user.pk).update(is_active=False)
    else:
        Tenant.objects.filter(pk=tenant.pk).update(is_active=False)


@pytest.mark.parametrize("how", ["demoted", "removed", "deactivated", "tenant_disabled"])
async def test_an_agent_who_loses_access_can_do_nothing_more_on_an_open_socket(shop, how) -> None:
    # Given an agent with an open console, a queued conversation and one of their own
    li = await database_sync_to_async(member)(shop, "li")
    queued = await database_sync_to_async(factories.ConversationFactory)(
        tenant=shop, status="queued"
    )
    own = await database_sync_to_async(factories.ConversationFactory)(
        tenant=shop, status="human", assignee=li
    )
    console = Console(li)
    try:
        await console.open()
        # When they lose access in the console (another process) and then act on the socket
        await _revoke(shop, li, how)
        await console.send({"type": "reply", "conversation_id": own.pk, "text": "Still here"})
        # Then the socket is closed and nothing was done
        assert await _closed_with(console) == 4403
    finally:
        await console.close()
    assert (await Conversation.objects.aget(pk=queued.pk)).status == "queued"
    assert not await Message.objects.filter(conversation_id=own.pk).aexists()


@pytest.mark.parametrize("frame_type", ["accept", "open"])
async def test_a_demoted_agent_cannot_accept_or_read_a_conversation(shop, frame_type) -> None:
    li = await database_sync_to_async(member)(shop, "li")
    queued = await database_sync_to_async(factories.ConversationFactory)(
        tenant=shop, status="queued"
    )
    console = Console(li)
    try:
        await console.open()
        await _revoke(shop, li, "demoted")
        await console.send({"type": frame_type, "conversation_id": queued.pk})
        assert await _closed_with(console) == 4403
    finally:
        await console.close()
    assert (await Conversation.objects.aget(pk=queued.pk)).status == "queued"


async def test_a_removed_agent_receives_no_more_queue_or_customer_events(shop, settings) -> None:
    # Every event re-reads the membership (by default a read may be a second old).
    settings.AGENT_ACCESS_RECHECK_SECONDS = 0
    li = await database_sync_to_async(member)(shop, "li")
    item = await database_sync_to_async(factories.ConversationFactory)(tenant=shop)
    console = Console(li)
    try:
        await console.open()
        await _revoke(shop, li, "removed")
        # A customer writes; the event reaches the agents' group of the tenant
        await get_channel_layer().group_send(
            agents_group(shop.pk),
            {
                "type": "customer.message",
                "conversation_id": item.pk,
                "message_id": 1,
                "text": "my e-mail is li@example.com",
            },
        )
        assert await _closed_with(console) == 4403
    finally:
        await console.close()


async def test_a_role_change_takes_effect_on_the_open_socket(shop) -> None:
    # An admin may work another agent's conversation; demoted to agent, no longer.
    boss = await database_sync_to_async(member)(shop, "boss", Role.ADMIN)
    li = await database_sync_to_async(member)(shop, "li")
    item = await database_sync_to_async(factories.ConversationFactory)(
        tenant=shop, status="human", assignee=li
    )
    console = Console(boss)
    try:
        await console.open()
        await Membership.objects.filter(tenant=shop, user=boss).aupdate(role=Role.AGENT)
        await console.send({"type": "resolve", "conversation_id": item.pk})
        assert (await console.receive("error"))["code"] == "forbidden"
    finally:
        await console.close()
    assert (await Conversation.objects.aget(pk=item.pk)).status == "human"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "bad_json"),
        ("1e400", "bad_frame"),
        ('{"type": "open", "conversation_id": 1e400}', "bad_frame"),
        ('{"type": "accept", "conversation_id": -1e400}', "bad_frame"),
        ('{"type": "open", "conversation_id": 1.5}', "bad_frame"),
        ('{"type": "open", "conversation_id": true}', "bad_frame"),
        ('{"type": "open", "conversation_id": 99999999999999999999999}', "bad_frame"),
        ('{"type": "transfer", "conversation_id": 1, "agent_id": null}', "bad_frame"),
        ('{"type": "reply", "conversation_id": 1, "text": ["hi"]}', "bad_frame"),
        ('{"type": "reply", "conversation_id": 1, "text": "hi", "internal": "no"}', "bad_frame"),
        ('{"type": "presence", "status": "busy"}', "bad_frame"),
        ('{"type": "presence", "status": "xxxxxxxxxxx"}', "bad_frame"),
        ('{"type": "presence"}', "bad_frame"),
        ('{"type": "ping", "status": "busy"}', "bad_frame"),
        ('{"type": "ping", "status": "xxxxxxxxxxx"}', "bad_frame"),
        ('{"type": "ping", "status": ["online"]}', "bad_frame"),
        ("[" * 100_000 + "]" * 100_000, "bad_frame"),  # too large
        ("[" * 10_000 + "]" * 10_000, "bad_json"),  # too deep for the parser
        ('{"type": "nothing"}', "unknown_type"),
    ],
)
async def test_malformed_frames_get_an_error_and_change_nothing(shop, text, code) -> None:
    li = await database_sync_to_async(member)(shop, "li")
    console = Console(li)
    try:
        await console.open()
        await console.communicator.send_to(text_data=text)
        error = await console.receive("error")
        assert error["code"] == code and error["text"]
        await console.send({"type": "ping"})  # the socket lives on
        assert (await console.receive("pong"))["type"] == "pong"
    finally:
        await console.close()
    assert presence_statuses(tenant_id=shop.pk)[li.pk] in PresenceStatus.values


async def _typing_frames(communicator: WebsocketCommunicator, *, kind: str) -> int:
    """Counts frames of ``kind`` until none arrives for half a second."""
    count = 0
    while not await communicator.receive_nothing(timeout=0.5):
        count += (await communicator.receive_json_from(timeout=SOCKET_WAIT))["type"] == kind
    return count


async def test_typing_frames_are_passed_on_once_per_window_each_way(shop) -> None:
    li = await database_sync_to_async(member)(shop, "li")
    console = Console(li)
    widget = Widget(shop)
    try:
        await console.open()
        welcome = await widget.open()
        await widget.ask("How long does delivery take?", "m1")
        conversation_id = welcome["conversation_id"]
        await Conversation.objects.filter(pk=conversation_id).aupdate(status="human", assignee=li)

        for _ in range(200):
            await widget.send({"type": "typing"})
        customer_typing = await _typing_frames(console.communicator, kind="customer_typing")
        for _ in range(200):
            await console.send({"type": "typing", "conversation_id": conversation_id})
        agent_typing = await _typing_frames(widget.communicator, kind="typing")
    finally:
        await widget.close()
        await console.close()
    assert (customer_typing, agent_typing) == (1, 1)


async def test_customers_who_gave_no_name_are_numbered_visitors(shop) -> None:
    li = await database_sync_to_async(member)(shop, "li")
    anonymous = await database_sync_to_async(factories.CustomerFactory)(
        tenant=shop, display_name="", external_id="JDmdiOhOqECX3ABh_9WI4w"
    )
    item = await database_sync_to_async(factories.ConversationFactory)(
        tenant=shop, customer=anonymous, status="queued"
    )
    console = Console(li)
    try:
        lists = await console.open()
        assert lists["queue"][0]["customer"] == {"id": anonymous.pk, "name": ""}
        await console.send({"type": "open", "conversation_id": item.pk})
        detail = await console.receive("conversation")
        assert (detail["customer"]["id"], detail["customer"]["name"]) == (anonymous.pk, "")
    finally:
        await console.close()
    assert str(anonymous) == f"Visitor #{anonymous.pk}"  # the console's lists and forms


async def test_a_reply_is_cleaned_of_what_no_database_can_store(shop) -> None:
    li = await database_sync_to_async(member)(shop, "li")
    item = await database_sync_to_async(factories.ConversationFactory)(
        tenant=shop, status="human", assignee=li
    )
    console = Console(li)
    try:
        await console.open()
        # JSON carries a NUL and a lone surrogate as escapes; neither can be stored as is.
        await console.communicator.send_to(
            text_data=json.dumps(
                {"type": "reply", "conversation_id": item.pk, "text": "On its way\x00 \ud800!"}
            )
        )
        await console.send({"type": "ping"})
        assert (await console.receive("pong"))["type"] == "pong"
    finally:
        await console.close()
    reply = await Message.objects.aget(conversation=item, role=Message.Role.AGENT)
    assert reply.content == "On its way \ufffd!"
