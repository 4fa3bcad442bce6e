"""One streamed request to one provider: its events applied to the answer so far, its failures
classified for the retry and fallback in :mod:`llm.gateway.stream`."""

import asyncio
import json
import math
import re
from collections.abc import AsyncGenerator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Final

import openai
from openai.types.chat import ChatCompletionMessageParam

from llm.gateway.providers import ProviderConfig
from llm.gateway.sse import _BodyReader, _EventDecoder
from llm.gateway.values import AttemptFailure, FailureKind

_SAFE_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


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
        raise _attempt_error(provider, exc) from None


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


def _attempt_error(provider: ProviderConfig, exc: openai.OpenAIError) -> _AttemptError:
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
