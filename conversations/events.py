"""The catalogue of what happens to conversations, messages and tickets, and who hears of it.

Every event has a name (``Event``) and one builder that makes its payload (a frozen dataclass
with ids and states, never a customer's contact data). ``publish`` hands an event to every
subscriber once the current transaction commits (at once outside a transaction; never after a
rollback):

- the live updates of the agent consoles and the customers' widgets, through the channel layer
  (``channel_layer_deliver``: each event becomes the channel messages the consumers handle, sent
  to the groups named here, ``agents_group`` and ``conversation_group``);
- any handler registered with ``subscribe`` (outgoing webhooks, reporting rows).

A subscriber that fails is logged (the event's name and ids, nothing personal) and the others
still run; the request that published the event never sees the failure.
"""

import asyncio
import atexit
import logging
import queue
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import close_old_connections, connection, transaction

from conversations.models import Conversation, Message

logger = logging.getLogger(__name__)


class Event(StrEnum):
    CONVERSATION_QUEUED = "conversation.queued"
    CONVERSATION_ASSIGNED = "conversation.assigned"
    CONVERSATION_ACCEPTED = "conversation.accepted"
    CONVERSATION_TRANSFERRED = "conversation.transferred"
    CONVERSATION_HANDED_BACK = "conversation.handed_back"
    CONVERSATION_RESOLVED = "conversation.resolved"
    CONVERSATION_ABANDONED = "conversation.abandoned"
    CONVERSATION_CREATED = "conversation.created"
    CONVERSATION_REOPENED = "conversation.reopened"
    CONVERSATION_RATED = "conversation.rated"
    MESSAGE_CREATED = "message.created"
    MESSAGE_FEEDBACK = "message.feedback"
    ANSWER_RECORDED = "answer.recorded"
    TICKET_CREATED = "ticket.created"
    TICKET_UPDATED = "ticket.updated"
    TICKET_REPLIED = "ticket.replied"
    TICKET_SOLVED = "ticket.solved"
    TICKET_SLA_BREACHED = "ticket.sla_breached"


# Channel-layer groups ---------------------------------------------------------------------------


def agents_group(tenant_id: int) -> str:
    """Every agent console of the tenant."""
    return f"agents.{tenant_id}"


def conversation_group(tenant_id: int, conversation_id: int) -> str:
    """The customer's widget sockets showing the conversation."""
    return f"conversation.{tenant_id}.{conversation_id}"


def chat_stream_group(tenant_id: int, message_id: int) -> str:
    """The HTTP stream (headless chat) answering the customer's message ``message_id``: told
    to stop by the API's stop request, from whichever process serves it."""
    return f"chat.stream.{tenant_id}.{message_id}"


# Payloads and their builders ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConversationChange:
    """A conversation changed hands or state. ``customer_text`` is what the customer's widget
    says about it, already in their language ("" when the widget says it itself)."""

    conversation_id: int
    status: str
    assignee_id: int | None = None
    reason: str = ""
    resolution_kind: str = ""
    customer_text: str = ""
    # A handoff the widget is told of by the event (``customer_text`` set): its place in the
    # queue, and whether anybody is available (if not, the widget offers the contact form).
    position: int | None = None
    agents_available: bool | None = None


@dataclass(frozen=True)
class MessageCreated:
    """A message was stored. ``conversation_status`` is the conversation's status once it was
    (a customer's message reaches the agent consoles live only while people own it)."""

    conversation_id: int
    message_id: int
    role: str
    internal: bool
    text: str
    author_id: int | None = None
    author_name: str = ""
    conversation_status: str = ""
    customer_id: int | None = None  # a customer's message: who wrote it, and through which
    channel: str = ""  # channel (reporting rows need no lookup for them on the answer path)


@dataclass(frozen=True)
class ConversationCreated:
    """A conversation was started (the customer's first message, handoff request or contact)."""

    conversation_id: int
    customer_id: int
    channel: str


@dataclass(frozen=True)
class ConversationRated:
    """The customer rated a conversation a person resolved (CSAT, 1–5)."""

    conversation_id: int
    rating: int


@dataclass(frozen=True)
class MessageFeedback:
    """The customer gave a thumbs up or down (``value``) to one of the assistant's answers."""

    conversation_id: int
    message_id: int
    value: str


@dataclass(frozen=True)
class AnswerRecorded:
    """The assistant's answer was stored, with where it came from and what it cost.
    ``faq_entry_id``: the FAQ entry it came straight from (source *faq*); ``chunk_ids``: the
    document chunks it was given or showed."""

    conversation_id: int
    message_id: int
    source: str
    provider: str = ""
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal("0")
    latency_ms: int | None = None
    faq_entry_id: int | None = None
    chunk_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class TicketChange:
    ticket_id: int
    status: str
    conversation_id: int | None = None
    reply_id: int | None = None


Payload = (
    ConversationChange
    | MessageCreated
    | TicketChange
    | ConversationCreated
    | ConversationRated
    | MessageFeedback
    | AnswerRecorded
)


def conversation_queued(
    *,
    conversation_id: int,
    status: str,
    reason: str,
    customer_text: str = "",
    position: int | None = None,
    agents_available: bool | None = None,
) -> ConversationChange:
    """Handed to the people and waiting in the queue (``customer_text``: the widget is told
    here, not by the answer pipeline)."""
    return ConversationChange(
        conversation_id=conversation_id,
        status=status,
        reason=reason,
        customer_text=customer_text,
        position=position,
        agents_available=agents_available,
    )


def conversation_assigned(
    *,
    conversation_id: int,
    status: str,
    reason: str,
    assignee_id: int,
    customer_text: str = "",
    position: int | None = None,
    agents_available: bool | None = None,
) -> ConversationChange:
    """Handed to the people and given at once to the least-busy online agent."""
    return ConversationChange(
        conversation_id=conversation_id,
        status=status,
        reason=reason,
        assignee_id=assignee_id,
        customer_text=customer_text,
        position=position,
        agents_available=agents_available,
    )


def conversation_accepted(
    *, conversation_id: int, status: str, assignee_id: int, customer_text: str
) -> ConversationChange:
    """An agent took the conversation from the queue."""
    return ConversationChange(
        conversation_id=conversation_id,
        status=status,
        assignee_id=assignee_id,
        customer_text=customer_text,
    )


def conversation_transferred(
    *, conversation_id: int, status: str, assignee_id: int, customer_text: str
) -> ConversationChange:
    """An agent passed the conversation to another."""
    return ConversationChange(
        conversation_id=conversation_id,
        status=status,
        assignee_id=assignee_id,
        customer_text=customer_text,
    )


def conversation_handed_back(
    *, conversation_id: int, status: str, customer_text: str
) -> ConversationChange:
    """An agent gave the conversation back to the assistant."""
    return ConversationChange(
        conversation_id=conversation_id, status=status, customer_text=customer_text
    )


def conversation_resolved(
    *,
    conversation_id: int,
    status: str,
    resolution_kind: str,
    assignee_id: int | None = None,
    customer_text: str = "",
) -> ConversationChange:
    """Resolved by an agent, by the assistant (the sweep), or by a ticket left instead."""
    return ConversationChange(
        conversation_id=conversation_id,
        status=status,
        assignee_id=assignee_id,
        resolution_kind=resolution_kind,
        customer_text=customer_text,
    )


def conversation_abandoned(*, conversation_id: int, status: str) -> ConversationChange:
    """Closed by the sweep after waiting in the queue with nobody taking it."""
    return ConversationChange(
        conversation_id=conversation_id,
        status=status,
        resolution_kind=Conversation.ResolutionKind.ABANDONED,
    )


def conversation_created(
    *, conversation_id: int, customer_id: int, channel: str
) -> ConversationCreated:
    """A new conversation, with its customer and channel."""
    return ConversationCreated(
        conversation_id=conversation_id, customer_id=customer_id, channel=channel
    )


def conversation_reopened(
    *, conversation_id: int, status: str, resolution_kind: str
) -> ConversationChange:
    """The customer wrote again in a conversation the sweep ended; ``resolution_kind`` is how
    it had ended (resolved by the assistant, or abandoned), ``status`` what it is now."""
    return ConversationChange(
        conversation_id=conversation_id, status=status, resolution_kind=resolution_kind
    )


def conversation_rated(*, conversation_id: int, rating: int) -> ConversationRated:
    """The customer's 1–5 rating."""
    return ConversationRated(conversation_id=conversation_id, rating=rating)


def message_created(
    *,
    conversation_id: int,
    message_id: int,
    role: str,
    internal: bool,
    text: str,
    author_id: int | None = None,
    author_name: str = "",
    conversation_status: str = "",
    customer_id: int | None = None,
    channel: str = "",
) -> MessageCreated:
    """A message was stored: the customer's, the assistant's answer, or an agent's reply or
    internal note."""
    return MessageCreated(
        conversation_id=conversation_id,
        message_id=message_id,
        role=role,
        internal=internal,
        text=text,
        author_id=author_id,
        author_name=author_name,
        conversation_status=conversation_status,
        customer_id=customer_id,
        channel=channel,
    )


def message_feedback(*, conversation_id: int, message_id: int, value: str) -> MessageFeedback:
    """A thumbs up (``up``) or down (``down``) on an answer."""
    return MessageFeedback(conversation_id=conversation_id, message_id=message_id, value=value)


def answer_recorded(
    *,
    conversation_id: int,
    message_id: int,
    source: str,
    provider: str = "",
    model: str = "",
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost: Decimal = Decimal("0"),
    latency_ms: int | None = None,
    faq_entry_id: int | None = None,
    chunk_ids: tuple[int, ...] = (),
) -> AnswerRecorded:
    """An answer of the assistant, with its source, usage and cost."""
    return AnswerRecorded(
        conversation_id=conversation_id,
        message_id=message_id,
        source=source,
        provider=provider,
        model=model,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost=cost,
        latency_ms=latency_ms,
        faq_entry_id=faq_entry_id,
        chunk_ids=chunk_ids,
    )


def ticket_created(*, ticket_id: int, status: str, conversation_id: int | None) -> TicketChange:
    """A customer nobody could take live left contact details: a new ticket."""
    return TicketChange(ticket_id=ticket_id, status=status, conversation_id=conversation_id)


def ticket_updated(*, ticket_id: int, status: str, conversation_id: int | None) -> TicketChange:
    """The customer left details again, or the ticket's status changed."""
    return TicketChange(ticket_id=ticket_id, status=status, conversation_id=conversation_id)


def ticket_replied(
    *, ticket_id: int, status: str, conversation_id: int | None, reply_id: int
) -> TicketChange:
    """An agent replied to the ticket (the customer is e-mailed)."""
    return TicketChange(
        ticket_id=ticket_id, status=status, conversation_id=conversation_id, reply_id=reply_id
    )


def ticket_solved(*, ticket_id: int, conversation_id: int | None) -> TicketChange:
    """The ticket's status became *solved* (published with ``ticket.updated``)."""
    return TicketChange(ticket_id=ticket_id, status="solved", conversation_id=conversation_id)


def ticket_sla_breached(
    *, ticket_id: int, status: str, conversation_id: int | None
) -> TicketChange:
    """The ticket went past its SLA due time unsolved (told once per ticket, by the sweep)."""
    return TicketChange(ticket_id=ticket_id, status=status, conversation_id=conversation_id)


# Publishing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    event: Event
    payload: Payload
    tenant_id: int


Subscriber = Callable[[Published], None]
BatchSubscriber = Callable[[Sequence[Published]], None]

_subscribers: list[Subscriber] = []
_batch_subscribers: list[BatchSubscriber] = []


def subscribe(handler: Subscriber) -> None:
    """Calls ``handler`` with every event published from now on, after its commit (once per
    handler, however often it is subscribed)."""
    if handler not in _subscribers:
        _subscribers.append(handler)


def unsubscribe(handler: Subscriber) -> None:
    if handler in _subscribers:
        _subscribers.remove(handler)


def subscribe_batch(handler: BatchSubscriber) -> None:
    """Like ``subscribe``, but ``handler`` gets each published batch whole, in order: one call
    (one bulk insert of reporting rows, say) per batch instead of one per event."""
    if handler not in _batch_subscribers:
        _batch_subscribers.append(handler)


def unsubscribe_batch(handler: BatchSubscriber) -> None:
    if handler in _batch_subscribers:
        _batch_subscribers.remove(handler)


def publish(event: Event, payload: Payload, *, tenant_id: int) -> None:
    """Delivers the event to its subscribers once the current transaction commits."""
    publish_batch([Published(event, payload, tenant_id)])


def publish_batch(events: Sequence[Published]) -> None:
    """Delivers several events after commit, in order; live updates that several of them would
    send alike (a tenant's queue changed) are sent once."""
    if events:
        transaction.on_commit(partial(_deliver, tuple(events)))


async def apublish_stored(event: Event, payload: Payload, *, tenant_id: int) -> None:
    """Delivers an event of rows that are already committed, from async code: the answer
    path's messages, stored by the group-commit writer (conversations/writer.py) before the
    pipeline goes on. Live updates go out on the caller's event loop; other subscribers (sync
    code), only when there are any, run on the process's event thread
    (``_BackgroundSubscribers``), off the answer's path (on SQLite, in line)."""
    await apublish_stored_batch([Published(event, payload, tenant_id)])


async def apublish_stored_batch(events: Sequence[Published]) -> None:
    """``apublish_stored`` for several events at once (an answer and its usage)."""
    await _live_updates_send(channel_batch_messages(events))
    if not (_subscribers or _batch_subscribers):
        return
    if connection.vendor == "sqlite":
        # One writer at a time: a subscriber writing beside the answer path would find the
        # database locked, so it runs in line, before the pipeline goes on.
        await sync_to_async(_subscribers_call, thread_sensitive=False)(tuple(events))
    else:
        _background.submit(tuple(events))


class _BackgroundSubscribers:
    """One thread per process that calls the sync subscribers of events published from async
    code, in the order they were published. What piled up while it worked goes to the batch
    subscribers in one call (the reporting rows of many answers in one INSERT), so an answer
    costs its socket a queue append instead of a thread hop and a write.

    Events still queued when the process exits are delivered first (``atexit``); a process
    killed outright loses them, as it loses its in-flight answers.
    """

    LARGEST_BATCH = 500

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Published, ...]] = queue.SimpleQueue()
        self._submitted = 0  # batches submitted and delivered, in order: a batch's number
        self._delivered = 0  # tells whether it has been delivered
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, events: tuple[Published, ...]) -> None:
        with self._progress:
            self._submitted += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="kefu-event-subscribers", daemon=True
                )
                self._thread.start()
            self._queue.put(events)

    def settle(self, timeout: float | None = 10.0) -> bool:
        """Waits until every batch submitted before the call has been delivered (later ones
        may still wait); False on timeout."""
        with self._progress:
            wanted = self._submitted
            return self._progress.wait_for(lambda: self._delivered >= wanted, timeout)

    def _run(self) -> None:
        while True:
            batches = [self._queue.get()]
            while len(batches) < self.LARGEST_BATCH:
                try:
                    batches.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            close_old_connections()  # as database_sync_to_async does around its calls
            try:
                _subscribers_call(tuple(item for batch in batches for item in batch))
            finally:
                with self._progress:
                    self._delivered += len(batches)
                    self._progress.notify_all()


_background = _BackgroundSubscribers()
atexit.register(_background.settle, 5.0)


def subscribers_settle(timeout: float | None = 10.0) -> bool:
    """Waits until the subscribers have had every event this process published from async
    code (tests, before they read what subscribers write; a socket, before it closes)."""
    return _background.settle(timeout)


async def asubscribers_settle(seconds: float = 10.0) -> bool:
    return await asyncio.to_thread(_background.settle, seconds)


def _deliver(events: tuple[Published, ...]) -> None:
    _subscriber_call(channel_layer_deliver, events, name="live updates")
    _subscribers_call(events)


def _subscribers_call(events: tuple[Published, ...]) -> None:
    for handler in list(_subscribers):
        for published in events:
            _subscriber_call(handler, published, name=getattr(handler, "__name__", "subscriber"))
    for batch_handler in list(_batch_subscribers):
        _subscriber_call(
            batch_handler, events, name=getattr(batch_handler, "__name__", "subscriber")
        )


def _subscriber_call(handler: Callable[[Any], None], argument: Any, *, name: str) -> None:
    try:
        handler(argument)
    except Exception as error:  # one subscriber's failure must not stop the others or the request
        described = (
            ", ".join(_describe(p) for p in argument)
            if isinstance(argument, tuple)
            else _describe(argument)
        )
        logger.error(
            "event subscriber %s failed for %s: %s", name, described, _failure_place(error)
        )


def _failure_place(error: BaseException) -> str:
    """The error's type and where it was raised, without its message (it may quote a
    customer's words or address)."""
    frames = traceback.extract_tb(error.__traceback__)
    place = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__name__}{place}"


def _describe(published: Published) -> str:
    ids = {
        key: value
        for key, value in vars(published.payload).items()
        if key.endswith("_id") and value is not None
    }
    return f"{published.event} tenant={published.tenant_id} {ids}"


# Live updates through the channel layer ---------------------------------------------------------

QUEUE_CHANGED: dict[str, Any] = {"type": "queue.changed"}
PEOPLE_OWN = frozenset({Conversation.Status.QUEUED, Conversation.Status.HUMAN})


def channel_messages(published: Published) -> list[tuple[str, dict[str, Any]]]:
    """The channel-layer messages (group, message) that tell consoles and widgets of an event."""
    event, payload, tenant = published.event, published.payload, published.tenant_id
    agents = agents_group(tenant)
    if isinstance(payload, ConversationChange):
        widget = conversation_group(tenant, payload.conversation_id)
        status = {"type": "conversation.status", "status": payload.status}
        if event in (Event.CONVERSATION_QUEUED, Event.CONVERSATION_ASSIGNED):
            if not payload.customer_text:  # the answer pipeline told the customer itself
                return [(agents, QUEUE_CHANGED)]
            handed = {
                **status,
                "text": payload.customer_text,
                "position": payload.position,
                "agents_available": bool(payload.agents_available),
            }
            return [(widget, handed), (agents, QUEUE_CHANGED)]
        if event == Event.CONVERSATION_REOPENED:
            return []  # the answer path tells the customer's widget itself
        if event == Event.CONVERSATION_ABANDONED:
            return [(widget, status), (agents, QUEUE_CHANGED)]
        if (
            event == Event.CONVERSATION_RESOLVED
            and payload.resolution_kind != Conversation.ResolutionKind.AGENT
        ):
            return []  # the sweep and tickets end conversations that nobody is watching live
        messages = [(widget, {**status, "text": payload.customer_text}), (agents, QUEUE_CHANGED)]
        if event == Event.CONVERSATION_RESOLVED:
            messages.append((widget, {"type": "rating.request"}))
        return messages
    if isinstance(payload, MessageCreated) and payload.role == Message.Role.CUSTOMER:
        if payload.conversation_status not in PEOPLE_OWN:
            return []  # the assistant answers it; the consoles see it when they open it
        told = {
            "type": "customer.message",
            "conversation_id": payload.conversation_id,
            "message_id": payload.message_id,
            "text": payload.text,
        }
        return [(agents, told)]
    if isinstance(payload, MessageCreated) and payload.role == Message.Role.AGENT:
        widget = conversation_group(tenant, payload.conversation_id)
        told = {"type": "conversation.message", "conversation_id": payload.conversation_id}
        if payload.internal:
            return [(agents, told)]
        reply = {
            "type": "agent.message",
            "message_id": payload.message_id,
            "text": payload.text,
            "author": payload.author_name,
        }
        return [(widget, reply), (agents, told)]
    return []


def channel_batch_messages(events: Sequence[Published]) -> list[tuple[str, dict[str, Any]]]:
    """The channel messages of several events, in order, each alike message once."""
    messages: list[tuple[str, dict[str, Any]]] = []
    for published in events:
        for group, message in channel_messages(published):
            if (group, message) not in messages:
                messages.append((group, message))
    return messages


def channel_layer_deliver(events: Sequence[Published]) -> None:
    """Sends the events' channel messages (``channel_batch_messages``)."""
    messages = channel_batch_messages(events)
    if messages:
        async_to_sync(_live_updates_send)(messages)


async def _live_updates_send(messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Sends each (group, message) through the channel layer; one that fails is logged and the
    other groups still hear of theirs (and no caller fails with a live update)."""
    layer = get_channel_layer()
    if layer is None:
        return
    for group, message in messages:
        try:
            await layer.group_send(group, message)
        except Exception as error:
            logger.error(
                "live update %s to %s failed: %s", message["type"], group, _failure_place(error)
            )
