"""The load generator: one asyncio loop, many WebSocket clients, open-loop arrivals.

Arrivals are scheduled at a fixed rate before the run starts, and every latency is measured
from a request's *scheduled* send time, not from when the generator got round to sending it:
when the server (or the generator) falls behind, the wait counts against the result instead of
silently thinning the load (coordinated omission). How late the generator itself sent is
recorded too (``send_lag``), so a slow generator shows.

Durations go into HdrHistograms at microsecond resolution (3 significant digits).
"""

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

MAX_MICROSECONDS = 600_000_000  # ten minutes: anything slower is clamped, and shows as such


class Latency:
    """Durations in microseconds; summaries in milliseconds."""

    def __init__(self) -> None:
        self._histogram = HdrHistogram(1, MAX_MICROSECONDS, 3)

    def __len__(self) -> int:
        return int(self._histogram.get_total_count())

    def record(self, seconds: float) -> None:
        self.record_microseconds(round(seconds * 1e6))

    def record_microseconds(self, value: int) -> None:
        self._histogram.record_value(min(max(value, 0), MAX_MICROSECONDS))

    def percentile_ms(self, percentile: float) -> float:
        return self._histogram.get_value_at_percentile(percentile) / 1000

    def summary(self) -> dict[str, float | int]:
        """Count, mean and percentiles in milliseconds (0 everywhere when empty)."""
        h = self._histogram
        if not len(self):
            return {"count": 0}
        return {
            "count": len(self),
            "min_ms": h.get_min_value() / 1000,
            "mean_ms": round(h.get_mean_value() / 1000, 3),
            "p50_ms": self.percentile_ms(50),
            "p90_ms": self.percentile_ms(90),
            "p99_ms": self.percentile_ms(99),
            "p999_ms": self.percentile_ms(99.9),
            "max_ms": h.get_max_value() / 1000,
        }


# --- Open-loop arrivals ---------------------------------------------------------------------


Fire = Callable[[int, float], Awaitable[None]]


async def open_loop(*, rate: float, count: int, fire: Fire, lag: Latency) -> float:
    """Calls ``fire(i, scheduled)`` for i in 0..count-1 at ``scheduled = start + i / rate``;
    returns the start time. ``fire`` must not wait for the answer."""
    start = time.perf_counter() + 0.02
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lag.record(time.perf_counter() - scheduled)
        await fire(i, scheduled)
    return start


# --- What a run tracks ----------------------------------------------------------------------


@dataclass
class Pending:
    scheduled: float
    socket: "WidgetSocket | None" = None
    first_delta: float | None = None
    last_delta: float | None = None
    deltas: int = 0
    chars: int = 0


@dataclass
class Tracker:
    """Requests in flight and what became of them; fed by every socket's reader.

    A request ends with ``done`` (answers), an ``error`` frame naming it, or for an echo the
    frame coming back.
    """

    name: str
    end_to_end: Latency = field(default_factory=Latency)  # scheduled send -> done / echo
    first_delta: Latency = field(default_factory=Latency)  # scheduled send -> first delta
    gaps: Latency = field(default_factory=Latency)  # between consecutive deltas of one answer
    ack: Latency = field(default_factory=Latency)  # scheduled send -> ack
    server_ms: Latency = field(default_factory=Latency)  # done.latency_ms (whole milliseconds)
    server_first_token_ms: Latency = field(default_factory=Latency)
    send_lag: Latency = field(default_factory=Latency)  # how late the generator sent
    pending: dict[str, Pending] = field(default_factory=dict)
    sent: int = 0
    done: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    deltas: int = 0
    chars: int = 0
    first_sent: float | None = None
    last_finished: float | None = None
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    def sent_one(self, request_id: str, scheduled: float, socket: "WidgetSocket | None") -> None:
        self.pending[request_id] = Pending(scheduled, socket)
        self.sent += 1
        if self.first_sent is None:
            self.first_sent = scheduled
        self._idle.clear()

    def finish(self, request_id: str, now: float) -> Pending | None:
        pending = self.pending.pop(request_id, None)
        if pending is not None:
            self.last_finished = now
            if pending.socket is not None:
                pending.socket.busy = False
            if not self.pending:
                self._idle.set()
        return pending

    def on_frame(
        self, frame: dict[str, Any], now: float, socket: "WidgetSocket | None" = None
    ) -> None:
        kind = frame.get("type")
        if kind == "delta":
            pending = self.pending.get(frame.get("reply_to", ""))
            if pending is None:
                return
            if pending.first_delta is None:
                pending.first_delta = now
                self.first_delta.record(now - pending.scheduled)
            elif pending.last_delta is not None:
                self.gaps.record(now - pending.last_delta)
            pending.last_delta = now
            pending.deltas += 1
            pending.chars += len(frame.get("text", ""))
        elif kind == "done":
            pending = self.finish(frame.get("reply_to", ""), now)
            if pending is None:
                return
            self.done += 1
            self.deltas += pending.deltas
            self.chars += pending.chars
            self.end_to_end.record(now - pending.scheduled)
            self.sources[str(frame.get("source"))] += 1
            if isinstance(frame.get("latency_ms"), int):
                self.server_ms.record_microseconds(frame["latency_ms"] * 1000)
            if isinstance(frame.get("first_token_ms"), int):
                self.server_first_token_ms.record_microseconds(frame["first_token_ms"] * 1000)
        elif kind == "ack":
            pending = self.pending.get(frame.get("id", ""))
            if pending is not None:
                self.ack.record(now - pending.scheduled)
        elif kind == "error":
            self.errors[str(frame.get("code"))] += 1
            self.finish(frame.get("reply_to", ""), now)
        elif kind == "status" and socket is not None:
            # The conversation went to a person (a handoff rule fired): nothing pending on this
            # socket will be answered. A benchmark that triggers this is measuring the wrong
            # thing, so it shows in the errors.
            self.errors[f"status:{frame.get('status')}"] += 1
            for request_id in [r for r, p in self.pending.items() if p.socket is socket]:
                self.finish(request_id, now)
        elif kind == "echo":
            pending = self.finish(frame.get("id", ""), now)
            if pending is not None:
                self.done += 1
                self.end_to_end.record(now - pending.scheduled)

    async def drained(self, seconds: float) -> None:
        """Waits until nothing is in flight, or ``seconds``; what is left counts as lost."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), seconds)

    def socket_closed(self, socket: "WidgetSocket", now: float) -> None:
        """The server closed ``socket``: what was pending on it is never answered."""
        for request_id in [r for r, p in self.pending.items() if p.socket is socket]:
            self.errors["socket_closed"] += 1
            self.finish(request_id, now)

    def lost(self) -> int:
        return len(self.pending)

    def summary(self) -> dict[str, Any]:
        wall = (
            self.last_finished - self.first_sent
            if self.last_finished is not None and self.first_sent is not None
            else 0.0
        )
        return {
            "sent": self.sent,
            "done": self.done,
            "lost": self.lost(),
            "errors": dict(self.errors),
            "sources": dict(self.sources),
            "end_to_end": self.end_to_end.summary(),
            "first_delta": self.first_delta.summary(),
            "delta_gaps": self.gaps.summary(),
            "ack": self.ack.summary(),
            "server_latency_ms": self.server_ms.summary(),
            "server_first_token_ms": self.server_first_token_ms.summary(),
            "send_lag": self.send_lag.summary(),
            "deltas": self.deltas,
            "chars": self.chars,
            "wall_seconds": round(wall, 3),
        }


# --- Sockets --------------------------------------------------------------------------------


class WidgetSocket:
    """One simulated visitor: its own socket, with a reader feeding the current tracker."""

    def __init__(self, ws: ClientConnection, pool: "SocketPool", number: int) -> None:
        self.ws = ws
        self.pool = pool
        self.number = number  # its place in the pool
        self.asked = 0  # messages sent on it so far
        self.busy = False
        self.reader: asyncio.Task[None] | None = None

    def start_reading(self) -> None:
        if self.reader is None:
            self.reader = asyncio.create_task(self._read())

    @property
    def closed(self) -> bool:
        return self.ws.close_code is not None

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                tracker = self.pool.tracker
                if tracker is not None:
                    tracker.on_frame(frame, now, self)
        except ConnectionClosed:
            pass
        finally:
            self.pool.on_closed(self)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame, ensure_ascii=False))


@dataclass
class ConnectResult:
    connected: int
    failed: int
    seconds: float
    failures: dict[str, int]
    handshake: dict[str, Any]  # connect + hello -> welcome, per socket

    @property
    def per_second(self) -> float:
        return self.connected / self.seconds if self.seconds > 0 else 0.0


class SocketPool:
    """Many client sockets to one endpoint; ``tracker`` receives every frame they read."""

    def __init__(self, uri: str, *, origin: str, hello: dict[str, Any] | None) -> None:
        self.uri = uri
        self.origin = origin
        self.hello = hello
        self.sockets: list[WidgetSocket] = []
        self.tracker: Tracker | None = None
        self.closed_by_server: Counter[str] = Counter()  # close code -> sockets
        self._closing = False
        self._cursor = itertools.count()
        self._numbers = itertools.count()

    def __len__(self) -> int:
        return len(self.sockets)

    async def _open_one(self) -> WidgetSocket:
        ws = await connect(
            self.uri,
            origin=self.origin,  # type: ignore[arg-type]
            proxy=None,
            ping_interval=None,  # browsers do not ping; the server's pings are answered
            open_timeout=60,
            close_timeout=5,
            max_queue=None,
        )
        socket = WidgetSocket(ws, self, next(self._numbers))
        if self.hello is not None:
            await ws.send(json.dumps(self.hello))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if frame.get("type") == "welcome":
                    break
                if frame.get("type") == "error":
                    await ws.close()
                    raise RuntimeError(f"hello refused: {frame.get('code')}")
        return socket

    async def open(
        self, count: int, *, concurrency: int = 64, read: bool = True, deadline: float = 600
    ) -> ConnectResult:
        """Opens ``count`` more sockets, at most ``concurrency`` handshakes at a time; gives up
        on what is left after ``deadline`` seconds. Failures are counted, not raised."""
        failures: Counter[str] = Counter()
        handshake = Latency()
        remaining = iter(range(count))
        stop_at = time.perf_counter() + deadline

        async def worker() -> None:
            for _ in remaining:
                if time.perf_counter() > stop_at:
                    failures["deadline"] += 1
                    continue
                started = time.perf_counter()
                try:
                    socket = await self._open_one()
                except (OSError, TimeoutError, ConnectionClosed, RuntimeError) as exc:
                    failures[
                        type(exc).__name__
                        + (f" {exc.errno}" if isinstance(exc, OSError) and exc.errno else "")
                    ] += 1
                    continue
                handshake.record(time.perf_counter() - started)
                self.sockets.append(socket)
                if read:
                    socket.start_reading()

        before = len(self.sockets)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, count) or 1)))
        return ConnectResult(
            connected=len(self.sockets) - before,
            failed=sum(failures.values()),
            seconds=time.perf_counter() - started,
            failures=dict(failures),
            handshake=handshake.summary(),
        )

    def on_closed(self, socket: WidgetSocket) -> None:
        if self._closing:
            return
        self.closed_by_server[str(socket.ws.close_code)] += 1
        if self.tracker is not None:
            self.tracker.socket_closed(socket, time.perf_counter())

    def open_count(self) -> int:
        return sum(1 for socket in self.sockets if socket.ws.close_code is None)

    def next_socket(self, *, prefer_idle: bool = False) -> WidgetSocket:
        """Round robin; with ``prefer_idle``, the next socket with nothing in flight (when
        every socket is busy, the next one anyway: the server then queues the answer)."""
        n = len(self.sockets)
        start = next(self._cursor)
        fallback = None
        for offset in range(n):
            socket = self.sockets[(start + offset) % n]
            if socket.closed:
                continue
            if not prefer_idle or not socket.busy:
                for _ in range(offset):
                    next(self._cursor)
                return socket
            fallback = fallback or socket
        if fallback is None:
            raise RuntimeError("every socket of the pool was closed by the server")
        return fallback

    async def close(self) -> None:
        self._closing = True

        async def close_one(socket: WidgetSocket) -> None:
            with contextlib.suppress(Exception):
                await socket.ws.close()
            if socket.reader is not None:
                socket.reader.cancel()

        for batch in _batches(self.sockets, 500):
            await asyncio.gather(*(close_one(s) for s in batch))
        self.sockets.clear()
        self._closing = False


def _batches(items: Sequence[WidgetSocket], size: int) -> Iterator[Sequence[WidgetSocket]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- Driving a run --------------------------------------------------------------------------


async def run_messages(
    pool: SocketPool,
    *,
    name: str,
    rate: float,
    seconds: float,
    text: Callable[[int, WidgetSocket], str],
    drain_seconds: float,
    prefer_idle: bool = False,
    id_prefix: str = "m",
) -> Tracker:
    """Sends ``rate`` x ``seconds`` messages open-loop over the pool's sockets and waits for
    their answers (at most ``drain_seconds`` after the last send). ``text(i, socket)`` is the
    i-th message, sent on ``socket`` (``socket.asked`` messages went there before)."""
    tracker = Tracker(name)
    pool.tracker = tracker
    run_id = f"{id_prefix}{time.monotonic_ns() % 10**9:x}"

    async def fire(i: int, scheduled: float) -> None:
        socket = pool.next_socket(prefer_idle=prefer_idle)
        request_id = f"{run_id}-{i}"
        tracker.sent_one(request_id, scheduled, socket)
        socket.busy = True
        message = text(i, socket)
        socket.asked += 1
        try:
            await socket.send({"type": "message", "id": request_id, "text": message})
        except ConnectionClosed:
            tracker.errors["socket_closed"] += 1
            tracker.finish(request_id, time.perf_counter())

    await open_loop(rate=rate, count=max(1, round(rate * seconds)), fire=fire, lag=tracker.send_lag)
    await tracker.drained(drain_seconds)
    return tracker


async def run_echo(
    pool: SocketPool, *, rate: float, seconds: float, payload: Callable[[int], str]
) -> Tracker:
    """Like ``run_messages`` against an echo server: the frame coming back ends a request."""
    tracker = Tracker("echo")
    pool.tracker = tracker
    run_id = f"e{time.monotonic_ns() % 10**9:x}"

    async def fire(i: int, scheduled: float) -> None:
        socket = pool.next_socket()
        request_id = f"{run_id}-{i}"
        tracker.sent_one(request_id, scheduled, socket)
        try:
            await socket.send({"type": "echo", "id": request_id, "text": payload(i)})
        except ConnectionClosed:
            tracker.errors["socket_closed"] += 1
            tracker.finish(request_id, time.perf_counter())

    await open_loop(rate=rate, count=max(1, round(rate * seconds)), fire=fire, lag=tracker.send_lag)
    await tracker.drained(10)
    return tracker


# --- The LLM, directly ----------------------------------------------------------------------


async def direct_stream(
    host: str, port: int, body: bytes, tracker: Tracker, request_id: str
) -> None:
    """One streamed chat completion straight from the (mock) LLM over plain HTTP/1.1: the
    baseline that the platform's streaming is compared with. Each content token counts as a
    delta, the end of the stream as ``done``."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\n"
            + f"Host: {host}:{port}\r\n".encode()
            + b"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        # uvicorn writes each server-sent event as one chunk, so events never straddle the
        # chunked framing's size lines; those lines are simply not "data:" lines.
        while line := await reader.readline():
            if not line.startswith(b"data: "):
                continue
            payload = line[6:].strip()
            now = time.perf_counter()
            if payload == b"[DONE]":
                tracker.on_frame({"type": "done", "reply_to": request_id, "source": "direct"}, now)
                return
            chunk = json.loads(payload)
            choices = chunk.get("choices") or []
            content = choices[0].get("delta", {}).get("content") if choices else None
            if content:
                tracker.on_frame({"type": "delta", "reply_to": request_id, "text": content}, now)
        tracker.on_frame({"type": "error", "code": "direct_eof", "reply_to": request_id}, 0.0)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


Request = Callable[[str, bytes, Tracker], Awaitable[None]]


async def run_requests(
    tracker: Tracker,
    request: Request,
    *,
    prefix: str,
    rate: float,
    seconds: float,
    body: Callable[[int], bytes],
    drain_seconds: float,
) -> Tracker:
    """Open-loop requests of their own (no socket pool): ``request(request_id, body,
    tracker)`` at ``rate`` for ``seconds``; a connection error counts as the request's error."""
    tasks: set[asyncio.Task[None]] = set()

    async def guarded(request_id: str, payload: bytes) -> None:
        try:
            await request(request_id, payload, tracker)
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            tracker.on_frame(
                {"type": "error", "code": type(exc).__name__, "reply_to": request_id},
                time.perf_counter(),
            )

    async def fire(i: int, scheduled: float) -> None:
        request_id = f"{prefix}{i}"
        tracker.sent_one(request_id, scheduled, None)
        task = asyncio.create_task(guarded(request_id, body(i)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await open_loop(rate=rate, count=max(1, round(rate * seconds)), fire=fire, lag=tracker.send_lag)
    await tracker.drained(drain_seconds)
    for task in tasks:
        task.cancel()
    return tracker


async def run_direct(
    *,
    host: str,
    port: int,
    rate: float,
    seconds: float,
    body: Callable[[int], bytes],
    drain_seconds: float,
) -> Tracker:
    async def request(request_id: str, payload: bytes, tracker: Tracker) -> None:
        await direct_stream(host, port, payload, tracker, request_id)

    return await run_requests(
        Tracker("direct"),
        request,
        prefix="d",
        rate=rate,
        seconds=seconds,
        body=body,
        drain_seconds=drain_seconds,
    )


# --- The REST API (headless chat) -----------------------------------------------------------


async def _http_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


async def _http_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    chunks = []
    while size := int((await reader.readline()).strip() or b"0", 16):
        chunks.append(await reader.readexactly(size))
        await reader.readline()
    await reader.readline()
    return b"".join(chunks)


def _http_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{head}\r\n"
    ).encode() + body


class HttpConnections:
    """Keep-alive HTTP/1.1 connections to the app, one request at a time each; a request that
    finds none idle opens another (as a busy integrator's connection pool would)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port, self.headers = host, port, headers
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def post_json(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        request = _http_request(self.host, self.port, path, body, self.headers)
        if self.idle:
            reader, writer = self.idle.pop()
            try:
                writer.write(request)
                await writer.drain()
                status, headers = await _http_head(reader)
            except OSError:  # the server closed it while idle (its keep-alive timeout)
                writer.close()
                reader, writer, status, headers = await self._post_new(request)
        else:
            reader, writer, status, headers = await self._post_new(request)
        payload = json.loads(await _http_body(reader, headers))
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, payload

    async def _post_new(
        self, request: bytes
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int, dict[str, str]]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened += 1
        writer.write(request)
        await writer.drain()
        status, headers = await _http_head(reader)
        return reader, writer, status, headers

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for _, writer in idle:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def run_api_blocking(
    connections: HttpConnections,
    *,
    name: str,
    rate: float,
    seconds: float,
    body: Callable[[int], bytes],
    drain_seconds: float,
) -> Tracker:
    """``POST /api/v1/chat/messages`` with ``response_mode: "blocking"`` at ``rate``: each
    answer counts as its ``done``."""

    async def request(request_id: str, payload: bytes, tracker: Tracker) -> None:
        status, answer = await connections.post_json("/api/v1/chat/messages", payload)
        now = time.perf_counter()
        if status != 200:
            code = (answer.get("error") or {}).get("code", status)
            tracker.on_frame({"type": "error", "code": f"http_{code}", "reply_to": request_id}, now)
            return
        tracker.on_frame({"type": "done", "reply_to": request_id, **_done_fields(answer)}, now)

    return await run_requests(
        Tracker(name),
        request,
        prefix=name,
        rate=rate,
        seconds=seconds,
        body=body,
        drain_seconds=drain_seconds,
    )


def _done_fields(answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": answer.get("source"),
        "latency_ms": answer.get("latency_ms"),
        "first_token_ms": answer.get("first_token_ms"),
    }


async def api_stream(
    host: str, port: int, headers: dict[str, str], body: bytes, tracker: Tracker, request_id: str
) -> None:
    """One headless-chat answer as server-sent events on a connection of its own: each
    ``message`` event counts as a delta, ``message_end`` as ``done``."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            _http_request(
                host,
                port,
                "/api/v1/chat/messages",
                body,
                {**headers, "Accept": "text/event-stream", "Connection": "close"},
            )
        )
        await writer.drain()
        status, _ = await _http_head(reader)
        if status != 200:
            tracker.on_frame(
                {"type": "error", "code": f"http_{status}", "reply_to": request_id},
                time.perf_counter(),
            )
            return
        event = ""
        # Each event is one chunk of the chunked body: its size lines are not event lines.
        while line := await reader.readline():
            if line.startswith(b"event: "):
                event = line[7:].strip().decode()
                continue
            if not line.startswith(b"data: "):
                continue
            data = json.loads(line[6:])
            now = time.perf_counter()
            if event == "message":
                tracker.on_frame(
                    {"type": "delta", "reply_to": request_id, "text": data["text"]}, now
                )
            elif event == "message_end":
                tracker.on_frame(
                    {"type": "done", "reply_to": request_id, **_done_fields(data)}, now
                )
                return
            elif event in ("error", "handoff"):
                tracker.on_frame(
                    {"type": "error", "code": data.get("code", event), "reply_to": request_id}, now
                )
                return
        tracker.on_frame({"type": "error", "code": "api_eof", "reply_to": request_id}, 0.0)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def run_api_streams(
    *,
    host: str,
    port: int,
    headers: dict[str, str],
    rate: float,
    seconds: float,
    body: Callable[[int], bytes],
    drain_seconds: float,
) -> Tracker:
    async def request(request_id: str, payload: bytes, tracker: Tracker) -> None:
        await api_stream(host, port, headers, payload, tracker, request_id)

    return await run_requests(
        Tracker("api-stream"),
        request,
        prefix="s",
        rate=rate,
        seconds=seconds,
        body=body,
        drain_seconds=drain_seconds,
    )
