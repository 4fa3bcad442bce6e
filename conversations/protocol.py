"""The widget socket's wire protocol, version 1: every frame as a model (docs/widget-protocol.md
is rendered from this module; ``python manage.py protocol_docs`` writes its tables).

Client frames are parsed once, at the edge, by ``CLIENT_FRAME`` (see conversations/frames.py);
server frames are built as models and sent by one helper of the socket (or of another reply
sink, conversations/replies.py).
"""

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from django.utils.translation import gettext_lazy as _
from pydantic import AfterValidator, BeforeValidator, Field, JsonValue, TypeAdapter

from conversations.frames import ClientFrame, IgnoredWhenInvalid, Omitted, ServerFrame
from tenants.models import Language

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024
MAX_MESSAGE_CHARS = 2000
MAX_CLIENT_MESSAGE_ID_CHARS = 64


class WidgetErrorCode(StrEnum):
    """The ``code`` of an ``error`` frame on the widget socket."""

    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LONG = "too_long"
    HELLO_FIRST = "hello_first"
    IDENTITY_REJECTED = "identity_rejected"
    BAD_CONTACT = "bad_contact"
    CONTACT_NOT_EXPECTED = "contact_not_expected"
    RATE_LIMITED = "rate_limited"
    BLOCKED = "blocked"
    INTERNAL = "internal"


ERROR_MEANINGS: dict[WidgetErrorCode, str] = {
    WidgetErrorCode.BAD_JSON: "The frame is not JSON.",
    WidgetErrorCode.BAD_FRAME: (
        "The frame is not a JSON object with a known `type`, is too large or nests too deeply, "
        "or a field is missing or has the wrong type."
    ),
    WidgetErrorCode.UNKNOWN_TYPE: "No client frame has this `type`.",
    WidgetErrorCode.TOO_LONG: "A message of more than 2,000 characters.",
    WidgetErrorCode.HELLO_FIRST: "`message`, `feedback`, `handoff` or `contact` before `hello`.",
    WidgetErrorCode.IDENTITY_REJECTED: (
        "The `identity` of a `hello` could not be verified: the visitor stays anonymous."
    ),
    WidgetErrorCode.BAD_CONTACT: "Contact details without a valid e-mail address or phone number.",
    WidgetErrorCode.CONTACT_NOT_EXPECTED: (
        "Contact details while somebody is available to chat (no ticket is opened)."
    ),
    WidgetErrorCode.RATE_LIMITED: (
        "Too many messages or contact details: wait `retry_after` seconds (for a message also "
        "`reply_to`)."
    ),
    WidgetErrorCode.BLOCKED: (
        "The message contains blocked words: it is stored but not answered (with `reply_to`)."
    ),
    WidgetErrorCode.INTERNAL: "Something failed on the server's side; try again.",
}


def _text_or_none(value: Any) -> Any:
    return value if isinstance(value, str) else None


def _empty_when_falsy(value: Any) -> Any:
    return value or ""


# Taken as absent unless it is text, as the widget has always been lenient with these.
LenientText = Annotated[str | None, BeforeValidator(_text_or_none), Field(default=None)]
# An empty or absent value (null, "") is "".
ContactText = Annotated[str, BeforeValidator(_empty_when_falsy), Field(default="")]


def _non_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("blank")
    return text


def widget_language(requested: str | None, fallback: str) -> str:
    """The language a ``hello`` asks for (``zh``, ``zh-CN``, ``en-GB``…), else ``fallback``."""
    if requested is not None:
        code = requested.lower()
        if code.startswith("zh"):
            return Language.CHINESE
        if code.startswith("en"):
            return Language.ENGLISH
    return fallback


# Client frames ---------------------------------------------------------------------------------


class WidgetClientFrame(ClientFrame):
    refused = (WidgetErrorCode.BAD_FRAME, _("The frame is not valid."))
    # Only a visitor who said hello may send it (``hello_first`` otherwise, before the fields
    # are looked at).
    needs_hello: ClassVar[bool] = False


class Identity(ClientFrame):
    """Who the tenant's site says the visitor is."""

    external_id: str | None = None
    signature: str | None = Field(
        default=None, description="hex HMAC-SHA256 of `external_id` with the identity secret"
    )
    name: str | None = None
    email: str | None = None


class Hello(WidgetClientFrame):
    """Start, or resume as the visitor of `visitor_token`. Send first. A hello writes nothing:
    a new visitor is named (in `visitor_token`) but stored, with their conversation, only when
    they first send a `message`, `handoff` or `contact`. Another hello on the same socket
    without a token or identity is the same visitor. `identity.signature` is the hex
    HMAC-SHA256 of `external_id` with the tenant's visitor identity secret, computed by the
    tenant's server: a verified identity is the same customer on every device; a forged one
    gets `error` `identity_rejected` and the visitor stays anonymous. Fields of the wrong type
    are ignored."""

    type: Literal["hello"]
    visitor_token: LenientText
    language: LenientText = Field(default=None, description="`zh`, `zh-CN`, `en`…")
    identity: IgnoredWhenInvalid[Identity]


class ChatMessage(WidgetClientFrame):
    """A customer message. Resending the same `id` (after a reconnect) is acknowledged with
    `duplicate: true` and not answered twice."""

    type: Literal["message"]
    id: str = Field(
        min_length=1,
        max_length=MAX_CLIENT_MESSAGE_ID_CHARS,
        description="client message id, unique per message",
    )
    text: Annotated[str, Field(max_length=MAX_MESSAGE_CHARS), AfterValidator(_non_blank)] = Field(
        description="not blank"
    )

    needs_hello = True

    @classmethod
    def refusal(cls, errors: Any) -> tuple[str, Any]:
        # Checked in this order: some text, an id, then the text's length.
        text_errors = {e["type"] for e in errors if e["loc"][1:2] == ("text",)}
        if text_errors - {"string_too_long"}:
            return WidgetErrorCode.BAD_FRAME, _("A message needs some text.")
        if any(e["loc"][1:2] == ("id",) for e in errors):
            return WidgetErrorCode.BAD_FRAME, _("A message needs an “id” of at most 64 characters.")
        if text_errors:
            return WidgetErrorCode.TOO_LONG, _("Messages are limited to 2,000 characters.")
        return cls.refused


class Feedback(WidgetClientFrame):
    """Rate an answer."""

    type: Literal["feedback"]
    message_id: int = Field(description="an answer's id from `done`")
    value: Literal["up", "down"]

    needs_hello = True
    refused = (WidgetErrorCode.BAD_FRAME, _("No such answer to rate."))


class Handoff(WidgetClientFrame):
    """Ask for a person."""

    type: Literal["handoff"]

    needs_hello = True


class Contact(WidgetClientFrame):
    """After `status` with `collect_contact` (nobody available), or a `welcome` with `contact`
    in `pending`: leave details (an e-mail address or a phone number); a ticket is opened.
    Accepted only while the conversation waits for a person and nobody is available, or once it
    has become a ticket: one ticket per conversation, later details update it (answered with
    `ticket` and `updated: true`). Otherwise `error` `contact_not_expected`. At most
    `RATE_LIMIT_CONTACT` per visitor (default 5 an hour), then `error` `rate_limited`."""

    type: Literal["contact"]
    name: ContactText
    email: ContactText
    phone: ContactText
    text: ContactText

    needs_hello = True
    refused = (WidgetErrorCode.BAD_FRAME, _("Contact details must be text."))


class Rating(WidgetClientFrame):
    """After `rating_request`: rate the conversation a person resolved."""

    type: Literal["rating"]
    value: int = Field(ge=1, le=5)
    comment: str = ""

    refused = (WidgetErrorCode.BAD_FRAME, _("A rating is a number from 1 to 5."))


class Typing(WidgetClientFrame):
    """The customer is typing (shown to the agent who owns the conversation)."""

    type: Literal["typing"]


class Ping(WidgetClientFrame):
    """Keep-alive; answered with `pong`."""

    type: Literal["ping"]
    id: JsonValue = Field(default=None, description="echoed in `pong`")


CLIENT_FRAME_MODELS: tuple[type[WidgetClientFrame], ...] = (
    Hello,
    ChatMessage,
    Feedback,
    Handoff,
    Contact,
    Rating,
    Typing,
    Ping,
)
WidgetClientFrameAny = Annotated[
    Hello | ChatMessage | Feedback | Handoff | Contact | Rating | Typing | Ping,
    Field(discriminator="type"),
]
CLIENT_FRAME: TypeAdapter[WidgetClientFrameAny] = TypeAdapter(WidgetClientFrameAny)
CLIENT_FRAME_TYPES: dict[str, type[WidgetClientFrame]] = {
    model.model_fields["type"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in CLIENT_FRAME_MODELS
}


# Server frames ---------------------------------------------------------------------------------


class WidgetServerFrame(ServerFrame):
    v: Literal[1] = 1  # PROTOCOL_VERSION


class HistoryEntry(ServerFrame):
    id: int
    role: str
    text: str
    source: str
    at: str = Field(description="ISO 8601")


class TicketReplyEntry(ServerFrame):
    text: str
    at: str = Field(description="ISO 8601")
    from_customer: bool


class TicketEntry(ServerFrame):
    id: int
    subject: str
    status: str
    replies: list[TicketReplyEntry]


class Welcome(WidgetServerFrame):
    """Reply to `hello`. Keep `visitor_token` (e.g. in localStorage) to resume later."""

    type: Literal["welcome"] = "welcome"
    visitor_token: str
    conversation_id: int | None = Field(description="`null` until the visitor's first message")
    status: str
    resumed: bool
    language: str
    history: list[HistoryEntry]
    tickets: list[TicketEntry] = Field(description="the visitor's recent tickets")
    pending: list[str] = Field(
        description=(
            "what the customer was asked for and has not given yet: `contact` — nobody is "
            "available, show the contact form again; `rating` — a person resolved the "
            "conversation, show the rating again"
        )
    )


class MessageAck(WidgetServerFrame):
    """The message is stored; from now on it is never lost."""

    type: Literal["ack"] = "ack"
    id: str = Field(description="the client message id")
    message_id: int | None
    conversation_id: int
    duplicate: Omitted[bool] = Field(default=None, description="`true` when resent")


class FeedbackAck(WidgetServerFrame):
    """The `feedback` is recorded."""

    type: Literal["ack"] = "ack"
    feedback: int = Field(description="the rated answer's id")
    value: str


class RatingAck(WidgetServerFrame):
    """The `rating` is recorded."""

    type: Literal["ack"] = "ack"
    rating: int


class Delta(WidgetServerFrame):
    """A piece of the answer to message `reply_to`; append in order."""

    type: Literal["delta"] = "delta"
    reply_to: str
    text: str


class Done(WidgetServerFrame):
    """The answer is complete and stored."""

    type: Literal["done"] = "done"
    reply_to: str
    message_id: int
    source: str = Field(description="`faq`, `rag`, `llm`, `offline` or `fallback`")
    latency_ms: int | None
    first_token_ms: int | None
    interrupted: Omitted[bool] = Field(default=None, description="`true`: cut off")
    offer_handoff: Omitted[bool] = Field(default=None, description="`true`: offer a person")


class Error(WidgetServerFrame):
    """Something was refused or failed (codes below). The socket stays open."""

    type: Literal["error"] = "error"
    code: WidgetErrorCode
    text: str = Field(description="in the customer's language")
    reply_to: Omitted[str] = Field(default=None, description="the message it refers to")
    retry_after: Omitted[float] = Field(default=None, description="seconds")


class Status(WidgetServerFrame):
    """The conversation changed hands. `closed` (no `text`): the customer's request waited in
    the queue too long and was closed as abandoned; a new message reopens it (a `status` of
    `bot` follows its `ack`)."""

    type: Literal["status"] = "status"
    status: str = Field(description="`bot`, `queued`, `human`, `resolved` or `closed`")
    text: Omitted[str] = None


class HandoffStatus(WidgetServerFrame):
    """The conversation was handed to the people. `collect_contact: true`: nobody is available
    — ask for contact details (`contact`)."""

    type: Literal["status"] = "status"
    status: str = Field(description="`bot`, `queued`, `human`, `resolved` or `closed`")
    position: int | None = Field(description="place in the queue")
    agents_available: bool
    collect_contact: bool
    text: str


class AgentMessage(WidgetServerFrame):
    """A person's reply (Markdown allowed, rendered safely)."""

    type: Literal["agent_message"] = "agent_message"
    message_id: int
    text: str
    author: str


class AgentTyping(WidgetServerFrame):
    """The agent is typing."""

    type: Literal["typing"] = "typing"
    role: Literal["agent"] = "agent"
    author: str


class TicketOpened(WidgetServerFrame):
    """The contact details were received and ticket `id` opened (`updated: true`: added to the
    conversation's ticket)."""

    type: Literal["ticket"] = "ticket"
    id: int
    updated: bool
    text: str


class RatingRequest(WidgetServerFrame):
    """A person resolved the conversation: ask for a 1–5 rating."""

    type: Literal["rating_request"] = "rating_request"
    text: str


class Pong(WidgetServerFrame):
    """Reply to `ping`."""

    type: Literal["pong"] = "pong"
    id: JsonValue = Field(description="the `ping`'s `id`")


SERVER_FRAME_MODELS: tuple[type[WidgetServerFrame], ...] = (
    Welcome,
    MessageAck,
    FeedbackAck,
    RatingAck,
    Delta,
    Done,
    Error,
    Status,
    HandoffStatus,
    AgentMessage,
    AgentTyping,
    TicketOpened,
    RatingRequest,
    Pong,
)
