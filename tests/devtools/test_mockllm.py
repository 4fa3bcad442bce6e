"""The mock OpenAI-compatible LLM, driven over real HTTP by the official openai client."""

import asyncio
import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from devtools.mockllm import (
    ECHO_PREFIX,
    MockLLMConfig,
    MockLLMServer,
    embed_text,
    stream_tokens,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
CHINESE_ANSWER = "您好，请问有什么可以帮您？"
ENGLISH_ANSWER = "Hello, how can I help you today?"


@pytest.fixture
async def llm(mock_llm: MockLLMServer) -> AsyncIterator[openai.AsyncOpenAI]:
    """A client without retries, so every fault reaches the test exactly once."""
    async with openai.AsyncOpenAI(
        base_url=mock_llm.base_url, api_key="test-key", max_retries=0, timeout=10
    ) as client:
        yield client


async def _stream(
    llm: openai.AsyncOpenAI, *, include_usage: bool = True
) -> tuple[list[ChatCompletionChunk], list[float]]:
    """Streams one completion; returns the chunks and their arrival times since the request."""
    started = time.monotonic()
    stream = await llm.chat.completions.create(
        model="kefu-test",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": include_usage},
    )
    chunks: list[ChatCompletionChunk] = []
    arrivals: list[float] = []
    async for chunk in stream:
        chunks.append(chunk)
        arrivals.append(time.monotonic() - started)
    return chunks, arrivals


def _contents(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [
        chunk.choices[0].delta.content
        for chunk in chunks
        if chunk.choices and chunk.choices[0].delta.content
    ]


def _cosine(left: list[float], right: list[float]) -> float:
    return sum(a * b for a, b in zip(left, right, strict=True))


# --- Tokeniser -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        (CHINESE_ANSWER, list(CHINESE_ANSWER)),
        (ENGLISH_ANSWER, ["Hello,", " how", " can", " I", " help", " you", " today?"]),
        ("订单 A123 已发货 ", ["订", "单", " A123", " ", "已", "发", "货", " "]),
        ("", []),
    ],
)
def test_stream_tokens_split_cjk_per_character_and_english_per_word(
    text: str, tokens: list[str]
) -> None:
    assert stream_tokens(text) == tokens
    assert "".join(stream_tokens(text)) == text


# --- Configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ttft_ms": -1}, "ttft_ms must be a non-negative number"),
        ({"token_ms": True}, "token_ms must be a non-negative number"),
        ({"fault": "teapot"}, "fault must be one of 429, 500, hang, disconnect"),
        ({"fault": "429", "fault_count": 0}, "fault_count must be a positive integer"),
        ({"fault_count": 2}, "fault_count needs a fault"),
        ({"answer": "hi"}, "unknown config keys: answer"),
    ],
)
def test_bad_config_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MockLLMConfig().updated(changes)


def test_setting_a_fault_without_a_count_makes_it_permanent() -> None:
    counted = MockLLMConfig().updated({"fault": "429", "fault_count": 2})

    assert counted.updated({"fault": "500"}).fault_count is None
    assert counted.updated({"fault": None}).fault_count is None


# --- Streaming -----------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [CHINESE_ANSWER, ENGLISH_ANSWER])
async def test_stream_sends_one_chunk_per_token_in_openai_order(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
    answer: str,
) -> None:
    mock_llm.configure(text=answer, token_ms=20)

    chunks, arrivals = await _stream(llm)

    tokens = stream_tokens(answer)
    first, *content, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert [chunk.choices[0].delta.content for chunk in content] == tokens
    assert "".join(_contents(chunks)) == answer
    assert finish.choices[0].finish_reason == "stop"
    assert finish.choices[0].delta.content is None
    assert usage.choices == []
    assert usage.usage is not None
    assert usage.usage.completion_tokens == len(tokens)
    assert usage.usage.prompt_tokens == 1
    assert usage.usage.total_tokens == len(tokens) + 1
    assert {chunk.id for chunk in chunks} == {first.id}
    assert {chunk.created for chunk in chunks} == {first.created}
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    # The server paced the tokens, and they were flushed one by one rather than in one write.
    # Lower bounds only: the first parse of a chunk is slow, so the span gets half a margin.
    assert arrivals[len(tokens)] >= 0.020 * (len(tokens) - 1)
    assert arrivals[len(tokens)] - arrivals[1] >= 0.020 * (len(tokens) - 1) / 2


async def test_stream_without_include_usage_ends_with_the_finish_chunk(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    mock_llm.configure(text=ENGLISH_ANSWER)

    chunks, _ = await _stream(llm, include_usage=False)

    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)
    assert len(chunks) == len(stream_tokens(ENGLISH_ANSWER)) + 2


async def test_first_token_waits_for_ttft(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    mock_llm.configure(text=CHINESE_ANSWER, ttft_ms=150)

    chunks, arrivals = await _stream(llm)

    first_content = next(i for i, chunk in enumerate(chunks) if _contents([chunk]))
    assert first_content == 1
    assert arrivals[first_content] >= 0.150


async def test_stream_wire_format_is_openai_sse(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    mock_llm.configure(text="一二")

    async with llm.chat.completions.with_streaming_response.create(
        model="kefu-test",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        content_type = response.headers["content-type"]
        body = b"".join([piece async for piece in response.iter_bytes()]).decode()

    assert content_type.split(";")[0] == "text/event-stream"
    events = body.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    payloads = [json.loads(event.removeprefix("data: ")) for event in events[:-2]]
    assert all(event.startswith("data: {") for event in events[:-2])
    assert [payload["choices"] for payload in payloads] == [
        [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        [{"index": 0, "delta": {"content": "一"}, "logprobs": None, "finish_reason": None}],
        [{"index": 0, "delta": {"content": "二"}, "logprobs": None, "finish_reason": None}],
        [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
        [],
    ]
    assert payloads[-1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


# --- Plain completions and models ----------------------------------------------------------------


async def test_completion_echoes_the_last_user_message_with_usage(llm: openai.AsyncOpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "You are Kefu."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "我的订单到哪了"},
    ]

    completion = await llm.chat.completions.create(model="kefu-test", messages=messages)

    answer = ECHO_PREFIX + "我的订单到哪了"
    assert completion.object == "chat.completion"
    assert completion.model == "kefu-test"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == answer
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    # "You are Kefu." 3 + "first question" 2 + "first answer" 2 + 7 CJK characters.
    assert completion.usage.prompt_tokens == 14
    assert completion.usage.completion_tokens == len(stream_tokens(answer))
    assert completion.usage.total_tokens == 14 + len(stream_tokens(answer))


async def test_completion_returns_the_configured_text(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    mock_llm.configure(text=ENGLISH_ANSWER)

    completion = await llm.chat.completions.create(model="kefu-test", messages=QUESTION)

    assert completion.choices[0].message.content == ENGLISH_ANSWER


async def test_models_lists_the_mock_model(llm: openai.AsyncOpenAI) -> None:
    models = await llm.models.list()

    assert [model.id for model in models.data] == ["kefu-mock"]


# --- Embeddings ----------------------------------------------------------------------------------


async def test_embeddings_are_normalised_and_deterministic(llm: openai.AsyncOpenAI) -> None:
    texts = ["How do I reset my password?", "如何申请退货"]

    # The client asks for base64 when no format is given and decodes it itself.
    default = await llm.embeddings.create(model="kefu-embed", input=texts)
    as_floats = await llm.embeddings.create(
        model="kefu-embed", input=texts, encoding_format="float"
    )
    single = await llm.embeddings.create(model="kefu-embed", input=texts[1], dimensions=16)

    assert [item.index for item in default.data] == [0, 1]
    assert [len(item.embedding) for item in default.data] == [64, 64]
    for decoded, exact, text in zip(default.data, as_floats.data, texts, strict=True):
        assert exact.embedding == embed_text(text)
        assert decoded.embedding == pytest.approx(exact.embedding, abs=1e-6)
        assert math.fsum(value * value for value in exact.embedding) == pytest.approx(1.0)
    assert len(single.data) == 1
    assert single.data[0].embedding == pytest.approx(embed_text(texts[1], 16), abs=1e-6)
    assert default.model == "kefu-embed"
    assert default.usage.prompt_tokens == default.usage.total_tokens == 6 + 6


@pytest.mark.parametrize(
    ("query", "related", "unrelated"),
    [
        (
            "How do I reset my password?",
            "Reset your password from the sign-in page.",
            "Orders ship from our warehouse on weekdays.",
        ),
        ("如何申请退货", "退货流程：七天内可以申请退货", "我们的营业时间是早上九点到晚上六点"),
    ],
)
async def test_texts_sharing_words_are_more_similar(
    llm: openai.AsyncOpenAI, query: str, related: str, unrelated: str
) -> None:
    response = await llm.embeddings.create(
        model="kefu-embed", input=[query, related, unrelated], encoding_format="float"
    )

    query_vector, related_vector, unrelated_vector = (item.embedding for item in response.data)
    assert _cosine(query_vector, related_vector) > 0.25
    assert _cosine(query_vector, related_vector) > _cosine(query_vector, unrelated_vector) + 0.2


async def test_empty_embedding_input_is_rejected_like_openai(llm: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        await llm.embeddings.create(model="kefu-embed", input="")


# --- Faults --------------------------------------------------------------------------------------


async def test_429_raises_rate_limit_error_with_retry_after(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    mock_llm.configure(fault="429", retry_after_ms=2500)

    with pytest.raises(openai.RateLimitError) as raised:
        await llm.chat.completions.create(model="kefu-test", messages=QUESTION)

    assert raised.value.status_code == 429
    assert raised.value.response.headers["retry-after"] == "3"
    assert raised.value.response.headers["retry-after-ms"] == "2500"
    assert raised.value.body == {
        "message": "Rate limit reached for the mock model. Please try again later.",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }


async def test_500_raises_internal_server_error(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    mock_llm.configure(fault="500")

    with pytest.raises(openai.InternalServerError) as raised:
        await llm.embeddings.create(model="kefu-embed", input="hello")

    assert raised.value.status_code == 500


async def test_fault_count_faults_the_next_calls_then_recovers(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    mock_llm.configure(fault="429", fault_count=1)

    with pytest.raises(openai.RateLimitError):
        await llm.chat.completions.create(model="kefu-test", messages=QUESTION)
    completion = await llm.chat.completions.create(model="kefu-test", messages=QUESTION)

    assert completion.choices[0].message.content == ECHO_PREFIX + "hi"
    assert (mock_llm.config.fault, mock_llm.config.fault_count) == (None, None)


async def test_client_retry_gets_through_a_single_429(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    mock_llm.configure(fault="429", fault_count=1, retry_after_ms=1)

    completion = await llm.with_options(max_retries=1).chat.completions.create(
        model="kefu-test", messages=QUESTION
    )

    assert completion.choices[0].message.content == ECHO_PREFIX + "hi"
    assert len(mock_llm.requests()) == 2


async def test_hang_makes_the_client_time_out(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    mock_llm.configure(fault="hang")
    started = time.monotonic()

    with pytest.raises(openai.APITimeoutError):
        await llm.chat.completions.create(
            model="kefu-test", messages=QUESTION, stream=True, timeout=0.5
        )

    assert time.monotonic() - started >= 0.5


async def test_stopping_the_server_ends_a_hung_request_with_503() -> None:
    server = MockLLMServer(MockLLMConfig(fault="hang"))
    server.start()
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="test-key", max_retries=0, timeout=30
    ) as client:
        hung = asyncio.create_task(
            client.chat.completions.create(model="kefu-test", messages=QUESTION)
        )
        for _ in range(1000):  # bounded: until the request has reached the server and hangs
            if server.requests():
                break
            await asyncio.sleep(0.01)
        await asyncio.to_thread(server.stop)

        with pytest.raises(openai.InternalServerError) as raised:
            await hung

    assert raised.value.status_code == 503


async def test_disconnect_cuts_the_stream_after_half_the_tokens(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    mock_llm.configure(text=ENGLISH_ANSWER, fault="disconnect")
    chunks: list[ChatCompletionChunk] = []

    stream = await llm.chat.completions.create(model="kefu-test", messages=QUESTION, stream=True)
    # The client yields what arrived, then raises: a stream that just stopped would have
    # needed [DONE], so its absence surfaces as a connection error, never as a clean end.
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            chunks.append(chunk)

    half = stream_tokens(ENGLISH_ANSWER)[: len(stream_tokens(ENGLISH_ANSWER)) // 2]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert _contents(chunks) == half
    assert all(chunk.choices[0].finish_reason is None for chunk in chunks)


async def test_disconnect_never_sends_done(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    mock_llm.configure(text=CHINESE_ANSWER, fault="disconnect")
    lines: list[str] = []

    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
        async with llm.chat.completions.with_streaming_response.create(
            model="kefu-test", messages=QUESTION, stream=True
        ) as response:
            async for line in response.iter_lines():
                lines.append(line)

    events = [line for line in lines if line]
    assert len(events) == 1 + len(CHINESE_ANSWER) // 2
    assert "data: [DONE]" not in events


async def test_disconnect_truncates_a_plain_completion(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    mock_llm.configure(fault="disconnect")

    with pytest.raises(openai.APIConnectionError) as raised:
        await llm.chat.completions.create(model="kefu-test", messages=QUESTION)

    assert isinstance(raised.value.__cause__, httpx2.RemoteProtocolError)


async def test_fault_header_overrides_the_config_for_one_request(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    mock_llm.configure(fault="429", fault_count=1)

    with pytest.raises(openai.InternalServerError):
        await llm.chat.completions.create(
            model="kefu-test", messages=QUESTION, extra_headers={"x-mock-fault": "500"}
        )

    assert (mock_llm.config.fault, mock_llm.config.fault_count) == ("429", 1)


# --- Inspection and run-time control -------------------------------------------------------------


async def test_requests_are_recorded_with_their_messages(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "You are Kefu."},
        {"role": "user", "content": "我的手机号是 [PHONE]"},
    ]

    await llm.chat.completions.create(model="kefu-test", messages=messages)
    await llm.embeddings.create(model="kefu-embed", input="退货", encoding_format="float")

    recorded = mock_llm.requests()
    assert [entry["path"] for entry in recorded] == ["/v1/chat/completions", "/v1/embeddings"]
    assert recorded[0]["body"]["messages"] == messages
    assert recorded[0]["body"]["model"] == "kefu-test"
    assert recorded[1]["body"]["input"] == "退货"
    async with httpx2.AsyncClient(base_url=mock_llm.root_url, timeout=5) as http:
        assert (await http.get("/_mock/requests")).json() == recorded
        assert (await http.delete("/_mock/requests")).json() == {"cleared": 2}
        assert (await http.get("/_mock/requests")).json() == []


async def test_config_changes_over_http_take_effect(
    mock_llm: MockLLMServer,
    llm: openai.AsyncOpenAI,
) -> None:
    async with httpx2.AsyncClient(base_url=mock_llm.root_url, timeout=5) as http:
        changed = await http.post(
            "/_mock/config", json={"text": "配置生效", "fault": "500", "fault_count": 1}
        )
        rejected = await http.post("/_mock/config", json={"fault": "teapot"})
        current = (await http.get("/_mock/config")).json()

    assert changed.status_code == 200
    assert rejected.status_code == 400
    assert rejected.json()["error"]["type"] == "invalid_request_error"
    assert current["text"] == "配置生效"
    assert (current["fault"], current["fault_count"]) == ("500", 1)
    with pytest.raises(openai.InternalServerError):
        await llm.chat.completions.create(model="kefu-test", messages=QUESTION)
    completion = await llm.chat.completions.create(model="kefu-test", messages=QUESTION)
    assert completion.choices[0].message.content == "配置生效"


# --- The management command ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_serving(process: subprocess.Popen[str], models_url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"manage.py mockllm exited early: {process.communicate()}")
        try:
            if httpx2.get(models_url, timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            time.sleep(0.05)
    pytest.fail("manage.py mockllm did not answer within 20 s")


def test_management_command_serves_a_streamed_completion() -> None:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    process = subprocess.Popen(  # noqa: S603 - fixed arguments
        [sys.executable, "manage.py", "mockllm", "--port", str(port), "--text", "子进程 ok"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until_serving(process, f"{base_url}/models")
        with openai.OpenAI(base_url=base_url, api_key="test-key", max_retries=0, timeout=10) as llm:
            stream = llm.chat.completions.create(model="kefu-test", messages=QUESTION, stream=True)
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    finally:
        process.terminate()
        stdout, _ = process.communicate(timeout=10)

    assert text == "子进程 ok"
    assert f"Mock LLM listening on {base_url}" in stdout
