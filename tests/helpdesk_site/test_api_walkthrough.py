"""docs/api.md's Python walkthrough, run as an integrator would run it: against a live server,
with a key of the tenant's, from a new FAQ entry to a resolved conversation."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conversations.models import Conversation, Message
from tenants import services
from tests.support import factories
from tests.support.console import member

WALKTHROUGH = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _python_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", WALKTHROUGH.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "docs/api.md has one Python walkthrough"
    return blocks[0]


@pytest.mark.django_db(transaction=True)
def test_the_python_walkthrough_runs_as_written(live_asgi, tmp_path) -> None:
    tenant = factories.TenantFactory(slug="walkthrough", default_language="en")
    member(tenant, "li", email="li@shop.example")
    factories.KnowledgeEntryFactory(
        tenant=tenant,
        question="How long does delivery take?",
        alternate_questions=["When will my order arrive?"],
        answer="Delivery takes 3 to 5 working days.",
    )
    key = services.api_key_issue(
        tenant=tenant,
        name="Walkthrough",
        scopes=["chat", "conversations:read", "conversations:write", "knowledge:write"],
    ).raw_key
    script = tmp_path / "walkthrough.py"
    script.write_text(_python_block(), encoding="utf-8")

    run = subprocess.run(  # noqa: S603 (the docs' own script, run with this interpreter)
        [sys.executable, str(script)],
        env={**os.environ, "KEFU": live_asgi.url, "KEY": key, "KEFU_AGENT": "li@shop.example"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    assert "Delivery takes 3 to 5 working days.\n[faq, answer" in run.stdout
    assert "handed off: queued" in run.stdout
    assert run.stdout.rstrip().endswith("status: resolved")
    conversation = Conversation.objects.get(tenant_id=tenant.pk)
    assert conversation.channel == "api"
    assert conversation.status == Conversation.Status.RESOLVED
    agent_reply = Message.objects.get(conversation=conversation, role=Message.Role.AGENT)
    assert agent_reply.content == "Your parcel left today."
