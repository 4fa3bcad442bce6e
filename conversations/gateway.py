"""The LLM gateway: the one module that talks to LLM providers (nothing else imports openai).

Any OpenAI-compatible provider (OpenAI, DeepSeek, Qwen's compatible mode, Azure OpenAI, vLLM,
Ollama) is reached through the official ``openai`` client with explicit timeouts. Callers pass a
``ProviderConfig`` (a plain value, so no ORM object crosses into async code).

Chat answers stream through :func:`chat_stream`: an ordered fallback chain of providers, retries
with backoff before the first token, a per-tenant, per-provider circuit breaker and an answer
cache. Timeouts, retries, fallback, usage and cost live here; callers get text deltas and a final
usage record.

The stream's body is read as raw server-sent events and parsed here, not through the client's
per-chunk pydantic models, which cost more than all the rest of an answer. Events that arrived
together (in one network read, or while the caller was busy with the previous delta) are passed
on as one delta, so a backlog costs the caller one frame, not one per token; nothing ever waits
for more text to come.

The breaker and the answer cache live in Redis through the process's shared ``redis.asyncio``
client (:func:`helpdesk_site.redis.redis_client`) when ``REDIS_URL`` is set, so that every ASGI
and Celery process shares them, under ``kefu:llm:cb:<tenant_id>:<provider>:*`` and
``kefu:llm:answer:<tenant_id>:<sha256 of the caller's key>`` (never the question itself).
Without Redis (the embedded single-process mode) they live in an in-process store with the same
expiry. Both are optimisations: a broken or slow Redis reads as a closed circuit and a cache miss,
logs a warning without keys at most once per interval, and never fails an answer.
"""

import asyncio
import enum
import hashlib
import json
import logging
import math
import random
import re
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, Final, Literal, Protocol, TypeVar, cast

import numpy as np
import openai
import redis.asyncio as aioredis
from django.conf import settings
from openai.types.chat import ChatCompletionMessageParam
from redis.exceptions import RedisError

from helpdesk_site.redis import redis_client, redis_failure_log
from tenants.models import LLMProvider

EMBEDDING_BATCH = 64

logger = logging.getLogger(__name__)

FailureKind = Literal[
    "rate_limited",
    "server_error",
    "timeout_connect",
    "timeout_first_token",
    "timeout_total",
    "connection",
    "bad_request",
    "circuit_open",
    "interrupted",
]

_COST_PLACES: Final = Decimal("0.000001")
_STATE_KEY_PREFIX: Final = "kefu:llm:"
# Breaker state outlives any open period; it only expires so that a deleted provider's keys go.
_BREAKER_STATE_TTL: Final = 24 * 3600
# Without Redis: at most this many breaker keys and cached answers, least recently used go first.
_LOCAL_STATE_MAX_KEYS: Final = 10_000
# After [DONE], how long the end of the body may take to arrive so that the connection can be
# reused; a server slower than that has its connection closed instead (the openai client's own
# streams wait the same).
_BODY_END_WAIT: Final = 0.1
# An answer cut short by the token limit or a content filter is not worth replaying.
_INCOMPLETE_FINISH_REASONS: Final = frozenset({"length", "content_filter"})
_SAFE_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

_T = TypeVar("_T")


@dataclass(frozen=True)
class ProviderConfig:
    id: int | None
    name: str
    base_url: str
    api_key: str
    model: str
    embedding_model: str
    connect_timeout: float
    first_token_timeout: float
    total_timeout: float
    price_input_per_1k: Decimal
    price_output_per_1k: Decimal

    @classmethod
    def of(cls, provider: LLMProvider) -> "ProviderConfig":
        return cls(
            id=provider.pk,
            name=provider.name,
            base_url=provider.base_url,
            api_key=provider.api_key,
            model=provider.model,
            embedding_model=provider.embedding_model,
            connect_timeout=provider.connect_timeout,
            first_token_timeout=provider.first_token_timeout,
            total_timeout=provider.total_timeout,
            price_input_per_1k=provider.price_input_per_1k,
            price_output_per_1k=provider.price_output_per_1k,
        )


class GatewayError(Exception):
    """A provider could not serve the request; ``retryable`` tells whether to try again."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


# One client per provider settings and event loop: building one costs ~25 ms (an SSL context
# and a connection pool), and a kept client reuses its connections across answers.
_CLIENTS_PER_LOOP = 256
_clients: dict[
    int, tuple[asyncio.AbstractEventLoop, dict[tuple[Any, ...], openai.AsyncOpenAI]]
] = {}


def _client(provider: ProviderConfig, *, read_timeout: float) -> openai.AsyncOpenAI:
    loop = asyncio.get_running_loop()
    for loop_id, (other, _clients_of_loop) in list(_clients.items()):
        if other.is_closed():  # tests and restarts leave dead loops behind
            del _clients[loop_id]
    _loop, clients = _clients.setdefault(id(loop), (loop, {}))
    key = (
        provider.base_url,
        hashlib.sha256(provider.api_key.encode()).hexdigest(),
        read_timeout,
        provider.connect_timeout,
    )
    client = clients.get(key)
    if client is None:
        if len(clients) >= _CLIENTS_PER_LOOP:
            clients.pop(next(iter(clients)))  # the oldest; its connections close when collected
        client = clients[key] = openai.AsyncOpenAI(
            base_url=provider.base_url,
            # Local servers (vLLM, Ollama) accept any key; the client refuses an empty one.
            api_key=provider.api_key or "unused",
            timeout=openai.Timeout(read_timeout, connect=provider.connect_timeout),
            max_retries=0,
        )
    return client


async def embeddings_create(*, provider: ProviderConfig, texts: Sequence[str]) -> np.ndarray:
    """Embeds ``texts`` with the provider's embedding model: float32 rows of unit length."""
    if not provider.embedding_model:
        raise GatewayError(f"{provider.name} has no embedding model", retryable=False)
    client = _client(provider, read_timeout=provider.total_timeout)
    rows: list[list[float]] = []
    try:
        for start in range(0, len(texts), EMBEDDING_BATCH):
            batch = list(texts[start : start + EMBEDDING_BATCH])
            response = await client.embeddings.create(model=provider.embedding_model, input=batch)
            ordered = sorted(response.data, key=lambda item: item.index)
            rows.extend(item.embedding for item in ordered)
    except (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError) as exc:
        raise GatewayError(f"{provider.name}: {type(exc).__name__}", retryable=True) from exc
    except openai.APIStatusError as exc:
        raise GatewayError(
            f"{provider.name}: HTTP {exc.status_code}", retryable=exc.status_code >= 500
        ) from exc
    vectors = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


# --- Streaming chat: public values ---------------------------------------------------------------


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class AttemptFailure:
    """One provider request that did not produce a complete answer.

    ``detail`` names the HTTP status, the provider's error code or the exception type: never the
    provider's error message (OpenAI's 401 message quotes part of the key), the prompt or the
    answer.
    """

    provider: str
    kind: FailureKind
    detail: str


@dataclass(frozen=True)
class ChatUsage:
    """What one answer used. Times are in milliseconds since :func:`chat_stream` was called,
    so they include retries and fallback: what the customer waited."""

    provider_id: int | None
    provider: str
    model: str
    tokens_in: int
    tokens_out: int
    cost: Decimal
    first_token_ms: int | None
    total_ms: int
    attempts: tuple[AttemptFailure, ...]
    cached: bool = False


@dataclass
class TextDelta:
    text: str


@dataclass
class StreamDone:
    usage: ChatUsage


class StreamInterrupted(GatewayError):
    """The answer broke off after text had reached the caller; it is not retried, since the
    customer already saw ``partial_text``. ``usage`` is what the partial answer cost."""

    def __init__(self, *, usage: ChatUsage, partial_text: str) -> None:
        super().__init__(f"{usage.provider} stopped mid-answer", retryable=False)
        self.usage = usage
        self.partial_text = partial_text


class AllProvidersFailed(GatewayError):
    """No provider in the chain produced a first token; ``attempts`` says what each one did."""

    def __init__(self, attempts: tuple[AttemptFailure, ...]) -> None:
        summary = ", ".join(f"{a.provider}: {a.kind}" for a in attempts) or "no providers"
        super().__init__(f"every LLM provider failed ({summary})", retryable=False)
        self.attempts = attempts


# --- Streaming chat ------------------------------------------------------------------------------


async def chat_stream(
    *,
    tenant_id: int,
    providers: Sequence[ProviderConfig],
    messages: Sequence[ChatMessage],
    cache_key: str | None = None,
    temperature: float = 0.3,
    max_tokens: int = 800,
) -> AsyncGenerator[TextDelta | StreamDone, None]:
    """Streams an answer from the first provider of ``providers`` that can give one.

    Yields ``TextDelta`` as the provider's chunks arrive, then one ``StreamDone``. Before the
    first token, rate limits, 5xx, timeouts and connection errors are retried on the same
    provider (``LLM_RETRIES`` times, full-jitter backoff from ``LLM_BACKOFF_BASE`` up to
    ``LLM_BACKOFF_CAP`` seconds); other 4xx answers, exhausted retries, a ``retry-after``
    longer than the cap and an open circuit move on to the next provider. Raises
    :class:`AllProvidersFailed` when none produced a first token, :class:`StreamInterrupted`
    when one broke off mid-answer.

    With ``cache_key`` (which the caller builds so that a knowledge change invalidates it), a
    cached answer is replayed as one delta, and a complete new answer is cached.

    Use it as ``async with contextlib.aclosing(chat_stream(...)) as events:`` so that a caller
    that stops early (the customer left) closes the provider's connection at once.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()

    def elapsed_ms(since: float | None = None) -> int:
        return round(((since if since is not None else loop.time()) - started) * 1000)

    answer_key = _answer_cache_key(tenant_id, cache_key) if cache_key is not None else None
    if answer_key is not None:
        hit = await _answer_cache_get(answer_key)
        if hit is not None:
            yield TextDelta(hit.text)
            yield StreamDone(
                ChatUsage(
                    provider_id=None,  # no provider served this request
                    provider=hit.provider,
                    model=hit.model,
                    tokens_in=0,
                    tokens_out=0,
                    cost=Decimal("0.000000"),
                    first_token_ms=elapsed_ms(),
                    total_ms=elapsed_ms(),
                    attempts=(),
                    cached=True,
                )
            )
            return

    retries = int(getattr(settings, "LLM_RETRIES", 2))
    backoff_base = float(getattr(settings, "LLM_BACKOFF_BASE", 0.2))
    backoff_cap = float(getattr(settings, "LLM_BACKOFF_CAP", 2.0))
    wire_messages = _wire_messages(messages)
    attempts: list[AttemptFailure] = []

    for provider in providers:
        breaker = _Breaker(tenant_id=tenant_id, provider=provider)
        client: openai.AsyncOpenAI | None = None
        trial_pending = False
        try:
            for retry in range(retries + 1):
                circuit = await breaker.admit()
                trial_pending = circuit is _Circuit.TRIAL
                if circuit is _Circuit.OPEN:
                    attempts.append(
                        AttemptFailure(provider.name, "circuit_open", "too many recent failures")
                    )
                    _log_failure(tenant_id, provider, attempts[-1], retry, elapsed_ms())
                    break
                client = client or _client(provider, read_timeout=provider.total_timeout)
                answer = _Answer()
                try:
                    async with aclosing(
                        _attempt_stream(
                            client,
                            provider,
                            wire_messages,
                            answer,
                            temperature=temperature,
                            max_tokens=max_tokens,
                        )
                    ) as texts:
                        async for text in texts:
                            yield TextDelta(text)
                except _AttemptError as exc:
                    failure = exc.failure
                    if answer.parts:
                        # The customer already sees text: retrying would show a second answer.
                        trial_pending = False
                        await breaker.record(circuit, ok=False)
                        attempts.append(
                            AttemptFailure(
                                provider.name, "interrupted", f"{failure.kind}: {failure.detail}"
                            )
                        )
                        _log_failure(tenant_id, provider, attempts[-1], retry, elapsed_ms())
                        raise StreamInterrupted(
                            usage=_usage(
                                provider,
                                messages,
                                answer,
                                attempts,
                                first_token_ms=elapsed_ms(answer.first_token_at),
                                total_ms=elapsed_ms(),
                            ),
                            partial_text="".join(answer.parts),
                        ) from None
                    trial_pending = False
                    await breaker.record(circuit, ok=False if exc.counts_against_provider else None)
                    attempts.append(failure)
                    _log_failure(tenant_id, provider, failure, retry, elapsed_ms())
                    if not exc.retryable or retry == retries:
                        break
                    delay = _retry_delay(retry, exc.retry_after, base=backoff_base, cap=backoff_cap)
                    if delay is None:
                        break
                    await asyncio.sleep(delay)
                    continue

                trial_pending = False
                await breaker.record(circuit, ok=True)
                usage = _usage(
                    provider,
                    messages,
                    answer,
                    attempts,
                    first_token_ms=(
                        elapsed_ms(answer.first_token_at)
                        if answer.first_token_at is not None
                        else None
                    ),
                    total_ms=elapsed_ms(),
                )
                text = "".join(answer.parts)
                if (
                    answer_key is not None
                    and text
                    and answer.finish_reason not in _INCOMPLETE_FINISH_REASONS
                ):
                    await _answer_cache_set(
                        answer_key, _CachedAnswer(text, provider.name, usage.model)
                    )
                logger.info(
                    "llm answer tenant=%s provider=%s id=%s first_token_ms=%s total_ms=%s "
                    "tokens_in=%s tokens_out=%s failed_attempts=%s",
                    tenant_id,
                    provider.name,
                    provider.id,
                    usage.first_token_ms,
                    usage.total_ms,
                    usage.tokens_in,
                    usage.tokens_out,
                    len(attempts),
                )
                yield StreamDone(usage)
                return
        finally:
            if trial_pending:
                # The caller left (or was cancelled) mid-trial: free the trial for another.
                await breaker.record(_Circuit.TRIAL, ok=None)
    raise AllProvidersFailed(tuple(attempts))


# --- One request to one provider -----------------------------------------------------------------


@dataclass
class _Answer:
    """What one attempt has received so far."""

    parts: list[str] = field(default_factory=list)
    first_token_at: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


class _AttemptError(Exception):
    def __init__(
        self,
        failure: AttemptFailure,
        *,
        retryable: bool,
        counts_against_provider: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(failure.detail)
        self.failure = failure
        self.retryable = retryable
        self.counts_against_provider = counts_against_provider
        self.retry_after = retry_after


async def _attempt_stream(
    client: openai.AsyncOpenAI,
    provider: ProviderConfig,
    messages: list[ChatCompletionMessageParam],
    answer: _Answer,
    *,
    temperature: float,
    max_tokens: int,
) -> AsyncGenerator[str, None]:
    """One streamed request: yields content as it arrives, records usage in ``answer``, raises
    :class:`_AttemptError` on any provider failure.

    Everything received since the previous yield comes as one text (see :class:`_BodyReader`).
    The deadlines wrap each wait for data rather than the whole loop, so no timeout is armed
    while the caller holds a delta (a timeout firing there would cancel the caller's code).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    total_deadline = started + provider.total_timeout
    first_token_deadline = min(started + provider.first_token_timeout, total_deadline)
    try:
        async with AsyncExitStack() as cleanup:
            async with asyncio.timeout_at(first_token_deadline):
                # Raises openai's status errors (429, 5xx, 4xx) like create() does: the client
                # reads an error's body before it returns a streaming response.
                response = await cleanup.enter_async_context(
                    client.chat.completions.with_streaming_response.create(
                        model=provider.model,
                        messages=messages,
                        temperature=temperature,
                        max_tokens=max_tokens,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                )
            reader = _BodyReader(response)
            cleanup.push_async_callback(reader.close)
            decoder = _EventDecoder()
            while True:
                # Providers open with an empty role chunk: only real content stops the first clock.
                deadline = first_token_deadline if answer.first_token_at is None else total_deadline
                async with asyncio.timeout_at(deadline):
                    received = await reader.take()
                if received is None:
                    return  # the body ended without [DONE]; the openai client accepts that too
                batch = _events_apply(decoder.feed(received), answer)
                if batch.text:
                    if answer.first_token_at is None:
                        answer.first_token_at = loop.time()
                    answer.parts.append(batch.text)
                    yield batch.text
                if batch.problem is not None:
                    raise _AttemptError(
                        AttemptFailure(provider.name, "server_error", batch.problem),
                        retryable=True,
                        counts_against_provider=True,
                    )
                if batch.done:
                    await reader.end_wait()
                    return
    except TimeoutError:
        if answer.first_token_at is None and first_token_deadline < total_deadline:
            kind: FailureKind = "timeout_first_token"
            limit = provider.first_token_timeout
        else:
            kind, limit = "timeout_total", provider.total_timeout
        raise _AttemptError(
            AttemptFailure(provider.name, kind, f"no {_WAITED_FOR[kind]} within {limit:g}s"),
            retryable=True,
            counts_against_provider=True,
        ) from None
    except openai.OpenAIError as exc:
        raise _attempt_error(provider, exc, got_text=answer.first_token_at is not None) from None


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
    else. Matched by name, as in :func:`_caused_by`: the transport (httpx or httpx2) is the
    openai client's business. SSL errors and anyio's ``EndOfStream`` escape the transport's own
    classes, and the openai client counts them as connection errors too."""
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


@dataclass
class _EventBatch:
    text: str
    done: bool  # [DONE] was among the events
    problem: str | None  # an error event or malformed JSON: the attempt failed there


def _events_apply(payloads: Sequence[bytes], answer: _Answer) -> _EventBatch:
    """Records the usage and finish reason of ``chat.completion.chunk`` events in ``answer`` and
    joins their text. Events after ``[DONE]`` or after a problem are ignored; the text before a
    problem is kept, since it is what the customer should see of the broken answer."""
    texts: list[str] = []
    for payload in payloads:
        if payload.startswith(b"[DONE]"):
            return _EventBatch("".join(texts), done=True, problem=None)
        try:
            chunk = json.loads(payload)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            return _EventBatch("".join(texts), done=False, problem="malformed stream event")
        error = chunk.get("error")
        if error:
            # The message is the provider's prose (it may quote the key): only a code is kept.
            code = error.get("code") if isinstance(error, dict) else None
            safe_code = isinstance(code, str) and _SAFE_ERROR_CODE.fullmatch(code)
            problem = f"error event {code}" if safe_code else "error event"
            return _EventBatch("".join(texts), done=False, problem=problem)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            prompt_tokens = usage.get("prompt_tokens")
            completion_tokens = usage.get("completion_tokens")
            if isinstance(prompt_tokens, int):
                answer.prompt_tokens = prompt_tokens
            if isinstance(completion_tokens, int):
                answer.completion_tokens = completion_tokens
        choices = chunk.get("choices")
        if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
            continue
        finish_reason = choices[0].get("finish_reason")
        if isinstance(finish_reason, str):
            answer.finish_reason = finish_reason
        delta = choices[0].get("delta")
        text = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(text, str) and text:
            texts.append(text)
    return _EventBatch("".join(texts), done=False, problem=None)


_WAITED_FOR: Final[dict[FailureKind, str]] = {
    "timeout_first_token": "first token",
    "timeout_total": "complete answer",
}


def _attempt_error(
    provider: ProviderConfig, exc: openai.OpenAIError, *, got_text: bool
) -> _AttemptError:
    """Classifies an openai error without quoting its message (it may quote the key)."""
    if isinstance(exc, openai.APITimeoutError):
        # The client's own read timeout is the total timeout, a backstop behind our deadlines.
        connecting = _caused_by(exc, "ConnectTimeout")
        kind: FailureKind = "timeout_connect" if connecting else "timeout_total"
        limit = provider.connect_timeout if connecting else provider.total_timeout
        return _AttemptError(
            AttemptFailure(provider.name, kind, f"{_cause_names(exc)} after {limit:g}s"),
            retryable=True,
            counts_against_provider=True,
        )
    if isinstance(exc, openai.APIConnectionError):
        return _AttemptError(
            AttemptFailure(provider.name, "connection", _cause_names(exc)),
            retryable=True,
            counts_against_provider=True,
        )
    if isinstance(exc, openai.APIStatusError):
        detail = f"HTTP {exc.status_code}"
        if exc.code and _SAFE_ERROR_CODE.fullmatch(exc.code):
            detail += f" {exc.code}"
        if isinstance(exc, openai.RateLimitError):
            return _AttemptError(
                AttemptFailure(provider.name, "rate_limited", detail),
                retryable=True,
                counts_against_provider=True,
                retry_after=_retry_after(exc),
            )
        if exc.status_code >= 500:
            return _AttemptError(
                AttemptFailure(provider.name, "server_error", detail),
                retryable=True,
                counts_against_provider=True,
            )
        # Bad request, bad key, unknown model: the same request would fail again here, but the
        # next provider may take it. Not the provider's health, so the breaker ignores it.
        return _AttemptError(
            AttemptFailure(provider.name, "bad_request", detail),
            retryable=False,
            counts_against_provider=False,
        )
    # Any other openai error: a response that is not what the API promises.
    return _AttemptError(
        AttemptFailure(provider.name, "server_error", type(exc).__name__),
        retryable=True,
        counts_against_provider=True,
    )


def _caused_by(exc: BaseException, class_name: str) -> bool:
    # Matched by name: the transport (httpx or httpx2) is the openai client's business.
    cause = exc.__cause__
    return cause is not None and any(cls.__name__ == class_name for cls in type(cause).__mro__)


def _cause_names(exc: BaseException) -> str:
    names = type(exc).__name__
    if exc.__cause__ is not None:
        names += f" ({type(exc.__cause__).__name__})"
    return names


def _retry_after(exc: openai.APIStatusError) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (an HTTP date counts as absent)."""
    headers = exc.response.headers
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def _retry_delay(retry: int, retry_after: float | None, *, base: float, cap: float) -> float | None:
    """Full-jitter exponential backoff; ``None`` when the provider asks for more than ``cap``
    (waiting the cap and asking again would only earn another 429: fall back instead)."""
    delay = random.uniform(0, min(cap, base * 2**retry))  # noqa: S311 -- jitter, not a secret
    if retry_after is not None:
        if retry_after > cap:
            return None
        delay = max(delay, retry_after)
    return delay


def _wire_messages(messages: Sequence[ChatMessage]) -> list[ChatCompletionMessageParam]:
    wire: list[ChatCompletionMessageParam] = []
    for message in messages:
        if message.role == "system":
            wire.append({"role": "system", "content": message.content})
        elif message.role == "user":
            wire.append({"role": "user", "content": message.content})
        else:
            wire.append({"role": "assistant", "content": message.content})
    return wire


# --- Usage and cost ------------------------------------------------------------------------------

# Kana, CJK ideographs and punctuation, Hangul, full-width forms: about one token each.
_CJK_CHAR = re.compile(
    r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)
# The chat format wraps each message in a few tokens of its own (role, separators).
_TOKENS_PER_MESSAGE: Final = 4


def _estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate for providers that report no usage: one token per CJK
    character, one per four other characters (rounded up), as in OpenAI's rule of thumb."""
    cjk = len(_CJK_CHAR.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 4)


def _usage(
    provider: ProviderConfig,
    messages: Sequence[ChatMessage],
    answer: _Answer,
    attempts: Sequence[AttemptFailure],
    *,
    first_token_ms: int | None,
    total_ms: int,
) -> ChatUsage:
    tokens_in = answer.prompt_tokens
    if tokens_in is None:
        tokens_in = sum(_estimate_tokens(m.content) + _TOKENS_PER_MESSAGE for m in messages)
    tokens_out = answer.completion_tokens
    if tokens_out is None:
        tokens_out = _estimate_tokens("".join(answer.parts))
    cost = (
        Decimal(tokens_in) / 1000 * provider.price_input_per_1k
        + Decimal(tokens_out) / 1000 * provider.price_output_per_1k
    ).quantize(_COST_PLACES)
    return ChatUsage(
        provider_id=provider.id,
        provider=provider.name,
        model=provider.model,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost=cost,
        first_token_ms=first_token_ms,
        total_ms=total_ms,
        attempts=tuple(attempts),
    )


def _log_failure(
    tenant_id: int, provider: ProviderConfig, failure: AttemptFailure, retry: int, elapsed: int
) -> None:
    logger.warning(
        "llm attempt failed tenant=%s provider=%s id=%s kind=%s detail=%s retry=%s elapsed_ms=%s",
        tenant_id,
        provider.name,
        provider.id,
        failure.kind,
        failure.detail,
        retry,
        elapsed,
    )


# --- Shared state: circuit breakers and cached answers -------------------------------------------


class _State(Protocol):
    """What the breaker and the answer cache need from a store: values with an expiry."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def put(
        self, key: str, value: bytes, *, ttl: float, only_if_absent: bool = False
    ) -> bool: ...

    async def incr(self, key: str, *, ttl: float) -> int: ...

    async def delete(self, keys: Sequence[str]) -> None: ...


class _RedisState:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # The shared client is built with decode_responses=False: values come back as bytes.
        return cast(list[bytes | None], await self._client.mget(keys))

    async def put(
        self, key: str, value: bytes, *, ttl: float, only_if_absent: bool = False
    ) -> bool:
        return bool(
            await self._client.set(key, value, px=timedelta(seconds=ttl), nx=only_if_absent)
        )

    async def incr(self, key: str, *, ttl: float) -> int:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.pexpire(key, timedelta(seconds=ttl))
            count, _ = await pipe.execute()
        return int(count)

    async def delete(self, keys: Sequence[str]) -> None:
        await self._client.delete(*keys)


class _LocalState:
    """The store without Redis: the same operations and expiry as on Redis, in a bounded LRU.

    Only the embedded mode runs without Redis, and it is one process, so this is exact. The lock
    is for the other threads' event loops (``async_to_sync`` bridges, tests); it is held for a
    few dictionary operations and never across an ``await``.
    """

    def __init__(self, *, clock: Callable[[], float], max_keys: int) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with self._lock:
            now = self._clock()
            return [self._live(key, now) for key in keys]

    async def put(
        self, key: str, value: bytes, *, ttl: float, only_if_absent: bool = False
    ) -> bool:
        with self._lock:
            now = self._clock()
            if only_if_absent and self._live(key, now) is not None:
                return False
            self._store(key, value, expires_at=now + ttl)
            return True

    async def incr(self, key: str, *, ttl: float) -> int:
        with self._lock:
            now = self._clock()
            current = self._live(key, now)
            count = (0 if current is None else int(current)) + 1
            self._store(key, str(count).encode(), expires_at=now + ttl)
            return count

    async def delete(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()

    def _live(self, key: str, now: float) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if expires_at <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def _store(self, key: str, value: bytes, *, expires_at: float) -> None:
        self._entries[key] = (value, expires_at)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_keys:
            # Least recently used first; expired entries nobody touched are among them.
            self._entries.popitem(last=False)


_local_state = _LocalState(clock=time.monotonic, max_keys=_LOCAL_STATE_MAX_KEYS)


def gateway_local_reset() -> None:
    """Forgets every in-process breaker and cached answer. For tests: their database ids (and
    so keys) repeat."""
    _local_state.reset()


async def _shared(operation: str, work: Callable[[_State], Awaitable[_T]], default: _T) -> _T:
    """Runs ``work`` on Redis when it is configured, else on the in-process store.

    On Redis, a failure gives ``default``: the breaker and the answer cache are optimisations,
    never a reason not to answer. A Redis that hangs is given up by the shared client's own
    timeouts (a second). No shorter guard is added: under load a wall-clock guard fires on the
    event loop's lag rather than on Redis, and cancelling a command mid-flight costs the pool
    its connection. ``operation`` names the step in the rate-limited warning; keys never appear.
    """
    client = redis_client()
    if client is None:
        return await work(_local_state)
    try:
        return await work(_RedisState(client))
    except (RedisError, OSError) as exc:
        redis_failure_log(logger=logger, operation=operation, error=exc)
        return default


class _Circuit(enum.Enum):
    CLOSED = "closed"
    TRIAL = "trial"  # half-open, and this request is the one trial
    OPEN = "open"


class _Breaker:
    """A per-tenant, per-provider circuit breaker in the shared state.

    Keys, under ``kefu:llm:cb:{tenant_id}:{provider}``: ``:failures`` counts consecutive failed
    requests, ``:open_until`` is the epoch time the open period ends (a value, not a TTL, so
    that every process reads the same period however its expiry is rounded), ``:trial`` is the
    lock that lets a single request through once the period is over. Success deletes all three.

    A healthy provider costs one read per attempt: a success deletes the keys only when the
    read found some (or it was the trial). A failure recorded by another request between that
    read and this success is then kept, as if it had come just after the success.
    """

    def __init__(self, *, tenant_id: int, provider: ProviderConfig) -> None:
        self.provider = provider
        self.tenant_id = tenant_id
        prefix = _breaker_prefix(tenant_id, provider)
        self.failures_key = f"{prefix}:failures"
        self.open_until_key = f"{prefix}:open_until"
        self.trial_key = f"{prefix}:trial"
        self.threshold = int(getattr(settings, "LLM_BREAKER_FAILURES", 5))
        self.open_seconds = float(getattr(settings, "LLM_BREAKER_OPEN_SECONDS", 30.0))
        self._state_seen = False

    async def admit(self) -> _Circuit:
        return await _shared("llm circuit breaker check", self._admit, _Circuit.CLOSED)

    async def record(self, circuit: _Circuit, *, ok: bool | None) -> None:
        """``ok=None`` is an outcome that says nothing about the provider's health."""
        change = await _shared(
            "llm circuit breaker update",
            lambda state: self._record(state, circuit, ok=ok),
            None,
        )
        if change is not None:
            logger.warning(
                "llm circuit %s tenant=%s provider=%s id=%s",
                change,
                self.tenant_id,
                self.provider.name,
                self.provider.id,
            )

    async def _admit(self, state: _State) -> _Circuit:
        failures, open_until = await state.get_many([self.failures_key, self.open_until_key])
        self._state_seen = failures is not None or open_until is not None
        try:
            until = float(open_until) if open_until is not None else None
        except ValueError:
            until = None
        if until is None:
            return _Circuit.CLOSED
        if time.time() < until:
            return _Circuit.OPEN
        # The trial lock outlives the slowest possible trial, so a crashed trial cannot wedge it.
        trial_ttl = math.ceil(self.provider.connect_timeout + self.provider.total_timeout) + 1
        won = await state.put(self.trial_key, b"1", ttl=trial_ttl, only_if_absent=True)
        return _Circuit.TRIAL if won else _Circuit.OPEN

    async def _record(self, state: _State, circuit: _Circuit, *, ok: bool | None) -> str | None:
        """Records the outcome; returns the change worth a log line, if any."""
        if ok:
            if circuit is _Circuit.TRIAL or self._state_seen:
                await state.delete([self.failures_key, self.open_until_key, self.trial_key])
                self._state_seen = False
            return "closed" if circuit is _Circuit.TRIAL else None
        if ok is None:
            if circuit is _Circuit.TRIAL:
                await state.delete([self.trial_key])
            return None
        if circuit is _Circuit.TRIAL:
            await self._open(state)
            await state.delete([self.trial_key])
            return "reopened"
        failures = await state.incr(self.failures_key, ttl=_BREAKER_STATE_TTL)
        if failures < self.threshold:
            return None
        await self._open(state)
        return "opened" if failures == self.threshold else None

    async def _open(self, state: _State) -> None:
        until = time.time() + self.open_seconds
        await state.put(self.open_until_key, repr(until).encode(), ttl=_BREAKER_STATE_TTL)


def _breaker_prefix(tenant_id: int, provider: ProviderConfig) -> str:
    if provider.id is not None:
        return f"{_STATE_KEY_PREFIX}cb:{tenant_id}:{provider.id}"
    # A provider from settings has no row: name it by where it points (never by its key).
    digest = hashlib.sha256(f"{provider.base_url}|{provider.model}".encode()).hexdigest()[:16]
    return f"{_STATE_KEY_PREFIX}cb:{tenant_id}:url-{digest}"


@dataclass(frozen=True)
class _CachedAnswer:
    text: str
    provider: str
    model: str


def _answer_cache_key(tenant_id: int, cache_key: str) -> str:
    # Hashed: the caller's key holds the customer's question, and keys may be seen in Redis.
    digest = hashlib.sha256(cache_key.encode()).hexdigest()
    return f"{_STATE_KEY_PREFIX}answer:{tenant_id}:{digest}"


async def _answer_cache_get(key: str) -> _CachedAnswer | None:
    miss: list[bytes | None] = [None]
    [payload] = await _shared("llm answer cache read", lambda state: state.get_many([key]), miss)
    if payload is None:
        return None
    try:
        record = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    text, provider, model = record.get("text"), record.get("provider"), record.get("model")
    if not (
        isinstance(text, str) and text and isinstance(provider, str) and isinstance(model, str)
    ):
        return None
    return _CachedAnswer(text, provider, model)


async def _answer_cache_set(key: str, answer: _CachedAnswer) -> None:
    seconds = int(getattr(settings, "LLM_ANSWER_CACHE_SECONDS", 3600))
    if seconds <= 0:
        return
    record = {"text": answer.text, "provider": answer.provider, "model": answer.model}
    payload = json.dumps(record, ensure_ascii=False).encode()
    await _shared(
        "llm answer cache write", lambda state: state.put(key, payload, ttl=seconds), False
    )
