"""Conversation memory: the recent turns of a conversation, for building LLM prompts.

The database is the source of truth; the memory is a cache that saves the hot path a query per
answer. It holds at most ``MEMORY_MAX_TURNS`` turns of customers, the assistant and agents
(internal notes, system messages and answers that were cut off never enter it, so that a
question followed by a turn of the assistant or an agent is one that was answered) and lives
``CONVERSATION_MEMORY_TTL_SECONDS`` (default 30 minutes) after its last read or append. With
``REDIS_URL`` set it is a Redis list per conversation,
``kefu:mem:<tenant_id>:<conversation_id>:<cache_key>``, shared by every ASGI process; without
Redis, an in-process LRU of at most ``MEMORY_LOCAL_MAX_CONVERSATIONS`` conversations with the
same expiry.

How turns never get lost or doubled:

- Writers persist a message first and append it second. ``memory_append`` only extends a memory
  that exists; it never creates one. ``memory_recent`` is the only place a memory is created,
  and it creates it from the database, which already holds every appended message. So after a
  miss (expiry, a Redis restart, a process that never saw the conversation) the next read
  rebuilds a complete memory, and an append that follows a rebuild adds only what is newer.
- A rebuild reads the database, then stores what it read. An append that finds no memory
  while a rebuild is between those two steps leaves a mark, and the rebuild then declines to
  store its snapshot (which may predate that message); the next read rebuilds again. A rebuild
  also never overwrites a memory that appeared meanwhile (two concurrent rebuilds store once).
- One window is left: a message written to the database just before another request's rebuild
  reads it, and appended just after that rebuild stores. The append then skips a turn equal to
  the memory's last turn, which covers that window for the newest message (and makes a client
  retry after a lost reply harmless). Only two messages both caught in that window of a few
  milliseconds could still double the older one; closing it fully would need message ids in
  the memory. The price of the check is that a turn repeated word for word by the same role
  right after itself is remembered once; the database keeps both and a prompt loses nothing.
- A memory can only be created by a rebuild scoped by tenant and conversation, so a
  conversation id paired with another tenant's id reads nothing and can never be appended to.
- Memories are named by the conversation's random ``cache_key`` as well as its id: Redis can
  outlive a database that is reset or restored from a backup, and the new conversation that
  gets an old id then finds no memory, instead of the turns of the one that had it before.

When Redis fails, reads come straight from the database and appends are dropped (logged, the
answer goes on). A dropped append can leave a memory one turn short until it idles out or is
forgotten; ``memory_forget`` also drops a memory whose messages were edited or erased.
"""

import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from redis.exceptions import RedisError

from conversations.models import ANSWER_CUT_OFF, Message
from helpdesk_site.asyncdb import db_parallel
from helpdesk_site.redis import redis_client, redis_failure_log

logger = logging.getLogger(__name__)

MEMORY_KEY_PREFIX = "kefu:mem:"
MEMORY_MAX_TURNS = 50
MEMORY_LOCAL_MAX_CONVERSATIONS = 10_000
MEMORY_ROLES = frozenset(
    {Message.Role.CUSTOMER.value, Message.Role.ASSISTANT.value, Message.Role.AGENT.value}
)
# Tenant id, conversation id and the conversation's cache key.
MemoryKey = tuple[int, int, str]
# A miss mark only has to outlive one rebuild (a database read).
_MISS_MARK_TTL_SECONDS = 60.0


@dataclass(frozen=True)
class Turn:
    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in MEMORY_ROLES:
            raise ValueError(f"a memory turn is a customer, assistant or agent turn: {self.role!r}")


async def memory_append(
    *, tenant_id: int, conversation_id: int, conversation_key: str, turns: Sequence[Turn]
) -> None:
    """Adds ``turns`` (already saved as messages), oldest first, to the conversation's memory,
    if it has one: one round trip for a question and its answer."""
    if not turns:
        return
    ttl = _ttl_seconds()
    client = redis_client()
    key = (tenant_id, conversation_id, conversation_key)
    if client is None:
        for turn in turns:
            _local.append(key=key, turn=turn, ttl=ttl)
        return
    try:
        await client.register_script(_APPEND_SCRIPT)(
            keys=_redis_keys(key),
            args=[
                _milliseconds(ttl),
                MEMORY_MAX_TURNS,
                _milliseconds(_MISS_MARK_TTL_SECONDS),
                *map(_turn_encode, turns),
            ],
        )
    except (RedisError, OSError) as exc:
        redis_failure_log(logger=logger, operation="conversation memory append", error=exc)


async def memory_recent(
    *, tenant_id: int, conversation_id: int, conversation_key: str, limit: int = 20
) -> list[Turn]:
    """The conversation's last ``limit`` turns (at most ``MEMORY_MAX_TURNS``), oldest first."""
    if not 1 <= limit <= MEMORY_MAX_TURNS:
        raise ValueError(f"limit must be between 1 and {MEMORY_MAX_TURNS}, got {limit}")
    ttl = _ttl_seconds()
    client = redis_client()
    key = (tenant_id, conversation_id, conversation_key)
    if client is None:
        found, mark = _local.recent(key=key, limit=limit, ttl=ttl)
        if found:
            return found
        turns = await _turns_from_db(tenant_id=tenant_id, conversation_id=conversation_id)
        _local.store(key=key, turns=turns, mark=mark, ttl=ttl)
        return turns[-limit:]

    memory_key, mark_key = _redis_keys(key)
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.lrange(memory_key, -limit, -1)
            pipe.pexpire(memory_key, _milliseconds(ttl))
            pipe.get(mark_key)
            payloads, _, redis_mark = await pipe.execute()
        if payloads:
            return [_turn_decode(payload) for payload in payloads]
    except (RedisError, OSError, ValueError) as exc:
        redis_failure_log(logger=logger, operation="conversation memory read", error=exc)
        turns = await _turns_from_db(tenant_id=tenant_id, conversation_id=conversation_id)
        return turns[-limit:]

    turns = await _turns_from_db(tenant_id=tenant_id, conversation_id=conversation_id)
    if turns:
        try:
            await client.register_script(_STORE_SCRIPT)(
                keys=[memory_key, mark_key],
                args=[_milliseconds(ttl), redis_mark or b"", *map(_turn_encode, turns)],
            )
        except (RedisError, OSError) as exc:
            redis_failure_log(logger=logger, operation="conversation memory store", error=exc)
    return turns[-limit:]


async def memory_forget(*, tenant_id: int, conversation_id: int, conversation_key: str) -> None:
    """Drops the conversation's memory, e.g. after messages were edited or erased."""
    client = redis_client()
    key = (tenant_id, conversation_id, conversation_key)
    if client is None:
        _local.forget(key=key)
        return
    try:
        await client.delete(*_redis_keys(key))
    except (RedisError, OSError) as exc:
        redis_failure_log(logger=logger, operation="conversation memory forget", error=exc)


def memory_local_reset() -> None:
    """Forgets every in-process memory. For tests: their database ids (and so keys) repeat."""
    _local.reset()


@db_parallel
def _turns_from_db(*, tenant_id: int, conversation_id: int) -> list[Turn]:
    # A worker thread (database_sync_to_async) rather than the async ORM: it closes connections
    # that are past CONN_MAX_AGE or broken; any worker, not the one shared thread, as every
    # conversation's first read comes here.
    rows = (
        Message.objects.filter(
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            internal=False,
            role__in=MEMORY_ROLES,
        )
        .exclude(error_code=ANSWER_CUT_OFF)
        .order_by("-created_at", "-id")
        .values_list("role", "content")[:MEMORY_MAX_TURNS]
    )
    turns = [Turn(role=role, content=content) for role, content in rows]
    turns.reverse()
    return turns


def _ttl_seconds() -> float:
    return float(settings.CONVERSATION_MEMORY_TTL_SECONDS)


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _redis_keys(key: MemoryKey) -> list[str]:
    tenant_id, conversation_id, conversation_key = key
    memory_key = f"{MEMORY_KEY_PREFIX}{tenant_id}:{conversation_id}:{conversation_key}"
    return [memory_key, memory_key + ":missed"]


def _turn_encode(turn: Turn) -> bytes:
    # Deterministic, so that equal turns encode to equal bytes (the append script compares).
    return json.dumps([turn.role, turn.content], ensure_ascii=False).encode()


def _turn_decode(payload: bytes) -> Turn:
    role, content = json.loads(payload)
    return Turn(role=role, content=content)


# KEYS[1]: the memory list, KEYS[2]: its miss mark. ARGV[1]: idle TTL in ms, ARGV[2]: turns
# kept, ARGV[3]: the mark's TTL in ms, ARGV[4...]: the turns. Returns how many were added.
_APPEND_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local added = 0
for i = 4, #ARGV do
  if redis.call('LINDEX', KEYS[1], -1) ~= ARGV[i] then
    redis.call('RPUSH', KEYS[1], ARGV[i])
    added = added + 1
  end
end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
return added
"""

# KEYS[1]: the memory list, KEYS[2]: its miss mark. ARGV[1]: idle TTL in ms, ARGV[2]: the mark
# as read before the database was, ARGV[3...]: the turns, oldest first. Returns 1 when stored.
_STORE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[2] then
  return 0
end
redis.call('RPUSH', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


@dataclass
class _LocalMemory:
    turns: deque[Turn]
    expires_at: float


@dataclass
class _LocalMark:
    value: int
    expires_at: float


_Entry = TypeVar("_Entry", _LocalMemory, _LocalMark)


class _LocalMemories:
    """The in-process backend: the same protocol as the Redis scripts, in a bounded LRU.

    Not a cachetools.TTLCache: a read extends a memory's life as Redis's PEXPIRE does, the
    expiry follows the setting at each call, and miss marks live by another TTL."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._memories: OrderedDict[MemoryKey, _LocalMemory] = OrderedDict()
        self._marks: OrderedDict[MemoryKey, _LocalMark] = OrderedDict()

    def append(self, *, key: MemoryKey, turn: Turn, ttl: float) -> None:
        with self._lock:
            now = self.clock()
            memory = self._live_memory(key=key, now=now)
            if memory is None:
                mark = self._live_mark(key=key, now=now)
                value = 1 if mark is None else mark.value + 1
                self._bounded_put(
                    self._marks, key, _LocalMark(value, expires_at=now + _MISS_MARK_TTL_SECONDS)
                )
                return
            memory.expires_at = now + ttl
            if not memory.turns or memory.turns[-1] != turn:
                memory.turns.append(turn)

    def recent(self, *, key: MemoryKey, limit: int, ttl: float) -> tuple[list[Turn], int]:
        """The last ``limit`` turns, or no turns and the miss mark to hand to ``store``."""
        with self._lock:
            now = self.clock()
            memory = self._live_memory(key=key, now=now)
            if memory is None:
                mark = self._live_mark(key=key, now=now)
                return [], 0 if mark is None else mark.value
            memory.expires_at = now + ttl
            return list(memory.turns)[-limit:], 0

    def store(self, *, key: MemoryKey, turns: list[Turn], mark: int, ttl: float) -> None:
        if not turns:
            return
        with self._lock:
            now = self.clock()
            current_mark = self._live_mark(key=key, now=now)
            if self._live_memory(key=key, now=now) is not None:
                return
            if (0 if current_mark is None else current_mark.value) != mark:
                return
            memory = _LocalMemory(deque(turns, maxlen=MEMORY_MAX_TURNS), expires_at=now + ttl)
            self._bounded_put(self._memories, key, memory)

    def forget(self, *, key: MemoryKey) -> None:
        with self._lock:
            self._memories.pop(key, None)
            self._marks.pop(key, None)

    def reset(self) -> None:
        with self._lock:
            self._memories.clear()
            self._marks.clear()

    def _live_memory(self, *, key: MemoryKey, now: float) -> _LocalMemory | None:
        memory = self._memories.get(key)
        if memory is None:
            return None
        if memory.expires_at <= now:
            del self._memories[key]
            return None
        self._memories.move_to_end(key)
        return memory

    def _live_mark(self, *, key: MemoryKey, now: float) -> _LocalMark | None:
        mark = self._marks.get(key)
        if mark is not None and mark.expires_at <= now:
            del self._marks[key]
            return None
        return mark

    @staticmethod
    def _bounded_put(
        entries: "OrderedDict[MemoryKey, _Entry]", key: MemoryKey, value: _Entry
    ) -> None:
        entries[key] = value
        entries.move_to_end(key)
        while len(entries) > MEMORY_LOCAL_MAX_CONVERSATIONS:
            # Least recently used first; expired entries that nobody touched are among them.
            entries.popitem(last=False)


_local = _LocalMemories(clock=time.monotonic)
