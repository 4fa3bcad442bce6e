"""The answer pipeline answers through any reply sink, not only the widget socket: here a sink
that keeps the frames, as an HTTP stream or a WeChat channel would get them."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from conversations import events, services
from conversations.events import Event
from conversations.memory import memory_local_reset
from conversations.pipeline import ChatContext, answer_customer_message
from conversations.protocol import Delta, Done, Error, HandoffStatus, MessageAck, Status
from conversations.ratelimit import rate_limit_local_reset
from devtools.mockllm import MockLLMServer
from knowledge import services as knowledge_services
from knowledge.search import registry
from llm.selectors import llm_providers_forget
from tests.support import factories
from tests.support.sockets import SOCKET_WAIT
from tests.support.widget import provider

pytestmark = pytest.mark.django_db(transaction=True)


class KeptReplies:
    """A ``ReplySink`` that keeps what it is told, in order."""

    def __init__(self) -> None:
        self.told: list[tuple[str, object]] = []
        self.stored: list[tuple[services.AnswerRecord, int]] = []

    async def ack(self, frame: MessageAck) -> None:
        self.told.append(("ack", frame))

    async def delta(self, frame: Delta) -> None:
        self.told.append(("delta", frame))

    async def answer_stored(self, record: services.AnswerRecord, message_id: int) -> None:
        self.stored.append((record, message_id))

    async def done(self, frame: Done) -> None:
        self.told.append(("done", frame))

    async def status(self, frame: Status | HandoffStatus) -> None:
        self.told.append(("status", frame))

    async def error(self, frame: Error) -> None:
        self.told.append(("error", frame))

    def text(self) -> str:
        return "".join(frame.text for kind, frame in self.told if isinstance(frame, Delta))


@pytest.fixture
def shop(db):
    for reset in (registry.forget, llm_providers_forget, rate_limit_local_reset):
        reset()
    memory_local_reset()
    tenant = factories.TenantFactory(slug="shop", default_language="en")
    factories.KnowledgeEntryFactory(
        tenant=tenant,
        question="How long does delivery take?",
        answer="Delivery takes 3–5 working days.",
    )
    knowledge_services.knowledge_changed(tenant_id=tenant.pk)
    yield tenant
    registry.forget()
    llm_providers_forget()


def chat_started(tenant) -> ChatContext:
    session = services.widget_session_start(tenant=tenant, visitor_token=None, identity=None)
    started = services.widget_conversation_start(
        tenant=tenant, external_id=session.external_id, language="en"
    )
    return ChatContext(
        tenant=tenant,
        visitor_id=session.external_id,
        customer_id=started.customer_id,
        conversation_id=started.conversation_id,
        conversation_key=started.conversation_key,
        language="en",
        new_conversation=True,
    )


async def test_a_faq_answer_reaches_a_sink_that_is_not_a_socket(
    shop, mock_llm: MockLLMServer
) -> None:
    await database_sync_to_async(provider)(shop, mock_llm)
    chat = await database_sync_to_async(chat_started)(shop)
    replies = KeptReplies()

    await answer_customer_message(
        ctx=chat, text="How long does delivery take?", client_message_id="m1", replies=replies
    )

    assert [kind for kind, _frame in replies.told] == ["ack", "delta", "done"]
    ack, done = replies.told[0][1], replies.told[-1][1]
    assert isinstance(ack, MessageAck) and (ack.id, ack.conversation_id) == (
        "m1",
        chat.conversation_id,
    )
    assert replies.text() == "Delivery takes 3–5 working days."
    assert isinstance(done, Done) and (done.reply_to, done.source) == ("m1", "faq")
    [(record, stored_id)] = replies.stored  # what was stored, before done
    assert (record.content, record.source, stored_id) == (replies.text(), "faq", done.message_id)
    assert mock_llm.requests() == []


async def test_an_llm_answer_streams_to_a_sink_that_is_not_a_socket(
    shop, mock_llm: MockLLMServer
) -> None:
    await database_sync_to_async(provider)(shop, mock_llm)
    mock_llm.configure(text="We ship to Norway within a week.", token_ms=1)
    chat = await database_sync_to_async(chat_started)(shop)
    replies = KeptReplies()

    await answer_customer_message(
        ctx=chat, text="Do you ship to Norway?", client_message_id="m1", replies=replies
    )

    kinds = [kind for kind, _frame in replies.told]
    assert kinds[0] == "ack" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"delta"} and len(kinds) > 4  # streamed in pieces
    assert replies.text() == "We ship to Norway within a week."
    done = replies.told[-1][1]
    assert isinstance(done, Done) and done.source in ("llm", "rag")
    assert len(mock_llm.requests()) == 1


async def test_the_customers_message_and_the_answer_are_published_as_events(
    shop, mock_llm: MockLLMServer
) -> None:
    heard: list[events.Published] = []
    events.subscribe(heard.append)
    try:
        await database_sync_to_async(provider)(shop, mock_llm)
        chat = await database_sync_to_async(chat_started)(shop)
        replies = KeptReplies()

        await answer_customer_message(
            ctx=chat, text="How long does delivery take?", client_message_id="m1", replies=replies
        )
        # Subscribers hear of events published from async code on a thread of their own.
        await events.asubscribers_settle()
    finally:
        events.unsubscribe(heard.append)

    done = replies.told[-1][1]
    assert isinstance(done, Done)
    assert [p.event for p in heard] == [
        Event.CONVERSATION_CREATED,
        Event.MESSAGE_CREATED,
        Event.MESSAGE_CREATED,
        Event.ANSWER_RECORDED,  # its source and usage, for the reports
    ]
    _created, customer, answer, recorded = (p.payload for p in heard)
    assert isinstance(customer, events.MessageCreated)
    assert isinstance(answer, events.MessageCreated)
    assert isinstance(recorded, events.AnswerRecorded)
    assert (customer.role, customer.text, customer.channel) == (
        "customer",
        "How long does delivery take?",
        "widget",
    )
    assert (answer.role, answer.text) == ("assistant", "Delivery takes 3–5 working days.")
    assert answer.message_id == recorded.message_id == done.message_id
    assert (recorded.source, recorded.tokens_in) == ("faq", 0)
    assert {p.tenant_id for p in heard} == {shop.pk}
    assert {p.payload.conversation_id for p in heard} == {chat.conversation_id}


async def test_a_customers_message_reaches_the_consoles_only_while_people_own_it() -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.agents_group(5), channel)
    for status in ("bot", "human"):
        await events.apublish_stored(
            Event.MESSAGE_CREATED,
            events.message_created(
                conversation_id=9,
                message_id=3,
                role="customer",
                internal=False,
                text=f"while {status}",
                conversation_status=status,
            ),
            tenant_id=5,
        )

    told = await asyncio.wait_for(layer.receive(channel), SOCKET_WAIT)
    assert told == {
        "type": "customer.message",
        "conversation_id": 9,
        "message_id": 3,
        "text": "while human",
    }
