"""The sockets' frame models: what a client frame parses to, what a refused one is told, and
what a server frame puts on the wire."""

import json
from typing import Any

import pytest
from pydantic import ValidationError

from conversations.agent_protocol import AGENT_CLIENT_FRAME, AGENT_CLIENT_FRAME_TYPES
from conversations.protocol import (
    CLIENT_FRAME,
    CLIENT_FRAME_TYPES,
    Contact,
    Delta,
    Error,
    HandoffStatus,
    Hello,
    MessageAck,
    Status,
    WidgetErrorCode,
)


def widget_refusal(raw: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as refused:
        CLIENT_FRAME.validate_python(raw)
    code, text = CLIENT_FRAME_TYPES[raw["type"]].refusal(refused.value.errors())
    return str(code), str(text)


def agent_refusal(raw: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as refused:
        AGENT_CLIENT_FRAME.validate_python(raw)
    code, text = AGENT_CLIENT_FRAME_TYPES[raw["type"]].refusal(refused.value.errors())
    return str(code), str(text)


NEEDS_TEXT = ("bad_frame", "A message needs some text.")
NEEDS_ID = ("bad_frame", "A message needs an “id” of at most 64 characters.")
TOO_LONG = ("too_long", "Messages are limited to 2,000 characters.")


@pytest.mark.parametrize(
    ("raw", "refusal"),
    [
        ({"type": "message", "id": "m1"}, NEEDS_TEXT),
        ({"type": "message", "id": "m1", "text": " \n "}, NEEDS_TEXT),
        ({"type": "message", "id": "m1", "text": 5}, NEEDS_TEXT),
        ({"type": "message", "id": "", "text": "hi"}, NEEDS_ID),
        ({"type": "message", "id": "m" * 65, "text": "hi"}, NEEDS_ID),
        ({"type": "message", "id": 1, "text": "hi"}, NEEDS_ID),
        ({"type": "message", "id": "m1", "text": "x" * 2001}, TOO_LONG),
        # The id is checked before the length, as the widget always did.
        ({"type": "message", "id": "", "text": "x" * 2001}, NEEDS_ID),
        (
            {"type": "feedback", "message_id": "5", "value": "up"},
            ("bad_frame", "No such answer to rate."),
        ),
        (
            {"type": "feedback", "message_id": 5, "value": "meh"},
            ("bad_frame", "No such answer to rate."),
        ),
        ({"type": "rating", "value": True}, ("bad_frame", "A rating is a number from 1 to 5.")),
        ({"type": "rating", "value": 6}, ("bad_frame", "A rating is a number from 1 to 5.")),
        (
            {"type": "rating", "value": 4, "comment": 1},
            ("bad_frame", "A rating is a number from 1 to 5."),
        ),
        (
            {"type": "contact", "email": "a@example.com", "phone": 5},
            ("bad_frame", "Contact details must be text."),
        ),
    ],
)
def test_a_refused_widget_frame_is_told_what_the_widget_always_told(
    raw: dict[str, Any], refusal: tuple[str, str]
) -> None:
    assert widget_refusal(raw) == refusal


def test_a_hello_ignores_fields_of_the_wrong_shape() -> None:
    hello = CLIENT_FRAME.validate_python(
        {"type": "hello", "visitor_token": 5, "language": ["en"], "identity": {"external_id": 1}}
    )
    assert isinstance(hello, Hello)
    assert (hello.visitor_token, hello.language, hello.identity) == (None, None, None)
    hello = CLIENT_FRAME.validate_python(
        {"type": "hello", "identity": {"external_id": "u1", "signature": "ab"}, "extra": 1}
    )
    assert isinstance(hello, Hello) and hello.identity is not None
    assert (hello.identity.external_id, hello.identity.signature, hello.identity.name) == (
        "u1",
        "ab",
        None,
    )


def test_empty_contact_details_are_empty_text() -> None:
    contact = CLIENT_FRAME.validate_python(
        {"type": "contact", "name": None, "email": "", "phone": False, "text": 0}
    )
    assert isinstance(contact, Contact)
    assert (contact.name, contact.email, contact.phone, contact.text) == ("", "", "", "")


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ({"type": "presence"}, "A presence frame needs a “status”."),
        ({"type": "presence", "status": "busy"}, "“status” must be one of: online, away."),
        ({"type": "ping", "status": ["online"]}, "“status” must be one of: online, away."),
        (
            {"type": "open", "conversation_id": True},
            "“conversation_id” must be a positive whole number.",
        ),
        (
            {"type": "open", "conversation_id": 2**63},
            "“conversation_id” must be a positive whole number.",
        ),
        (
            {"type": "transfer", "conversation_id": 1, "agent_id": None},
            "“agent_id” must be a positive whole number.",
        ),
        (
            {"type": "reply", "conversation_id": 0, "text": ["hi"]},
            "A reply is text of 1 to 4,000 characters.",
        ),
        (
            {"type": "reply", "conversation_id": 1, "text": "hi", "internal": "no"},
            "“internal” must be true or false.",
        ),
        (
            {"type": "reply", "conversation_id": 1, "text": "x" * 4001},
            "A reply is text of 1 to 4,000 characters.",
        ),
    ],
)
def test_a_refused_agent_frame_says_which_field_is_wrong(raw: dict[str, Any], text: str) -> None:
    assert agent_refusal(raw) == ("bad_frame", text)


def test_server_frames_leave_out_only_the_fields_that_are_sent_when_set() -> None:
    wire = [
        json.loads(frame.model_dump_json())
        for frame in (
            MessageAck(id="m1", message_id=3, conversation_id=4),
            MessageAck(id="m1", message_id=3, conversation_id=4, duplicate=True),
            HandoffStatus(
                status="queued",
                position=None,
                agents_available=False,
                collect_contact=True,
                text="…",
            ),
            Status(status="bot"),
            Error(code=WidgetErrorCode.BLOCKED, text="No.", reply_to="m1"),
        )
    ]
    assert wire == [
        {"v": 1, "type": "ack", "id": "m1", "message_id": 3, "conversation_id": 4},
        {
            "v": 1,
            "type": "ack",
            "id": "m1",
            "message_id": 3,
            "conversation_id": 4,
            "duplicate": True,
        },
        {
            "v": 1,
            "type": "status",
            "status": "queued",
            "position": None,
            "agents_available": False,
            "collect_contact": True,
            "text": "…",
        },
        {"v": 1, "type": "status", "status": "bot"},
        {"v": 1, "type": "error", "code": "blocked", "text": "No.", "reply_to": "m1"},
    ]


def test_a_server_frame_of_the_wrong_shape_is_a_server_bug_raised_where_it_is_built() -> None:
    with pytest.raises(ValidationError):
        Delta(reply_to="m1", text=None)
    with pytest.raises(ValidationError):
        Delta(reply_to="m1", text="hi", extra=1)  # type: ignore[call-arg]
