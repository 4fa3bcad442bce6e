"""Every process hears at once that a tenant's knowledge changed.

After a change commits, ``knowledge_change_announce`` tells this process's listeners (the search
index registries) directly and, with ``REDIS_URL`` set, publishes the tenant id on a Redis
channel; a subscriber thread in every other process hands it to its own listeners. A message
is only a hint that the tenant's version should be checked now: the version itself is always
read from the cache or the database, so a stray or forged message costs a check, never a wrong
index. The periodic check (``KNOWLEDGE_INDEX_CHECK_SECONDS``) remains the safety net for a lost
message; after its subscription broke, a process re-checks every tenant.
"""

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings

from helpdesk_site.redis import redis_blocking_client
from tenants.scoping import tenant_or_all_tenants

logger = logging.getLogger(__name__)

# (tenant id) or (None: anything may have changed, check every tenant)
Listener = Callable[[int | None], None]

CHANNEL = "kefu:knowledge:changed"
PUBLISH_TIMEOUT_SECONDS = 1.0
SUBSCRIBER_RETRY_MAX_SECONDS = 30.0
SUBSCRIBER_POLL_SECONDS = 5.0

_listeners: "list[weakref.WeakMethod[Listener]]" = []
_listeners_lock = threading.Lock()
_subscriber: threading.Thread | None = None


def channel_name(url: str) -> str:
    """The channel for ``url``'s database: deployments sharing one Redis server under
    different database numbers do not hear each other (Redis channels ignore the number)."""
    database = redis.connection.parse_url(url).get("db", 0)
    return f"{CHANNEL}:{database}"


def knowledge_change_listen(listener: Listener) -> None:
    """Calls ``listener`` (a bound method, held weakly) whenever a tenant's knowledge changes."""
    with _listeners_lock:
        _listeners.append(weakref.WeakMethod(listener))


def knowledge_change_announce(*, tenant_id: int) -> None:
    """Tells every process that ``tenant_id``'s knowledge changed. Call after commit."""
    _dispatch(tenant_id)
    publisher = redis_blocking_client()
    if publisher is None:
        return
    try:
        publisher.publish(channel_name(settings.REDIS_URL), str(tenant_id))
    except redis.RedisError:
        # The other processes notice at their next periodic check.
        logger.warning("knowledge change not published tenant=%s", tenant_id, exc_info=True)


def knowledge_change_subscribe() -> None:
    """Starts this process's subscriber thread once, when Redis is configured."""
    global _subscriber
    url: str = settings.REDIS_URL
    if not url or _subscriber is not None:
        return
    with _listeners_lock:
        if _subscriber is not None:
            return
        _subscriber = threading.Thread(
            target=_subscribe_forever, args=(url,), name="kb-changes", daemon=True
        )
        _subscriber.start()


def _dispatch(tenant_id: int | None) -> None:
    with _listeners_lock:
        alive = [listener for ref in _listeners if (listener := ref()) is not None]
        _listeners[:] = [weakref.WeakMethod(listener) for listener in alive]
    with tenant_or_all_tenants(tenant_id, "a change missed while unsubscribed may be anyone's"):
        for listener in alive:
            listener(tenant_id)


def _subscribe_forever(url: str) -> None:
    delay = 1.0
    while True:
        started = time.monotonic()
        try:
            _subscribe(url)
        except (redis.RedisError, OSError):
            if time.monotonic() - started > SUBSCRIBER_RETRY_MAX_SECONDS:
                delay = 1.0  # it had been working: a fresh outage starts the backoff afresh
            logger.warning("knowledge change subscription lost; retrying in %.0f s", delay)
        time.sleep(delay)
        delay = min(delay * 2, SUBSCRIBER_RETRY_MAX_SECONDS)


def _subscribe(url: str) -> None:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS, health_check_interval=30
    )
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel_name(url))
        # Changes published while this process was not subscribed were missed.
        _dispatch(None)
        while True:
            message: Any = pubsub.get_message(timeout=SUBSCRIBER_POLL_SECONDS)
            if message is None:
                continue
            try:
                tenant_id = int(message["data"])
            except (TypeError, ValueError):
                continue
            _dispatch(tenant_id)
    finally:
        pubsub.close()
        client.close()
