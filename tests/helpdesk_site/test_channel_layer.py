"""A real Redis outage: the widget keeps answering and storing, and recovers by itself.

Each test starts a private ``redis-server`` on a free port, points the channel layer, the cache
and the shared client at it, kills it (SIGKILL, as a crash or a lost host would) and starts it
again on the same port. The shared Redis server is never touched.
"""

import asyncio
import copy
import json
import logging
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.db import transaction

from conversations.events import agents_group, conversation_group
from conversations.models import Conversation, Message
from conversations.presence import PresenceStatus, presence_set
from conversations.selectors import agents_reachable
from helpdesk_site.asgi import application
from helpdesk_site.redis import redis_close
from knowledge import services as knowledge_services
from knowledge.search import current_knowledge_version, registry
from tenants.models import Role
from tests.support import factories
from tests.support.live_asgi import free_port
from tests.support.services import skip_or_fail
from tests.support.sockets import SOCKET_WAIT

REDIS_SERVER = Path("/usr/bin/redis-server")
ORIGIN = "https://shop.example.com"


class PrivateRedis:
    """A ``redis-server`` of the test's own, without persistence: a restart starts empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - a fixed binary and arguments
            [
                str(REDIS_SERVER),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None


@pytest.fixture
def private_redis(redis_url: str, settings) -> Iterator[PrivateRedis]:
    """Channel layer, cache and shared client on a private Redis (skips like ``redis_url``)."""
    if not REDIS_SERVER.exists():
        skip_or_fail(f"{REDIS_SERVER} is not installed: a Redis outage cannot be staged")
    server = PrivateRedis()
    server.start()
    try:
        layers = copy.deepcopy(settings.CHANNEL_LAYERS)
        for host in layers["default"]["CONFIG"]["hosts"]:
            host["address"] = server.url
        caches = copy.deepcopy(settings.CACHES)
        caches["default"]["LOCATION"] = server.url
        settings.REDIS_URL = server.url
        settings.CHANNEL_LAYERS = layers
        settings.CACHES = caches
        yield server
    finally:
        server.kill()


async def _until(condition: Callable[[], Awaitable[bool]], what: str, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


def _config() -> dict[str, Any]:
    from django.conf import settings

    return dict(settings.CHANNEL_LAYERS["default"]["CONFIG"])


async def _receive(layer: Any, channel: str) -> dict[str, Any]:
    return dict(await asyncio.wait_for(layer.receive(channel), 10))


# The layer ---------------------------------------------------------------------------------------


async def test_the_layer_delivers_within_the_process_and_restores_groups_after_an_outage(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    layer = get_channel_layer()
    # Another process: its own client prefix, so it can only reach ours through Redis.
    other_process = type(layer)(**_config())
    group = "conversation.1.1"
    before, during = await layer.new_channel(), await layer.new_channel()
    await layer.group_add(group, before)
    try:
        with caplog.at_level(logging.INFO, logger="helpdesk_site.channel_layer"):
            reading = asyncio.ensure_future(layer.receive(before))
            await asyncio.sleep(0.1)  # the read is blocked in Redis when Redis dies
            private_redis.kill()

            # The read survives, and local members still get group events.
            await layer.group_add(group, during)
            await layer.group_send(group, {"type": "agent.message", "text": "还在吗"})
            assert await asyncio.wait_for(reading, 10) == {
                "type": "agent.message",
                "text": "还在吗",
            }
            assert await _receive(layer, during) == {"type": "agent.message", "text": "还在吗"}
            assert layer.is_degraded()

            private_redis.start()
            waiting = asyncio.ensure_future(layer.receive(before))
            await _until(lambda: _recovered(layer), "the layer noticed that Redis is back")

            # Redis restarted empty: both memberships were written back to it.
            await other_process.group_send(group, {"type": "agent.message", "text": "back"})
            assert await asyncio.wait_for(waiting, 10) == {"type": "agent.message", "text": "back"}
            assert await _receive(layer, during) == {"type": "agent.message", "text": "back"}
    finally:
        await layer.group_discard(group, before)
        await layer.group_discard(group, during)
        await layer.close_pools()
        await other_process.close_pools()
    outage_lines = [
        r.getMessage() for r in caplog.records if r.name == "helpdesk_site.channel_layer"
    ]
    assert len(outage_lines) == 2, outage_lines  # one when it began, one when it ended
    assert "unreachable" in outage_lines[0]
    assert "reachable again" in outage_lines[1]


async def _recovered(layer: Any) -> bool:
    return not layer.is_degraded()


async def test_a_pooled_connection_from_before_a_restart_is_replaced(
    private_redis: PrivateRedis,
) -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("agents.1", channel)  # leaves an idle connection in the pool
    private_redis.kill()
    private_redis.start()
    try:
        await layer.group_add("agents.1", channel)
        await layer.group_send("agents.1", {"type": "queue.changed"})
        assert await _receive(layer, channel) == {"type": "queue.changed"}
        assert not layer.is_degraded()
    finally:
        await layer.group_discard("agents.1", channel)
        await layer.close_pools()


async def test_agents_count_as_reachable_during_an_outage_only_from_this_process(
    private_redis: PrivateRedis,
) -> None:
    layer = get_channel_layer()
    console = await layer.new_channel()
    try:
        assert agents_reachable(tenant_id=7)
        private_redis.kill()
        await layer.group_send(agents_group(8), {"type": "queue.changed"})
        assert layer.is_degraded()
        assert not agents_reachable(tenant_id=7)

        await layer.group_add(agents_group(7), console)  # a console on this process
        assert agents_reachable(tenant_id=7)
        assert not agents_reachable(tenant_id=8)
    finally:
        await layer.group_discard(agents_group(7), console)
        await layer.close_pools()


@pytest.mark.django_db(transaction=True)
def test_a_knowledge_edit_during_an_outage_is_saved_and_seen(private_redis: PrivateRedis) -> None:
    tenant = factories.TenantFactory()
    assert current_knowledge_version(tenant.pk) == 0  # cached in Redis
    private_redis.kill()

    with transaction.atomic():
        knowledge_services.knowledge_changed(tenant_id=tenant.pk)

    assert current_knowledge_version(tenant.pk) == 1  # from the database meanwhile
    private_redis.start()
    assert current_knowledge_version(tenant.pk) == 1
    # A copy that an edit during an outage could not clear does not outlive its period.
    ttl = redis.Redis.from_url(private_redis.url).ttl(cache.make_key(f"kb:version:{tenant.pk}"))
    assert 0 < ttl <= knowledge_services.KNOWLEDGE_VERSION_CACHE_SECONDS


# The widget --------------------------------------------------------------------------------------


@pytest.fixture
def shop(transactional_db: None, private_redis: PrivateRedis) -> Iterator[Any]:
    registry.forget()
    tenant: Any = factories.TenantFactory(
        slug="shop", allowed_origins=[ORIGIN], default_language="en", auto_assign=True
    )
    factories.KnowledgeEntryFactory(
        tenant=tenant,
        question="How long does delivery take?",
        alternate_questions=["when will my order arrive"],
        answer="Delivery takes 3–5 working days.",
    )
    knowledge_services.knowledge_changed(tenant_id=tenant.pk)
    # An agent who is online in another process: the database says so, the layer cannot tell
    # that process anything while Redis is down.
    agent = factories.UserFactory(username="agent-li")
    factories.MembershipFactory(user=agent, tenant=tenant, role=Role.AGENT)
    presence_set(tenant_id=tenant.pk, user_id=agent.pk, status=PresenceStatus.ONLINE)
    yield tenant
    registry.forget()


class Widget:
    # A page view starts no conversation: its id arrives with the first message's ack.
    conversation_id: int | None = None

    def __init__(self, tenant: Any) -> None:
        self.communicator = WebsocketCommunicator(
            application,
            f"/ws/widget/{tenant.public_key}/",
            headers=[(b"origin", ORIGIN.encode()), (b"host", b"kefu.example.com")],
        )

    async def open(self) -> dict[str, Any]:
        connected, _ = await self.communicator.connect(timeout=SOCKET_WAIT)
        assert connected
        await self.send({"type": "hello"})
        welcome = await self.receive()
        assert welcome["type"] == "welcome", welcome
        return welcome

    async def send(self, frame: dict[str, Any]) -> None:
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def receive(self) -> dict[str, Any]:
        return dict(json.loads(await self.communicator.receive_from(timeout=SOCKET_WAIT)))

    async def ask(self, text: str, message_id: str) -> list[dict[str, Any]]:
        await self.send({"type": "message", "id": message_id, "text": text})
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] not in ("done", "error", "status"):
            frames.append(await self.receive())
            if frames[-1]["type"] == "ack":
                self.conversation_id = frames[-1]["conversation_id"]
        return frames

    async def close(self) -> None:
        await self.communicator.disconnect()


@database_sync_to_async
def _stored(conversation_id: int) -> list[tuple[str, str]]:
    return list(
        Message.objects.filter(conversation_id=conversation_id)
        .order_by("id")
        .values_list("role", "content")
    )


@database_sync_to_async
def _conversation(conversation_id: int) -> Conversation:
    return Conversation.objects.get(pk=conversation_id)


QUESTION, ANSWER = "When will my order arrive", "Delivery takes 3–5 working days."
OTHER_PHRASING = "How long does delivery take?"


@pytest.fixture
async def widgets() -> AsyncIterator[list[Widget]]:
    opened: list[Widget] = []
    yield opened
    for widget in opened:
        await widget.close()
    await redis_close()
    await get_channel_layer().close_pools()


@pytest.mark.django_db(transaction=True)
async def test_the_widget_answers_and_stores_through_a_redis_outage_and_recovers(
    shop: Any, private_redis: PrivateRedis, widgets: list[Widget]
) -> None:
    def widget() -> Widget:
        opened = Widget(shop)
        widgets.append(opened)
        return opened

    before = widget()
    await before.open()
    assert [f["type"] for f in await before.ask(QUESTION, "b1")] == ["ack", "delta", "done"]

    private_redis.kill()

    # The open socket stays open and is answered from the FAQ; everything is stored.
    frames = await before.ask(OTHER_PHRASING, "b2")
    assert [f["type"] for f in frames] == ["ack", "delta", "done"]
    assert frames[1]["text"] == ANSWER
    assert await _stored(before.conversation_id) == [
        ("customer", QUESTION),
        ("assistant", ANSWER),
        ("customer", OTHER_PHRASING),
        ("assistant", ANSWER),
    ]

    # A new socket can say hello and is answered.
    during = widget()
    await during.open()
    frames = await during.ask(QUESTION, "d1")
    assert [f["type"] for f in frames] == ["ack", "delta", "done"]
    assert await _stored(during.conversation_id) == [
        ("customer", QUESTION),
        ("assistant", ANSWER),
    ]

    # Asking for a person: queued in the database, but nobody is promised who cannot hear of it.
    await during.send({"type": "handoff"})
    status = await during.receive()
    assert status["type"] == "status"
    assert (status["status"], status["agents_available"], status["collect_contact"]) == (
        "queued",
        False,
        True,
    )
    assert "Leave your contact details" in status["text"]
    conversation = await _conversation(during.conversation_id)
    assert (conversation.status, conversation.assignee_id) == ("queued", None)

    private_redis.start()

    # Recovered by itself: a new socket works at once, its first message on a fresh connection.
    after = widget()
    await after.open()
    assert [f["type"] for f in await after.ask(QUESTION, "a1")] == ["ack", "delta", "done"]
    layer = get_channel_layer()
    await _until(lambda: _recovered(layer), "the layer noticed that Redis is back")

    # Events from another process reach both the socket that lived through the outage and
    # the new one, through Redis again.
    other_process = type(layer)(**_config())
    try:
        for opened in (before, after):
            assert opened.conversation_id is not None
            await other_process.group_send(
                conversation_group(shop.pk, opened.conversation_id),
                {"type": "agent.message", "message_id": 1, "text": "你好", "author": "Li"},
            )
            assert await opened.receive() == {
                "v": 1,
                "type": "agent_message",
                "message_id": 1,
                "text": "你好",
                "author": "Li",
            }
    finally:
        await other_process.close_pools()
