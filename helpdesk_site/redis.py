"""The shared async Redis client for hot paths (rate limits, conversation memory).

``redis.asyncio`` connections belong to the event loop that opened them. An ASGI process runs
one loop, so in production this is one client and one connection pool per process; tests and
``async_to_sync`` bridges run loops of their own, so clients are cached per running loop (and
per URL, so a test may point ``REDIS_URL`` elsewhere) and forgotten when their loop goes away.
``redis_close()`` closes the running loop's clients: call it at shutdown and in test teardown.

Timeouts are short and retries minimal on purpose. Every caller treats Redis as optional and
degrades without it (rate limits fail open, memory falls back to the database), so a fast error
serves the customer better than a slow answer. The single retry covers the common transient
case: a pooled connection that died with a Redis restart is replaced by a fresh one. Timeouts
are not retried, so a Redis that stopped answering costs a caller about one second, not more.
"""

import asyncio
import logging
import threading
import time
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry as SyncRetry

REDIS_CONNECT_TIMEOUT_SECONDS = 1.0
REDIS_SOCKET_TIMEOUT_SECONDS = 1.0
# A burst larger than the pool waits this long for a free connection, then fails like a timeout.
REDIS_POOL_WAIT_SECONDS = 1.0
# During an outage every chat message would log a failure; one line per interval is enough.
REDIS_FAILURE_LOG_INTERVAL_SECONDS = 30.0

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]]" = (
    weakref.WeakKeyDictionary()
)
_clients_lock = threading.Lock()
_blocking_clients: dict[str, redis.Redis] = {}

_failures_lock = threading.Lock()
_failures_last_logged: dict[str, float] = {}
_failures_unlogged: dict[str, int] = {}


def redis_client() -> aioredis.Redis | None:
    """The running loop's client for ``settings.REDIS_URL``; None when Redis is not configured.

    Must be called from a coroutine (it needs the running loop). Reads the setting on every call
    so that a test overriding it takes effect.
    """
    url: str = settings.REDIS_URL
    if not url:
        return None
    loop = asyncio.get_running_loop()
    with _clients_lock:
        per_loop = _clients.get(loop)
        if per_loop is None:
            _closed_loops_forget()
            per_loop = _clients[loop] = {}
        client = per_loop.get(url)
        if client is None:
            client = per_loop[url] = _client_create(url=url)
    return client


def redis_blocking_client() -> redis.Redis | None:
    """A blocking client for ``settings.REDIS_URL``, for sync code on worker threads (one per
    URL and process: its pool is thread-safe, and as large as the threads using it); None when
    Redis is not configured."""
    url: str = settings.REDIS_URL
    if not url:
        return None
    with _clients_lock:
        client = _blocking_clients.get(url)
        if client is None:
            client = _blocking_clients[url] = redis.Redis.from_url(
                url,
                socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS,
                socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
                retry=SyncRetry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
            )
    return client


async def redis_close() -> None:
    """Closes the running loop's clients and their connections; the next call makes new ones."""
    loop = asyncio.get_running_loop()
    with _clients_lock:
        per_loop = _clients.pop(loop, {})
    for client in per_loop.values():
        await client.aclose()


def redis_failure_log(*, logger: logging.Logger, operation: str, error: BaseException) -> None:
    """Logs a Redis failure that the caller degraded around, at most once per interval.

    ``operation`` is a fixed description ("rate limit check"), never data: keys hold visitor ids.
    redis-py's error messages name the server (host and port) but never credentials.
    """
    # Not a cachetools.TTLCache: the failures suppressed in an interval are counted, not dropped.
    now = time.monotonic()
    with _failures_lock:
        last = _failures_last_logged.get(operation)
        if last is not None and now - last < REDIS_FAILURE_LOG_INTERVAL_SECONDS:
            _failures_unlogged[operation] = _failures_unlogged.get(operation, 0) + 1
            return
        _failures_last_logged[operation] = now
        unlogged = _failures_unlogged.pop(operation, 0)
    logger.warning(
        "Redis unavailable during %s, degraded without it (%s: %s); %d similar failures unlogged",
        operation,
        type(error).__name__,
        error,
        unlogged,
    )


def _client_create(*, url: str) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=settings.REDIS_MAX_CONNECTIONS,
        timeout=REDIS_POOL_WAIT_SECONDS,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        decode_responses=False,
        retry=Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
    )
    return aioredis.Redis.from_pool(pool)


def _closed_loops_forget() -> None:
    # A closed loop that something still references would keep its clients (and their sockets)
    # in the cache forever; they cannot be awaited any more, so let the garbage collector have
    # them. Called with _clients_lock held, only when a new loop appears, so rarely.
    for loop in [loop for loop in _clients if loop.is_closed()]:
        del _clients[loop]
