"""Agent presence: who is taking conversations now, kept fresh by the agent console's heartbeat.

Presence is hot and short-lived, so it lives in Redis, not the database: per tenant, one sorted
set per status (``kefu:presence:<tenant>:online`` and ``…:away``) with the agent's user id as
member and the last-seen time (epoch seconds) as score. Setting a status adds the agent to that
set and removes them from the other, in one transaction. An entry older than
``PRESENCE_FRESH_SECONDS`` counts as offline; reads trim such entries, and the keys expire when
nobody has been seen for a day.

Without ``REDIS_URL`` (one process) the same data is kept in this process. Every write is also
kept in this process, so while Redis is unreachable presence is what this process saw (the
channel layer then reaches only this process's consoles too); the outage is logged once per
interval. The functions are sync (the console calls them through ``database_sync_to_async``).
"""

import logging
import threading
import time

import redis
from django.db import models
from django.utils.translation import gettext_lazy as _

from helpdesk_site.redis import redis_blocking_client, redis_failure_log

logger = logging.getLogger(__name__)

PRESENCE_FRESH_SECONDS = 90
PRESENCE_KEY_TTL_SECONDS = 24 * 3600
KEY_PREFIX = "kefu:presence"


class PresenceStatus(models.TextChoices):
    ONLINE = "online", _("Online")
    AWAY = "away", _("Away")


# {tenant id: {user id: (status, last seen)}}
_local: dict[int, dict[int, tuple[str, float]]] = {}
_local_lock = threading.Lock()


def _key(tenant_id: int, status: str) -> str:
    return f"{KEY_PREFIX}:{tenant_id}:{status}"


def presence_set(
    *, tenant_id: int, user_id: int, status: str, seen_at: float | None = None
) -> None:
    """Records that the agent was seen with ``status`` (a ``PresenceStatus``) just now, or at
    ``seen_at`` (epoch seconds)."""
    now = time.time() if seen_at is None else seen_at
    with _local_lock:
        _local.setdefault(tenant_id, {})[user_id] = (status, now)
    client = redis_blocking_client()
    if client is None:
        return
    try:
        with client.pipeline(transaction=True) as pipe:
            for other in PresenceStatus.values:
                if other != status:
                    pipe.zrem(_key(tenant_id, other), user_id)
            pipe.zadd(_key(tenant_id, status), {str(user_id): now})
            for each in PresenceStatus.values:
                pipe.expire(_key(tenant_id, each), PRESENCE_KEY_TTL_SECONDS)
            pipe.execute()
    except (redis.RedisError, OSError) as error:
        redis_failure_log(logger=logger, operation="agent presence update", error=error)


def presence_statuses(*, tenant_id: int) -> dict[int, str]:
    """The tenant's agents seen within ``PRESENCE_FRESH_SECONDS``: {user id: status}."""
    cutoff = time.time() - PRESENCE_FRESH_SECONDS
    client = redis_blocking_client()
    if client is not None:
        try:
            return _redis_statuses(client, tenant_id, cutoff)
        except (redis.RedisError, OSError) as error:
            redis_failure_log(logger=logger, operation="agent presence read", error=error)
    with _local_lock:
        seen = _local.get(tenant_id, {})
        for user_id in [user for user, (_status, at) in seen.items() if at < cutoff]:
            del seen[user_id]
        return {user_id: status for user_id, (status, _at) in seen.items()}


def _redis_statuses(client: redis.Redis, tenant_id: int, cutoff: float) -> dict[int, str]:
    with client.pipeline(transaction=True) as pipe:
        for status in PresenceStatus.values:
            pipe.zremrangebyscore(_key(tenant_id, status), "-inf", f"({cutoff}")
            pipe.zrange(_key(tenant_id, status), 0, -1)
        replies = pipe.execute()
    return {
        int(member): status
        for status, members in zip(PresenceStatus.values, replies[1::2], strict=True)
        for member in members
    }


def presence_online(*, tenant_id: int) -> set[int]:
    """The user ids of the tenant's agents online now (not away, seen recently)."""
    return {
        user_id
        for user_id, status in presence_statuses(tenant_id=tenant_id).items()
        if status == PresenceStatus.ONLINE
    }


def presence_local_reset() -> None:
    """Forgets the presence kept in this process (tests: databases reuse ids)."""
    with _local_lock:
        _local.clear()


def presence_clear_all() -> None:
    """Forgets every tenant's presence, here and in Redis (tests: databases reuse ids)."""
    presence_local_reset()
    client = redis_blocking_client()
    if client is None:
        return
    try:
        keys = list(client.scan_iter(match=f"{KEY_PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
    except (redis.RedisError, OSError) as error:
        redis_failure_log(logger=logger, operation="agent presence reset", error=error)
