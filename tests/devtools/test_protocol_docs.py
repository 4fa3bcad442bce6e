"""docs/widget-protocol.md shows the frames and error codes the sockets' models define."""

import pytest
from django.core.management import CommandError, call_command

from conversations.agent_protocol import AgentErrorCode
from conversations.protocol import CLIENT_FRAME_TYPES, WidgetErrorCode
from devtools.protocol_docs import DOCUMENT, document_render


def test_the_protocol_document_is_what_the_frame_models_say() -> None:
    text = DOCUMENT.read_text(encoding="utf-8")
    # Out of date: run `python manage.py protocol_docs`.
    assert document_render(text) == text


def test_the_document_names_every_frame_and_error_code() -> None:
    text = DOCUMENT.read_text(encoding="utf-8")
    for kind in CLIENT_FRAME_TYPES:
        assert f"| `{kind}` |" in text
    for code in (*WidgetErrorCode, *AgentErrorCode):
        assert f"| `{code.value}` |" in text


def test_the_check_fails_on_a_stale_document(tmp_path, monkeypatch) -> None:
    stale = tmp_path / "widget-protocol.md"
    stale.write_text(
        DOCUMENT.read_text(encoding="utf-8").replace("| `hello` |", "| `helo` |"), encoding="utf-8"
    )
    monkeypatch.setattr("devtools.management.commands.protocol_docs.DOCUMENT", stale)
    with pytest.raises(CommandError, match="out of date"):
        call_command("protocol_docs", "--check")
    call_command("protocol_docs")  # rewrites it
    assert stale.read_text(encoding="utf-8") == DOCUMENT.read_text(encoding="utf-8")


def test_a_document_without_a_table_is_refused() -> None:
    with pytest.raises(ValueError, match="widget-client"):
        document_render("# Protocol\n")
