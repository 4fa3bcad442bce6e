"""Agent presence: in Redis (a sorted set per tenant and status, scored by last-seen time), or in
the process without Redis; stale entries count as offline and are trimmed."""

import logging
import time
from collections.abc import Iterator

import pytest
import redis
from django.test import override_settings

from conversations import selectors
from conversations.presence import (
    PRESENCE_FRESH_SECONDS,
    PresenceStatus,
    presence_local_reset,
    presence_online,
    presence_set,
    presence_statuses,
)
from tenants.models import Role
from tests.support import factories

ONLINE, AWAY = PresenceStatus.ONLINE, PresenceStatus.AWAY
STALE = PRESENCE_FRESH_SECONDS + 1


@pytest.fixture(params=["in-process", "redis"])
def store(request) -> Iterator[str]:
    """Runs a test on each store; yields the Redis URL ("" for the in-process store)."""
    url = "" if request.param == "in-process" else request.getfixturevalue("redis_url")
    with override_settings(REDIS_URL=url):
        yield url


def test_an_agent_seen_recently_is_online_until_away(store) -> None:
    presence_set(tenant_id=1, user_id=10, status=ONLINE)
    presence_set(tenant_id=1, user_id=11, status=ONLINE)
    presence_set(tenant_id=1, user_id=11, status=AWAY)

    assert presence_online(tenant_id=1) == {10}
    assert presence_statuses(tenant_id=1) == {10: "online", 11: "away"}


def test_tenants_do_not_see_each_others_agents(store) -> None:
    presence_set(tenant_id=1, user_id=10, status=ONLINE)
    presence_set(tenant_id=2, user_id=20, status=AWAY)

    assert presence_statuses(tenant_id=1) == {10: "online"}
    assert presence_statuses(tenant_id=2) == {20: "away"}
    assert presence_statuses(tenant_id=3) == {}


def test_an_agent_not_seen_within_the_window_is_offline(store) -> None:
    presence_set(tenant_id=1, user_id=10, status=ONLINE, seen_at=time.time() - STALE)
    presence_set(tenant_id=1, user_id=11, status=AWAY, seen_at=time.time() - STALE)
    presence_set(tenant_id=1, user_id=12, status=ONLINE, seen_at=time.time() - 60)

    assert presence_statuses(tenant_id=1) == {12: "online"}


def test_stale_entries_are_trimmed_from_redis(redis_url) -> None:
    with override_settings(REDIS_URL=redis_url):
        presence_set(tenant_id=1, user_id=10, status=ONLINE, seen_at=time.time() - STALE)
        presence_set(tenant_id=1, user_id=11, status=ONLINE)
        before = time.time()
        presence_set(tenant_id=1, user_id=12, status=AWAY)

        assert presence_online(tenant_id=1) == {11}

    client = redis.Redis.from_url(redis_url)
    assert client.zrange("kefu:presence:1:online", 0, -1) == [b"11"]
    assert client.zrange("kefu:presence:1:away", 0, -1) == [b"12"]
    seen = client.zscore("kefu:presence:1:away", "12")
    assert seen is not None and before <= seen <= time.time()
    assert 0 < client.ttl("kefu:presence:1:online") <= 24 * 3600


def test_redis_presence_is_shared_by_every_process(redis_url) -> None:
    with override_settings(REDIS_URL=redis_url):
        presence_set(tenant_id=1, user_id=10, status=ONLINE)
        presence_local_reset()  # as another process sees it

        assert presence_online(tenant_id=1) == {10}


def test_while_redis_is_unreachable_presence_is_what_this_process_saw(caplog) -> None:
    # Nothing listens on port 1: every Redis call fails at once.
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"), caplog.at_level(logging.WARNING):
        presence_set(tenant_id=1, user_id=10, status=ONLINE)
        presence_set(tenant_id=1, user_id=11, status=AWAY)
        for _ in range(3):
            assert presence_statuses(tenant_id=1) == {10: "online", 11: "away"}

    warnings = [r for r in caplog.records if r.name == "conversations.presence"]
    # Logged at most once per kind of call while the outage lasts, never per heartbeat.
    assert len(warnings) <= 2
    assert all("Redis unavailable" in r.getMessage() for r in warnings)


@pytest.mark.django_db
def test_the_agent_directory_and_the_handoff_read_presence(store) -> None:
    tenant = factories.TenantFactory()
    users = {
        name: factories.MembershipFactory(tenant=tenant, role=Role.AGENT, user__username=name).user
        for name in ("li", "wu", "zhao")
    }
    viewer = factories.MembershipFactory(tenant=tenant, role=Role.VIEWER).user
    presence_set(tenant_id=tenant.pk, user_id=users["li"].pk, status=ONLINE)
    presence_set(tenant_id=tenant.pk, user_id=users["wu"].pk, status=AWAY)
    presence_set(tenant_id=tenant.pk, user_id=viewer.pk, status=ONLINE)
    agent = selectors.agent_for_user(user=users["li"], tenant_id=tenant.pk)
    assert agent is not None

    assert [(a["name"], a["presence"]) for a in selectors.agent_directory(agent=agent)] == [
        ("li", "online"),
        ("wu", "away"),
        ("zhao", "offline"),
    ]
    # A viewer's console being open does not make anyone available to take a conversation.
    assert selectors.online_agent_ids(tenant_id=tenant.pk) == [users["li"].pk]
    assert selectors.agents_available(tenant=tenant)
