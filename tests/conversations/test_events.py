"""The event catalogue: events reach their subscribers after commit, never after a rollback;
live updates go to the consoles' and widgets' groups; one failing subscriber stops nobody."""

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from conversations import agents, events, selectors
from conversations.events import Event, Published
from conversations.lifecycle import conversations_sweep
from tenants.models import Role
from tests.support import factories
from tests.support.lifecycle import idle, queued
from tests.support.sockets import SOCKET_WAIT

pytestmark = pytest.mark.django_db(transaction=True)

ONE_OF_EACH = [
    (
        Event.CONVERSATION_QUEUED,
        events.conversation_queued(conversation_id=1, status="queued", reason="customer_request"),
    ),
    (
        Event.CONVERSATION_ASSIGNED,
        events.conversation_assigned(
            conversation_id=1, status="human", reason="low_confidence", assignee_id=7
        ),
    ),
    (
        Event.CONVERSATION_ACCEPTED,
        events.conversation_accepted(
            conversation_id=1, status="human", assignee_id=7, customer_text="Li has joined."
        ),
    ),
    (
        Event.CONVERSATION_TRANSFERRED,
        events.conversation_transferred(
            conversation_id=1, status="human", assignee_id=8, customer_text="Wu has joined."
        ),
    ),
    (
        Event.CONVERSATION_HANDED_BACK,
        events.conversation_handed_back(conversation_id=1, status="bot", customer_text="Back."),
    ),
    (
        Event.CONVERSATION_RESOLVED,
        events.conversation_resolved(conversation_id=1, status="resolved", resolution_kind="ai"),
    ),
    (
        Event.CONVERSATION_ABANDONED,
        events.conversation_abandoned(conversation_id=1, status="closed"),
    ),
    (
        Event.CONVERSATION_CREATED,
        events.conversation_created(conversation_id=1, customer_id=6, channel="widget"),
    ),
    (
        Event.CONVERSATION_REOPENED,
        events.conversation_reopened(conversation_id=1, status="bot", resolution_kind="ai"),
    ),
    (Event.CONVERSATION_RATED, events.conversation_rated(conversation_id=1, rating=4)),
    (
        Event.MESSAGE_CREATED,
        events.message_created(
            conversation_id=1, message_id=2, role="agent", internal=True, text="Note", author_id=7
        ),
    ),
    (
        Event.MESSAGE_FEEDBACK,
        events.message_feedback(conversation_id=1, message_id=2, value="up"),
    ),
    (
        Event.ANSWER_RECORDED,
        events.answer_recorded(conversation_id=1, message_id=2, source="faq", faq_entry_id=8),
    ),
    (Event.TICKET_CREATED, events.ticket_created(ticket_id=3, status="open", conversation_id=1)),
    (Event.TICKET_UPDATED, events.ticket_updated(ticket_id=3, status="solved", conversation_id=1)),
    (
        Event.TICKET_REPLIED,
        events.ticket_replied(ticket_id=3, status="pending", conversation_id=1, reply_id=4),
    ),
    (Event.TICKET_SOLVED, events.ticket_solved(ticket_id=3, conversation_id=1)),
    (
        Event.TICKET_SLA_BREACHED,
        events.ticket_sla_breached(ticket_id=3, status="open", conversation_id=None),
    ),
]


@pytest.fixture
def heard() -> Iterator[list[Published]]:
    received: list[Published] = []
    events.subscribe(received.append)
    yield received
    events.unsubscribe(received.append)


def test_every_event_has_a_builder_under_test() -> None:
    assert [event for event, _payload in ONE_OF_EACH] == list(Event)


@pytest.mark.parametrize(("event", "payload"), ONE_OF_EACH)
def test_an_event_reaches_subscribers_when_its_transaction_commits(heard, event, payload) -> None:
    with transaction.atomic():
        events.publish(event, payload, tenant_id=5)
        assert heard == []  # not before the commit
    assert heard == [Published(event, payload, 5)]


@pytest.mark.parametrize(("event", "payload"), ONE_OF_EACH)
def test_an_event_of_a_rolled_back_transaction_is_never_published(heard, event, payload) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        events.publish(event, payload, tenant_id=5)
        raise RuntimeError("rolled back")
    assert heard == []


def test_builders_make_the_payloads() -> None:
    assert events.conversation_accepted(
        conversation_id=4, status="human", assignee_id=7, customer_text="Li has joined."
    ) == events.ConversationChange(
        conversation_id=4, status="human", assignee_id=7, customer_text="Li has joined."
    )
    assert events.conversation_abandoned(conversation_id=4, status="closed") == (
        events.ConversationChange(conversation_id=4, status="closed", resolution_kind="abandoned")
    )
    assert events.message_created(
        conversation_id=4, message_id=9, role="agent", internal=False, text="Hi", author_name="li"
    ) == events.MessageCreated(
        conversation_id=4, message_id=9, role="agent", internal=False, text="Hi", author_name="li"
    )
    assert events.ticket_replied(
        ticket_id=3, status="pending", conversation_id=None, reply_id=4
    ) == events.TicketChange(ticket_id=3, status="pending", reply_id=4)


def test_group_names_carry_the_tenant() -> None:
    assert events.agents_group(5) == "agents.5"
    assert events.conversation_group(5, 12) == "conversation.5.12"


@pytest.fixture
def accepting():
    """A tenant's queued conversation and an agent who may take it."""
    tenant = factories.TenantFactory(default_language="en")
    user = factories.UserFactory(username="li")
    factories.MembershipFactory(tenant=tenant, user=user, role=Role.AGENT)
    conversation = factories.ConversationFactory(tenant=tenant, status="queued")
    agent = selectors.agent_for_user(user=user, tenant_id=tenant.pk)
    assert agent is not None
    return tenant, conversation, agent


async def _listen(*groups: str) -> tuple[Any, str]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    return layer, channel


async def _received(layer: Any, channel: str, count: int) -> list[dict]:
    return [await asyncio.wait_for(layer.receive(channel), SOCKET_WAIT) for _ in range(count)]


def test_a_service_publishes_its_event_to_subscribers(heard, accepting) -> None:
    tenant, conversation, agent = accepting

    agents.conversation_accept(agent=agent, conversation_id=conversation.pk)

    assert heard == [
        Published(
            Event.CONVERSATION_ACCEPTED,
            events.ConversationChange(
                conversation_id=conversation.pk,
                status="human",
                assignee_id=agent.user_id,
                customer_text="li has joined the conversation.",
            ),
            tenant.pk,
        )
    ]


async def test_a_failing_subscriber_stops_neither_the_live_updates_nor_the_others(
    heard, accepting, caplog
) -> None:
    tenant, conversation, agent = accepting
    layer, channel = await _listen(
        events.agents_group(tenant.pk), events.conversation_group(tenant.pk, conversation.pk)
    )

    def broken(published: Published) -> None:
        raise ValueError("webhook endpoint misconfigured")

    events.subscribe(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="conversations.events"):
            await database_sync_to_async(agents.conversation_accept)(
                agent=agent, conversation_id=conversation.pk
            )
    finally:
        events.unsubscribe(broken)

    assert await _received(layer, channel, 2) == [
        {
            "type": "conversation.status",
            "status": "human",
            "text": "li has joined the conversation.",
        },
        {"type": "queue.changed"},
    ]
    assert [published.event for published in heard] == [Event.CONVERSATION_ACCEPTED]
    (record,) = [r for r in caplog.records if r.name == "conversations.events"]
    logged = record.getMessage()
    assert logged.startswith(
        f"event subscriber broken failed for conversation.accepted tenant={tenant.pk} "
        f"{{'conversation_id': {conversation.pk}, 'assignee_id': {agent.user_id}}}: ValueError at "
    )
    assert "misconfigured" not in logged and record.exc_info is None


async def test_an_agent_reply_reaches_the_widget_and_the_consoles(accepting) -> None:
    tenant, conversation, agent = accepting
    await database_sync_to_async(agents.conversation_accept)(
        agent=agent, conversation_id=conversation.pk
    )
    layer, channel = await _listen(
        events.agents_group(tenant.pk), events.conversation_group(tenant.pk, conversation.pk)
    )

    message = await database_sync_to_async(agents.agent_reply)(
        agent=agent, conversation_id=conversation.pk, text="Hello!", internal=False
    )

    assert await _received(layer, channel, 2) == [
        {"type": "agent.message", "message_id": message.pk, "text": "Hello!", "author": "li"},
        {"type": "conversation.message", "conversation_id": conversation.pk},
    ]


def test_a_sweep_tells_each_widget_and_the_consoles_once(tenant_a, heard) -> None:
    # Given two conversations left waiting in one tenant's queue for more than an hour
    waiting = [queued(tenant_a), queued(tenant_a)]
    for conversation in waiting:
        idle(conversation, 61)

    conversations_sweep(tenant_id=tenant_a.pk)

    # Then each is published, and the live updates tell the consoles of the queue once
    assert sorted(p.payload.conversation_id for p in heard) == sorted(c.pk for c in waiting)
    assert {p.event for p in heard} == {Event.CONVERSATION_ABANDONED}
    closed = {"type": "conversation.status", "status": "closed"}
    assert events.channel_batch_messages(heard) == [
        (events.conversation_group(tenant_a.pk, heard[0].payload.conversation_id), closed),
        (events.agents_group(tenant_a.pk), {"type": "queue.changed"}),
        (events.conversation_group(tenant_a.pk, heard[1].payload.conversation_id), closed),
    ]
