"""The suite's own fixtures: what one test leaves behind must not break the next."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A live server whose consumer still waits in ``receive`` on its own event loop (a browser test
# that failed while an answer was on its way, on a busy machine), then an ordinary test.
LEFT_BEHIND = """
import asyncio
import threading
import time

from channels.layers import get_channel_layer

from tests.support.channel_layer import assert_redis_channel_layer_delivers_to_groups


def test_a_server_thread_is_left_waiting_on_the_layer(redis_url):
    layer = get_channel_layer()
    loop = asyncio.new_event_loop()

    async def consumer():
        await layer.receive(await layer.new_channel())

    threading.Thread(target=loop.run_until_complete, args=(consumer(),), daemon=True).start()
    deadline = time.monotonic() + 30
    while layer.receive_count == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)


# The test that failed next in CI, run second.
def test_redis_channel_layer_delivers_to_groups(redis_url):
    assert_redis_channel_layer_delivers_to_groups()
"""


def test_a_receive_left_pending_by_one_test_does_not_break_the_next(
    redis_url: str, tmp_path: Path
) -> None:
    test_file = tmp_path / "test_left_behind.py"
    test_file.write_text(LEFT_BEHIND)
    # The suite's own plugins: the resets between tests, and the services.
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["tests.support.isolation", "tests.support.services"]\n'
    )

    result = subprocess.run(  # noqa: S603 - our own interpreter and test file
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
            "-q",
            str(test_file),
        ],
        cwd=ROOT,
        env={**os.environ, "KEFU_REQUIRE_SERVICES": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 passed" in result.stdout, result.stdout[-3000:]
