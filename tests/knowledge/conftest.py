import pytest

from knowledge.search import registry


@pytest.fixture
def fresh_registry():
    """This process's search indexes, empty before and after the test."""
    registry.forget()
    yield registry
    registry.forget()
