"""Streaming chat through the gateway, driven with the real openai client against mock servers.

Every test gets its own tenant id, so circuit breakers and cached answers (which live in Redis
when ``REDIS_URL`` is set, in the process otherwise) never leak from one test into another.
Tests that take ``backend`` run on both stores: in-process always, Redis unless it is not
configured (then skipped, or failed under KEFU_REQUIRE_SERVICES=1).
"""

import asyncio
import itertools
import json
import logging
import math
import random
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing, asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest

import helpdesk_site.redis
from devtools.mockllm import MockLLMServer, stream_tokens
from helpdesk_site.redis import redis_client, redis_close
from llm.gateway import (
    AllProvidersFailed,
    AttemptFailure,
    ChatMessage,
    ChatUsage,
    ProviderConfig,
    StreamDone,
    StreamInterrupted,
    TextDelta,
    chat_stream,
    gateway_local_reset,
)
from llm.gateway.state import _LocalState

CHINESE_ANSWER = "您好，请问有什么可以帮您？"
ENGLISH_ANSWER = "Hello, how can I help you with your order today?"
API_KEY = "sk-test-secret-value-0123456789"
SYSTEM_PROMPT = "You are the support assistant of Example Shop."
QUESTION = "Where is my parcel 4711?"
MESSAGES = (ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", QUESTION))
REFUSED_URL = "http://127.0.0.1:1/v1"  # nothing listens on port 1: the connection is refused
REFUSED_REDIS_URL = "redis://127.0.0.1:1/0"

_tenant_ids = itertools.count(random.randrange(10**9, 2 * 10**9, 10**4))


@pytest.fixture(scope="module")
def backup_llm_server() -> Iterator[MockLLMServer]:
    with MockLLMServer() as server:
        yield server


@pytest.fixture
def backup_llm(backup_llm_server: MockLLMServer) -> MockLLMServer:
    """A second, independent provider endpoint, reset like ``mock_llm``."""
    backup_llm_server.reset()
    return backup_llm_server


@pytest.fixture(autouse=True)
def _fast_gateway(settings: Any) -> None:
    settings.LLM_RETRIES = 2
    settings.LLM_BACKOFF_BASE = 0.01
    settings.LLM_BACKOFF_CAP = 0.05
    settings.LLM_BREAKER_FAILURES = 5
    settings.LLM_BREAKER_OPEN_SECONDS = 30
    settings.LLM_ANSWER_CACHE_SECONDS = 60


@pytest.fixture(params=["local", "redis"])
def backend(request: pytest.FixtureRequest, settings: Any) -> str:
    """Where breakers and cached answers live: the in-process store, or Redis."""
    if request.param == "redis":
        request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
    return str(request.param)


@pytest.fixture
async def tenant_id() -> AsyncIterator[int]:
    gateway_local_reset()
    tenant = next(_tenant_ids)
    yield tenant
    # Breaker keys live a day; don't leave them in a shared Redis.
    client = redis_client()
    if client is not None:
        for tenant_of_test in (tenant, tenant + 1):
            keys = [key async for key in client.scan_iter(match=f"kefu:llm:*:{tenant_of_test}:*")]
            if keys:
                await client.delete(*keys)
    await redis_close()


def _provider(
    base_url: str,
    *,
    id: int = 1,
    name: str = "Primary",
    model: str = "mock-chat",
    first_token_timeout: float = 5.0,
    total_timeout: float = 10.0,
    price_in: str = "0",
    price_out: str = "0",
) -> ProviderConfig:
    return ProviderConfig(
        id=id,
        name=name,
        base_url=base_url,
        api_key=API_KEY,
        model=model,
        embedding_model="",
        connect_timeout=2.0,
        first_token_timeout=first_token_timeout,
        total_timeout=total_timeout,
        price_input_per_1k=Decimal(price_in),
        price_output_per_1k=Decimal(price_out),
    )


def _chain(primary: MockLLMServer, backup: MockLLMServer, **primary_options: Any):
    return [
        _provider(primary.base_url, **primary_options),
        _provider(backup.base_url, id=2, name="Backup", model="backup-chat"),
    ]


async def _answer(**kwargs: Any) -> tuple[list[str], ChatUsage]:
    """Runs ``chat_stream`` to the end: the text deltas and the final usage."""
    kwargs.setdefault("messages", MESSAGES)
    deltas: list[str] = []
    done: list[ChatUsage] = []
    async with aclosing(chat_stream(**kwargs)) as events:
        async for event in events:
            assert not done, "nothing may follow StreamDone"
            if isinstance(event, TextDelta):
                deltas.append(event.text)
            else:
                assert isinstance(event, StreamDone)
                done.append(event.usage)
    assert len(done) == 1
    return deltas, done[0]


async def _interrupted(**kwargs: Any) -> tuple[list[str], StreamInterrupted]:
    kwargs.setdefault("messages", MESSAGES)
    deltas: list[str] = []
    with pytest.raises(StreamInterrupted) as caught:
        async with aclosing(chat_stream(**kwargs)) as events:
            async for event in events:
                assert isinstance(event, TextDelta)
                deltas.append(event.text)
    return deltas, caught.value


async def _answer_in_another_worker(**kwargs: Any) -> tuple[list[str], ChatUsage]:
    """``_answer`` in another thread with its own event loop, so its own Redis client and
    connections, as in a second process."""

    async def worker() -> tuple[list[str], ChatUsage]:
        try:
            return await _answer(**kwargs)
        finally:
            await redis_close()

    return await asyncio.to_thread(asyncio.run, worker())


def _kinds(attempts: tuple[AttemptFailure, ...]) -> list[tuple[str, str]]:
    return [(attempt.provider, attempt.kind) for attempt in attempts]


def _chat_requests(server: MockLLMServer) -> list[dict[str, Any]]:
    return [r["body"] for r in server.requests() if r["path"] == "/v1/chat/completions"]


def _event(chunk: dict[str, Any] | str) -> bytes:
    data = chunk if isinstance(chunk, str) else json.dumps(chunk, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def _content_event(text: str, finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish_reason}
    return _event({"object": "chat.completion.chunk", "choices": [choice]})


ROLE_EVENT = _event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
DONE_EVENT = _event("[DONE]")


def _usage_event(prompt_tokens: int, completion_tokens: int) -> bytes:
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    return _event({"choices": [], "usage": usage})


@asynccontextmanager
async def _scripted_llm(writes: Sequence[bytes], *, pause: float = 0.0) -> AsyncIterator[str]:
    """A chat endpoint on 127.0.0.1 whose every answer is a 200 event stream made of ``writes``,
    each sent as one HTTP chunk in one network write ``pause`` seconds after the one before;
    yields its base URL. For what the mock LLM never sends: several events in one write, line
    ends split between writes, comments, error events."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            )
            for data in writes:
                await asyncio.sleep(pause)
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        server.close()
        await server.wait_closed()


# --- Streaming, usage and cost -------------------------------------------------------------------


@pytest.mark.parametrize("text", [CHINESE_ANSWER, ENGLISH_ANSWER], ids=["chinese", "english"])
async def test_the_answer_streams_in_deltas_with_usage_and_cost(
    mock_llm: MockLLMServer, tenant_id: int, text: str
) -> None:
    mock_llm.configure(text=text, token_ms=5)
    provider = _provider(mock_llm.base_url, price_in="0.500000", price_out="1.500000")

    deltas, usage = await _answer(
        tenant_id=tenant_id, providers=[provider], temperature=0.1, max_tokens=200
    )

    assert "".join(deltas) == text
    prompt_tokens = len(stream_tokens(SYSTEM_PROMPT)) + len(stream_tokens(QUESTION))
    completion_tokens = len(stream_tokens(text))
    assert (usage.tokens_in, usage.tokens_out) == (prompt_tokens, completion_tokens)
    expected_cost = (
        Decimal(prompt_tokens) * Decimal("0.0005") + Decimal(completion_tokens) * Decimal("0.0015")
    ).quantize(Decimal("0.000001"))
    assert usage.cost == expected_cost
    assert (usage.provider_id, usage.provider, usage.model) == (1, "Primary", "mock-chat")
    assert usage.attempts == ()
    assert usage.cached is False
    assert usage.first_token_ms is not None
    assert 0 <= usage.first_token_ms <= usage.total_ms

    [request] = _chat_requests(mock_llm)
    assert request["model"] == "mock-chat"
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}
    assert (request["temperature"], request["max_tokens"]) == (0.1, 200)
    assert request["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": QUESTION},
    ]


async def test_each_event_is_passed_on_as_soon_as_it_arrives(
    mock_llm: MockLLMServer, tenant_id: int
) -> None:
    text = "Your parcel ships today."
    mock_llm.configure(text=text, token_ms=80)

    deltas, _ = await _answer(tenant_id=tenant_id, providers=[_provider(mock_llm.base_url)])

    assert deltas == stream_tokens(text) == ["Your", " parcel", " ships", " today."]


async def test_events_that_came_in_one_write_are_one_delta(tenant_id: int) -> None:
    tokens = stream_tokens(CHINESE_ANSWER)
    first_write = ROLE_EVENT + b"".join(_content_event(token) for token in tokens[:4])
    second_write = (
        b"".join(_content_event(token) for token in tokens[4:])
        + _content_event("", finish_reason="stop")
        + _usage_event(21, len(tokens))
        + DONE_EVENT
    )

    async with _scripted_llm([first_write, second_write], pause=0.2) as base_url:
        deltas, usage = await _answer(
            tenant_id=tenant_id, providers=[_provider(base_url, price_out="1")]
        )

    assert deltas == ["".join(tokens[:4]), "".join(tokens[4:])]
    assert (usage.tokens_in, usage.tokens_out) == (21, len(tokens))
    assert usage.cost == Decimal(len(tokens)) / 1000


async def test_events_that_arrived_while_the_caller_held_a_delta_are_one_delta(
    mock_llm: MockLLMServer, tenant_id: int
) -> None:
    mock_llm.configure(text=ENGLISH_ANSWER, token_ms=20)
    deltas: list[str] = []

    async with aclosing(
        chat_stream(
            tenant_id=tenant_id, providers=[_provider(mock_llm.base_url)], messages=MESSAGES
        )
    ) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                deltas.append(event.text)
                if len(deltas) == 1:
                    await asyncio.sleep(0.6)  # the caller is slow: the rest arrives meanwhile

    assert len(stream_tokens(ENGLISH_ANSWER)) == 10
    assert len(deltas) == 2
    assert "".join(deltas) == ENGLISH_ANSWER


async def test_line_ends_comments_and_fields_of_the_event_stream_are_understood(
    tenant_id: int,
) -> None:
    """CRLF line ends, one of them split between two writes inside a two-line ``data`` event;
    a comment; ``event`` and ``id`` fields; and no ``[DONE]``: the body just ends."""
    writes = [
        b": keep-alive\r\n\r\n",
        ROLE_EVENT.replace(b"\n", b"\r\n") + b'data: {"choices": [{"index": 0,\r',
        b'\ndata: "delta": {"content": "Hello"}}]}\r\n\r\n',
        b"event: message\r\nid: 7\r\n"
        + _content_event(" there.", finish_reason="stop").replace(b"\n", b"\r\n"),
        _usage_event(9, 2).replace(b"\n", b"\r\n"),
    ]

    async with _scripted_llm(writes, pause=0.1) as base_url:
        deltas, usage = await _answer(tenant_id=tenant_id, providers=[_provider(base_url)])

    assert deltas == ["Hello", " there."]
    assert (usage.tokens_in, usage.tokens_out, usage.attempts) == (9, 2, ())


async def test_an_empty_chain_fails_at_once(tenant_id: int) -> None:
    with pytest.raises(AllProvidersFailed) as caught:
        await _answer(tenant_id=tenant_id, providers=[])
    assert caught.value.attempts == ()
    assert caught.value.retryable is False


# --- Retries and fallback before the first token -------------------------------------------------


async def test_a_rate_limited_provider_is_retried_then_the_next_one_answers(
    mock_llm: MockLLMServer, backup_llm: MockLLMServer, tenant_id: int
) -> None:
    mock_llm.configure(fault="429", fault_count=10, retry_after_ms=10)
    backup_llm.configure(text=ENGLISH_ANSWER)

    deltas, usage = await _answer(tenant_id=tenant_id, providers=_chain(mock_llm, backup_llm))

    assert "".join(deltas) == ENGLISH_ANSWER
    assert (usage.provider_id, usage.provider, usage.model) == (2, "Backup", "backup-chat")
    assert (
        usage.attempts
        == (AttemptFailure("Primary", "rate_limited", "HTTP 429 rate_limit_exceeded"),) * 3
    )
    assert len(_chat_requests(mock_llm)) == 3  # the first try and two retries
    assert len(_chat_requests(backup_llm)) == 1


@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        ("429", AttemptFailure("Primary", "rate_limited", "HTTP 429 rate_limit_exceeded")),
        ("500", AttemptFailure("Primary", "server_error", "HTTP 500")),
    ],
)
async def test_a_transient_fault_is_retried_on_the_same_provider(
    mock_llm: MockLLMServer,
    backup_llm: MockLLMServer,
    tenant_id: int,
    fault: str,
    failure: AttemptFailure,
) -> None:
    mock_llm.configure(text=CHINESE_ANSWER, fault=fault, fault_count=1, retry_after_ms=10)

    deltas, usage = await _answer(tenant_id=tenant_id, providers=_chain(mock_llm, backup_llm))

    assert "".join(deltas) == CHINESE_ANSWER
    assert usage.provider == "Primary"
    assert usage.attempts == (failure,)
    assert len(_chat_requests(mock_llm)) == 2
    assert _chat_requests(backup_llm) == []


async def test_a_retry_after_beyond_the_cap_falls_back_without_waiting(
    mock_llm: MockLLMServer, backup_llm: MockLLMServer, tenant_id: int
) -> None:
    mock_llm.configure(fault="429", fault_count=1, retry_after_ms=30_000)

    _, usage = await _answer(tenant_id=tenant_id, providers=_chain(mock_llm, backup_llm))

    assert usage.provider == "Backup"
    assert _kinds(usage.attempts) == [("Primary", "rate_limited")]
    assert len(_chat_requests(mock_llm)) == 1


async def test_a_persistent_server_error_falls_back(
    mock_llm: MockLLMServer, backup_llm: MockLLMServer, tenant_id: int
) -> None:
    mock_llm.configure(fault="500")

    _, usage = await _answer(tenant_id=tenant_id, providers=_chain(mock_llm, backup_llm))

    assert usage.provider == "Backup"
    assert _kinds(usage.attempts) == [("Primary", "server_error")] * 3


async def test_a_hanging_provider_times_out_before_the_first_token_and_falls_back(
    mock_llm: MockLLMServer, backup_llm: MockLLMServer, tenant_id: int
) -> None:
    mock_llm.configure(fault="hang")
    backup_llm.configure(text=ENGLISH_ANSWER)
    providers = _chain(mock_llm, backup_llm, first_token_timeout=0.3)

    deltas, usage = await _answer(tenant_id=tenant_id, providers=providers)

    assert "".join(deltas) == ENGLISH_ANSWER
    assert (
        usage.attempts
        == (AttemptFailure("Primary", "timeout_first_token", "no first token within 0.3s"),) * 3
    )
    assert len(_chat_requests(mock_llm)) == 3
    assert usage.first_token_ms is not None
    assert usage.first_token_ms >= 900  # what the customer waited, retries included


async def test_the_first_token_deadline_ignores_the_empty_role_chunk(
    mock_llm: MockLLMServer, backup_llm: MockLLMServer, tenant_id: int, settings: Any
) -> None:
    """The mock sends headers and the role chunk at once and the first word after ttft_ms."""
    settings.LLM_RETRIES = 0
    mock_llm.configure(text=ENGLISH_ANSWER, ttft_ms=1500)
    providers = _chain(mock_llm, backup_llm, first_token_timeout=0.3)

    _, usage = await _answer(tenant_id=tenant_id, providers=providers)

    assert usage.provider == "Backup"
    assert _kinds(usage.attempts) == [("Primary", "timeout_first_token")]


async def test_a_refused_connection_is_retried_then_falls_back(
    backup_llm: MockLLMServer, tenant_id: int
) -> None:
    providers = [
        _provider(REFUSED_URL),
        _provider(backup_llm.base_url, id=2, name="Backup"),
    ]

    _, usage = await _answer(tenant_id=tenant_id, providers=providers)

    assert usage.provider == "Backup"
    assert _kinds(usage.attempts) == [("Primary", "connection")] * 3
    assert usage.attempts[0].detail == "APIConnectionError (ConnectError)"


async def test_a_client_error_is_not_retried_but_falls_back(
    mock_llm: MockLLMServer, backup_llm: MockLLMServer, tenant_id: int
) -> None:
    # A wrong base URL: the mock answers 404 for the unknown path.
    providers = [
        _provider(mock_llm.root_url + "/v9"),
        _provider(backup_llm.base_url, id=2, name="Backup"),
    ]

    _, usage = await _answer(tenant_id=tenant_id, providers=providers)

    assert usage.provider == "Backup"
    assert usage.attempts == (AttemptFailure("Primary", "bad_request", "HTTP 404 unknown_url"),)


async def test_when_every_provider_fails_all_attempts_are_reported_without_secrets(
    mock_llm: MockLLMServer,
    backup_llm: MockLLMServer,
    tenant_id: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mock_llm.configure(fault="500")
    backup_llm.configure(fault="429", retry_after_ms=1)
    providers = [*_chain(mock_llm, backup_llm), _provider(REFUSED_URL, id=3, name="Local")]

    with (
        caplog.at_level(logging.INFO, logger="llm.gateway"),
        pytest.raises(AllProvidersFailed) as caught,
    ):
        await _answer(tenant_id=tenant_id, providers=providers)

    assert _kinds(caught.value.attempts) == [
        *[("Primary", "server_error")] * 3,
        *[("Backup", "rate_limited")] * 3,
        *[("Local", "connection")] * 3,
    ]
    assert caught.value.retryable is False
    reported = f"{caught.value} {caught.value.attempts!r} {caplog.text}"
    assert "kind=server_error" in caplog.text
    for secret in (API_KEY, QUESTION, SYSTEM_PROMPT):
        assert secret not in reported


# --- Failures after the first token --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "estimate"),
    [
        # Nothing reports usage for a broken stream: estimated as one token per CJK character
        # and one per four other characters, plus four per message for the chat framing.
        (CHINESE_ANSWER, len),
        (ENGLISH_ANSWER, lambda partial: math.ceil(len(partial) / 4)),
    ],
    ids=["chinese", "english"],
)
async def test_a_disconnect_mid_answer_is_not_retried(
    mock_llm: MockLLMServer,
    backup_llm: MockLLMServer,
    tenant_id: int,
    text: str,
    estimate: Any,
) -> None:
    mock_llm.configure(text=text, fault="disconnect", fault_count=1)
    providers = _chain(mock_llm, backup_llm, price_out="2")

    deltas, interrupted = await _interrupted(tenant_id=tenant_id, providers=providers)

    tokens = stream_tokens(text)
    assert "".join(deltas) == "".join(tokens[: len(tokens) // 2])
    assert interrupted.partial_text == "".join(deltas)
    assert len(_chat_requests(mock_llm)) == 1
    assert _chat_requests(backup_llm) == []
    usage = interrupted.usage
    assert usage.provider == "Primary"
    assert _kinds(usage.attempts) == [("Primary", "interrupted")]
    assert usage.attempts[0].detail.startswith("connection: APIConnectionError")
    assert usage.tokens_out == estimate(interrupted.partial_text)
    assert usage.tokens_in == math.ceil(len(SYSTEM_PROMPT) / 4) + math.ceil(len(QUESTION) / 4) + 8
    assert usage.cost == (Decimal(usage.tokens_out) * Decimal("0.002")).quantize(Decimal("1e-6"))
    assert interrupted.retryable is False


async def test_an_error_event_mid_answer_interrupts_it_without_quoting_the_message(
    backup_llm: MockLLMServer, tenant_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    error = {"message": f"Upstream failed for key {API_KEY}", "type": "server_error"}
    writes = [
        ROLE_EVENT + _content_event("Your parcel"),
        _content_event(" is on") + _event({"error": {**error, "code": "upstream_error"}}),
        _content_event(" its way."),
    ]

    with caplog.at_level(logging.INFO, logger="llm.gateway"):
        async with _scripted_llm(writes, pause=0.1) as base_url:
            providers = [_provider(base_url), _provider(backup_llm.base_url, id=2, name="Backup")]
            deltas, interrupted = await _interrupted(tenant_id=tenant_id, providers=providers)

    assert deltas == ["Your parcel", " is on"]
    assert interrupted.partial_text == "Your parcel is on"
    assert interrupted.usage.attempts == (
        AttemptFailure("Primary", "interrupted", "server_error: error event upstream_error"),
    )
    assert _chat_requests(backup_llm) == []
    assert API_KEY not in caplog.text


@pytest.mark.parametrize(
    ("event", "detail"),
    [
        (_event({"error": {"message": "overloaded", "code": None}}), "error event"),
        (b"data: {not json\n\n", "malformed stream event"),
    ],
    ids=["error-event", "malformed"],
)
async def test_a_broken_event_before_the_first_token_is_retried_then_falls_back(
    backup_llm: MockLLMServer, tenant_id: int, event: bytes, detail: str
) -> None:
    backup_llm.configure(text=ENGLISH_ANSWER)

    async with _scripted_llm([ROLE_EVENT + event + _content_event("never seen")]) as base_url:
        providers = [_provider(base_url), _provider(backup_llm.base_url, id=2, name="Backup")]
        deltas, usage = await _answer(tenant_id=tenant_id, providers=providers)

    assert "".join(deltas) == ENGLISH_ANSWER
    assert usage.attempts == (AttemptFailure("Primary", "server_error", detail),) * 3


async def test_the_total_timeout_interrupts_a_slow_answer(
    mock_llm: MockLLMServer, backup_llm: MockLLMServer, tenant_id: int
) -> None:
    mock_llm.configure(text=ENGLISH_ANSWER, token_ms=150)
    providers = _chain(mock_llm, backup_llm, first_token_timeout=0.4, total_timeout=0.6)

    deltas, interrupted = await _interrupted(tenant_id=tenant_id, providers=providers)

    assert 0 < len(deltas) < len(stream_tokens(ENGLISH_ANSWER))
    assert ENGLISH_ANSWER.startswith(interrupted.partial_text)
    assert interrupted.usage.attempts == (
        AttemptFailure("Primary", "interrupted", "timeout_total: no complete answer within 0.6s"),
    )
    assert len(_chat_requests(mock_llm)) == 1
    assert _chat_requests(backup_llm) == []


# --- Circuit breaker -----------------------------------------------------------------------------


async def test_the_circuit_opens_skips_the_provider_and_half_opens_after_the_period(
    backend: str,
    mock_llm: MockLLMServer,
    backup_llm: MockLLMServer,
    tenant_id: int,
    settings: Any,
) -> None:
    settings.LLM_BREAKER_FAILURES = 3
    settings.LLM_BREAKER_OPEN_SECONDS = 0.3
    mock_llm.configure(fault="500")
    providers = _chain(mock_llm, backup_llm)

    # Three failed requests open the circuit.
    _, usage = await _answer(tenant_id=tenant_id, providers=providers)
    assert _kinds(usage.attempts) == [("Primary", "server_error")] * 3

    # While open, the provider is skipped without a request.
    _, usage = await _answer(tenant_id=tenant_id, providers=providers)
    assert usage.provider == "Backup"
    assert _kinds(usage.attempts) == [("Primary", "circuit_open")]
    assert len(_chat_requests(mock_llm)) == 3

    # After the period one trial goes through; it fails, so the circuit opens again at once.
    await asyncio.sleep(0.35)
    _, usage = await _answer(tenant_id=tenant_id, providers=providers)
    assert _kinds(usage.attempts) == [("Primary", "server_error"), ("Primary", "circuit_open")]
    assert len(_chat_requests(mock_llm)) == 4

    # The next trial succeeds and closes the circuit: the count starts again from zero.
    mock_llm.configure(fault=None)
    await asyncio.sleep(0.35)
    _, usage = await _answer(tenant_id=tenant_id, providers=providers)
    assert (usage.provider, usage.attempts) == ("Primary", ())
    mock_llm.configure(fault="500", fault_count=2)
    _, usage = await _answer(tenant_id=tenant_id, providers=providers)
    assert usage.provider == "Primary"
    assert _kinds(usage.attempts) == [("Primary", "server_error")] * 2


async def test_a_half_open_circuit_lets_a_single_trial_through(
    backend: str,
    mock_llm: MockLLMServer,
    backup_llm: MockLLMServer,
    tenant_id: int,
    settings: Any,
) -> None:
    settings.LLM_BREAKER_FAILURES = 1
    settings.LLM_BREAKER_OPEN_SECONDS = 0.2
    settings.LLM_RETRIES = 0
    providers = _chain(mock_llm, backup_llm)
    mock_llm.configure(fault="500", fault_count=1)
    await _answer(tenant_id=tenant_id, providers=providers)
    await asyncio.sleep(0.25)
    mock_llm.configure(ttft_ms=200)  # the trial is still running when the second answer starts

    answers = await asyncio.gather(
        _answer(tenant_id=tenant_id, providers=providers),
        _answer(tenant_id=tenant_id, providers=providers),
    )

    outcomes = sorted((usage.provider, _kinds(usage.attempts)) for _, usage in answers)
    assert outcomes == [("Backup", [("Primary", "circuit_open")]), ("Primary", [])]
    assert len(_chat_requests(mock_llm)) == 2


async def test_a_trial_abandoned_by_the_caller_frees_the_half_open_circuit(
    backend: str,
    mock_llm: MockLLMServer,
    backup_llm: MockLLMServer,
    tenant_id: int,
    settings: Any,
) -> None:
    settings.LLM_BREAKER_FAILURES = 1
    settings.LLM_BREAKER_OPEN_SECONDS = 0.2
    settings.LLM_RETRIES = 0
    providers = _chain(mock_llm, backup_llm)
    mock_llm.configure(text=ENGLISH_ANSWER, fault="500", fault_count=1)
    await _answer(tenant_id=tenant_id, providers=providers)
    await asyncio.sleep(0.25)

    async with aclosing(
        chat_stream(tenant_id=tenant_id, providers=providers, messages=MESSAGES)
    ) as events:
        async for _ in events:
            break  # the customer left during the trial

    _, usage = await _answer(tenant_id=tenant_id, providers=providers)
    assert (usage.provider, usage.attempts) == ("Primary", ())


async def test_the_circuit_is_shared_between_workers_and_scoped_to_the_tenant(
    backend: str,
    mock_llm: MockLLMServer,
    backup_llm: MockLLMServer,
    tenant_id: int,
    settings: Any,
) -> None:
    settings.LLM_BREAKER_FAILURES = 3
    mock_llm.configure(fault="500")
    await _answer(tenant_id=tenant_id, providers=_chain(mock_llm, backup_llm))
    mock_llm.configure(fault=None)
    mock_llm.clear_requests()

    # Another worker: its own thread, event loop, Redis connection and provider values.
    _, usage = await _answer_in_another_worker(
        tenant_id=tenant_id, providers=_chain(mock_llm, backup_llm)
    )
    assert usage.provider == "Backup"
    assert _kinds(usage.attempts) == [("Primary", "circuit_open")]
    assert _chat_requests(mock_llm) == []

    # The same provider id under another tenant has a circuit of its own.
    _, usage = await _answer(tenant_id=tenant_id + 1, providers=_chain(mock_llm, backup_llm))
    assert (usage.provider, usage.attempts) == ("Primary", ())


async def test_the_circuit_lives_in_redis_when_configured(
    redis_url: str,
    mock_llm: MockLLMServer,
    backup_llm: MockLLMServer,
    tenant_id: int,
    settings: Any,
) -> None:
    settings.LLM_BREAKER_FAILURES = 3
    mock_llm.configure(fault="500")
    before = time.time()

    await _answer(tenant_id=tenant_id, providers=_chain(mock_llm, backup_llm))

    client = redis_client()
    assert client is not None
    prefix = f"kefu:llm:cb:{tenant_id}:1"
    assert await client.get(f"{prefix}:failures") == b"3"
    assert 0 < await client.ttl(f"{prefix}:failures") <= 24 * 3600
    open_until = float(await client.get(f"{prefix}:open_until") or 0)
    assert before + 30 <= open_until <= time.time() + 30
    assert await client.exists(f"{prefix}:trial") == 0
    # The backup answered at once: a healthy provider leaves no state behind.
    assert (
        await client.exists(
            *(f"kefu:llm:cb:{tenant_id}:2:{part}" for part in ("failures", "open_until"))
        )
        == 0
    )


async def test_an_unreachable_redis_never_fails_the_answer(
    mock_llm: MockLLMServer,
    backup_llm: MockLLMServer,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant_id = next(_tenant_ids)  # not the fixture: its clean-up needs a working Redis
    settings.REDIS_URL = REFUSED_REDIS_URL
    # Failures are logged once per interval per process; start this test's interval afresh.
    monkeypatch.setattr(helpdesk_site.redis, "_failures_last_logged", {})
    mock_llm.configure(text=ENGLISH_ANSWER, fault="500", fault_count=1)

    with caplog.at_level(logging.WARNING, logger="llm.gateway"):
        for _ in range(2):
            deltas, usage = await _answer(
                tenant_id=tenant_id, providers=_chain(mock_llm, backup_llm), cache_key=QUESTION
            )
            assert "".join(deltas) == ENGLISH_ANSWER
            assert (usage.provider, usage.cached) == ("Primary", False)
    await redis_close()

    assert len(_chat_requests(mock_llm)) == 3  # a retry, then no cache to answer from
    for operation in (
        "llm answer cache read",
        "llm circuit breaker check",
        "llm circuit breaker update",
        "llm answer cache write",
    ):
        assert f"Redis unavailable during {operation}, degraded without it (ConnectionError" in (
            caplog.text
        )
    assert QUESTION not in caplog.text
    assert "kefu:llm" not in caplog.text


async def test_a_hanging_redis_delays_the_answer_but_never_fails_it(
    mock_llm: MockLLMServer,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant_id = next(_tenant_ids)
    monkeypatch.setattr(helpdesk_site.redis, "_failures_last_logged", {})
    mock_llm.configure(text=ENGLISH_ANSWER)

    # Connections to a socket that listens but never accepts open (the kernel queues them) and
    # then nothing ever answers.
    with socket.socket() as silent, caplog.at_level(logging.WARNING, "llm.gateway"):
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        settings.REDIS_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        started = time.monotonic()
        deltas, usage = await _answer(
            tenant_id=tenant_id, providers=[_provider(mock_llm.base_url)], cache_key=QUESTION
        )
        elapsed = time.monotonic() - started
        await redis_close()

    assert "".join(deltas) == ENGLISH_ANSWER
    assert (usage.attempts, usage.cached) == ((), False)
    # Three steps touch Redis: the cache read, the breaker check and the cache write; each gives
    # up after the shared client's socket timeout, a second (a success reads nothing more).
    assert 3.0 <= elapsed < 4.5
    assert caplog.text.count("degraded without it (TimeoutError") == 3


async def test_the_in_process_store_expires_keys_and_drops_the_least_recently_used() -> None:
    now = 1000.0
    store = _LocalState(clock=lambda: now, max_keys=3)

    assert await store.put("trial", b"1", ttl=5, only_if_absent=True) is True
    assert await store.put("trial", b"1", ttl=5, only_if_absent=True) is False
    assert [await store.incr("failures", ttl=60) for _ in range(3)] == [1, 2, 3]
    await store.put("answer", b"text", ttl=60)
    assert await store.get_many(["trial", "failures", "answer", "other"]) == [
        b"1",
        b"3",
        b"text",
        None,
    ]

    now += 5
    assert await store.get_many(["trial"]) == [None]
    assert await store.put("trial", b"1", ttl=5, only_if_absent=True) is True
    await store.get_many(["failures"])  # now used more recently than "answer"
    await store.put("answer 2", b"text 2", ttl=60)  # a fourth key: "answer" goes
    assert await store.get_many(["answer", "failures", "trial", "answer 2"]) == [
        None,
        b"3",
        b"1",
        b"text 2",
    ]
    await store.delete(["failures", "trial"])
    assert await store.get_many(["failures", "trial"]) == [None, None]
    assert await store.incr("failures", ttl=60) == 1


# --- Answer cache --------------------------------------------------------------------------------


async def test_a_cached_answer_is_replayed_without_calling_the_provider(
    backend: str, mock_llm: MockLLMServer, tenant_id: int
) -> None:
    mock_llm.configure(text=CHINESE_ANSWER)
    providers = [_provider(mock_llm.base_url, price_in="1", price_out="1")]

    first, fresh = await _answer(tenant_id=tenant_id, providers=providers, cache_key="v3:退货")
    again, replayed = await _answer(tenant_id=tenant_id, providers=providers, cache_key="v3:退货")

    assert "".join(first) == CHINESE_ANSWER
    assert again == [CHINESE_ANSWER]
    assert fresh.cached is False
    assert replayed.cached is True
    assert (replayed.provider, replayed.model) == ("Primary", "mock-chat")
    assert (replayed.tokens_in, replayed.tokens_out, replayed.cost) == (0, 0, Decimal(0))
    assert replayed.attempts == ()
    assert len(_chat_requests(mock_llm)) == 1

    # Another worker (another event loop, Redis client and connection) replays it too.
    shared, _ = await _answer_in_another_worker(
        tenant_id=tenant_id, providers=providers, cache_key="v3:退货"
    )
    assert shared == [CHINESE_ANSWER]
    assert len(_chat_requests(mock_llm)) == 1

    # The key is the caller's, but a cached answer never crosses to another tenant.
    await _answer(tenant_id=tenant_id + 1, providers=providers, cache_key="v3:退货")
    assert len(_chat_requests(mock_llm)) == 2


async def test_a_cached_answer_expires(
    backend: str, mock_llm: MockLLMServer, tenant_id: int, settings: Any
) -> None:
    settings.LLM_ANSWER_CACHE_SECONDS = 1
    mock_llm.configure(text=ENGLISH_ANSWER)
    providers = [_provider(mock_llm.base_url)]

    await _answer(tenant_id=tenant_id, providers=providers, cache_key="q")
    _, replayed = await _answer(tenant_id=tenant_id, providers=providers, cache_key="q")
    await asyncio.sleep(1.1)
    _, fresh = await _answer(tenant_id=tenant_id, providers=providers, cache_key="q")

    assert (replayed.cached, fresh.cached) == (True, False)
    assert len(_chat_requests(mock_llm)) == 2


async def test_interrupted_failed_and_abandoned_answers_are_not_cached(
    backend: str, mock_llm: MockLLMServer, tenant_id: int
) -> None:
    mock_llm.configure(text=ENGLISH_ANSWER, fault="disconnect", fault_count=1)
    providers = [_provider(mock_llm.base_url)]
    await _interrupted(tenant_id=tenant_id, providers=providers, cache_key="q")

    mock_llm.configure(fault="500", fault_count=3)
    with pytest.raises(AllProvidersFailed):
        await _answer(tenant_id=tenant_id, providers=providers, cache_key="q")

    async with aclosing(
        chat_stream(tenant_id=tenant_id, providers=providers, messages=MESSAGES, cache_key="q")
    ) as events:
        async for event in events:
            assert isinstance(event, TextDelta)
            break  # the customer left after the first word

    assert len(_chat_requests(mock_llm)) == 5
    _, usage = await _answer(tenant_id=tenant_id, providers=providers, cache_key="q")
    assert usage.cached is False
    assert len(_chat_requests(mock_llm)) == 6
    _, usage = await _answer(tenant_id=tenant_id, providers=providers, cache_key="q")
    assert usage.cached is True
