"""A streamed response body read as raw server-sent events.

The body is parsed here, not through the client's per-chunk pydantic models, which cost more
than all the rest of an answer. Events that arrived together (in one network read, or while the
caller was busy with the previous delta) are passed on as one delta, so a backlog costs the
caller one frame, not one per token; nothing ever waits for more text to come.
"""

import asyncio
import ssl
from typing import Any, Final

import openai

# After [DONE], how long the end of the body may take to arrive so that the connection can be
# reused; a server slower than that has its connection closed instead (the openai client's own
# streams wait the same).
_BODY_END_WAIT: Final = 0.1


class _BodyReader:
    """Reads a streamed response body in a task of its own, so that what has arrived can be
    taken all at once.

    The transport hands the body over one HTTP chunk (for these servers: one event) at a time,
    even when a single network read brought many. Reading in a separate task lets them gather
    while the caller is busy with the previous delta; :meth:`take` then returns them together,
    and waits only when nothing at all has arrived, so coalescing never delays a token.
    """

    def __init__(self, response: openai.AsyncAPIResponse[Any]) -> None:
        self._received: list[bytes] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._task = asyncio.create_task(self._read(response), name="llm-body-reader")
        self._task.add_done_callback(self._wake)

    async def take(self) -> bytes | None:
        """The bytes received since the last call, waiting only when there are none; None once
        the body has ended. A transport error is raised after the bytes that came before it."""
        while not self._received:
            if self._task.done():
                self._task.result()
                return None
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        received = b"".join(self._received)
        self._received.clear()
        return received

    async def end_wait(self) -> None:
        """Waits up to ``_BODY_END_WAIT`` for the end of the body: a body read to its end lets
        the connection go back to the pool, while one closed early closes the connection."""
        if not self._task.done():
            await asyncio.wait([self._task], timeout=_BODY_END_WAIT)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.wait([self._task])
        if not self._task.cancelled():
            self._task.exception()  # seen by take(), or not wanted: don't log it as unretrieved

    async def _read(self, response: openai.AsyncAPIResponse[Any]) -> None:
        try:
            async for data in response.iter_bytes():
                self._received.append(data)
                self._wake()
        except Exception as exc:  # only to translate the transport's errors; the rest re-raised
            translated = _transport_error(exc, response)
            if translated is None:
                raise
            raise translated from exc

    def _wake(self, *_: object) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)


def _transport_error(
    exc: Exception, response: openai.AsyncAPIResponse[Any]
) -> openai.APIConnectionError | None:
    """A failed body read as the openai client's own streams report it: the transport's timeout
    and request errors become ``APITimeoutError`` and ``APIConnectionError``; None for anything
    else. Matched by name, as in :func:`llm.gateway.attempt._caused_by`: the transport
    (httpx or httpx2) is the openai client's business. SSL errors and anyio's ``EndOfStream``
    escape the transport's own classes, and the openai client counts them as connection errors
    too."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    request = response.http_response.request
    if "TimeoutException" in names:
        return openai.APITimeoutError(request=request)
    if "RequestError" in names or "EndOfStream" in names or isinstance(exc, ssl.SSLError):
        return openai.APIConnectionError(request=request)
    return None


class _EventDecoder:
    """The ``data`` of each complete server-sent event in a byte stream, fed as it arrives.

    An event ends at a blank line, and a line at LF, CRLF or CR; a CR that ends the bytes so far
    is held back, since it may be the first half of a CRLF. Other fields (``event``, ``id``,
    comments) are skipped: an OpenAI-compatible chat stream says everything in ``data``. As the
    standard says, an event left incomplete when the body ends is dropped.
    """

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, received: bytes) -> list[bytes]:
        buffer = self._pending + received if self._pending else received
        held_cr = b""
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):
                buffer, held_cr = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *events, rest = buffer.split(b"\n\n")
        self._pending = rest + held_cr
        payloads = []
        for event in events:
            lines = [
                line[5:].removeprefix(b" ")
                for line in event.split(b"\n")
                if line.startswith(b"data:")
            ]
            if lines:
                payloads.append(b"\n".join(lines))
        return payloads
