from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from tenants.models import Role
from tenants.scoping import all_tenants
from tests.support.factories import MembershipFactory, TenantFactory, UserFactory

pytest_plugins = [
    "tests.support.isolation",
    "tests.support.services",
    "tests.support.mockllm",
    "tests.support.live_asgi",
    "tests.support.browser",
]


@pytest.fixture(scope="session", autouse=True)
def _database_sessions_ended(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The code under test keeps database connections in threads of its own (the group-commit
    writer, the worker pool of ``database_sync_to_async``), and PostgreSQL refuses to drop a
    test database that a session still uses: those sessions are ended before it is dropped."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(autouse=True)
def _tenant_scope_disabled() -> Iterator[None]:
    """Test bodies make and inspect rows of several tenants through factories and the ORM, so
    they run with tenant scoping disabled. The code under test still runs scoped: every entry
    point (a request through the test client, a socket, a task, a command) starts from an
    enforced scope with no tenant, whatever the caller's scope, so a product path that misses
    its scope fails the suite with ``ScopeError``."""
    with all_tenants("test bodies arrange and inspect rows of several tenants"):
        yield


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
