"""The Redis channel layer, made to survive a Redis outage.

channels-redis raises every Redis error into its caller. Its ``receive()`` runs in Channels'
consumer loop, so one outage killed every open socket at once (without a close frame), and
``group_add`` in the widget's hello killed every new one. This layer degrades instead:

- While Redis is unreachable, group membership, ``group_send`` and ``send`` work within this
  process: a customer and an agent connected to the same process still meet. Events for other
  processes are lost (their sockets read the database on their next hello), and the outage is
  logged once when it begins and once when it ends, never per call.
- ``receive()`` never raises a connection error: it serves the process-local deliveries and
  waits for Redis, probing it with capped exponential backoff (one probe per process at a time).
- Group memberships are also kept in the process, so that local delivery knows the members
  that joined before the outage, and so that on recovery every membership made or dropped
  meanwhile is written back to Redis before sockets read from it again.
- Pooled connections retry a command once on a connection error, so a connection that died
  with the outage is replaced instead of failing the first socket after Redis returns.

``is_degraded()`` and ``group_has_local_members()`` let callers tell a customer honestly that
nobody can be reached live.
"""

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from channels_redis.core import RedisChannelLayer
from channels_redis.utils import create_pool
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

# A full pool (MaxConnectionsError) is load, not an outage: it is raised as before.
OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
PROBE_DELAY_FIRST_SECONDS = 0.25
PROBE_DELAY_CAP_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 1.0
# Without it redis-py waits for a connection as long as for a reply (the socket timeout, above
# the layer's 5 s blocking pop): a Redis that vanished from the network would stall every hello.
CONNECT_TIMEOUT_SECONDS = 2.0


class _LayerDownError(Exception):
    """Raised inside ``receive()`` to leave channels-redis's receive loop during an outage."""


@dataclass
class _Outage:
    started_at: float
    next_probe_at: float
    delay: float


class DegradingRedisChannelLayer(RedisChannelLayer):
    """channels-redis's layer that delivers within the process while Redis is unreachable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outage: _Outage | None = None
        # group -> {channel of this process: time joined}
        self._local_groups: dict[str, dict[str, float]] = {}
        # (group, channel) pairs left while Redis was unreachable: removed from Redis on return.
        self._pending_discards: set[tuple[str, str]] = set()
        self._recovery_events: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Event
        ] = weakref.WeakKeyDictionary()

    def create_pool(self, index: int) -> ConnectionPool:
        host = {
            "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "retry": Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
            **self.hosts[index],
        }
        return create_pool(host)

    # State -------------------------------------------------------------------------------------

    def is_degraded(self) -> bool:
        """Redis is unreachable: events reach only this process's sockets."""
        return self._outage is not None

    def group_has_local_members(self, group: str) -> bool:
        return bool(self._local_groups.get(group))

    def _outage_begin(self, error: BaseException) -> None:
        if self._outage is not None:
            return
        now = time.monotonic()
        self._outage = _Outage(
            started_at=now,
            next_probe_at=now + PROBE_DELAY_FIRST_SECONDS,
            delay=PROBE_DELAY_FIRST_SECONDS,
        )
        # redis-py's messages name the server's host and port, never credentials.
        logger.warning(
            "Channel layer: Redis unreachable (%s: %s); delivering within this process until "
            "it returns",
            type(error).__name__,
            error,
        )

    async def _probe_if_due(self) -> None:
        outage = self._outage
        if outage is None or time.monotonic() < outage.next_probe_at:
            return
        # Claim the slot before awaiting: concurrent callers skip, and a probe that never ends
        # (its loop closed) does not stop the next one.
        outage.delay = min(outage.delay * 2, PROBE_DELAY_CAP_SECONDS)
        outage.next_probe_at = time.monotonic() + outage.delay
        try:
            for index in range(self.ring_size):
                # Probes run inline in group calls: a Redis that hangs must not hold a hello
                # for the layer's whole socket timeout. (asyncio's TimeoutError is an OSError.)
                await asyncio.wait_for(self.connection(index).ping(), PROBE_TIMEOUT_SECONDS)
        except OUTAGE_ERRORS:
            return
        # Up before the restore: memberships made meanwhile go straight to Redis.
        self._outage = None
        try:
            await self._memberships_restore()
        except OUTAGE_ERRORS as exc:
            self._outage_begin(exc)
            return
        logger.warning(
            "Channel layer: Redis reachable again after %.0f s",
            time.monotonic() - outage.started_at,
        )
        self._receivers_wake()

    async def _memberships_restore(self) -> None:
        """Writes the memberships made and dropped during the outage back to Redis: a pipeline
        per shard (thousands of sockets must not cost thousands of round trips)."""
        now = time.time()
        pipes: dict[int, Any] = {}

        def pipe_for(group: str) -> Any:
            index = self.consistent_hash(group)
            if index not in pipes:
                pipes[index] = self.connection(index).pipeline(transaction=False)
            return pipes[index]

        for group, members in list(self._local_groups.items()):
            if members:
                key = self._group_key(group)
                pipe_for(group).zadd(key, dict.fromkeys(members, now))
                pipe_for(group).expire(key, self.group_expiry)
        discards = set(self._pending_discards)
        for group, channel in discards:
            pipe_for(group).zrem(self._group_key(group), channel)
        for pipe in pipes.values():
            await pipe.execute()
        self._pending_discards -= discards

    def _receivers_wake(self) -> None:
        running = asyncio.get_running_loop()
        events = list(self._recovery_events.items())
        self._recovery_events.clear()
        for loop, event in events:
            if loop is running:
                event.set()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def _recovery_event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        event = self._recovery_events.get(loop)
        if event is None:
            event = self._recovery_events[loop] = asyncio.Event()
        return event

    def _own(self, channel: str) -> bool:
        local, bang, _ = channel.partition("!")
        return bool(bang) and local.endswith(self.client_prefix)

    def _deliver_locally(self, channel: str, message: dict[str, Any]) -> None:
        # Through the serializer, as through Redis: the receiver gets its own copy.
        self.receive_buffer[channel].put_nowait(self.deserialize(self.serialize(message)))

    async def _on_redis(self, operation: Callable[[], Awaitable[None]], *, probe: bool) -> bool:
        """Runs ``operation`` on Redis unless it is known to be down; False if it did not run.

        During an outage, ``probe`` lets the call check (when due) whether Redis is back."""
        if self._outage is not None and probe:
            await self._probe_if_due()
        if self._outage is not None:
            return False
        try:
            await operation()
        except MaxConnectionsError:
            raise
        except OUTAGE_ERRORS as exc:
            self._outage_begin(exc)
            return False
        return True

    # Channel layer API -------------------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        sent = await self._on_redis(partial(super().send, channel, message), probe=True)
        if not sent and self._own(channel):
            self._deliver_locally(channel, message)

    async def receive(self, channel: str) -> dict[str, Any]:
        while True:
            if self._outage is None:
                try:
                    return await super().receive(channel)
                except _LayerDownError:
                    pass
                except MaxConnectionsError:
                    raise
                except OUTAGE_ERRORS as exc:
                    self._outage_begin(exc)
            message = await self._receive_degraded(channel)
            if message is not None:
                return message

    async def receive_single(self, channel: str) -> tuple[Any, dict[str, Any]]:
        # Called by channels-redis's receive() for the one waiter holding its receive lock;
        # during an outage every waiter leaves at once instead of trying Redis in turn.
        if self._outage is not None:
            raise _LayerDownError
        return await super().receive_single(channel)

    async def _receive_degraded(self, channel: str) -> dict[str, Any] | None:
        """A message delivered within the process, or None when Redis may be back."""
        buffer = self.receive_buffer[channel]
        recovered = self._recovery_event()
        getter = asyncio.ensure_future(buffer.get())
        waiter = asyncio.ensure_future(recovered.wait())
        outage = self._outage
        timeout = max(0.0, outage.next_probe_at - time.monotonic()) if outage else 0.0
        try:
            await asyncio.wait(
                {getter, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            # A getter cancelled before it ran leaves its message in the buffer.
            getter.cancel()
            if self.receive_buffer.get(channel) is buffer and buffer.empty():
                del self.receive_buffer[channel]
        if getter.done() and not getter.cancelled():
            message: dict[str, Any] = getter.result()
            return message
        await self._probe_if_due()
        return None

    async def group_add(self, group: str, channel: str) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"  # noqa: S101
        assert self.require_valid_channel_name(channel), "Channel name not valid"  # noqa: S101
        if self._own(channel):
            self._local_groups.setdefault(group, {})[channel] = time.time()
            self._pending_discards.discard((group, channel))
        # Not added in Redis now: added when Redis returns, from the process's own record.
        await self._on_redis(partial(super().group_add, group, channel), probe=True)

    async def group_discard(self, group: str, channel: str) -> None:
        members = self._local_groups.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                del self._local_groups[group]
        # A socket that closes need not wait for a probe.
        if not await self._on_redis(partial(super().group_discard, group, channel), probe=False):
            self._pending_discards.add((group, channel))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if await self._on_redis(partial(super().group_send, group, message), probe=True):
            return
        oldest = time.time() - self.group_expiry
        for channel, joined in list(self._local_groups.get(group, {}).items()):
            if joined >= oldest:
                self._deliver_locally(channel, message)
