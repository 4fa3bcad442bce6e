"""The shared async Redis client: one per event loop and URL, short timeouts, closable."""

import asyncio
import logging

import pytest
from redis.asyncio import BlockingConnectionPool

import helpdesk_site.redis
from helpdesk_site.redis import redis_client, redis_close, redis_failure_log

# Creating a client opens no connection, so these tests need no server.
SOME_URL = "redis://127.0.0.1:6379/15"


async def test_no_client_without_redis_url(settings) -> None:
    settings.REDIS_URL = ""

    assert redis_client() is None


async def test_one_client_per_loop_and_url(settings) -> None:
    settings.REDIS_URL = SOME_URL
    try:
        client = redis_client()
        assert client is not None
        assert redis_client() is client

        settings.REDIS_URL = "redis://127.0.0.1:6379/14"
        assert redis_client() is not client
    finally:
        await redis_close()

    settings.REDIS_URL = SOME_URL
    try:
        assert redis_client() is not client  # closed clients are not handed out again
    finally:
        await redis_close()


async def test_another_loop_gets_its_own_client(settings) -> None:
    settings.REDIS_URL = SOME_URL

    async def other_loops_client() -> int:
        try:
            return id(redis_client())
        finally:
            await redis_close()

    try:
        here = redis_client()
        there = await asyncio.to_thread(asyncio.run, other_loops_client())
        assert there != id(here)
    finally:
        await redis_close()


async def test_the_pool_is_bounded_with_short_timeouts(settings) -> None:
    settings.REDIS_URL = SOME_URL
    try:
        client = redis_client()
        assert client is not None
        pool = client.connection_pool
        assert isinstance(pool, BlockingConnectionPool)
        assert pool.max_connections == 50
        assert pool.timeout == 1.0
        assert pool.connection_kwargs["socket_connect_timeout"] == 1.0
        assert pool.connection_kwargs["socket_timeout"] == 1.0
        assert pool.connection_kwargs["decode_responses"] is False
        assert pool.connection_kwargs["retry"].get_retries() == 1
    finally:
        await redis_close()


def test_clients_of_closed_loops_are_forgotten(settings) -> None:
    settings.REDIS_URL = SOME_URL

    async def leave_a_client_behind() -> None:
        assert redis_client() is not None  # and never closed

    loop = asyncio.new_event_loop()
    loop.run_until_complete(leave_a_client_behind())
    loop.close()

    async def new_loop_arrives() -> None:
        try:
            redis_client()
            assert loop not in helpdesk_site.redis._clients
        finally:
            await redis_close()

    asyncio.run(new_loop_arrives())


async def test_the_client_talks_to_redis_and_closes(redis_url: str) -> None:
    client = redis_client()
    assert client is not None
    assert await client.ping() is True
    pool = client.connection_pool

    await redis_close()

    assert not pool._in_use_connections
    assert all(not connection.is_connected for connection in pool._available_connections)


def test_failures_are_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(helpdesk_site.redis, "_failures_last_logged", {})
    monkeypatch.setattr(helpdesk_site.redis, "_failures_unlogged", {})
    logger = logging.getLogger("tests.redis")
    error = ConnectionError("Error 111 connecting to 127.0.0.1:1.")

    with caplog.at_level(logging.WARNING, logger="tests.redis"):
        for _ in range(3):
            redis_failure_log(logger=logger, operation="test operation", error=error)
        assert len(caplog.records) == 1
        # Once the interval has passed, the next failure is logged with the count it hid.
        helpdesk_site.redis._failures_last_logged["test operation"] -= 31
        redis_failure_log(logger=logger, operation="test operation", error=error)

    assert len(caplog.records) == 2
    assert "2 similar failures unlogged" in caplog.records[1].getMessage()
