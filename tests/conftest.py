import os
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import Client

from tenants.models import Role
from tenants.scoping import all_tenants
from tests.factories import MembershipFactory, TenantFactory, UserFactory

pytest_plugins = ["tests.mockllm", "tests.live_asgi", "tests.browser"]

REQUIRE_SERVICES = os.environ.get("KEFU_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skips a test whose service is missing, or fails it when CI requires every service."""
    if REQUIRE_SERVICES:
        pytest.fail(f"KEFU_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


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

    gateway_local_reset()
    memory_local_reset()
    rate_limit_local_reset()
    llm_providers_forget()
    typing_throttle_local_reset()
    presence_clear_all()


@pytest.fixture(autouse=True)
def _tenant_scope_disabled() -> Iterator[None]:
    """Test bodies make and inspect rows of several tenants through factories and the ORM, so
    they run with tenant scoping disabled. The code under test still runs scoped: every entry
    point (a request through the test client, a socket, a task, a command) starts from an
    enforced scope with no tenant, whatever the caller's scope, so a product path that misses
    its scope fails the suite with ``ScopeError``."""
    with all_tenants("test bodies arrange and inspect rows of several tenants"):
        yield


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


@pytest.fixture
def tenant_a(db: None):
    return TenantFactory(name="Tenant A", slug="tenant-a")


@pytest.fixture
def tenant_b(db: None):
    return TenantFactory(name="Tenant B", slug="tenant-b")


def _member_client(tenant, role: Role) -> Client:
    user = UserFactory()
    MembershipFactory(user=user, tenant=tenant, role=role)
    client = Client()
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def admin_client_a(tenant_a) -> Client:
    return _member_client(tenant_a, Role.ADMIN)


@pytest.fixture
def owner_client_a(tenant_a) -> Client:
    return _member_client(tenant_a, Role.OWNER)


@pytest.fixture
def agent_client_a(tenant_a) -> Client:
    return _member_client(tenant_a, Role.AGENT)


@pytest.fixture
def viewer_client_a(tenant_a) -> Client:
    return _member_client(tenant_a, Role.VIEWER)


@pytest.fixture
def superuser_client(db: None) -> Client:
    user = UserFactory(is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(user)
    return client
