"""Headless chat's answers as server-sent events, or collected into one reply.

``ChatEventSink`` is the ``ReplySink`` (conversations/replies.py) of the REST API: each frame of
the answer pipeline becomes a ``ChatEvent`` on a queue. ``chat_event_stream`` runs the pipeline
in a task of its own and turns the queue into the bytes of a ``text/event-stream`` response
(``event: <name>\\ndata: <json>\\n\\n``, and a ``: ping`` comment every ``PING_SECONDS`` while
waiting); ``chat_reply_collect`` waits for the whole answer instead (``response_mode:
"blocking"``).

Events, in order:

- ``message_start``: the question is stored (``conversation_id``, ``message_id`` of the
  customer's message, ``duplicate``). Always first.
- ``message``: a piece of the answer (``conversation_id``, ``message_id`` of the customer's
  message, ``text``), any number of times.
- ``message_end``: the answer is complete and stored (its ``message_id``, ``reply_to``,
  ``source``, ``citations``, tokens, ``cost``, latency, ``interrupted``).
- ``handoff``: the conversation went to the people (``status``, ``position``,
  ``agents_available``, ``text``).
- ``error``: the message is not answered (``code``, ``message``, ``retry_after``).

A client that goes away cancels the answer's task: the answer pipeline stores what was shown,
cut off. So does a stop request (``chat_stream_stop``), from whichever process it reaches: a
stream listens on the channel-layer group ``events.chat_stream_group`` of its question, and
marks its question as streaming (in Redis, or in the process without it) so that a stop request
for nothing streaming is answered at once.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from channels.layers import get_channel_layer
from redis.exceptions import RedisError

from conversations import events, headless
from conversations.events import chat_stream_group
from conversations.models import ANSWER_CUT_OFF
from conversations.pipeline import ChatContext, answer_customer_message
from conversations.protocol import Delta, Done, Error, HandoffStatus, MessageAck, Status
from conversations.services import AnswerRecord
from helpdesk_site.redis import redis_client, redis_failure_log
from tenants.scoping import enter_tenant_scope, scope_entry_enter

logger = logging.getLogger(__name__)

PING_SECONDS = 10.0
# How long a stream's mark outlives a process that died without removing it.
STREAMING_MARK_SECONDS = 600
STOP_MESSAGE = "chat.stop"
INTERNAL = "internal"
ANSWER_PENDING = "answer_pending"


@dataclass(frozen=True)
class ChatEvent:
    name: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        payload = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return f"event: {self.name}\ndata: {payload}\n\n".encode()


PING = b": ping\n\n"


def answer_end(
    answer: headless.StoredAnswer, *, conversation_id: int, reply_to: int | None
) -> dict[str, Any]:
    """The ``message_end`` event's data for a stored answer."""
    return {
        "conversation_id": conversation_id,
        "message_id": answer.message_id,
        "reply_to": reply_to,
        "source": answer.source,
        "citations": list(answer.citations),
        "tokens_in": answer.tokens_in,
        "tokens_out": answer.tokens_out,
        "cost": str(answer.cost),
        "latency_ms": answer.latency_ms,
        "first_token_ms": answer.first_token_ms,
        "interrupted": answer.interrupted,
    }


class ChatEventSink:
    """The answer pipeline's frames as chat events on ``queue``; ``None`` ends it."""

    def __init__(self, *, tenant_id: int, conversation_id: int) -> None:
        self.tenant_id = tenant_id
        self.conversation_id = conversation_id
        self.queue: asyncio.Queue[ChatEvent | None] = asyncio.Queue()
        self.customer_message_id: int | None = None
        self.duplicate = False
        self.stored: headless.StoredAnswer | None = None  # the answer, as ``done`` reports it
        self.ended = False  # message_end or error sent

    def _put(self, name: str, data: dict[str, Any]) -> None:
        self.queue.put_nowait(ChatEvent(name, data))

    async def ack(self, frame: MessageAck) -> None:
        self.customer_message_id = frame.message_id
        self.duplicate = bool(frame.duplicate)
        self._put(
            "message_start",
            {
                "conversation_id": self.conversation_id,
                "message_id": frame.message_id,
                "duplicate": self.duplicate,
            },
        )

    async def delta(self, frame: Delta) -> None:
        self._text(frame.text)

    def _text(self, text: str) -> None:
        self._put(
            "message",
            {
                "conversation_id": self.conversation_id,
                "message_id": self.customer_message_id,
                "text": text,
            },
        )

    async def answer_stored(self, record: AnswerRecord, message_id: int) -> None:
        self.stored = headless.StoredAnswer(
            message_id=message_id,
            text=record.content,
            source=record.source,
            citations=record.knowledge_refs,
            tokens_in=record.tokens_in,
            tokens_out=record.tokens_out,
            cost=record.cost,
            latency_ms=record.latency_ms,
            first_token_ms=record.first_token_ms,
            interrupted=record.error_code == ANSWER_CUT_OFF,
        )

    async def done(self, frame: Done) -> None:
        stored = self.stored
        if stored is None or stored.message_id != frame.message_id:  # told nothing stored
            stored = headless.StoredAnswer(
                message_id=frame.message_id,
                text="",
                source=frame.source,
                citations=(),
                tokens_in=0,
                tokens_out=0,
                cost=Decimal("0"),
                latency_ms=frame.latency_ms,
                first_token_ms=frame.first_token_ms,
                interrupted=bool(frame.interrupted),
            )
        self._end(stored)

    def _end(self, stored: headless.StoredAnswer) -> None:
        self.ended = True
        self._put(
            "message_end",
            answer_end(
                stored, conversation_id=self.conversation_id, reply_to=self.customer_message_id
            ),
        )

    async def status(self, frame: Status | HandoffStatus) -> None:
        # A reopened conversation (a plain Status) needs no event: the answer follows.
        if isinstance(frame, HandoffStatus):
            self._put(
                "handoff",
                {
                    "conversation_id": self.conversation_id,
                    "status": frame.status,
                    "position": frame.position,
                    "agents_available": frame.agents_available,
                    "text": frame.text,
                },
            )

    async def error(self, frame: Error) -> None:
        self.fail(str(frame.code), frame.text, retry_after=frame.retry_after)

    def fail(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        self.ended = True
        self._put("error", {"code": code, "message": message, "retry_after": retry_after})

    async def replay(self) -> None:
        """The question was asked before (a retry): the answer stored to it, if there is one."""
        if self.customer_message_id is None:
            return
        stored = await headless.astored_answer_to(
            tenant_id=self.tenant_id,
            conversation_id=self.conversation_id,
            customer_message_id=self.customer_message_id,
        )
        if stored is None:
            self.fail(ANSWER_PENDING, "The answer to this message is not stored yet.")
            return
        self._text(stored.text)
        self._end(stored)

    def close(self) -> None:
        self.queue.put_nowait(None)


async def _answer(ctx: ChatContext, text: str, client_message_id: str, sink: ChatEventSink) -> None:
    """The pipeline's answer into ``sink``, in the tenant's scope (a task of its own starts
    from its creator's context, which must not decide it)."""
    scope_entry_enter()
    enter_tenant_scope(ctx.tenant.pk)
    try:
        await answer_customer_message(
            ctx=ctx, text=text, client_message_id=client_message_id, replies=sink
        )
        if sink.duplicate:
            await sink.replay()
        # The stream ends once the answer's reporting rows and other subscribers are done:
        # a client that reads them next finds them.
        await events.asubscribers_settle()
    except asyncio.CancelledError:
        raise
    except Exception:  # the client gets an error event, never a stream that just stops
        logger.exception("answering over the API failed tenant=%s", ctx.tenant.pk)
        sink.fail(INTERNAL, "Something went wrong on our side. Please try again.")
    finally:
        sink.close()


# Tasks of answers whose stream is gone: kept until they finish storing (the loop holds tasks
# only weakly).
_background: set[asyncio.Task[None]] = set()


def _keep(task: asyncio.Task[None]) -> asyncio.Task[None]:
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def chat_event_stream(
    *, ctx: ChatContext, text: str, client_message_id: str
) -> AsyncIterator[bytes]:
    """The answer to ``text`` as server-sent events (see the module docstring)."""
    sink = ChatEventSink(tenant_id=ctx.tenant.pk, conversation_id=ctx.conversation_id)
    answering = _keep(asyncio.create_task(_answer(ctx, text, client_message_id, sink)))
    watch: _StopWatch | None = None
    try:
        while True:
            try:
                event = await asyncio.wait_for(sink.queue.get(), PING_SECONDS)
            except TimeoutError:
                if watch is not None:
                    await watch.refresh()
                yield PING
                continue
            if event is None:
                break
            if event.name == "message_start" and not sink.duplicate and watch is None:
                watch = _StopWatch(ctx.tenant.pk, event.data["message_id"], answering)
                await watch.start()
            yield event.encode()
    finally:
        # The client went away (or the stream ended): an answer still running stops; the
        # pipeline stores what was shown.
        answering.cancel()
        if watch is not None:
            await asyncio.shield(_keep(asyncio.ensure_future(watch.close())))


@dataclass
class ChatReply:
    """A whole answer, for ``response_mode: "blocking"``."""

    conversation_id: int
    question_id: int | None = None
    duplicate: bool = False
    text: str = ""
    end: dict[str, Any] | None = None
    handoff: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    parts: list[str] = field(default_factory=list)


async def chat_reply_collect(*, ctx: ChatContext, text: str, client_message_id: str) -> ChatReply:
    """The answer to ``text``, once it is complete and stored."""
    sink = ChatEventSink(tenant_id=ctx.tenant.pk, conversation_id=ctx.conversation_id)
    await _answer(ctx, text, client_message_id, sink)
    reply = ChatReply(conversation_id=ctx.conversation_id)
    while (event := sink.queue.get_nowait()) is not None:
        if event.name == "message_start":
            reply.question_id = event.data["message_id"]
            reply.duplicate = event.data["duplicate"]
        elif event.name == "message":
            reply.parts.append(event.data["text"])
        elif event.name == "message_end":
            reply.end = event.data
        elif event.name == "handoff":
            reply.handoff = event.data
        elif event.name == "error":
            reply.error = event.data
    reply.text = "".join(reply.parts)
    return reply


# Stopping a stream from any process ------------------------------------------------------------

_streaming_here: set[tuple[int, int]] = set()  # without Redis: this process's streams


def _mark_key(tenant_id: int, message_id: int) -> str:
    return f"kefu:chat:streaming:{tenant_id}:{message_id}"


class _StopWatch:
    """Listens for stop requests for one stream, while it streams."""

    def __init__(self, tenant_id: int, message_id: int, answering: asyncio.Task[None]) -> None:
        self.tenant_id = tenant_id
        self.message_id = message_id
        self.answering = answering
        self.group = chat_stream_group(tenant_id, message_id)
        self.channel = ""
        self.listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        _streaming_here.add((self.tenant_id, self.message_id))
        await self.refresh()
        layer = get_channel_layer()
        if layer is None:
            return
        self.channel = await layer.new_channel()
        await layer.group_add(self.group, self.channel)
        self.listener = asyncio.create_task(self._listen(layer))

    async def refresh(self) -> None:
        client = redis_client()
        if client is None:
            return
        try:
            await client.set(
                _mark_key(self.tenant_id, self.message_id), 1, ex=STREAMING_MARK_SECONDS
            )
        except (RedisError, OSError) as error:
            redis_failure_log(logger=logger, operation="chat stream mark", error=error)

    async def _listen(self, layer: Any) -> None:
        while True:
            message = await layer.receive(self.channel)
            if message.get("type") == STOP_MESSAGE:
                self.answering.cancel()
                return

    async def close(self) -> None:
        _streaming_here.discard((self.tenant_id, self.message_id))
        if self.listener is not None:
            self.listener.cancel()
        client = redis_client()
        try:
            if client is not None:
                await client.delete(_mark_key(self.tenant_id, self.message_id))
            layer = get_channel_layer()
            if layer is not None and self.channel:
                await layer.group_discard(self.group, self.channel)
        except (RedisError, OSError) as error:  # the mark and membership lapse by themselves
            redis_failure_log(logger=logger, operation="chat stream unmark", error=error)


async def _streaming(*, tenant_id: int, message_id: int) -> bool:
    client = redis_client()
    if client is not None:
        try:
            return bool(await client.exists(_mark_key(tenant_id, message_id)))
        except (RedisError, OSError) as error:
            redis_failure_log(logger=logger, operation="chat stream lookup", error=error)
    return (tenant_id, message_id) in _streaming_here


async def chat_stream_stop(*, tenant_id: int, message_id: int) -> bool:
    """Stops the stream answering the customer's message ``message_id``, served by whichever
    process; False when none is streaming. The part already shown is stored."""
    if not await _streaming(tenant_id=tenant_id, message_id=message_id):
        return False
    layer = get_channel_layer()
    if layer is None:
        return False
    await layer.group_send(chat_stream_group(tenant_id, message_id), {"type": STOP_MESSAGE})
    return True
