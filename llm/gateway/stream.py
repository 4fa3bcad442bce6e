"""Streaming chat: :func:`chat_stream` and what it does around each attempt.

An ordered fallback chain of providers, retries with backoff before the first token, a
per-tenant, per-provider circuit breaker and an answer cache. Timeouts, retries, fallback, usage
and cost live here; callers get text deltas and a final usage record.
"""

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from decimal import Decimal
from typing import Final

import openai
from django.conf import settings
from openai.types.chat import ChatCompletionMessageParam

from llm.gateway.attempt import _Answer, _attempt_stream, _AttemptError
from llm.gateway.providers import ProviderConfig, _client
from llm.gateway.state import (
    _answer_cache_get,
    _answer_cache_key,
    _answer_cache_set,
    _Breaker,
    _CachedAnswer,
    _Circuit,
)
from llm.gateway.values import (
    AllProvidersFailed,
    AttemptFailure,
    ChatMessage,
    ChatUsage,
    StreamDone,
    StreamInterrupted,
    TextDelta,
)
from llm.text import estimate_tokens

# The package's one logger, as before it was split: log lines keep the name operators know.
logger = logging.getLogger("llm.gateway")

_COST_PLACES: Final = Decimal("0.000001")
# An answer cut short by the token limit or a content filter is not worth replaying.
_INCOMPLETE_FINISH_REASONS: Final = frozenset({"length", "content_filter"})


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

    retries: int = settings.LLM_RETRIES
    backoff_base: float = settings.LLM_BACKOFF_BASE
    backoff_cap: float = settings.LLM_BACKOFF_CAP
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

# The chat format wraps each message in a few tokens of its own (role, separators).
_TOKENS_PER_MESSAGE: Final = 4


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
        tokens_in = sum(estimate_tokens(m.content) + _TOKENS_PER_MESSAGE for m in messages)
    tokens_out = answer.completion_tokens
    if tokens_out is None:
        tokens_out = estimate_tokens("".join(answer.parts))
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
