"""Fixtures that serve the mock OpenAI-compatible LLM (``devtools.mockllm``) over real HTTP.

Registered for every test by ``pytest_plugins`` in ``tests/conftest.py``: a test asks for
``mock_llm`` and points the code under test at ``mock_llm.base_url``.
"""

from collections.abc import Iterator

import pytest

from devtools.mockllm import MockLLMServer


@pytest.fixture(scope="module")
def mock_llm_server() -> Iterator[MockLLMServer]:
    """One mock server on a free 127.0.0.1 port per test module, always stopped afterwards.

    Starting a server per test would cost a fraction of a second each; tests share this one
    through :func:`mock_llm`, which resets it.
    """
    with MockLLMServer() as server:
        yield server


@pytest.fixture
def mock_llm(mock_llm_server: MockLLMServer) -> MockLLMServer:
    """The module's mock server with the start-up config (echo answers, no delays, no fault) and
    no recorded requests, whatever the previous test did to it."""
    mock_llm_server.reset()
    return mock_llm_server
