"""A mock OpenAI-compatible LLM server that tests and benchmarks drive over real HTTP.

No test may reach a real provider, so every LLM call in the suite goes to this server through the
official ``openai`` client. It is a plain ASGI application (no framework) served by uvicorn, either
in a background thread (:class:`MockLLMServer`, for tests) or as its own process
(``python manage.py mockllm``, for benchmarks and local development).

Endpoints
---------
``POST /v1/chat/completions``
    A ``chat.completion`` object, or with ``"stream": true`` Server-Sent Events in OpenAI's exact
    shape: a role chunk (``delta: {"role": "assistant", "content": ""}``), one chunk per token, a
    chunk with ``finish_reason: "stop"`` and an empty delta, a ``choices: []`` chunk carrying
    ``usage`` when ``stream_options.include_usage`` is true, then ``data: [DONE]``. The answer is
    the configured ``text``, or else ``"Mock answer: " + <last user message>``.
``POST /v1/embeddings``
    Deterministic hashed bag-of-features vectors (see :func:`embed_text`), as floats or, when the
    request asks for ``encoding_format: "base64"`` (the openai client does when the caller gives
    no format, and decodes the answer itself), as base64 little-endian float32.
``GET /v1/models``
    One model.
``GET|POST /_mock/config``, ``GET|DELETE /_mock/requests``, ``POST /_mock/reset``
    Run-time control and inspection, so a test in another process can change the behaviour and
    see the request bodies the "LLM" received (the last :data:`RECORDED_REQUESTS_MAX` POSTs to
    ``/v1/*``).

Timing
------
The stream's headers and role chunk go out at once; the first content token follows after
``ttft_ms`` and each later one after ``token_ms``. A non-streamed answer arrives after
``ttft_ms + token_ms * (tokens - 1)``. Embeddings answer at once. Delays are ``asyncio.sleep``,
so one process serves hundreds of concurrent streams.

Faults
------
``fault`` applies to ``POST /v1/chat/completions`` and ``POST /v1/embeddings``, for the next
``fault_count`` such requests (then it clears itself) or for all of them when ``fault_count`` is
``None``. A request header ``x-mock-fault`` forces a fault for that request alone, without
spending ``fault_count``.

``429``
    HTTP 429, ``{"error": {"type": "rate_limit_error", "code": "rate_limit_exceeded", ...}}`` with
    ``retry-after`` (whole seconds) and ``retry-after-ms`` from ``retry_after_ms``. The openai
    client prefers ``retry-after-ms``, so a small value keeps client retries fast in tests.
``500``
    HTTP 500 with ``{"error": {"type": "server_error", ...}}``.
``hang``
    The request is read and then nothing is ever sent: the client's read timeout fires (the
    openai client raises ``APITimeoutError``). The handler returns when the client goes away; if
    the server stops first the request gets a 503.
``disconnect``
    The response starts and the connection is then closed mid-body. A stream sends its headers,
    the role chunk and the first half (rounded down) of the content tokens, and never the finish
    chunk, the usage chunk or ``[DONE]``; a non-streamed answer sends its headers (with the full
    ``content-length``) and half of the JSON (embeddings likewise). uvicorn closes the socket
    because the response is incomplete (its "returned without completing response" error log is
    filtered out for these deliberate drops only), so the client reads a body that ends early:
    httpx2, the openai client's transport, raises ``RemoteProtocolError`` ("peer closed connection
    without sending complete message body (incomplete chunked read)") and the openai client turns
    it into ``openai.APIConnectionError``. A stream yields the partial chunks first and then raises
    from the iteration -- it never ends quietly, because a clean end needs ``[DONE]``; a plain
    ``create()`` raises after its own retries, since connection errors are retried.

Recorded requests are ``{"path": "/v1/...", "body": <the JSON body>}``, oldest first.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import logging
import math
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass, fields, replace
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeAlias, TypedDict, cast, get_args

import uvicorn

from llm.text import HAN

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Fault: TypeAlias = Literal["429", "500", "hang", "disconnect"]
FAULTS: Final[tuple[Fault, ...]] = get_args(Fault)
DEFAULT_MODEL: Final = "kefu-mock"
DEFAULT_EMBEDDING_DIMENSIONS: Final = 64
MAX_EMBEDDING_DIMENSIONS: Final = 4096
RECORDED_REQUESTS_MAX: Final = 100
MAX_BODY_BYTES: Final = 10 * 1024 * 1024
ECHO_PREFIX: Final = "Mock answer: "

logger = logging.getLogger(__name__)


# --- Configuration -------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    # bool is an int subclass, and `"ttft_ms": true` is a caller's mistake, not a delay.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class MockLLMConfig:
    """How the mock answers. Immutable: an update builds a new config and swaps it in whole."""

    ttft_ms: float = 0
    token_ms: float = 0
    text: str | None = None
    fault: Fault | None = None
    fault_count: int | None = None
    retry_after_ms: int = 1000
    model: str = DEFAULT_MODEL

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "token_ms"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, not {value!r}")
        if self.text is not None and not isinstance(self.text, str):
            raise ValueError(f"text must be a string or null, not {self.text!r}")
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(
                f"fault must be one of {', '.join(FAULTS)} or null, not {self.fault!r}"
            )
        if self.fault_count is not None and (
            not isinstance(self.fault_count, int)
            or isinstance(self.fault_count, bool)
            or self.fault_count < 1
        ):
            raise ValueError(
                f"fault_count must be a positive integer or null, not {self.fault_count!r}"
            )
        if self.fault_count is not None and self.fault is None:
            raise ValueError("fault_count needs a fault to count")
        if (
            not isinstance(self.retry_after_ms, int)
            or isinstance(self.retry_after_ms, bool)
            or self.retry_after_ms < 0
        ):
            raise ValueError(
                f"retry_after_ms must be a non-negative integer, not {self.retry_after_ms!r}"
            )
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a non-empty string, not {self.model!r}")

    def updated(self, changes: Mapping[str, Any]) -> MockLLMConfig:
        """Returns a copy with ``changes`` applied; raises ``ValueError`` on a bad key or value.

        Setting ``fault`` without ``fault_count`` makes the fault permanent, so a fault left over
        from an earlier "N times" setting never silently limits a new one.
        """
        known = {field.name for field in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        if "fault" in changes and "fault_count" not in changes:
            changes = {**changes, "fault_count": None}
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RecordedRequest(TypedDict):
    path: str
    body: Any


# --- Text handling -------------------------------------------------------------------------------

# One CJK character; or leading whitespace plus a run of other non-space characters (so English
# yields " word," pieces that keep their spaces); or whitespace that precedes a CJK character or
# ends the text. Every character falls in exactly one token, so "".join(tokens) == text.
_STREAM_TOKEN_RE = re.compile(rf"[{HAN}]|\s*[^\s{HAN}]+|\s+")
_FEATURE_RE = re.compile(rf"[{HAN}]+|[^\W_{HAN}]+")
_CJK_RUN_RE = re.compile(rf"[{HAN}]+")


def stream_tokens(text: str) -> list[str]:
    """Splits ``text`` into the pieces the mock streams: one per CJK character, word-ish pieces
    (with their leading whitespace) otherwise. Lossless: the pieces join back into ``text``."""
    return _STREAM_TOKEN_RE.findall(text)


def embedding_features(text: str) -> Iterator[str]:
    """Yields what an embedding counts: lower-cased words, and for CJK runs every character and
    every bigram (Chinese has no spaces, so bigrams stand in for words)."""
    for run in _FEATURE_RE.findall(text.lower()):
        if _CJK_RUN_RE.fullmatch(run):
            yield from run
            yield from (run[i : i + 2] for i in range(len(run) - 1))
        else:
            yield run


def _hashed_vector(features: Iterator[str], dimensions: int) -> list[float]:
    vector = [0.0] * dimensions
    for feature in features:
        # blake2b, not hash(): Python salts str hashes per process, and the vectors must agree
        # between the test process and a mock running as a subprocess.
        digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
        # A signed bucket keeps unrelated texts near cosine 0 despite bucket collisions.
        vector[digest % dimensions] += 1.0 if digest >> 63 else -1.0
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector] if norm else vector


def embed_text(text: str, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic, L2-normalised hashed bag of :func:`embedding_features`.

    Texts that share words (or CJK characters and bigrams) get a high cosine similarity, so
    retrieval tests can rank by it. A text with no features gets the zero vector.
    """
    return _hashed_vector(embedding_features(text), dimensions)


def embed_token_ids(
    token_ids: Sequence[int], dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS
) -> list[float]:
    """Like :func:`embed_text` for an input already given as token ids."""
    return _hashed_vector((f"#{token_id}" for token_id in token_ids), dimensions)


def _message_text(content: object) -> str:
    """The text of a message's ``content``: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""


# --- HTTP plumbing -------------------------------------------------------------------------------


class _HTTPError(Exception):
    """An OpenAI-style error answer, raised before the response has started."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.payload = _error_payload(message, error_type=error_type, code=code)
        self.headers = list(headers)


def _error_payload(
    message: str, *, error_type: str = "invalid_request_error", code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _encode_json(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


async def _send_json(
    send: Send, status: int, payload: object, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = _encode_json(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away while sending the request body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _HTTPError(413, f"request body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body) if body else None
    except ValueError as exc:
        raise _HTTPError(400, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise _HTTPError(400, "request body must be a JSON object")
    return parsed


async def _wait_for_disconnect(receive: Receive) -> None:
    # Only called once the body is read, so the next message can only be the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


async def _sleep_ms(milliseconds: float) -> None:
    if milliseconds > 0:
        await asyncio.sleep(milliseconds / 1000)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


# uvicorn logs "ASGI callable returned without completing response." when the `disconnect` fault
# drops a connection on purpose. The flag lives in the request task's context, so the filter below
# silences exactly those records and never the same error from any other application.
_DROPPING_CONNECTION: ContextVar[bool] = ContextVar("mockllm_dropping_connection", default=False)


class _DeliberateDropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            _DROPPING_CONNECTION.get()
            and record.getMessage().startswith("ASGI callable returned without completing response")
        )


def _install_drop_filter() -> None:
    uvicorn_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _DeliberateDropFilter) for existing in uvicorn_logger.filters):
        uvicorn_logger.addFilter(_DeliberateDropFilter())


# --- The application -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _ChatRequest:
    model: str
    stream: bool
    include_usage: bool
    tokens: list[str]
    prompt_tokens: int


class MockLLMApp:
    """The ASGI application. Thread-safe to configure and inspect from outside its event loop."""

    def __init__(self, config: MockLLMConfig | None = None) -> None:
        self._initial_config = config or MockLLMConfig()
        self._config = self._initial_config
        # Guards the config swap and the fault_count countdown, which tests drive from another
        # thread; held only for a few assignments, so it never stalls the event loop.
        self._lock = threading.Lock()
        self._requests: deque[RecordedRequest] = deque(maxlen=RECORDED_REQUESTS_MAX)
        self._ids = itertools.count(1)
        self._hung: set[asyncio.Future[None]] = set()
        _install_drop_filter()

    # Control, usable from any thread.

    @property
    def config(self) -> MockLLMConfig:
        return self._config

    def configure(self, **changes: Any) -> MockLLMConfig:
        """Applies a partial update (see :meth:`MockLLMConfig.updated`) and returns the result."""
        return self.update_config(changes)

    def update_config(self, changes: Mapping[str, Any]) -> MockLLMConfig:
        """:meth:`configure` for a mapping, whose keys may be anything a JSON body holds."""
        with self._lock:
            self._config = self._config.updated(changes)
            return self._config

    def reset(self) -> None:
        """Restores the start-up config and forgets the recorded requests."""
        with self._lock:
            self._config = self._initial_config
            self._requests.clear()

    def requests(self) -> list[RecordedRequest]:
        """The recorded POSTs to ``/v1/*``, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> int:
        with self._lock:
            count = len(self._requests)
            self._requests.clear()
            return count

    def release_waiters(self) -> None:
        """Ends every ``hang`` in progress. Must be called on the serving event loop."""
        for waiter in list(self._hung):
            if not waiter.done():
                waiter.set_result(None)

    # ASGI.

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            await self._route(scope, receive, send)
        except _HTTPError as exc:
            await _send_json(send, exc.status, exc.payload, exc.headers)
        except ConnectionError:
            return  # the client left before we could answer; there is no one to tell

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"].rstrip("/")
        if path in ("/v1/chat/completions", "/v1/embeddings"):
            if method != "POST":
                raise _HTTPError(405, f"{method} is not allowed on {path}")
            await self._model_call(scope, path, receive, send)
        elif path == "/v1/models" and method == "GET":
            await _send_json(send, 200, self._models_payload())
        elif path == "/_mock/config":
            await self._control_config(method, receive, send)
        elif path == "/_mock/requests":
            await self._control_requests(method, send)
        elif path == "/_mock/reset" and method == "POST":
            self.reset()
            await _send_json(send, 200, self.config.as_dict())
        else:
            raise _HTTPError(404, f"unknown endpoint {method} {path}", code="unknown_url")

    def _models_payload(self) -> dict[str, Any]:
        model = {"id": self.config.model, "object": "model", "created": 0, "owned_by": "kefu-mock"}
        return {"object": "list", "data": [model]}

    async def _control_config(self, method: str, receive: Receive, send: Send) -> None:
        if method == "POST":
            changes = _parse_json_object(await _read_body(receive))
            try:
                self.update_config(changes)
            except ValueError as exc:
                raise _HTTPError(400, str(exc)) from exc
        elif method != "GET":
            raise _HTTPError(405, f"{method} is not allowed on /_mock/config")
        await _send_json(send, 200, self.config.as_dict())

    async def _control_requests(self, method: str, send: Send) -> None:
        if method == "GET":
            await _send_json(send, 200, self.requests())
        elif method == "DELETE":
            await _send_json(send, 200, {"cleared": self.clear_requests()})
        else:
            raise _HTTPError(405, f"{method} is not allowed on /_mock/requests")

    # Model calls.

    def _take_fault(self, override: str | None) -> tuple[Fault | None, MockLLMConfig]:
        """Decides this request's fault and spends one unit of ``fault_count`` if it applies."""
        if override is not None and override not in FAULTS:
            raise _HTTPError(400, f"x-mock-fault must be one of {', '.join(FAULTS)}")
        with self._lock:
            config = self._config
            if override is not None:
                return cast(Fault, override), config
            fault = config.fault
            if fault is not None and config.fault_count is not None:
                remaining = config.fault_count - 1
                self._config = (
                    replace(config, fault_count=remaining)
                    if remaining
                    else replace(config, fault=None, fault_count=None)
                )
            return fault, config

    async def _model_call(self, scope: Scope, path: str, receive: Receive, send: Send) -> None:
        body = _parse_json_object(await _read_body(receive))
        with self._lock:
            self._requests.append({"path": path, "body": body})
        fault, config = self._take_fault(_header(scope, b"x-mock-fault"))
        if fault == "429":
            raise _rate_limit_error(config)
        if fault == "500":
            raise _HTTPError(500, "The mock server had an error.", error_type="server_error")
        disconnect = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            if fault == "hang":
                await self._hang(disconnect, send)
            elif path == "/v1/embeddings":
                await self._embeddings(body, send, drop=fault == "disconnect")
            else:
                await self._chat(body, config, disconnect, send, drop=fault == "disconnect")
        finally:
            disconnect.cancel()

    async def _hang(self, disconnect: asyncio.Future[None], send: Send) -> None:
        released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._hung.add(released)
        try:
            await asyncio.wait({released, disconnect}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._hung.discard(released)
        if released.done() and not disconnect.done():
            await _send_json(
                send, 503, _error_payload("mock server is stopping", error_type="server_error")
            )

    async def _embeddings(self, body: dict[str, Any], send: Send, *, drop: bool) -> None:
        payload = _embeddings_payload(body, default_model=self.config.model)
        await (_send_truncated_json(send, payload) if drop else _send_json(send, 200, payload))

    async def _chat(
        self,
        body: dict[str, Any],
        config: MockLLMConfig,
        disconnect: asyncio.Future[None],
        send: Send,
        *,
        drop: bool,
    ) -> None:
        request = _chat_request(body, config)
        completion_id = f"chatcmpl-mock-{next(self._ids)}"
        if request.stream:
            stream = _ChatStream(send, disconnect, completion_id, request, config)
            await stream.run(drop=drop)
            return
        await _sleep_ms(config.ttft_ms + config.token_ms * max(len(request.tokens) - 1, 0))
        payload = _completion_payload(completion_id, request)
        await (_send_truncated_json(send, payload) if drop else _send_json(send, 200, payload))


def _rate_limit_error(config: MockLLMConfig) -> _HTTPError:
    seconds = math.ceil(config.retry_after_ms / 1000)
    return _HTTPError(
        429,
        "Rate limit reached for the mock model. Please try again later.",
        error_type="rate_limit_error",
        code="rate_limit_exceeded",
        headers=[
            (b"retry-after", str(seconds).encode()),
            (b"retry-after-ms", str(config.retry_after_ms).encode()),
        ],
    )


def _embeddings_payload(body: dict[str, Any], *, default_model: str) -> dict[str, Any]:
    inputs = _embedding_inputs(body.get("input"))
    dimensions = body.get("dimensions", DEFAULT_EMBEDDING_DIMENSIONS)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool):
        raise _HTTPError(400, "dimensions must be an integer")
    if not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS:
        raise _HTTPError(400, f"dimensions must be between 1 and {MAX_EMBEDDING_DIMENSIONS}")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise _HTTPError(400, "encoding_format must be 'float' or 'base64'")
    data = []
    prompt_tokens = 0
    for index, item in enumerate(inputs):
        if isinstance(item, str):
            vector = embed_text(item, dimensions)
            prompt_tokens += len(stream_tokens(item))
        else:
            vector = embed_token_ids(item, dimensions)
            prompt_tokens += len(item)
        embedding = vector if encoding == "float" else _base64_float32(vector)
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": str(body.get("model", default_model)),
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def _embedding_inputs(raw: object) -> list[str | list[int]]:
    """Normalises ``input`` (a string, token ids, or a list of either) as OpenAI accepts it."""
    if isinstance(raw, str) or _is_token_ids(raw):
        items: list[object] = [raw]
    elif isinstance(raw, list) and raw:
        items = list(raw)
    else:
        raise _HTTPError(400, "input must be a non-empty string, list of strings or token ids")
    inputs: list[str | list[int]] = []
    for item in items:
        if not (isinstance(item, str) and item) and not _is_token_ids(item):
            raise _HTTPError(400, "each input must be a non-empty string or list of token ids")
        inputs.append(cast(str | list[int], item))
    return inputs


def _is_token_ids(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(token, int) and not isinstance(token, bool) for token in value)
    )


def _base64_float32(vector: Sequence[float]) -> str:
    # Little-endian float32, which is what the API sends and what the openai client decodes.
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


async def _send_truncated_json(send: Send, payload: object) -> None:
    """The ``disconnect`` fault for plain responses: promise the whole body, send half, drop."""
    body = _encode_json(payload)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    _DROPPING_CONNECTION.set(True)


def _chat_request(body: dict[str, Any], config: MockLLMConfig) -> _ChatRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _HTTPError(400, "messages must be a non-empty list")
    if not all(isinstance(message, dict) for message in messages):
        raise _HTTPError(400, "each message must be an object")
    texts = [_message_text(message.get("content")) for message in messages]
    if config.text is not None:
        answer = config.text
    else:
        user_texts = [
            text
            for message, text in zip(messages, texts, strict=True)
            if message.get("role") == "user"
        ]
        answer = ECHO_PREFIX + (user_texts[-1] if user_texts else "")
    stream_options = body.get("stream_options")
    return _ChatRequest(
        model=str(body.get("model", config.model)),
        stream=body.get("stream") is True,
        include_usage=isinstance(stream_options, dict)
        and stream_options.get("include_usage") is True,
        tokens=stream_tokens(answer),
        prompt_tokens=sum(len(stream_tokens(text)) for text in texts),
    )


def _usage(request: _ChatRequest) -> dict[str, int]:
    completion_tokens = len(request.tokens)
    return {
        "prompt_tokens": request.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": request.prompt_tokens + completion_tokens,
    }


def _completion_payload(completion_id: str, request: _ChatRequest) -> dict[str, Any]:
    message = {"role": "assistant", "content": "".join(request.tokens), "refusal": None}
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": _usage(request),
        "system_fingerprint": None,
    }


class _ChatStream:
    """One streamed completion: OpenAI's chunk sequence, each chunk flushed as it is produced."""

    def __init__(
        self,
        send: Send,
        disconnect: asyncio.Future[None],
        completion_id: str,
        request: _ChatRequest,
        config: MockLLMConfig,
    ) -> None:
        self._send = send
        self._disconnect = disconnect
        self._request = request
        self._config = config
        self._base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.model,
            "system_fingerprint": None,
        }

    async def run(self, *, drop: bool) -> None:
        await self._send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        await self._event(self._chunk({"role": "assistant", "content": ""}, None))
        tokens = self._request.tokens
        cut = len(tokens) // 2 if drop else len(tokens)
        for index, token in enumerate(tokens[:cut]):
            await _sleep_ms(self._config.ttft_ms if index == 0 else self._config.token_ms)
            if self._disconnect.done():
                return  # the reader is gone; uvicorn discards what we would send anyway
            await self._event(self._chunk({"content": token}, None))
        if drop:
            _DROPPING_CONNECTION.set(True)
            return
        if not tokens:
            await _sleep_ms(self._config.ttft_ms)
        await self._event(self._chunk({}, "stop"))
        if self._request.include_usage:
            await self._event({**self._base, "choices": [], "usage": _usage(self._request)})
        await self._send(
            {"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False}
        )

    def _chunk(self, delta: dict[str, str], finish_reason: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        chunk: dict[str, Any] = {**self._base, "choices": [choice]}
        if self._request.include_usage:
            chunk["usage"] = None  # OpenAI sends the key on every chunk once usage is asked for
        return chunk

    async def _event(self, chunk: dict[str, Any]) -> None:
        payload = b"data: " + _encode_json(chunk) + b"\n\n"
        await self._send({"type": "http.response.body", "body": payload, "more_body": True})


# --- Serving -------------------------------------------------------------------------------------


class _MockUvicornServer(uvicorn.Server):
    """uvicorn's server, ending hung requests first so that stopping never waits on them."""

    def __init__(self, config: uvicorn.Config, app: MockLLMApp) -> None:
        super().__init__(config)
        self._mock_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._mock_app.release_waiters()
        await super().shutdown(sockets=sockets)


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket; port 0 picks a free port (read it with ``getsockname()``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def socket_base_url(sock: socket.socket) -> str:
    """The ``/v1`` base URL (what ``openai.AsyncOpenAI(base_url=...)`` wants) of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


def make_uvicorn_server(app: MockLLMApp, *, log_level: str | None = "warning") -> uvicorn.Server:
    """A uvicorn server for ``app``, to run with ``server.run(sockets=[bind_socket(...)])``.

    ``log_level=None`` leaves logging to the host process (for the in-process test helper).
    """
    config = uvicorn.Config(
        app,
        log_level=log_level,
        log_config=uvicorn.config.LOGGING_CONFIG if log_level is not None else None,
        access_log=False,
        lifespan="off",
        ws="none",
        # A backstop: streams still running when the server stops get this long to finish.
        timeout_graceful_shutdown=2,
    )
    return _MockUvicornServer(config, app)


class MockLLMServer:
    """Runs a :class:`MockLLMApp` with uvicorn in a daemon thread with its own event loop.

    ``with MockLLMServer(MockLLMConfig(text="你好")) as server:`` starts it on a free port of
    127.0.0.1; ``server.base_url`` is then what ``openai.AsyncOpenAI(base_url=...)`` wants.
    """

    def __init__(
        self,
        config: MockLLMConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.app = MockLLMApp(config)
        self._host = host
        self._port = port
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``; only while started."""
        if self._base_url is None:
            raise RuntimeError("MockLLMServer is not started")
        return self._base_url

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``, for the ``/_mock/*`` control endpoints."""
        return self.base_url.removesuffix("/v1")

    def start(self) -> str:
        """Starts serving and returns :attr:`base_url` once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("MockLLMServer is already started")
        sock = bind_socket(self._host, self._port)
        server = make_uvicorn_server(self.app, log_level=None)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="mockllm", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError("the mock LLM server did not start")
            time.sleep(0.005)
        self._base_url = socket_base_url(sock)
        return self._base_url

    def stop(self) -> None:
        """Stops serving and joins the thread (bounded by ``stop_timeout``). Idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = self._base_url = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(self._stop_timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(self._stop_timeout)
            if thread.is_alive():
                logger.warning("mock LLM server thread did not stop within %ss", self._stop_timeout)

    def configure(self, **changes: Any) -> MockLLMConfig:
        """Partial config update, as ``POST /_mock/config`` does."""
        return self.app.configure(**changes)

    @property
    def config(self) -> MockLLMConfig:
        return self.app.config

    def requests(self) -> list[RecordedRequest]:
        """The recorded request bodies of the last POSTs to ``/v1/*``, oldest first."""
        return self.app.requests()

    def clear_requests(self) -> int:
        return self.app.clear_requests()

    def reset(self) -> None:
        """Back to the start-up config with no recorded requests."""
        self.app.reset()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
