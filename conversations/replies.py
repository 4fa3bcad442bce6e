"""Where the answer pipeline's replies go: the interface every channel implements.

The pipeline (conversations/pipeline.py) answers a customer's message without knowing how the
customer is reached. It tells a ``ReplySink`` what happened, in this order:

1. ``ack``: the message is stored (or was already: ``duplicate``). Always first, exactly once.
2. ``status``: the conversation reopened (``bot``) or was handed to the people (a
   ``HandoffStatus``, with the queue position and whether anybody is available); may follow
   ``ack`` and may end the reply.
3. ``error``: the message is not answered (``rate_limited``, ``blocked``); ends the reply.
4. ``delta`` any number of times (pieces of the answer, to be appended in order), then
   ``answer_stored`` with what was stored (source, citations, tokens, cost: for channels that
   report them; the widget does not) and ``done`` once (the answer is complete and stored; its
   ``message_id`` can be rated). A
   ``status`` may follow ``done`` when the answer failed and the conversation went to a person.

The frames are the widget protocol's models (conversations/protocol.py): a channel renders them
as it must. The widget socket sends each as it comes (``WidgetSocketSink``); an HTTP stream
(server-sent events) would write each as an event; a channel that cannot stream (WeChat) keeps
the deltas and sends the text on ``done``. A sink's methods may be slow (a network write) but
should not raise: an exception ends the answer (what is stored stays stored) and reaches the
pipeline's caller.
"""

from collections.abc import Awaitable, Callable
from typing import Protocol

from conversations.protocol import (
    Delta,
    Done,
    Error,
    HandoffStatus,
    MessageAck,
    Status,
    WidgetServerFrame,
)
from conversations.services import AnswerRecord


class ReplySink(Protocol):
    """A channel's end of the answer pipeline (see the module docstring for the order)."""

    async def ack(self, frame: MessageAck) -> None: ...

    async def delta(self, frame: Delta) -> None: ...

    async def answer_stored(self, record: AnswerRecord, message_id: int) -> None: ...

    async def done(self, frame: Done) -> None: ...

    async def status(self, frame: Status | HandoffStatus) -> None: ...

    async def error(self, frame: Error) -> None: ...


class WidgetSocketSink:
    """The widget socket's sink: every frame goes straight to the customer's socket, as it
    comes (no token crosses the channel layer)."""

    __slots__ = ("_send",)

    def __init__(self, send: Callable[[WidgetServerFrame], Awaitable[None]]) -> None:
        self._send = send

    async def ack(self, frame: MessageAck) -> None:
        await self._send(frame)

    async def delta(self, frame: Delta) -> None:
        await self._send(frame)

    async def answer_stored(self, record: AnswerRecord, message_id: int) -> None:
        """The widget shows the text it was sent; ``done`` says the rest."""

    async def done(self, frame: Done) -> None:
        await self._send(frame)

    async def status(self, frame: Status | HandoffStatus) -> None:
        await self._send(frame)

    async def error(self, frame: Error) -> None:
        await self._send(frame)
