"""Headless chat over HTTP: the answer pipeline reached through the REST API, answered in one
JSON response or streamed as server-sent events by real server processes."""

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from conversations import chat_stream, headless
from conversations.models import Channel, Conversation, Customer, Message
from conversations.pipeline import ChatContext
from devtools.mockllm import MockLLMServer
from knowledge import services as knowledge_services
from knowledge.search import registry
from tenants.services import api_key_issue
from tests.support import factories
from tests.support.live_asgi import free_port
from tests.support.widget import provider

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
URL = "/api/v1/chat/messages"
SLOW_TEXT = " ".join(f"word{n}" for n in range(40))


@pytest.fixture(autouse=True)
def _clean_state(settings):
    settings.RATE_LIMIT_VISITOR = "100/60"
    registry.forget()
    cache.clear()
    yield
    registry.forget()


@pytest.fixture
def chat_shop(db):
    tenant = factories.TenantFactory(slug="chat-shop", default_language="en")
    factories.KnowledgeEntryFactory(
        tenant=tenant,
        question="How long does delivery take?",
        alternate_questions=["when will my order arrive"],
        answer="Delivery takes 3–5 working days.",
    )
    knowledge_services.knowledge_changed(tenant_id=tenant.pk)
    return tenant


def api_client(tenant, scopes: list[str] | None = None) -> APIClient:
    issued = api_key_issue(tenant=tenant, name="chat", scopes=scopes or ["chat"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    return client


def ask(client: APIClient, **body: Any) -> Any:
    return client.post(URL, {"response_mode": "blocking", **body}, format="json")


# Blocking answers ---------------------------------------------------------------------------------


def test_a_faq_question_is_answered_in_one_response_without_the_llm(chat_shop) -> None:
    response = ask(api_client(chat_shop), query="When will my order arrive?", user="c-1")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["answer"] == "Delivery takes 3–5 working days."
    assert body["source"] == "faq"
    assert body["citations"][0].startswith("faq-")
    assert body["handoff"] is None
    answer = Message.objects.get(pk=body["message_id"])
    assert (answer.role, answer.content) == (Message.Role.ASSISTANT, body["answer"])
    question = Message.objects.get(pk=body["question_id"])
    assert question.content == "When will my order arrive?"
    conversation = Conversation.objects.get(pk=body["conversation_id"])
    assert conversation.channel == Channel.API
    customer = conversation.customer
    assert (customer.channel, customer.external_id) == (Channel.API, "c-1")


def test_an_llm_answer_is_stored_with_its_usage(chat_shop, mock_llm: MockLLMServer) -> None:
    provider(chat_shop, mock_llm)
    mock_llm.configure(text="Our returns window is thirty days.")

    response = ask(
        api_client(chat_shop), query="Can I return a gift?", user="c-2", name="Ann", email="a@x.io"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["answer"] == "Our returns window is thirty days."
    assert body["source"] in ("llm", "rag")
    assert body["tokens_out"] > 0 and body["tokens_in"] > 0
    stored = Message.objects.get(pk=body["message_id"])
    assert (stored.content, stored.tokens_out) == (body["answer"], body["tokens_out"])
    assert [r["path"] for r in mock_llm.requests()] == ["/v1/chat/completions"]
    customer = Customer.objects.get(channel=Channel.API, external_id="c-2")
    assert (customer.display_name, customer.email) == ("Ann", "a@x.io")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "hi"}, "user"),
        ({"user": "c-1"}, "query"),
        ({"query": "hi", "user": "c-1", "response_mode": "fast"}, "response_mode"),
        ({"query": "hi", "user": "c-1", "language": "fr"}, "language"),
        ({"query": "hi", "user": "c-1", "conversation_id": "x"}, "conversation_id"),
    ],
)
def test_a_refused_field_is_named(chat_shop, body: dict, field: str) -> None:
    response = api_client(chat_shop).post(URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert list(response.json()["error"]["fields"]) == [field]
    assert not Message.objects.exists()


def test_a_key_without_the_chat_scope_is_refused(chat_shop) -> None:
    response = ask(api_client(chat_shop, ["knowledge:read"]), query="hi", user="c-1")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"


def test_a_customer_continues_their_conversation_and_others_have_their_own(chat_shop) -> None:
    client = api_client(chat_shop)

    first = ask(client, query="When will my order arrive?", user="c-1").json()
    second = ask(client, query="How long does delivery take?", user="c-1").json()
    named = ask(
        client,
        query="Do you ship abroad?",
        user="c-1",
        conversation_id=first["conversation_id"],
    ).json()
    other = ask(client, query="When will my order arrive?", user="c-2").json()

    assert second["conversation_id"] == named["conversation_id"] == first["conversation_id"]
    assert other["conversation_id"] != first["conversation_id"]
    assert Message.objects.filter(conversation_id=first["conversation_id"]).count() == 6


def test_another_customers_conversation_is_not_found(chat_shop, tenant_b) -> None:
    client = api_client(chat_shop)
    theirs = ask(client, query="When will my order arrive?", user="c-1").json()
    foreign = factories.ConversationFactory(tenant=tenant_b)

    for conversation_id in (theirs["conversation_id"], foreign.pk):
        response = ask(client, query="hello", user="c-2", conversation_id=conversation_id)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert Message.objects.filter(conversation_id=theirs["conversation_id"]).count() == 2


def test_a_conversation_the_assistant_resolved_reopens_with_a_new_message(chat_shop) -> None:
    client = api_client(chat_shop)
    first = ask(client, query="When will my order arrive?", user="c-1").json()
    Conversation.objects.filter(pk=first["conversation_id"]).update(
        status=Conversation.Status.RESOLVED, resolution_kind=Conversation.ResolutionKind.AI
    )

    again = ask(client, query="How long does delivery take?", user="c-1").json()

    assert again["conversation_id"] == first["conversation_id"]
    assert Conversation.objects.get(pk=first["conversation_id"]).status == "bot"


def test_feedback_rates_the_customers_own_answers_only(chat_shop) -> None:
    client = api_client(chat_shop)
    answer = ask(client, query="When will my order arrive?", user="c-1").json()
    feedback = f"/api/v1/messages/{answer['message_id']}/feedback"

    mine = client.post(feedback, {"rating": "up", "user": "c-1"}, format="json")
    theirs = client.post(feedback, {"rating": "down", "user": "c-2"}, format="json")
    question = client.post(
        f"/api/v1/messages/{answer['question_id']}/feedback",
        {"rating": "up", "user": "c-1"},
        format="json",
    )
    refused = client.post(feedback, {"rating": "meh", "user": "c-1"}, format="json")

    assert mine.status_code == 200
    assert mine.json() == {"message_id": answer["message_id"], "rating": "up", "handoff": None}
    assert (theirs.status_code, question.status_code) == (404, 404)
    assert list(refused.json()["error"]["fields"]) == ["rating"]
    assert Message.objects.get(pk=answer["message_id"]).feedback == "up"


def test_a_thumbs_down_hands_the_conversation_to_a_person(chat_shop) -> None:
    chat_shop.handoff_on_negative_feedback = True
    chat_shop.save()
    client = api_client(chat_shop)
    answer = ask(client, query="When will my order arrive?", user="c-1").json()

    response = client.post(
        f"/api/v1/messages/{answer['message_id']}/feedback",
        {"rating": "down", "user": "c-1"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["handoff"]["status"] == Conversation.Status.QUEUED
    conversation = Conversation.objects.get(pk=answer["conversation_id"])
    assert conversation.handoff_reason == Conversation.HandoffReason.NEGATIVE_FEEDBACK


def test_a_retried_request_stores_the_question_once(chat_shop, mock_llm) -> None:
    provider(chat_shop, mock_llm)
    mock_llm.configure(text="Thirty days.")
    client = api_client(chat_shop)
    body = {"query": "Can I return a gift?", "user": "c-1", "response_mode": "blocking"}

    first = client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="retry-1")
    again = client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="retry-1")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    conversation_id = first.json()["conversation_id"]
    assert Message.objects.filter(conversation_id=conversation_id, role="customer").count() == 1
    assert len(mock_llm.requests()) == 1


def test_a_retry_after_a_stream_gets_the_stored_answer(chat_shop, mock_llm) -> None:
    """A stream releases its Idempotency-Key: the retry reaches the pipeline, which knows the
    question already, and is answered with the answer stored to it."""
    provider(chat_shop, mock_llm)
    mock_llm.configure(text="Thirty days.")
    client = api_client(chat_shop)
    body = {"query": "Can I return a gift?", "user": "c-1"}

    streamed = events_of(
        client.post(
            URL, {**body, "response_mode": "streaming"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
        )
    )
    end = next(data for name, data in streamed if name == "message_end")
    again = events_of(
        client.post(
            URL, {**body, "response_mode": "streaming"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
        )
    )
    assert [name for name, _ in again] == ["message_start", "message", "message_end"]
    assert again[0][1]["duplicate"] is True
    assert again[1][1]["text"] == "Thirty days."
    assert again[2][1]["message_id"] == end["message_id"]
    assert Message.objects.filter(role="customer").count() == 1
    assert len(mock_llm.requests()) == 1


def test_a_customer_over_the_rate_limit_is_told_when_to_retry(chat_shop, settings) -> None:
    settings.RATE_LIMIT_VISITOR = "1/60"
    client = api_client(chat_shop)

    first = ask(client, query="When will my order arrive?", user="c-1")
    second = ask(client, query="How long does delivery take?", user="c-1")

    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limited"
    assert int(second["Retry-After"]) >= 1


def test_asking_for_a_person_streams_a_handoff_event(chat_shop) -> None:
    events = events_of(
        api_client(chat_shop).post(
            URL, {"query": "I want a real person please", "user": "c-1"}, format="json"
        )
    )

    assert [name for name, _ in events] == ["message_start", "handoff"]
    handoff = events[1][1]
    assert handoff["status"] == Conversation.Status.QUEUED
    assert handoff["agents_available"] is False
    assert handoff["text"]


async def test_a_ping_comment_keeps_a_waiting_stream_alive(
    chat_shop, mock_llm, monkeypatch
) -> None:
    await database_sync_to_async(provider)(chat_shop, mock_llm, first_token_timeout=5.0)
    mock_llm.configure(text="Late but here.", ttft_ms=600)
    monkeypatch.setattr(chat_stream, "PING_SECONDS", 0.1)
    chat = await headless.aapi_chat_start(tenant=chat_shop, user="c-1")
    ctx = ChatContext(
        tenant=chat_shop,
        visitor_id="api:c-1",
        customer_id=chat.started.customer_id,
        conversation_id=chat.started.conversation_id,
        conversation_key=chat.started.conversation_key,
        language="en",
        new_conversation=True,
    )

    chunks = [
        chunk
        async for chunk in chat_stream.chat_event_stream(
            ctx=ctx, text="Tell me about gifts", client_message_id="m1"
        )
    ]

    pings = [i for i, chunk in enumerate(chunks) if chunk == b": ping\n\n"]
    first_text = next(i for i, chunk in enumerate(chunks) if chunk.startswith(b"event: message\n"))
    assert pings and pings[0] < first_text
    assert parse_events(b"".join(chunks).decode())[-1][0] == "message_end"


def events_of(response: Any) -> list[tuple[str, dict]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    return parse_events(async_to_sync(_read)(response.streaming_content))


async def _read(chunks: AsyncIterator[bytes]) -> str:
    return b"".join([chunk async for chunk in chunks]).decode()


def parse_events(raw: str) -> list[tuple[str, dict]]:
    events = []
    for block in raw.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            name = lines[0].removeprefix("event: ")
            events.append((name, json.loads(lines[1].removeprefix("data: "))))
    return events


# Server-sent events from real server processes (PostgreSQL, Redis) --------------------------------


@pytest.fixture
def servers(postgres, redis_url: str) -> Iterator[list[str]]:
    """Two uvicorn processes serving Kefu on the test database and Redis."""
    database = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=(
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="helpdesk_site.settings.test",
        PYTHONUNBUFFERED="1",
    )
    processes, urls = [], []
    try:
        for _ in range(2):
            port = free_port()
            processes.append(
                subprocess.Popen(  # noqa: S603
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "helpdesk_site.asgi:application",
                        "--port",
                        str(port),
                        "--lifespan",
                        "off",
                        "--log-level",
                        "warning",
                    ],
                    cwd=ROOT,
                    env=env,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            wait_for(f"{url}/healthz", process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def wait_for(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


@pytest.fixture
def slow_llm(chat_shop, mock_llm) -> MockLLMServer:
    provider(chat_shop, mock_llm, first_token_timeout=5.0)
    mock_llm.configure(text=SLOW_TEXT, token_ms=60)
    return mock_llm


def raw_key(tenant) -> str:
    return api_key_issue(tenant=tenant, name="sse", scopes=["chat"]).raw_key


class Stream:
    """One SSE response read event by event, with the time each arrived."""

    def __init__(self, client: httpx.Client, url: str, key: str, **body: Any) -> None:
        self._context = client.stream(
            "POST",
            f"{url}{URL}",
            json={"user": "c-1", **body},
            headers={"Authorization": f"Bearer {key}", "Accept": "text/event-stream"},
            timeout=15,
        )
        self.response = self._context.__enter__()
        self._lines = self.response.iter_lines()

    def next(self) -> tuple[str, dict, float]:
        name = ""
        for line in self._lines:
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                return name, json.loads(line.removeprefix("data: ")), time.monotonic()
        raise EOFError

    def rest(self) -> list[tuple[str, dict, float]]:
        events = []
        while True:
            try:
                events.append(self.next())
            except EOFError:
                return events

    def close(self) -> None:
        self._context.__exit__(None, None, None)


def answer_stored(customer_message_id: int, timeout: float = 10) -> Message:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = Message.objects.filter(role="assistant", pk__gt=customer_message_id).first()
        if answer is not None:
            return answer
        time.sleep(0.05)
    raise AssertionError("no answer was stored")


def test_deltas_stream_as_the_llm_writes_them(chat_shop, slow_llm, servers) -> None:
    with httpx.Client() as client:
        stream = Stream(client, servers[0], raw_key(chat_shop), query="Tell me about gifts")
        try:
            assert stream.response.headers["content-type"].startswith("text/event-stream")
            assert stream.response.headers["x-accel-buffering"] == "no"
            start = stream.next()
            first = stream.next()
            rest = stream.rest()
        finally:
            stream.close()

    assert start[0] == "message_start"
    assert first[0] == "message"
    names = [name for name, _, _ in rest]
    assert names[-1] == "message_end" and set(names[:-1]) == {"message"}
    end = rest[-1]
    # 40 tokens at 60 ms: the first piece came long before the LLM finished.
    assert end[2] - first[2] > 1.0
    text = first[1]["text"] + "".join(data["text"] for name, data, _ in rest[:-1])
    assert text == SLOW_TEXT
    stored = Message.objects.get(pk=end[1]["message_id"])
    assert (stored.role, stored.content, stored.error_code) == ("assistant", SLOW_TEXT, "")
    assert end[1]["reply_to"] == start[1]["message_id"] == first[1]["message_id"]
    assert end[1]["tokens_out"] == stored.tokens_out > 0


def test_a_client_that_disconnects_stops_the_answer(chat_shop, slow_llm, servers) -> None:
    with httpx.Client() as client:
        stream = Stream(client, servers[0], raw_key(chat_shop), query="Tell me about gifts")
        start = stream.next()
        for _ in range(3):
            assert stream.next()[0] == "message"
        stream.close()

    answer = answer_stored(start[1]["message_id"])
    assert answer.error_code == "interrupted"
    assert SLOW_TEXT.startswith(answer.content)
    assert 0 < len(answer.content.split()) < 20


def test_a_stop_request_to_another_server_stops_the_stream(chat_shop, slow_llm, servers) -> None:
    key = raw_key(chat_shop)
    with httpx.Client() as client:
        stream = Stream(client, servers[0], key, query="Tell me about gifts")
        try:
            start = stream.next()
            assert stream.next()[0] == "message"
            question = start[1]["message_id"]
            stop_url = f"{servers[1]}{URL}/{question}/stop"
            headers = {"Authorization": f"Bearer {key}"}
            stopped = client.post(stop_url, headers=headers, timeout=5)
            rest = stream.rest()
        finally:
            stream.close()
        after = client.post(stop_url, headers=headers, timeout=5)

    assert stopped.json() == {"stopped": True}
    assert after.json() == {"stopped": False}
    end = rest[-1]
    assert end[0] == "message_end" and end[1]["interrupted"] is True
    answer = Message.objects.get(pk=end[1]["message_id"])
    assert answer.error_code == "interrupted"
    assert len(answer.content.split()) < 20


def test_stop_answers_false_when_nothing_streams(chat_shop) -> None:
    question = factories.MessageFactory(
        conversation=factories.ConversationFactory(tenant=chat_shop), role="customer"
    )
    client = api_client(chat_shop)

    response = client.post(f"{URL}/{question.pk}/stop")

    assert response.status_code == 200
    assert response.json() == {"stopped": False}
    missing = client.post(f"{URL}/{question.pk + 1000}/stop")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
