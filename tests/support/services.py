"""The services a test needs (PostgreSQL, Redis): present, or the test is skipped, or failed
when ``KEFU_REQUIRE_SERVICES=1`` says every service must be there.

Registered for every test by ``pytest_plugins`` in ``tests/conftest.py``.
"""

import os

import pytest
from django.conf import settings

REQUIRE_SERVICES = os.environ.get("KEFU_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skips a test whose service is missing, or fails it when CI requires every service."""
    if REQUIRE_SERVICES:
        pytest.fail(f"KEFU_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def redis_url() -> str:
    if not settings.REDIS_URL:
        skip_or_fail("REDIS_URL is not set: Redis-backed behaviour is not under test")
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis at REDIS_URL is unreachable: {exc}")
    return settings.REDIS_URL


@pytest.fixture
def postgres(db: None) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        skip_or_fail("DATABASE_URL is not PostgreSQL: PostgreSQL behaviour is not under test")
