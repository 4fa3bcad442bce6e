"""The agent console socket's wire protocol: every frame as a model (docs/widget-protocol.md,
"Agent console socket", is rendered from this module).

Client frames are parsed once, at the edge, by ``AGENT_CLIENT_FRAME`` (see
conversations/frames.py). Texts of the refusals are English: the console is for staff.
"""

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, TypeAdapter

from conversations.frames import ClientFrame, ServerFrame
from conversations.presence import PresenceStatus

MAX_REPLY_CHARS = 4000
# A reply of MAX_REPLY_CHARS characters fits, even with every character escaped.
MAX_FRAME_CHARS = 32 * 1024
# Ids are database keys: PostgreSQL's bigint.
MAX_ID = 2**63 - 1


class AgentErrorCode(StrEnum):
    """The ``code`` of an ``error`` frame on the agent console socket."""

    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    FORBIDDEN = "forbidden"
    ACCESS_REVOKED = "access_revoked"
    INTERNAL = "internal"


ERROR_MEANINGS: dict[AgentErrorCode, str] = {
    AgentErrorCode.BAD_JSON: "The frame is not JSON.",
    AgentErrorCode.BAD_FRAME: (
        "The frame is not a JSON object with a `type`, is too large or nests too deeply, or a "
        "field is missing or has the wrong type. Nothing changed."
    ),
    AgentErrorCode.UNKNOWN_TYPE: "No client frame has this `type`.",
    AgentErrorCode.FORBIDDEN: (
        "The agent may not do this to this conversation (not theirs, not in the queue, another "
        "tenant's)."
    ),
    AgentErrorCode.ACCESS_REVOKED: (
        "The agent's membership or session ended: the socket is closed with 4403."
    ),
    AgentErrorCode.INTERNAL: (
        "Something failed on the server's side (logged); the socket stays open."
    ),
}


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("blank")
    return text


# An agent's presence while their console is open, and once it closed.
PRESENCE_ONLINE, PRESENCE_AWAY = PresenceStatus.ONLINE, PresenceStatus.AWAY
Id = Annotated[int, Field(gt=0, le=MAX_ID)]
PresenceValue = Annotated[PresenceStatus, Field(strict=False)]
REFUSED_ID = "“{}” must be a positive whole number."
REFUSED_STATUS = f"“status” must be one of: {', '.join(PresenceStatus.values)}."
REFUSED_CONVERSATION_ID = (AgentErrorCode.BAD_FRAME, REFUSED_ID.format("conversation_id"))


class AgentClientFrame(ClientFrame):
    refused = (AgentErrorCode.BAD_FRAME, "The frame is not valid.")


class ConversationFrame(AgentClientFrame):
    conversation_id: Id

    refusals = {"conversation_id": REFUSED_CONVERSATION_ID}


class Presence(AgentClientFrame):
    """Set the agent's presence; answered with `presence`."""

    type: Literal["presence"]
    status: PresenceValue

    @classmethod
    def refusal(cls, errors: Any) -> tuple[str, Any]:
        if any(e["type"] == "missing" for e in errors):
            return AgentErrorCode.BAD_FRAME, "A presence frame needs a “status”."
        return AgentErrorCode.BAD_FRAME, REFUSED_STATUS


class AgentPing(AgentClientFrame):
    """Heartbeat: keeps the agent's presence fresh; answered with `pong`."""

    type: Literal["ping"]
    status: PresenceValue = PresenceStatus.ONLINE

    refused = (AgentErrorCode.BAD_FRAME, REFUSED_STATUS)


class Open(ConversationFrame):
    """Show a conversation: answered with `conversation`."""

    type: Literal["open"]


class Accept(ConversationFrame):
    """Take a queued conversation: answered with `conversation`."""

    type: Literal["accept"]


class Reply(ConversationFrame):
    """Answer the customer, or (`internal: true`) leave a note only agents see."""

    type: Literal["reply"]
    text: Annotated[str, Field(max_length=MAX_REPLY_CHARS), AfterValidator(_not_blank)]
    internal: bool = False

    refusals = {
        "text": (
            AgentErrorCode.BAD_FRAME,
            f"A reply is text of 1 to {MAX_REPLY_CHARS:,} characters.",
        ),
        "internal": (AgentErrorCode.BAD_FRAME, "“internal” must be true or false."),
        "conversation_id": REFUSED_CONVERSATION_ID,
    }


class AgentTypingFrame(ConversationFrame):
    """The agent is typing (the customer sees it)."""

    type: Literal["typing"]


class Transfer(ConversationFrame):
    """Hand an owned conversation to another agent (`agent_id`, a user id from `agents`)."""

    type: Literal["transfer"]
    agent_id: Id

    refusals = {
        "conversation_id": REFUSED_CONVERSATION_ID,
        "agent_id": (AgentErrorCode.BAD_FRAME, REFUSED_ID.format("agent_id")),
    }


class Handback(ConversationFrame):
    """Give an owned conversation back to the assistant."""

    type: Literal["handback"]


class Resolve(ConversationFrame):
    """Resolve an owned conversation (the customer is asked for a rating)."""

    type: Literal["resolve"]


class Suggest(ConversationFrame):
    """Ask for an AI draft of a reply to the customer's last question: answered with `draft`."""

    type: Literal["suggest"]


class Agents(AgentClientFrame):
    """List the tenant's agents: answered with `agents`."""

    type: Literal["agents"]


class Canned(AgentClientFrame):
    """List the canned responses: answered with `canned`."""

    type: Literal["canned"]


AGENT_CLIENT_FRAME_MODELS: tuple[type[AgentClientFrame], ...] = (
    Presence,
    AgentPing,
    Open,
    Accept,
    Reply,
    AgentTypingFrame,
    Transfer,
    Handback,
    Resolve,
    Suggest,
    Agents,
    Canned,
)
AgentClientFrameAny = Annotated[
    Presence
    | AgentPing
    | Open
    | Accept
    | Reply
    | AgentTypingFrame
    | Transfer
    | Handback
    | Resolve
    | Suggest
    | Agents
    | Canned,
    Field(discriminator="type"),
]
AGENT_CLIENT_FRAME: TypeAdapter[AgentClientFrameAny] = TypeAdapter(AgentClientFrameAny)
AGENT_CLIENT_FRAME_TYPES: dict[str, type[AgentClientFrame]] = {
    model.model_fields["type"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in AGENT_CLIENT_FRAME_MODELS
}


# Server frames ---------------------------------------------------------------------------------


class Lists(ServerFrame):
    """The queue and the agent's own conversations; sent on connect and whenever the queue
    changes."""

    type: Literal["lists"] = "lists"
    queue: list[dict[str, Any]] = Field(description="queued conversations, oldest first")
    mine: list[dict[str, Any]] = Field(description="the agent's conversations")


class ConversationDetail(ServerFrame):
    """A conversation with its customer and whole history (internal notes included)."""

    type: Literal["conversation"] = "conversation"
    id: int
    status: str
    assignee_id: int | None
    reason: str = Field(description="why it was handed to the people")
    customer: dict[str, Any]
    messages: list[dict[str, Any]] = Field(
        description="`{id, role, text, source, internal, knowledge, confidence, at}`"
    )


class ConversationUpdated(ServerFrame):
    """An agent wrote in conversation `id`: reload it if it is open."""

    type: Literal["conversation_updated"] = "conversation_updated"
    id: int


class CustomerMessage(ServerFrame):
    """A customer wrote in a conversation people own."""

    type: Literal["customer_message"] = "customer_message"
    conversation_id: int
    message_id: int
    text: str


class CustomerTyping(ServerFrame):
    """The customer is typing."""

    type: Literal["customer_typing"] = "customer_typing"
    conversation_id: int


class Draft(ServerFrame):
    """The AI draft asked for with `suggest` (empty when nothing relevant was found)."""

    type: Literal["draft"] = "draft"
    conversation_id: int
    text: str


class AgentDirectory(ServerFrame):
    """The tenant's agents."""

    type: Literal["agents"] = "agents"
    agents: list[dict[str, Any]] = Field(description="`{id, name, presence}`")


class CannedResponses(ServerFrame):
    """The tenant's canned responses."""

    type: Literal["canned"] = "canned"
    items: list[dict[str, Any]] = Field(description="`{id, title, text}`")


class PresenceSet(ServerFrame):
    """Reply to `presence`."""

    type: Literal["presence"] = "presence"
    status: str


class AgentPong(ServerFrame):
    """Reply to `ping`."""

    type: Literal["pong"] = "pong"


class AgentError(ServerFrame):
    """Something was refused or failed (codes below)."""

    type: Literal["error"] = "error"
    code: AgentErrorCode
    text: str


AGENT_SERVER_FRAME_MODELS: tuple[type[ServerFrame], ...] = (
    Lists,
    ConversationDetail,
    ConversationUpdated,
    CustomerMessage,
    CustomerTyping,
    Draft,
    AgentDirectory,
    CannedResponses,
    PresenceSet,
    AgentPong,
    AgentError,
)
