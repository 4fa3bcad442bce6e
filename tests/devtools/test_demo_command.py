"""`manage.py demo`: a ready tenant, safe to run twice, and a server that answers."""

import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.request import urlopen

import pytest
from django.core.management import call_command
from django.test import Client

from analytics.rollups import local_today
from analytics.seed import SEED_PREFIX
from analytics.selectors import ai_metrics, people_metrics, satisfaction_metrics, volume_metrics
from conversations.models import Conversation, Customer
from devtools.demo import DEMO_HISTORY_CONVERSATIONS
from knowledge.models import KnowledgeEntry, SensitiveWordList
from tenants.models import Membership, Role, Tenant

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_setup_only_prepares_the_demo_and_is_idempotent(capsys) -> None:
    call_command("demo", "--setup-only", "--addr", "127.0.0.1:8055")
    first = capsys.readouterr().out
    call_command("demo", "--setup-only", "--addr", "127.0.0.1:8055")

    tenant = Tenant.objects.get(slug="acme")
    assert tenant.name == "Acme Shop"
    entries = KnowledgeEntry.objects.filter(tenant=tenant)
    assert entries.count() >= 40
    assert entries.count() == len(set(entries.values_list("question", flat=True)))
    tags = {tag for tag_list in entries.values_list("tags", flat=True) for tag in tag_list}
    assert {"shipping", "returns", "payment", "orders", "account", "invoices"} <= tags
    chinese = [
        q
        for q in entries.values_list("question", flat=True)
        if any("\u4e00" <= c <= "\u9fff" for c in q)
    ]
    assert 20 <= len(chinese) <= entries.count() - 20  # both languages well represented
    assert SensitiveWordList.objects.filter(tenant=tenant, action="block").get().word_set()
    assert "http://127.0.0.1:8055" in tenant.allowed_origins

    roles = dict(Membership.objects.filter(tenant=tenant).values_list("user__username", "role"))
    assert roles == {"acme-admin": Role.OWNER, "acme-agent": Role.AGENT}
    assert "http://127.0.0.1:8055/console/" in first
    assert "http://127.0.0.1:8055/demo/" in first
    assert "acme-agent / acme-agent-demo" in first

    # Weeks of generated history, once however often the demo runs, fill every report.
    assert "History:     1500 conversations" in first
    assert Conversation.objects.filter(tenant=tenant).count() == DEMO_HISTORY_CONVERSATIONS
    assert Customer.objects.filter(tenant=tenant, external_id__startswith=SEED_PREFIX).exists()
    until = local_today(tenant)
    since = until - timedelta(days=29)
    volume = volume_metrics(tenant=tenant, since=since, until=until)
    assert volume.conversations > 500
    assert volume.customer_messages > volume.conversations
    ai = ai_metrics(tenant=tenant, since=since, until=until)
    assert ai.handoffs > 0 and ai.resolved_confirmed > 0 and ai.resolved_assumed > 0
    assert set(ai.answers_by_source) >= {"faq", "rag", "llm", "offline", "fallback"}
    people = people_metrics(tenant=tenant, since=since, until=until)
    assert people.first_response.count > 0 and people.tickets_opened > 0
    assert satisfaction_metrics(tenant=tenant, since=since, until=until).ratings > 0

    for login in ("acme-admin", "acme-agent"):
        client = Client()
        signed_in = client.post("/console/login/", {"username": login, "password": f"{login}-demo"})
        assert signed_in.status_code == 302, login
        assert client.get("/console/").status_code == 200


def test_bad_addr_is_a_clear_error() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="HOST:PORT"):
        call_command("demo", "--setup-only", "--addr", "nonsense")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_demo_serves_http_and_websocket(tmp_path: Path) -> None:
    """The real command in a fresh database, as a newcomer runs it."""
    import websockets.sync.client
    from websockets.typing import Origin

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "demo", "--addr", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = ""
        deadline = time.monotonic() + 60
        while "Serving on" not in output and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            output += line
        assert "Serving on" in output, output
        key = next(line.split()[-1] for line in output.splitlines() if "Widget key:" in line)

        for _attempt in range(50):
            try:
                with urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert json.load(response) == {"status": "ok"}
                break
            except OSError:
                time.sleep(0.1)
        with urlopen(f"http://127.0.0.1:{port}/console/login/", timeout=5) as response:
            assert b"csrfmiddlewaretoken" in response.read()

        with websockets.sync.client.connect(
            f"ws://127.0.0.1:{port}/ws/widget/{key}/",
            origin=Origin(f"http://127.0.0.1:{port}"),
            open_timeout=5,
        ) as ws:
            ws.send('{"type": "ping", "id": "x"}')
            assert json.loads(ws.recv(timeout=5)) == {"v": 1, "type": "pong", "id": "x"}
            ws.send('{"type": "hello", "language": "zh-CN"}')
            assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
            demo_faq = json.loads((ROOT / "devtools" / "demo_data.json").read_text())["faq"]
            questions = [
                # FAQ questions as the demo data phrases them: answered from the FAQ.
                (next(e["question"] for e in demo_faq if e["language"] == "zh-hans"), "faq"),
                (next(e["question"] for e in demo_faq if e["language"] == "en"), "faq"),
                # Not in the FAQ: with no LLM configured, the offline responder answers.
                ("你们的仓库在哪个城市，可以自提吗？", "offline"),
                ("Do you sell gift cards for birthdays?", "offline"),
            ]
            for number, (question, source) in enumerate(questions):
                ws.send(json.dumps({"type": "message", "id": f"q{number}", "text": question}))
                frames: list[dict] = []
                while not frames or frames[-1]["type"] not in ("done", "error"):
                    frames.append(json.loads(ws.recv(timeout=10)))
                assert frames[-1]["type"] == "done", frames
                assert frames[-1]["source"] == source, (question, frames)
                assert "".join(f["text"] for f in frames if f["type"] == "delta")
    finally:
        process.terminate()
        process.wait(timeout=10)
