"""Handoff triggers, the queue, tickets when nobody is there, ratings."""

import json
import logging
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core import mail

from conversations.models import Conversation, Ticket
from conversations.pipeline import draft_reply
from conversations.presence import PresenceStatus, presence_set
from conversations.services import conversation_rate
from conversations.tickets import ticket_reply_send
from tenants.models import Role
from tests.support import factories
from tests.support.widget import Widget, provider

pytestmark = pytest.mark.django_db(transaction=True)


def online_agent(tenant, username: str = "agent-li"):
    user = factories.UserFactory(username=username, email=f"{username}@example.com")
    factories.MembershipFactory(user=user, tenant=tenant, role=Role.AGENT)
    presence_set(tenant_id=tenant.pk, user_id=user.pk, status=PresenceStatus.ONLINE)
    return user


def offline_agent(tenant) -> None:
    """An agent of the tenant who is not online (and gets the ticket e-mails)."""
    user = factories.UserFactory(username="offline", email="offline@example.com")
    factories.MembershipFactory(tenant=tenant, role=Role.AGENT, user=user)


async def conversation(conversation_id: int) -> Conversation:
    return await Conversation.objects.select_related("assignee").aget(pk=conversation_id)


@pytest.mark.parametrize(
    "text", ["转人工", "我要找客服！", "Can I talk to a human please", "AGENT"]
)
async def test_asking_for_a_person_queues_the_conversation(shop, text: str) -> None:
    await database_sync_to_async(online_agent)(shop)
    widget = Widget(shop)
    try:
        welcome = await widget.open()
        await widget.send({"type": "message", "id": "m1", "text": text})
        assert (await widget.receive())["type"] == "ack"
        status = await widget.receive()
    finally:
        await widget.close()
    assert status["status"] == "queued" and status["position"] == 1
    assert status["agents_available"] is True and status["collect_contact"] is False
    assert "number 1 in the queue" in status["text"] or "第 1 位" in status["text"]
    handed = await conversation(welcome["conversation_id"])
    assert handed.handoff_reason == "customer_request" and handed.queued_at is not None


async def test_the_queue_position_counts_earlier_customers(shop) -> None:
    await database_sync_to_async(online_agent)(shop)
    positions = []
    for _ in range(2):
        widget = Widget(shop)
        try:
            await widget.open()
            await widget.send({"type": "handoff"})
            positions.append((await widget.receive())["position"])
        finally:
            await widget.close()
    assert positions == [1, 2]


async def test_a_repeated_question_brings_a_person(shop) -> None:
    widget = Widget(shop)
    try:
        welcome = await widget.open()
        await widget.ask("Where is the nearest store?", "m1")
        frames = await widget.ask("where is the nearest store", "m2")
    finally:
        await widget.close()
    assert frames[-1]["type"] == "status"
    assert (await conversation(welcome["conversation_id"])).handoff_reason == "repeated_question"


async def test_unanswered_questions_in_a_row_bring_a_person(shop) -> None:
    widget = Widget(shop)
    try:
        welcome = await widget.open()
        first = await widget.ask("Do you sell garden gnomes?", "m1")
        assert first[-1]["type"] == "done"
        frames = await widget.ask("What about bird houses?", "m2")
        if frames[-1]["type"] == "done":  # the answer first, then the handoff
            frames.append(await widget.receive())
    finally:
        await widget.close()
    assert frames[-2]["type"] == "done" and frames[-1]["type"] == "status"
    assert (await conversation(welcome["conversation_id"])).handoff_reason == "low_confidence"


async def test_provider_failure_brings_a_person(shop, mock_llm) -> None:
    await database_sync_to_async(provider)(shop, mock_llm)
    mock_llm.configure(fault="500")
    widget = Widget(shop)
    try:
        welcome = await widget.open()
        frames = await widget.ask("Can I pay with bitcoin?", "m1")
        status = await widget.receive()
    finally:
        await widget.close()
    assert frames[-1]["source"] == "fallback"
    assert status["type"] == "status" and status["status"] == "queued"
    assert (await conversation(welcome["conversation_id"])).handoff_reason == "provider_failure"


async def test_auto_assignment_picks_the_least_busy_online_agent(shop) -> None:
    await database_sync_to_async(setattr)(shop, "auto_assign", True)
    await shop.asave(update_fields=["auto_assign"])
    busy = await database_sync_to_async(online_agent)(shop, "busy")
    free = await database_sync_to_async(online_agent)(shop, "free")
    await database_sync_to_async(factories.ConversationFactory)(
        tenant=shop, status="human", assignee=busy
    )
    widget = Widget(shop)
    try:
        await widget.open()
        await widget.send({"type": "handoff"})
        status = await widget.receive()
    finally:
        await widget.close()
    assert status["status"] == "human" and status["text"] == "free has joined the conversation."
    # The widget's conversation, started by the handoff request (the other one is busy's).
    assert await Conversation.objects.filter(tenant=shop, assignee=free).acount() == 1


async def test_stale_or_away_agents_do_not_count_as_online(shop) -> None:
    user = await database_sync_to_async(online_agent)(shop)
    presence_set(
        tenant_id=shop.pk,
        user_id=user.pk,
        status=PresenceStatus.ONLINE,
        seen_at=time.time() - timedelta(minutes=5).total_seconds(),
    )
    widget = Widget(shop)
    try:
        await widget.open()
        await widget.send({"type": "handoff"})
        status = await widget.receive()
    finally:
        await widget.close()
    assert status["agents_available"] is False and status["collect_contact"] is True


async def test_nobody_online_the_customer_leaves_details_and_a_ticket_is_made(shop) -> None:
    await database_sync_to_async(offline_agent)(shop)
    widget = Widget(shop)
    try:
        welcome = await widget.open()
        await widget.ask("My kettle leaks", "m1")
        await widget.send({"type": "handoff"})
        assert (await widget.receive())["collect_contact"] is True
        await widget.send({"type": "contact", "email": "bad", "text": "x"})
        assert (await widget.receive())["code"] == "bad_contact"
        await widget.send(
            {
                "type": "contact",
                "name": "Wang",
                "email": "wang@example.com",
                "text": "Please call me at 13800138000",
            }
        )
        confirmation = await widget.receive()
    finally:
        await widget.close()
    assert confirmation["type"] == "ticket"
    ticket = await Ticket.objects.select_related("conversation").aget(pk=confirmation["id"])
    assert ticket.contact_email == "wang@example.com"
    assert "My kettle leaks" in ticket.description and "13800138000" not in ticket.description
    assert ticket.sla_due_at is not None and ticket.status == "open"
    assert (ticket.conversation.status, ticket.conversation.resolution_kind) == (
        "resolved",
        "ticket",
    )
    assert mail.outbox[-1].to == ["offline@example.com"]
    assert f"#{ticket.pk}" in mail.outbox[-1].subject

    # An agent replies: the customer gets it by e-mail and sees it in the widget next time.
    await database_sync_to_async(ticket_reply_send)(
        ticket=ticket, author_id=None, content="We will send a new kettle."
    )
    assert mail.outbox[-1].to == ["wang@example.com"]
    again = Widget(shop)
    try:
        resumed = await again.open(visitor_token=welcome["visitor_token"])
    finally:
        await again.close()
    assert resumed["tickets"][0]["replies"][0]["text"] == "We will send a new kettle."


async def test_automatic_triggers_never_reopen_a_resolved_conversation(shop) -> None:
    widget = Widget(shop)
    try:
        welcome = await widget.open()
        frames = await widget.ask("How long does delivery take?", "m1")
        await Conversation.objects.filter(pk=welcome["conversation_id"]).aupdate(status="resolved")
        await widget.send(
            {"type": "feedback", "message_id": frames[-1]["message_id"], "value": "down"}
        )
        assert (await widget.receive())["type"] == "ack"
        status = await widget.receive()
    finally:
        await widget.close()
    assert status["status"] == "resolved"
    assert (await conversation(welcome["conversation_id"])).status == "resolved"


async def test_ratings_only_for_resolved_conversations(shop) -> None:
    item = await database_sync_to_async(factories.ConversationFactory)(tenant=shop, status="human")
    assert not await database_sync_to_async(conversation_rate)(
        tenant_id=shop.pk, conversation_id=item.pk, rating=5, comment=""
    )
    await Conversation.objects.filter(pk=item.pk).aupdate(status="resolved")
    for bad in (0, 6):
        assert not await database_sync_to_async(conversation_rate)(
            tenant_id=shop.pk, conversation_id=item.pk, rating=bad, comment=""
        )
    assert await database_sync_to_async(conversation_rate)(
        tenant_id=shop.pk, conversation_id=item.pk, rating=4, comment="Quick"
    )
    assert (await conversation(item.pk)).csat_rating == 4


async def test_contact_details_are_refused_unless_nobody_could_take_the_conversation(
    shop,
) -> None:
    details = {"type": "contact", "name": "Wang", "email": "wang@example.com", "text": "Hi"}
    widget = Widget(shop)
    try:
        await widget.open()
        await widget.send(details)  # no conversation yet
        before_any_message = await widget.receive()
        await widget.ask("How long does delivery take?", "m1")
        await widget.send(details)  # with the assistant: nobody asked for a person
        with_the_assistant = await widget.receive()
        await database_sync_to_async(online_agent)(shop)
        await widget.send({"type": "handoff"})
        assert (await widget.receive())["collect_contact"] is False
        await widget.send(details)  # queued, and an agent is online
        agent_online = await widget.receive()
    finally:
        await widget.close()
    for refused in (before_any_message, with_the_assistant, agent_online):
        assert (refused["type"], refused["code"]) == ("error", "contact_not_expected")
    assert await Ticket.objects.filter(tenant=shop).acount() == 0
    assert mail.outbox == []


async def test_one_ticket_per_conversation_and_contact_details_are_rate_limited(
    shop, settings
) -> None:
    settings.RATE_LIMIT_CONTACT = "3/3600"
    await database_sync_to_async(offline_agent)(shop)
    widget = Widget(shop)
    try:
        await widget.open()
        await widget.send({"type": "handoff"})
        assert (await widget.receive())["collect_contact"] is True
        replies = []
        for n in range(20):
            await widget.send(
                {"type": "contact", "email": f"wang{n}@example.com", "text": f"Note {n}"}
            )
            replies.append(await widget.receive())
    finally:
        await widget.close()
    tickets = [reply for reply in replies if reply["type"] == "ticket"]
    assert [(t["id"], t["updated"]) for t in tickets] == [
        (tickets[0]["id"], False),
        (tickets[0]["id"], True),
        (tickets[0]["id"], True),
    ]
    assert {(r["type"], r["code"]) for r in replies[3:]} == {("error", "rate_limited")}
    assert all(r["retry_after"] > 0 for r in replies[3:])
    ticket = await Ticket.objects.aget(tenant=shop)
    assert ticket.contact_email == "wang2@example.com"  # the latest details
    assert [r.content async for r in ticket.replies.order_by("id")] == ["Note 1", "Note 2"]
    assert len(mail.outbox) == 1  # the agents heard of the ticket once


async def test_a_phone_number_must_look_like_one(shop) -> None:
    widget = Widget(shop)
    try:
        await widget.open()
        await widget.send({"type": "handoff"})
        await widget.receive()
        await widget.send({"type": "contact", "phone": "call me maybe"})
        reply = await widget.receive()
    finally:
        await widget.close()
    assert reply["code"] == "bad_contact" and reply["text"] == "Please enter a valid phone number."


async def test_a_contacts_phone_is_kept_whole_but_never_reaches_the_llm_or_the_logs(
    shop, mock_llm, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    await database_sync_to_async(provider)(shop, mock_llm)
    widget = Widget(shop)
    try:
        await widget.open()
        await widget.ask("My kettle leaks", "m1")
        await widget.send({"type": "handoff"})
        assert (await widget.receive())["collect_contact"] is True
        # The phone field holds a phone number and nothing else: free text goes in the note,
        # where personal data is masked like in every message.
        await widget.send({"type": "contact", "phone": "13800138000, ID 11010519491231002X"})
        assert (await widget.receive())["code"] == "bad_contact"
        await widget.send(
            {"type": "contact", "phone": "13800138000", "text": "Call 13800138000 after 6"}
        )
        confirmation = await widget.receive()
        # The conversation goes on with the assistant: its prompt has no contact data.
        answer = await widget.ask("Where is my order?", "m2")
    finally:
        await widget.close()
    assert answer[-1]["type"] == "done" and answer[-1]["source"] == "llm"
    await draft_reply(tenant=shop, question="Where is my order?")
    ticket = await Ticket.objects.select_related("customer").aget(pk=confirmation["id"])
    # Contact data, kept whole where it is contact data: the customer's and the ticket's phone.
    assert ticket.contact_phone == ticket.customer.phone == "13800138000"
    # Free text, masked: the subject and the description (the note and the transcript).
    assert "13800138000" not in ticket.subject + ticket.description
    assert "138****8000" in ticket.description
    prompts = json.dumps([request["body"] for request in mock_llm.requests()])
    assert "Where is my order?" in prompts and "13800138000" not in prompts
    assert len(mock_llm.requests()) == 3  # two answers and the agent's draft
    assert not [r for r in caplog.records if "13800138000" in r.getMessage()]


async def test_the_welcome_lists_what_the_customer_still_owes(shop) -> None:
    """A reconnecting widget learns that the contact form or the rating card is still open."""
    widget = Widget(shop)
    try:
        await widget.open()
        await widget.send({"type": "handoff"})  # nobody online
        assert (await widget.receive())["collect_contact"] is True
    finally:
        await widget.close()
    token = widget.welcome["visitor_token"]
    conversation_id = (await Conversation.objects.aget(tenant=shop)).pk

    async def pending() -> list[str]:
        again = Widget(shop)
        try:
            return (await again.open(visitor_token=token))["pending"]
        finally:
            await again.close()

    assert await pending() == ["contact"]
    await database_sync_to_async(online_agent)(shop)
    assert await pending() == []  # somebody can take it now
    await Conversation.objects.filter(pk=conversation_id).aupdate(
        status="resolved", resolution_kind="agent"
    )
    assert await pending() == ["rating"]
    await Conversation.objects.filter(pk=conversation_id).aupdate(csat_rating=4)
    assert await pending() == []
