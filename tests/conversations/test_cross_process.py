"""A customer and an agent on two different server processes, sharing the Redis channel layer."""

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.live_asgi import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'shared.sqlite3'}",
        REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="helpdesk_site.settings.base",
        PYTHONUNBUFFERED="1",
    )
    return env


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stdout.read() if process.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback only
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


@pytest.fixture
def two_servers(tmp_path: Path, redis_url: str) -> Iterator[tuple[str, str, str]]:
    env = _env(tmp_path, redis_url)
    setup = subprocess.run(
        [sys.executable, "manage.py", "demo", "--setup-only", "--no-history"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert setup.returncode == 0, setup.stderr
    key = re.search(r"Widget key:\s+(\S+)", setup.stdout).group(1)
    processes, urls = [], []
    try:
        for _ in range(2):
            port = free_port()
            process = subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "helpdesk_site.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--lifespan",
                    "off",
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            processes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
            _wait_for(f"{urls[-1]}/healthz", process)
        yield urls[0], urls[1], key
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def _login(base: str, username: str, password: str) -> str:
    """Signs in through the console's login form; returns the Cookie header to use."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/console/login/", timeout=5).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode(
        {
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": token,
            "next": "/console/",
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback only
        f"{base}/console/login/", data=data, headers={"Referer": f"{base}/console/login/"}
    )
    opener.open(request, timeout=5)
    cookies = {cookie.name: cookie.value for cookie in jar}
    assert "sessionid" in cookies, "login failed"
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def _until(ws: Any, kind: str) -> dict:
    while True:
        frame = json.loads(ws.recv(timeout=10))
        if frame["type"] == kind:
            return frame


def test_customer_and_agent_on_different_processes_talk_both_ways(two_servers) -> None:
    import websockets.sync.client as ws_client
    from websockets.typing import Origin

    customer_url, agent_url, key = two_servers
    cookie = _login(agent_url, "acme-agent", "acme-agent-demo")
    agent_ws = agent_url.replace("http", "ws") + "/ws/agent/"
    widget_ws = customer_url.replace("http", "ws") + f"/ws/widget/{key}/"
    with (
        ws_client.connect(agent_ws, additional_headers={"Cookie": cookie}, open_timeout=5) as agent,
        ws_client.connect(widget_ws, origin=Origin(customer_url), open_timeout=5) as customer,
    ):
        assert _until(agent, "lists")["queue"] == []
        customer.send(json.dumps({"type": "hello", "language": "en"}))
        assert _until(customer, "welcome")["conversation_id"] is None  # nothing said yet
        customer.send(json.dumps({"type": "handoff"}))  # starts the conversation
        queued = _until(customer, "status")
        assert queued["status"] == "queued" and queued["agents_available"] is True

        lists = _until(agent, "lists")  # pushed from the customer's process through Redis
        assert len(lists["queue"]) == 1
        conversation_id = lists["queue"][0]["id"]
        agent.send(json.dumps({"type": "accept", "conversation_id": conversation_id}))
        assert _until(customer, "status")["status"] == "human"

        agent.send(
            json.dumps(
                {
                    "type": "reply",
                    "conversation_id": conversation_id,
                    "text": "Hello from process B",
                }
            )
        )
        assert _until(customer, "agent_message")["text"] == "Hello from process B"

        customer.send(json.dumps({"type": "message", "id": "c1", "text": "Hello from process A"}))
        forwarded = _until(agent, "customer_message")
        assert (forwarded["conversation_id"], forwarded["text"]) == (
            conversation_id,
            "Hello from process A",
        )
