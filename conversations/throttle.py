"""Typing indicators, passed on at most once per window per conversation and direction.

A typing frame only says "somebody is typing here"; one per ``TYPING_THROTTLE_SECONDS`` is all
the other side's indicator needs, however fast the frames come. Each process first drops frames
inside a window it already opened itself (no Redis round trip for a burst on one socket); the
first frame after that asks Redis (``SET NX PX``) whether another process opened the window,
so a customer and an agent served by several processes still get one event per window. Without
Redis, or while it fails, the process's own decision stands: typing indicators are a courtesy,
never worth an error.
"""

import logging
import threading
import time

from django.conf import settings
from redis.exceptions import RedisError

from helpdesk_site.redis import redis_client, redis_failure_log

logger = logging.getLogger(__name__)

TYPING_THROTTLE_KEY_PREFIX = "kefu:typing:"
# Past this many open windows in one process, expired ones are dropped on the next frame.
_LOCAL_SWEEP_SIZE = 10_000

_local_lock = threading.Lock()
_local_until: dict[str, float] = {}


async def typing_throttle_pass(*, tenant_id: int, conversation_id: int, sender: str) -> bool:
    """True when this typing frame of ``sender`` ("customer" or "agent") should be passed on."""
    window: float = settings.TYPING_THROTTLE_SECONDS
    if window <= 0:
        return True
    key = f"{tenant_id}:{conversation_id}:{sender}"
    now = time.monotonic()
    with _local_lock:
        if _local_until.get(key, 0.0) > now:
            return False
        if len(_local_until) >= _LOCAL_SWEEP_SIZE:
            for stale in [k for k, until in _local_until.items() if until <= now]:
                del _local_until[stale]
        _local_until[key] = now + window
    client = redis_client()
    if client is None:
        return True
    try:
        opened = await client.set(
            TYPING_THROTTLE_KEY_PREFIX + key, b"1", nx=True, px=max(1, int(window * 1000))
        )
    except (RedisError, OSError) as error:
        redis_failure_log(logger=logger, operation="typing throttle", error=error)
        return True
    return bool(opened)


def typing_throttle_local_reset() -> None:
    with _local_lock:
        _local_until.clear()
