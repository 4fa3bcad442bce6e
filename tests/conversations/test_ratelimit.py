"""Sliding-window rate limits: the same behaviour in-process and on Redis, local without it.

Tests that take the ``backend`` fixture run twice: on the in-process backend (always) and on
Redis (skipped without ``REDIS_URL`` unless KEFU_REQUIRE_SERVICES=1). Times are injected through
``now``: nothing sleeps.
"""

import asyncio
import logging
import secrets
import uuid
from collections.abc import AsyncIterator

import pytest
from django.core.exceptions import ImproperlyConfigured

from conversations import ratelimit
from conversations.ratelimit import (
    RateDecision,
    RateLimit,
    rate_limit_hit,
    rate_limit_hit_blocking,
    rate_limit_local_reset,
    rate_limit_parse,
    rate_limits_check,
)
from helpdesk_site.redis import redis_client, redis_close

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


class Names:
    """Unique bucket names and tenant ids, so that concurrent runs on one Redis never meet."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self.tenant_id = 10**12 + secrets.randbelow(10**12)

    def bucket(self, name: str = "b") -> str:
        return f"test:{self.token}:{name}"

    def keys(self) -> list[str]:
        return (
            [f"kefu:rl:{self.bucket(name)}" for name in ("b", "a", "other", "process")]
            + [f"kefu:rl:visitor:{self.tenant_id}:{visitor}" for visitor in ("v1", "v2", "v3")]
            + [f"kefu:rl:tenant:{self.tenant_id}"]
        )


@pytest.fixture(params=["local", "redis"])
async def backend(request: pytest.FixtureRequest, settings) -> AsyncIterator[str]:
    if request.param == "redis":
        request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
    rate_limit_local_reset()
    yield request.param
    rate_limit_local_reset()


@pytest.fixture
async def names() -> AsyncIterator[Names]:
    names = Names()
    yield names
    client = redis_client()
    if client is not None:
        await client.delete(*names.keys())
    await redis_close()


def allowed(remaining: int) -> RateDecision:
    return RateDecision(allowed=True, remaining=remaining, retry_after_seconds=0.0)


def refused(retry_after: float) -> RateDecision:
    return RateDecision(allowed=False, remaining=0, retry_after_seconds=retry_after)


async def test_allows_up_to_the_limit_then_refuses(backend: str, names: Names) -> None:
    rule = RateLimit(limit=3, window_seconds=10)
    bucket = names.bucket()

    decisions = [await rate_limit_hit(bucket=bucket, rule=rule, now=100.0 + i) for i in range(4)]

    assert decisions == [allowed(2), allowed(1), allowed(0), refused(7.0)]


async def test_window_slides_event_by_event(backend: str, names: Names) -> None:
    rule = RateLimit(limit=2, window_seconds=10)
    bucket = names.bucket()
    await rate_limit_hit(bucket=bucket, rule=rule, now=100.0)
    await rate_limit_hit(bucket=bucket, rule=rule, now=104.0)

    # The event at 100 still counts an instant before 110...
    assert await rate_limit_hit(bucket=bucket, rule=rule, now=109.999) == refused(
        pytest.approx(0.001)
    )
    # ...and no longer at 110: one slot is free, the event at 104 still holds the other.
    assert await rate_limit_hit(bucket=bucket, rule=rule, now=110.0) == allowed(0)
    assert await rate_limit_hit(bucket=bucket, rule=rule, now=113.0) == refused(1.0)
    assert await rate_limit_hit(bucket=bucket, rule=rule, now=114.0) == allowed(0)


async def test_refused_hits_are_not_counted(backend: str, names: Names) -> None:
    rule = RateLimit(limit=2, window_seconds=10)
    bucket = names.bucket()
    await rate_limit_hit(bucket=bucket, rule=rule, now=100.0)
    await rate_limit_hit(bucket=bucket, rule=rule, now=101.0)

    # A client hammering while blocked...
    hammering = [
        await rate_limit_hit(bucket=bucket, rule=rule, now=102.0 + i / 10) for i in range(50)
    ]

    assert not any(decision.allowed for decision in hammering)
    # ...is let through when its first counted event leaves, not 10 s after its last attempt.
    assert await rate_limit_hit(bucket=bucket, rule=rule, now=110.0) == allowed(0)
    assert await rate_limit_hit(bucket=bucket, rule=rule, now=111.0) == allowed(0)


async def test_buckets_are_independent(backend: str, names: Names) -> None:
    rule = RateLimit(limit=1, window_seconds=10)

    assert await rate_limit_hit(bucket=names.bucket("a"), rule=rule, now=100.0) == allowed(0)
    assert await rate_limit_hit(bucket=names.bucket("other"), rule=rule, now=100.0) == allowed(0)
    assert not (await rate_limit_hit(bucket=names.bucket("a"), rule=rule, now=101.0)).allowed


async def test_a_lowered_limit_waits_for_enough_events_to_leave(backend: str, names: Names) -> None:
    bucket = names.bucket()
    loose = RateLimit(limit=5, window_seconds=10)
    for i in range(5):
        await rate_limit_hit(bucket=bucket, rule=loose, now=100.0 + i)

    # Five events in the window and a limit of two: the hit fits once four have left, that is
    # when the one at 103 does (at 113).
    strict = RateLimit(limit=2, window_seconds=10)
    assert await rate_limit_hit(bucket=bucket, rule=strict, now=105.0) == refused(8.0)
    assert await rate_limit_hit(bucket=bucket, rule=strict, now=112.0) == refused(1.0)
    assert await rate_limit_hit(bucket=bucket, rule=strict, now=113.0) == allowed(0)


async def test_visitor_and_tenant_rules_combine(backend: str, names: Names, settings) -> None:
    settings.RATE_LIMIT_VISITOR = "2/100"
    settings.RATE_LIMIT_TENANT = "3/60"
    tenant_id = names.tenant_id

    async def check(visitor_id: str, now: float) -> RateDecision:
        return await rate_limits_check(tenant_id=tenant_id, visitor_id=visitor_id, now=now)

    assert await check("v1", 100.0) == allowed(1)
    assert await check("v1", 101.0) == allowed(0)
    # The visitor's own limit refuses, and the tenant's budget is not spent on it: v2 still
    # gets the tenant's last slot.
    assert await check("v1", 102.0) == refused(98.0)
    assert await check("v2", 103.0) == allowed(0)
    # The tenant is full: a fresh visitor waits until the tenant's first event leaves (160)...
    assert await check("v3", 104.0) == refused(56.0)
    # ...and a visitor refused by both rules waits for the later of the two.
    assert await check("v1", 105.0) == refused(95.0)
    # Refused by the tenant, v3 spent none of its own budget: it gets its two hits (had the one
    # at 104 counted, the second would be refused until 204).
    assert (await check("v3", 160.0)).allowed
    assert (await check("v3", 161.0)).allowed


async def test_default_rules_are_twenty_per_minute_per_visitor(backend: str, names: Names) -> None:
    decisions = [
        await rate_limits_check(tenant_id=names.tenant_id, visitor_id="v1", now=100.0 + i)
        for i in range(21)
    ]

    assert decisions[0] == allowed(19)
    assert decisions[19] == allowed(0)
    assert decisions[20] == refused(40.0)


@pytest.mark.parametrize("value", ["abc", "20", "0/60", "20/0", "x/60", "20/-1", "20/nan", ""])
async def test_a_bad_setting_is_improperly_configured(settings, value: str) -> None:
    settings.REDIS_URL = ""
    settings.RATE_LIMIT_VISITOR = value

    with pytest.raises(ImproperlyConfigured, match="RATE_LIMIT_VISITOR"):
        await rate_limits_check(tenant_id=1, visitor_id="v1")


def test_rule_values_parse() -> None:
    assert rate_limit_parse(value="20/60") == RateLimit(limit=20, window_seconds=60.0)
    assert rate_limit_parse(value=" 5 / 0.5 ") == RateLimit(limit=5, window_seconds=0.5)
    with pytest.raises(ValueError, match="at least one event"):
        RateLimit(limit=0, window_seconds=1)


async def test_redis_holds_one_sorted_set_per_bucket_that_expires(
    redis_url: str, names: Names
) -> None:
    rule = RateLimit(limit=2, window_seconds=30)
    bucket = names.bucket()

    # The server's clock when no time is given.
    for _ in range(3):
        await rate_limit_hit(bucket=bucket, rule=rule)

    client = redis_client()
    assert client is not None
    key = f"kefu:rl:{bucket}"
    assert await client.zcard(key) == 2  # the refused third hit was not recorded
    assert 29_000 < await client.pttl(key) <= 30_000


async def test_two_processes_share_one_count(redis_url: str, names: Names) -> None:
    rule = RateLimit(limit=3, window_seconds=60)
    bucket = names.bucket("process")

    async def other_process() -> list[RateDecision]:
        # Another event loop, so another client and connection pool, as in a second process.
        try:
            return [await rate_limit_hit(bucket=bucket, rule=rule) for _ in range(2)]
        finally:
            await redis_close()

    first = await rate_limit_hit(bucket=bucket, rule=rule)
    others = await asyncio.to_thread(asyncio.run, other_process())
    last = await rate_limit_hit(bucket=bucket, rule=rule)

    assert first == allowed(2)
    assert others == [allowed(1), allowed(0)]
    assert not last.allowed
    client = redis_client()
    assert client is not None
    assert await client.zcard(f"kefu:rl:{bucket}") == 3


async def test_an_unreachable_redis_limits_within_the_process(
    settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.REDIS_URL = CLOSED_PORT_URL
    names = Names()  # not the fixture: there is no Redis to clean up
    rule = RateLimit(limit=1, window_seconds=60)
    bucket = names.bucket()

    with caplog.at_level(logging.WARNING, logger="conversations.ratelimit"):
        decisions = [await rate_limit_hit(bucket=bucket, rule=rule) for _ in range(3)]
        combined = await rate_limits_check(tenant_id=names.tenant_id, visitor_id="v1")

    # Never an error, and never unlimited: the window is counted in this process meanwhile.
    assert [decision.allowed for decision in decisions] == [True, False, False]
    assert combined.allowed
    assert "rate limit check" in caplog.text
    # Bucket names hold visitor ids: they stay out of the log.
    assert names.token not in caplog.text
    assert str(names.tenant_id) not in caplog.text
    await redis_close()


async def test_the_blocking_check_shares_the_count_of_the_async_one(
    backend: str, names: Names
) -> None:
    rule = RateLimit(limit=3, window_seconds=60)
    bucket = names.bucket()

    first = await rate_limit_hit(bucket=bucket, rule=rule)
    blocking = [
        await asyncio.to_thread(rate_limit_hit_blocking, bucket=bucket, rule=rule) for _ in range(3)
    ]

    assert first == allowed(2)
    assert blocking[:2] == [allowed(1), allowed(0)]
    assert not blocking[2].allowed
    assert 59 < blocking[2].retry_after_seconds <= 60


def test_the_blocking_check_limits_within_the_process_without_redis(
    settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.REDIS_URL = CLOSED_PORT_URL
    names = Names()  # not the fixture: there is no Redis to clean up
    rule = RateLimit(limit=1, window_seconds=60)

    with caplog.at_level(logging.WARNING, logger="conversations.ratelimit"):
        decisions = [rate_limit_hit_blocking(bucket=names.bucket(), rule=rule) for _ in range(2)]

    assert [decision.allowed for decision in decisions] == [True, False]
    assert names.token not in caplog.text


def test_the_local_backend_drops_idle_buckets() -> None:
    windows = ratelimit._LocalWindows()
    rule = RateLimit(limit=5, window_seconds=10)
    checks = [ratelimit._Check(bucket=f"visitor:1:{i}", rule=rule) for i in range(100)]
    for i, check in enumerate(checks):
        windows.hit(checks=[check], now=1000.0 + i / 100)

    # Long after every window ended, the next hit sweeps them all away.
    windows.hit(checks=[ratelimit._Check(bucket="visitor:1:late", rule=rule)], now=2000.0)

    assert list(windows._buckets) == ["visitor:1:late"]
