"""API keys remembered by the process: no database read per request, revocation still at once
here and within a second in every other process (tenants/api_key_cache.py)."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from tenants import api_key_cache as cache_module
from tenants import services
from tenants.api_key_cache import VERSION_CHECK_SECONDS, VERSION_KEY, ApiKeyCache, api_key_cache
from tenants.models import ApiKey
from tests.support.api import key_client


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """This process's cache on a clock of the test's own."""
    fake = Clock()
    monkeypatch.setattr(api_key_cache, "_clock", fake)
    api_key_cache.reset()
    yield fake
    api_key_cache.reset()


def _another_process_bumps() -> None:
    """What ``api_keys_version_bump`` does in another process: the shared version only."""
    cache.add(VERSION_KEY, 0, timeout=None)
    cache.incr(VERSION_KEY)


def _key_queries(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if ApiKey._meta.db_table in q["sql"]]


def _updates(queries: CaptureQueriesContext) -> list[str]:
    return [sql for sql in _key_queries(queries) if sql.startswith("UPDATE")]


def test_a_live_key_is_read_from_the_database_once(tenant_a, clock) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="Shop", scopes=["admin"])
    client = key_client(issued.raw_key)
    client.get("/api/v1/tenant")

    with CaptureQueriesContext(connection) as queries:
        again = client.get("/api/v1/tenant")

    assert again.status_code == 200
    assert again.json()["name"] == "Tenant A"
    assert _key_queries(queries) == []


def test_a_key_revoked_in_this_process_is_refused_at_once(tenant_a, clock) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="Shop", scopes=["admin"])
    client = key_client(issued.raw_key)
    assert client.get("/api/v1/tenant").status_code == 200

    services.api_key_revoke(api_key=ApiKey.objects.get(pk=issued.api_key.pk))

    assert client.get("/api/v1/tenant").status_code == 401


def test_a_key_of_a_tenant_deactivated_in_this_process_is_refused_at_once(tenant_a, clock) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="Shop", scopes=["admin"])
    client = key_client(issued.raw_key)
    assert client.get("/api/v1/tenant").status_code == 200

    tenant_a.is_active = False
    tenant_a.save(update_fields=["is_active"])

    assert client.get("/api/v1/tenant").status_code == 401


def test_a_key_revoked_by_another_process_is_refused_within_a_second(tenant_a, clock) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="Shop", scopes=["admin"])
    client = key_client(issued.raw_key)
    assert client.get("/api/v1/tenant").status_code == 200

    # Another process revokes: the row changes without this process's signals, and the
    # shared version moves on after its commit.
    ApiKey.objects.filter(pk=issued.api_key.pk).update(revoked_at=timezone.now())
    _another_process_bumps()
    clock.now += VERSION_CHECK_SECONDS

    assert client.get("/api/v1/tenant").status_code == 401


def test_a_change_announced_after_commit_reaches_another_processes_cache(
    tenant_a, django_capture_on_commit_callbacks: Any
) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="Shop", scopes=["admin"])
    digest = services.api_key_digest(issued.raw_key)
    other_clock = Clock()
    other = ApiKeyCache(clock=other_clock)  # another process's cache, sharing the version
    other.put(digest, issued.api_key, other.version())
    assert other.get(digest) is not None

    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(api_key=issued.api_key)
    other_clock.now += VERSION_CHECK_SECONDS

    assert other.get(digest) is None


def test_a_read_made_before_a_change_is_never_used(tenant_a) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="Shop", scopes=["admin"])
    keys = ApiKeyCache(clock=Clock())
    version = keys.version()

    keys.forget()  # the key changed while it was being read
    keys.put("digest", issued.api_key, version)

    assert keys.get("digest") is None


def test_an_unreadable_version_trusts_nothing_remembered(
    tenant_a, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="Shop", scopes=["admin"])
    clock = Clock()
    keys = ApiKeyCache(clock=clock)
    keys.put("digest", issued.api_key, keys.version())
    clock.now += VERSION_CHECK_SECONDS

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError("Redis is down")

    monkeypatch.setattr(cache_module.cache, "get", unreachable)

    assert keys.version() is None
    assert keys.get("digest") is None


def test_the_cache_holds_digests_and_copies_never_the_raw_key(tenant_a, clock) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="Shop", scopes=["admin"])
    first = services.api_key_authenticate(raw_key=issued.raw_key)
    assert first is not None
    first.tenant.name = "Changed by a request"

    second = services.api_key_authenticate(raw_key=issued.raw_key)

    assert second is not None and second is not first
    assert second.tenant.name == "Tenant A"
    assert list(api_key_cache._entries) == [services.api_key_digest(issued.raw_key)]


def test_last_use_is_still_recorded_at_most_once_a_minute(
    tenant_a, clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="Shop", scopes=["admin"])
    start = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: start)
    with CaptureQueriesContext(connection) as first_minute:
        for _ in range(3):
            services.api_key_authenticate(raw_key=issued.raw_key)
    recorded = ApiKey.objects.get(pk=issued.api_key.pk).last_used_at

    later = start + services.API_KEY_TOUCH_INTERVAL + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    with CaptureQueriesContext(connection) as next_minute:
        services.api_key_authenticate(raw_key=issued.raw_key)
        services.api_key_authenticate(raw_key=issued.raw_key)

    assert len(_updates(first_minute)) == 1
    assert recorded == start
    assert len(_updates(next_minute)) == 1
    assert ApiKey.objects.get(pk=issued.api_key.pk).last_used_at == later
