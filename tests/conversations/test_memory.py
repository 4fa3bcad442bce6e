"""Conversation memory: rebuilt from the database on a miss, never doubling or losing a turn.

Tests that take the ``backend`` fixture run twice: on the in-process memory (always) and on
Redis (skipped without ``REDIS_URL`` unless KEFU_REQUIRE_SERVICES=1).
"""

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from redis.exceptions import RedisError

import helpdesk_site.redis
from conversations import memory
from conversations.memory import Turn, memory_append, memory_forget, memory_recent
from conversations.models import Conversation
from helpdesk_site.redis import redis_client, redis_close
from tenants.models import Tenant
from tests.support.factories import ConversationFactory, MessageFactory, TenantFactory

pytestmark = pytest.mark.django_db(transaction=True)

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


def random_pk() -> int:
    # Explicit ids: test databases reuse ids between tests, and a shared Redis outlives them.
    return 10**12 + secrets.randbelow(10**12)


@dataclass
class Scene:
    tenant: Tenant
    conversation: Conversation

    @property
    def ids(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant.pk,
            "conversation_id": self.conversation.pk,
            "conversation_key": self.conversation.cache_key,
        }

    async def message(self, role: str, content: str, *, internal: bool = False) -> None:
        """Saves a message only, as another process would without touching this memory."""
        await sync_to_async(MessageFactory)(
            conversation=self.conversation, role=role, content=content, internal=internal
        )

    async def said(self, role: str, content: str) -> Turn:
        """What the answer pipeline does: save the message, then append it to the memory."""
        await self.message(role, content)
        turn = Turn(role=role, content=content)
        await memory_append(**self.ids, turns=[turn])
        return turn

    async def recent(self, limit: int = 20) -> list[Turn]:
        return await memory_recent(**self.ids, limit=limit)


SceneMaker = Callable[[], Awaitable[Scene]]


@pytest.fixture(params=["local", "redis"])
def backend(request: pytest.FixtureRequest, settings) -> str:
    if request.param == "redis":
        request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
    return request.param


@pytest.fixture
async def make_scene() -> AsyncIterator[SceneMaker]:
    scenes: list[Scene] = []

    async def make() -> Scene:
        tenant = await sync_to_async(TenantFactory)(pk=random_pk())
        conversation = await sync_to_async(ConversationFactory)(pk=random_pk(), tenant=tenant)
        scene = Scene(tenant=tenant, conversation=conversation)
        scenes.append(scene)
        return scene

    memory.memory_local_reset()
    yield make
    memory.memory_local_reset()
    client = redis_client()
    if client is not None:
        keys = [key for scene in scenes for key in memory._redis_keys(_key(scene))]
        # A test that pointed REDIS_URL at nothing stored nothing.
        with contextlib.suppress(RedisError):
            await client.delete(*keys)
    await redis_close()


def _key(scene: Scene) -> memory.MemoryKey:
    return (scene.tenant.pk, scene.conversation.pk, scene.conversation.cache_key)


def T(role: str, content: str) -> Turn:
    return Turn(role=role, content=content)


async def test_a_missing_memory_is_rebuilt_from_the_database(
    backend: str, make_scene: SceneMaker
) -> None:
    scene = await make_scene()
    await scene.message("customer", "Where is my order?")
    await scene.message("assistant", "It left the warehouse today.")
    await scene.message("agent", "Customer is a VIP, be nice.", internal=True)
    await scene.message("system", "Ann joined the conversation.")
    await scene.message("agent", "Hi, Ann here. It arrives Friday.")

    assert await scene.recent() == [
        T("customer", "Where is my order?"),
        T("assistant", "It left the warehouse today."),
        T("agent", "Hi, Ann here. It arrives Friday."),
    ]
    assert await scene.recent(limit=2) == [
        T("assistant", "It left the warehouse today."),
        T("agent", "Hi, Ann here. It arrives Friday."),
    ]


async def test_another_tenants_conversation_reads_nothing(
    backend: str, make_scene: SceneMaker
) -> None:
    scene_a = await make_scene()
    await scene_a.said("customer", "My address is 1 Main Street.")
    other_tenant = await sync_to_async(TenantFactory)(pk=random_pk())
    crossed = {**scene_a.ids, "tenant_id": other_tenant.pk}

    try:
        assert await memory_recent(**crossed) == []
        # A crossed pair has no memory, so it cannot be appended to either.
        await memory_append(**crossed, turns=[T("customer", "Injected")])
        assert await memory_recent(**crossed) == []
        assert await scene_a.recent() == [T("customer", "My address is 1 Main Street.")]
    finally:
        await memory_forget(**crossed)


async def test_the_pipeline_order_never_doubles_a_turn(
    backend: str, make_scene: SceneMaker
) -> None:
    scene = await make_scene()

    # The first message finds no memory: the append is skipped, the read rebuilds.
    question = await scene.said("customer", "Do you ship to Lyon?")
    assert await scene.recent() == [question]
    answer = await scene.said("assistant", "Yes, in three days.")
    follow_up = await scene.said("customer", "And to Nice?")

    assert await scene.recent() == [question, answer, follow_up]
    # The memory says what the database says.
    await memory_forget(**scene.ids)
    assert await scene.recent() == [question, answer, follow_up]


async def test_a_turn_saved_before_a_rebuild_and_appended_after_is_not_doubled(
    backend: str, make_scene: SceneMaker
) -> None:
    scene = await make_scene()
    await scene.said("customer", "Hello")
    await scene.message("customer", "Is anyone there?")
    # Another request rebuilds between this message's save and its append.
    assert await scene.recent() == [T("customer", "Hello"), T("customer", "Is anyone there?")]

    await memory_append(**scene.ids, turns=[T("customer", "Is anyone there?")])
    await memory_append(**scene.ids, turns=[T("assistant", "Yes, how can I help?")])

    assert await scene.recent() == [
        T("customer", "Hello"),
        T("customer", "Is anyone there?"),
        T("assistant", "Yes, how can I help?"),
    ]


async def test_a_question_and_its_answer_are_appended_together(
    backend: str, make_scene: SceneMaker
) -> None:
    scene = await make_scene()
    await scene.said("customer", "Hello")
    await scene.message("customer", "Where is my parcel?")
    await scene.message("assistant", "On its way.")

    await memory_append(
        **scene.ids, turns=[T("customer", "Where is my parcel?"), T("assistant", "On its way.")]
    )

    assert await scene.recent() == [
        T("customer", "Hello"),
        T("customer", "Where is my parcel?"),
        T("assistant", "On its way."),
    ]


async def test_an_append_during_a_rebuild_is_not_lost(
    backend: str, make_scene: SceneMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = await make_scene()
    await scene.message("customer", "First question")
    read_from_db = memory._turns_from_db
    interrupted = False

    async def read_then_race(*, tenant_id: int, conversation_id: int) -> list[Turn]:
        nonlocal interrupted
        turns = await read_from_db(tenant_id=tenant_id, conversation_id=conversation_id)
        if not interrupted:
            interrupted = True
            # Between this rebuild's read and its store, another message is saved and appended.
            await scene.said("customer", "Second question")
        return turns

    monkeypatch.setattr(memory, "_turns_from_db", read_then_race)

    # This read returns its (older) snapshot, but must not store it...
    assert await scene.recent() == [T("customer", "First question")]
    # ...so the next read rebuilds, and the second question is there.
    assert await scene.recent() == [
        T("customer", "First question"),
        T("customer", "Second question"),
    ]


async def test_appends_extend_an_existing_memory_up_to_fifty_turns(
    backend: str, make_scene: SceneMaker
) -> None:
    scene = await make_scene()
    await scene.said("customer", "turn 0")
    await scene.recent()

    for i in range(1, 60):
        await memory_append(**scene.ids, turns=[T("customer", f"turn {i}")])

    recent = await scene.recent(limit=50)
    assert recent == [T("customer", f"turn {i}") for i in range(10, 60)]


async def test_the_local_memory_is_a_cache_until_it_idles_out(
    settings, make_scene: SceneMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.REDIS_URL = ""
    settings.CONVERSATION_MEMORY_TTL_SECONDS = 100
    now = [1000.0]
    monkeypatch.setattr(memory._local, "clock", lambda: now[0])
    scene = await make_scene()
    question = await scene.said("customer", "Where is my parcel?")
    assert await scene.recent() == [question]
    # Saved without an append (as if that append had been lost): the cache does not see it...
    await scene.message("agent", "It is at the depot.")

    now[0] = 1060.0
    assert await scene.recent() == [question]
    now[0] = 1150.0  # 90 s after the last read, which refreshed the expiry
    assert await scene.recent() == [question]
    now[0] = 1250.1  # ...until the memory idles out and is rebuilt.
    assert await scene.recent() == [question, T("agent", "It is at the depot.")]


async def test_redis_memory_is_a_list_with_an_idle_expiry(
    redis_url: str, settings, make_scene: SceneMaker
) -> None:
    settings.CONVERSATION_MEMORY_TTL_SECONDS = 100
    scene = await make_scene()
    question = await scene.said("customer", "Where is my parcel?")
    assert await scene.recent() == [question]
    client = redis_client()
    assert client is not None
    key = f"kefu:mem:{scene.tenant.pk}:{scene.conversation.pk}:{scene.conversation.cache_key}"
    assert await client.llen(key) == 1
    assert 99_000 < await client.pttl(key) <= 100_000

    # Reads and appends refresh the expiry.
    await client.pexpire(key, 5_000)
    await scene.recent()
    assert await client.pttl(key) > 99_000
    await client.pexpire(key, 5_000)
    await scene.said("assistant", "At the depot.")
    assert await client.pttl(key) > 99_000

    # Once it expires (deleted here, as Redis would), the next read rebuilds from the database.
    await scene.message("agent", "Out for delivery now.")
    await client.delete(key)
    assert await scene.recent() == [
        question,
        T("assistant", "At the depot."),
        T("agent", "Out for delivery now."),
    ]


async def test_two_processes_share_the_memory(redis_url: str, make_scene: SceneMaker) -> None:
    scene = await make_scene()
    question = await scene.said("customer", "Can I change my size?")
    assert await scene.recent() == [question]

    async def other_process() -> None:
        # Another event loop, so another client and connection pool, as in a second process.
        try:
            await memory_append(**scene.ids, turns=[T("agent", "Of course.")])
        finally:
            await redis_close()

    await asyncio.to_thread(asyncio.run, other_process())

    assert await scene.recent() == [question, T("agent", "Of course.")]


async def test_an_unreachable_redis_falls_back_to_the_database(
    settings,
    make_scene: SceneMaker,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.REDIS_URL = CLOSED_PORT_URL
    # Failures are logged once per interval per process; start this test's interval afresh.
    monkeypatch.setattr(helpdesk_site.redis, "_failures_last_logged", {})
    scene = await make_scene()

    with caplog.at_level(logging.WARNING, logger="conversations.memory"):
        question = await scene.said("customer", "My card was charged twice.")
        assert await scene.recent() == [question]

    assert "conversation memory append" in caplog.text
    assert "conversation memory read" in caplog.text
    assert "charged twice" not in caplog.text


async def test_turns_and_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="customer, assistant or agent"):
        Turn(role="system", content="Ann joined.")
    for limit in (0, 51):
        with pytest.raises(ValueError, match="limit"):
            await memory_recent(tenant_id=1, conversation_id=1, conversation_key="k", limit=limit)


def test_the_local_memory_keeps_the_most_recently_used_conversations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "MEMORY_LOCAL_MAX_CONVERSATIONS", 2)
    memories = memory._LocalMemories(clock=lambda: 0.0)
    turns = [T("customer", "hi")]
    memories.store(key=(1, 1, "k"), turns=turns, mark=0, ttl=60)
    memories.store(key=(1, 2, "k"), turns=turns, mark=0, ttl=60)
    assert memories.recent(key=(1, 1, "k"), limit=20, ttl=60) == (turns, 0)  # now the most recent

    memories.store(key=(1, 3, "k"), turns=turns, mark=0, ttl=60)

    assert memories.recent(key=(1, 2, "k"), limit=20, ttl=60) == ([], 0)
    assert memories.recent(key=(1, 1, "k"), limit=20, ttl=60) == (turns, 0)
    assert memories.recent(key=(1, 3, "k"), limit=20, ttl=60) == (turns, 0)


async def test_a_conversation_that_gets_an_old_id_reads_nothing_of_the_old_one(
    backend: str, make_scene: SceneMaker
) -> None:
    # Given a conversation with a memory
    scene = await make_scene()
    await scene.said("customer", "My address is 1 Main Street.")
    assert await scene.recent() == [T("customer", "My address is 1 Main Street.")]
    # When the database is restored from a backup (the memory outlives it) and a new
    # conversation gets the old one's id
    await Conversation.objects.filter(pk=scene.conversation.pk).adelete()
    reborn = Scene(
        tenant=scene.tenant,
        conversation=await sync_to_async(ConversationFactory)(
            pk=scene.conversation.pk, tenant=scene.tenant
        ),
    )
    try:
        # Then it reads its own turns only
        assert await reborn.recent() == []
        hello = await reborn.said("customer", "Hello?")
        assert await reborn.recent() == [hello]
    finally:
        await memory_forget(**reborn.ids)


async def test_an_answer_that_was_cut_off_never_enters_the_memory(
    backend: str, make_scene: SceneMaker
) -> None:
    scene = await make_scene()
    question = await scene.said("customer", "Can I pay with bitcoin?")
    await sync_to_async(MessageFactory)(
        conversation=scene.conversation,
        role="assistant",
        content="We accept (The answer was cut off. Please ask again.)",
        error_code="interrupted",
    )
    again = await scene.said("customer", "Can I pay with bitcoin?")

    # Rebuilt from the database, the cut-off answer is left out as the pipeline left it out.
    memory.memory_local_reset()
    await memory_forget(**scene.ids)
    assert await scene.recent() == [question, again]
