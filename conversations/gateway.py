"""The LLM gateway: the one module that talks to LLM providers (nothing else imports openai).

Any OpenAI-compatible provider (OpenAI, DeepSeek, Qwen's compatible mode, Azure OpenAI, vLLM,
Ollama) is reached through the official ``openai`` client with explicit timeouts. Callers pass a
``ProviderConfig`` (a plain value, so no ORM object crosses into async code).

Chat answers stream through :func:`chat_stream`: an ordered fallback chain of providers, retries
with backoff before the first token, a per-provider circuit breaker and an answer cache, both in
the Django cache so that every ASGI and Celery process shares them. Timeouts, retries, fallback,
usage and cost live here; callers get text deltas and a final usage record.
"""

import asyncio
import enum
import hashlib
import json
import logging
import math
import random
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal, TypeVar

import numpy as np
import openai
from django.conf import settings
from django.core.cache import cache
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

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
# Breaker state outlives any open period; it only expires so that a deleted provider's keys go.
_BREAKER_STATE_TTL: Final = 24 * 3600
# A cache that hangs must not hang the answer; the lookup is given up and treated as a miss.
_CACHE_OP_TIMEOUT: Final = 0.5
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

    The deadlines wrap each wait for a chunk rather than the whole loop, so no timeout is armed
    while the caller holds a delta (a timeout firing there would cancel the caller's code).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    total_deadline = started + provider.total_timeout
    first_token_deadline = min(started + provider.first_token_timeout, total_deadline)
    stream: openai.AsyncStream[ChatCompletionChunk] | None = None
    try:
        async with asyncio.timeout_at(first_token_deadline):
            stream = await client.chat.completions.create(
                model=provider.model,
                messages=messages,
                temperature=temperature,
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
        while True:
            # Providers open with an empty role chunk: only real content stops the first clock.
            deadline = first_token_deadline if answer.first_token_at is None else total_deadline
            async with asyncio.timeout_at(deadline):
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:
                    return
            if chunk.usage is not None:
                answer.prompt_tokens = chunk.usage.prompt_tokens
                answer.completion_tokens = chunk.usage.completion_tokens
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            if choice.finish_reason is not None:
                answer.finish_reason = choice.finish_reason
            text = choice.delta.content if choice.delta is not None else None
            if text:
                if answer.first_token_at is None:
                    answer.first_token_at = loop.time()
                answer.parts.append(text)
                yield text
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
    except json.JSONDecodeError:
        raise _AttemptError(
            AttemptFailure(provider.name, "server_error", "malformed stream event"),
            retryable=True,
            counts_against_provider=True,
        ) from None
    finally:
        if stream is not None:
            await stream.close()


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
    # An error event inside the stream, or a response that is not a chat completion.
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


# --- Shared state in the Django cache ------------------------------------------------------------


async def _cache_call(operation: Awaitable[_T], default: _T) -> _T:
    """Runs one cache operation; a broken or slow cache gives ``default`` instead of failing the
    answer. The breaker and the answer cache are optimisations, never a reason to not answer."""
    try:
        async with asyncio.timeout(_CACHE_OP_TIMEOUT):
            return await operation
    # Each backend raises its own errors (redis.RedisError, OSError, pickling errors, ValueError
    # for incr on a key that just expired), so nothing narrower than Exception covers them.
    except Exception as exc:
        logger.warning("llm cache operation failed: %s", type(exc).__name__)
        return default


class _Circuit(enum.Enum):
    CLOSED = "closed"
    TRIAL = "trial"  # half-open, and this request is the one trial
    OPEN = "open"


class _Breaker:
    """A per-tenant, per-provider circuit breaker kept in the Django cache.

    Keys, under ``llm:cb:{tenant_id}:{provider_id}``: ``:failures`` counts consecutive failed
    requests, ``:open_until`` is the epoch time the open period ends (a value, not a TTL, so that
    sub-second periods work on Redis, whose TTLs are whole seconds), ``:trial`` is the lock that
    lets a single request through once the period is over. Success deletes all three.
    """

    def __init__(self, *, tenant_id: int, provider: ProviderConfig) -> None:
        self.provider = provider
        self.tenant_id = tenant_id
        self.prefix = _breaker_prefix(tenant_id, provider)
        self.threshold = int(getattr(settings, "LLM_BREAKER_FAILURES", 5))
        self.open_seconds = float(getattr(settings, "LLM_BREAKER_OPEN_SECONDS", 30.0))

    async def admit(self) -> _Circuit:
        open_until = await _cache_call(cache.aget(f"{self.prefix}:open_until"), None)
        if not isinstance(open_until, int | float):
            return _Circuit.CLOSED
        if time.time() < open_until:
            return _Circuit.OPEN
        # The trial lock outlives the slowest possible trial, so a crashed trial cannot wedge it.
        trial_ttl = math.ceil(self.provider.connect_timeout + self.provider.total_timeout) + 1
        won = await _cache_call(cache.aadd(f"{self.prefix}:trial", 1, timeout=trial_ttl), False)
        return _Circuit.TRIAL if won else _Circuit.OPEN

    async def record(self, circuit: _Circuit, *, ok: bool | None) -> None:
        """``ok=None`` is an outcome that says nothing about the provider's health."""
        if ok:
            await _cache_call(
                cache.adelete_many(
                    [f"{self.prefix}:failures", f"{self.prefix}:open_until", f"{self.prefix}:trial"]
                ),
                None,
            )
            if circuit is _Circuit.TRIAL:
                self._log("closed")
            return
        if ok is None:
            if circuit is _Circuit.TRIAL:
                await _cache_call(cache.adelete(f"{self.prefix}:trial"), None)
            return
        if circuit is _Circuit.TRIAL:
            await self._open()
            await _cache_call(cache.adelete(f"{self.prefix}:trial"), None)
            self._log("reopened")
            return
        key = f"{self.prefix}:failures"
        await _cache_call(cache.aadd(key, 0, timeout=_BREAKER_STATE_TTL), False)
        failures = await _cache_call(cache.aincr(key), 0)
        if failures >= self.threshold:
            await self._open()
            if failures == self.threshold:
                self._log("opened")

    async def _open(self) -> None:
        until = time.time() + self.open_seconds
        await _cache_call(
            cache.aset(f"{self.prefix}:open_until", until, timeout=_BREAKER_STATE_TTL), None
        )

    def _log(self, change: str) -> None:
        logger.warning(
            "llm circuit %s tenant=%s provider=%s id=%s",
            change,
            self.tenant_id,
            self.provider.name,
            self.provider.id,
        )


def _breaker_prefix(tenant_id: int, provider: ProviderConfig) -> str:
    if provider.id is not None:
        return f"llm:cb:{tenant_id}:{provider.id}"
    # A provider from settings has no row: name it by where it points (never by its key).
    digest = hashlib.sha256(f"{provider.base_url}|{provider.model}".encode()).hexdigest()[:16]
    return f"llm:cb:{tenant_id}:url-{digest}"


@dataclass(frozen=True)
class _CachedAnswer:
    text: str
    provider: str
    model: str


def _answer_cache_key(tenant_id: int, cache_key: str) -> str:
    # Hashed: the caller's key holds the customer's question, and cache keys get logged.
    return f"llm:answer:{tenant_id}:{hashlib.sha256(cache_key.encode()).hexdigest()}"


async def _answer_cache_get(key: str) -> _CachedAnswer | None:
    record = await _cache_call(cache.aget(key), None)
    if not isinstance(record, dict):
        return None
    text, provider, model = record.get("text"), record.get("provider"), record.get("model")
    if not (
        isinstance(text, str) and text and isinstance(provider, str) and isinstance(model, str)
    ):
        return None
    return _CachedAnswer(text, provider, model)


async def _answer_cache_set(key: str, answer: _CachedAnswer) -> None:
    record = {"text": answer.text, "provider": answer.provider, "model": answer.model}
    timeout = int(getattr(settings, "LLM_ANSWER_CACHE_SECONDS", 3600))
    await _cache_call(cache.aset(key, record, timeout=timeout), None)
