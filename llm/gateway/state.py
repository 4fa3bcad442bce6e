"""Shared state: the circuit breakers and the cached answers.

They live in Redis through the process's shared ``redis.asyncio`` client
(:func:`helpdesk_site.redis.redis_client`) when ``REDIS_URL`` is set, so that every ASGI and
Celery process shares them, under ``kefu:llm:cb:<tenant_id>:<provider>:*`` and
``kefu:llm:answer:<tenant_id>:<sha256 of the caller's key>`` (never the question itself).
Without Redis (the embedded single-process mode) they live in an in-process store with the same
expiry. Both are optimisations: a broken or slow Redis reads as a closed circuit and a cache miss,
logs a warning without keys at most once per interval, and never fails an answer.
"""

import enum
import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Protocol, TypeVar, cast

import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import RedisError

from helpdesk_site.redis import redis_client, redis_failure_log
from llm.gateway.providers import ProviderConfig

# The package's one logger, as before it was split: log lines keep the name operators know.
logger = logging.getLogger("llm.gateway")

_STATE_KEY_PREFIX: Final = "kefu:llm:"
# Breaker state outlives any open period; it only expires so that a deleted provider's keys go.
_BREAKER_STATE_TTL: Final = 24 * 3600
# Without Redis: at most this many breaker keys and cached answers, least recently used go first.
_LOCAL_STATE_MAX_KEYS: Final = 10_000

_T = TypeVar("_T")


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

    Hand-written rather than cachetools.TLRUCache (a TTL per key): reading three keys takes
    2.2 µs against 6.1 µs, a write 1.4 µs against 3.8 µs.

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
        self.threshold: int = settings.LLM_BREAKER_FAILURES
        self.open_seconds: float = settings.LLM_BREAKER_OPEN_SECONDS
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
    seconds: int = settings.LLM_ANSWER_CACHE_SECONDS
    if seconds <= 0:
        return
    record = {"text": answer.text, "provider": answer.provider, "model": answer.model}
    payload = json.dumps(record, ensure_ascii=False).encode()
    await _shared(
        "llm answer cache write", lambda state: state.put(key, payload, ttl=seconds), False
    )
