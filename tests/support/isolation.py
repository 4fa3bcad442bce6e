"""What one test leaves in the process (memories, rate-limit windows, channel layers) is
cleared before the next.

Registered for every test by ``pytest_plugins`` in ``tests/conftest.py``.
"""

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _process_state_reset() -> None:
    """Test databases reuse ids: in-process memories and rate-limit windows of one test must
    not leak into the next."""
    from conversations.memory import memory_local_reset
    from conversations.presence import presence_clear_all
    from conversations.ratelimit import rate_limit_local_reset
    from conversations.throttle import typing_throttle_local_reset
    from llm.gateway import gateway_local_reset
    from llm.selectors import llm_providers_forget
    from tenants.api_key_cache import api_key_cache

    gateway_local_reset()
    memory_local_reset()
    rate_limit_local_reset()
    llm_providers_forget()
    typing_throttle_local_reset()
    presence_clear_all()
    api_key_cache.reset()  # test databases reuse ids, and tests may move the cache's clock


@pytest.fixture(autouse=True)
def _channel_layers_reset() -> Iterator[None]:
    """Every test gets its own channel layer instances. Channels caches one per alias for the
    process; a layer whose ``receive`` is still pending on another event loop (a live server's
    consumer) refuses every other loop's ``receive``, and its Redis connections belong to
    loops that are gone."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(scope="session", autouse=True)
def _redis_keys_of_earlier_runs_cleared() -> None:
    """Test databases reuse tenant and row ids from one run to the next, so Kefu's keys that an
    earlier run left in the test Redis database (answer cache, rate-limit windows, memories)
    would answer for this run's rows: they are deleted before the first test."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1)
    try:
        for key in client.scan_iter(match="kefu:*", count=1000):
            client.delete(key)
    except redis.RedisError:
        return  # unreachable: the tests that need Redis say so themselves
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _event_subscribers_settled() -> Iterator[None]:
    """Events published from async code reach their sync subscribers (reporting rows) on a
    thread of their own: they are all delivered before the test's database is cleaned, so that
    none lands in the next test."""
    yield
    from conversations.events import subscribers_settle

    assert subscribers_settle(30.0), "event subscribers still busy 30 s after the test"
