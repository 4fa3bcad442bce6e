"""Typing indicators: one per window per conversation and direction, across processes."""

import asyncio
import socket
import time

import pytest

from conversations.throttle import typing_throttle_local_reset, typing_throttle_pass


async def _pass(conversation_id: int = 7, sender: str = "customer") -> bool:
    return await typing_throttle_pass(tenant_id=1, conversation_id=conversation_id, sender=sender)


async def _passes_again_within(seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if await _pass():
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError("the window never closed")


async def test_one_frame_per_window_per_conversation_and_direction(settings) -> None:
    settings.REDIS_URL = ""
    settings.TYPING_THROTTLE_SECONDS = 0.3
    assert [await _pass() for _ in range(50)] == [True] + [False] * 49
    assert await _pass(conversation_id=8)  # another conversation
    assert await _pass(sender="agent")  # the other direction
    assert await _passes_again_within(2) >= 0.2


async def test_the_window_holds_across_processes(redis_url, settings) -> None:
    settings.TYPING_THROTTLE_SECONDS = 0.5
    conversation_id = time.monotonic_ns()  # a fresh key in the shared Redis
    assert await _pass(conversation_id=conversation_id)
    typing_throttle_local_reset()  # another process: nothing known locally
    assert not await _pass(conversation_id=conversation_id)


async def test_without_a_reachable_redis_each_process_still_throttles(settings) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/2"
    settings.TYPING_THROTTLE_SECONDS = 5
    assert [await _pass() for _ in range(20)] == [True] + [False] * 19


async def test_zero_passes_everything(settings) -> None:
    settings.TYPING_THROTTLE_SECONDS = 0
    assert all([await _pass() for _ in range(5)])


@pytest.fixture(autouse=True)
def _fresh() -> None:
    typing_throttle_local_reset()
