import pytest

from knowledge.search import registry
from tenants.models import Tenant


@pytest.fixture
def fresh_registry():
    """This process's search indexes, empty before and after the test."""
    registry.forget()
    yield registry
    registry.forget()


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Runs on-commit callbacks (the queued Celery task, eager in tests) as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def english_tenant(tenant_a) -> Tenant:
    # Errors are written in the tenant's language; these tests read the English ones.
    tenant_a.default_language = "en"
    tenant_a.save(update_fields=["default_language"])
    return tenant_a
