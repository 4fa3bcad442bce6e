"""The agent console's socket: ``/ws/agent/``. Signed-in agents of the active tenant only.

Client → server: ``presence`` {status}, ``ping``, ``open`` {conversation_id}, ``accept``,
``reply`` {conversation_id, text, internal}, ``typing``, ``transfer`` {conversation_id,
agent_id}, ``handback``, ``resolve``, ``suggest`` (an AI draft), ``canned``.
Server → client: ``lists`` {queue, mine}, ``conversation`` (detail), ``customer_message``,
``customer_typing``, ``draft``, ``agents``, ``canned``, ``error`` {code, text}.

Frames are parsed once, at the edge, into the models of conversations/agent_protocol.py: a
frame that is not a JSON object of at most 32 KB with a known ``type``, or whose fields have the
wrong type (ids are positive whole numbers, a presence status is ``online`` or ``away``), gets
``error`` {code: bad_frame} and changes nothing. A failure of the server's own gets ``error``
{code: internal} and is logged; the socket stays open either way. The database is reached only
through the services' and selectors' async twins (helpdesk_site/asyncdb.py).

Access is not decided once at connect: an agent removed from the tenant, demoted to viewer or
deactivated (or whose tenant was), or whose session ended (signed out, expired, password
changed), must stop working and stop seeing the queue and customers' messages at once, whichever
process serves their socket. So membership and session are read again before every action, and
at most ``AGENT_ACCESS_RECHECK_SECONDS`` old before passing on a group event or a typing frame
(those come in bursts); once access is gone the socket gets ``error``
{code: access_revoked} and is closed with 4403. A changed role takes effect the same way.
"""

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from pydantic import ValidationError as FrameInvalid

from conversations import agents, selectors
from conversations.agent_protocol import (
    AGENT_CLIENT_FRAME,
    AGENT_CLIENT_FRAME_TYPES,
    MAX_FRAME_CHARS,
    PRESENCE_AWAY,
    PRESENCE_ONLINE,
    Accept,
    AgentDirectory,
    AgentError,
    AgentErrorCode,
    AgentPing,
    AgentPong,
    Agents,
    AgentTypingFrame,
    Canned,
    CannedResponses,
    ConversationDetail,
    ConversationUpdated,
    CustomerMessage,
    CustomerTyping,
    Draft,
    Handback,
    Lists,
    Open,
    Presence,
    PresenceSet,
    Reply,
    Resolve,
    Suggest,
    Transfer,
)
from conversations.events import agents_group, conversation_group
from conversations.frames import ServerFrame
from conversations.pipeline import draft_reply
from conversations.throttle import typing_throttle_pass
from helpdesk_site.untrusted import FrameTooDeep, frame_clean
from tenants.request import ACTIVE_TENANT_SESSION_KEY
from tenants.scoping import enter_tenant_scope, scope_entry_enter

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

logger = logging.getLogger(__name__)

CLOSE_ACCESS_LOST = 4403
# Frames that arrive in bursts may rely on a membership read this recently (see the docstring).
BURST_FRAMES = frozenset({"typing", "ping"})


class AgentConsumer(AsyncJsonWebsocketConsumer):
    agent: selectors.Agent
    access_checked_at: float = 0.0
    access_lost: bool = False

    async def connect(self) -> None:
        scope_entry_enter()  # this socket's task, whatever scope it was started from
        user = self.scope.get("user")
        session = self.scope.get("session") or {}
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        agent = await selectors.aagent_for_user(
            user=user, tenant_id=session.get(ACTIVE_TENANT_SESSION_KEY)
        )
        if agent is None:
            await self.close(code=4403)
            return
        enter_tenant_scope(agent.tenant.pk)  # for the life of the socket
        self.agent = agent
        self.access_checked_at = time.monotonic()
        self.group = agents_group(agent.tenant.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await agents.apresence_set(agent=agent, status=PRESENCE_ONLINE)
        await self.send_lists()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "agent"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await agents.apresence_set(agent=self.agent, status=PRESENCE_AWAY)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.access_lost:
            return
        if text_data is None or len(text_data) > MAX_FRAME_CHARS:
            await self.send_error(
                AgentErrorCode.BAD_FRAME, "Frames are JSON text of at most 32 KB."
            )
            return
        try:
            raw = frame_clean(json.loads(text_data))
        except (ValueError, RecursionError):
            await self.send_error(AgentErrorCode.BAD_JSON, "The frame is not valid JSON.")
            return
        except FrameTooDeep:
            await self.send_error(AgentErrorCode.BAD_FRAME, "Frames nest at most a few levels.")
            return
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            await self.send_error(
                AgentErrorCode.BAD_FRAME, "A frame is a JSON object with a “type”."
            )
            return
        model = AGENT_CLIENT_FRAME_TYPES.get(raw["type"])
        if model is None:
            await self.send_error(AgentErrorCode.UNKNOWN_TYPE, "Unknown frame type.")
            return
        max_age = self.recheck_seconds() if raw["type"] in BURST_FRAMES else 0.0
        try:
            if not await self.access_check(max_age=max_age):
                return
            try:
                frame = AGENT_CLIENT_FRAME.validate_python(raw)
            except FrameInvalid as invalid:
                await self.send_error(*model.refusal(invalid.errors(include_url=False)))
                return
            await getattr(self, f"on_{frame.type}")(frame)
        except PermissionDenied as denied:
            await self.send_error(AgentErrorCode.FORBIDDEN, str(denied))
        except Exception:
            # A failure of the server's own (a bug, a database gone): logged, and the agent is
            # told so, never that their frame was wrong; the socket stays open.
            logger.exception("agent frame failed tenant=%s", self.agent.tenant.pk)
            await self.send_error(AgentErrorCode.INTERNAL, "Something went wrong on our side.")

    async def send_frame(self, frame: ServerFrame) -> None:
        """Every frame the socket sends goes through here."""
        await self.send(text_data=frame.model_dump_json())

    async def send_error(self, code: str, text: "StrOrPromise") -> None:
        await self.send_frame(AgentError(code=AgentErrorCode(code), text=str(text)))

    @staticmethod
    def recheck_seconds() -> float:
        return float(settings.AGENT_ACCESS_RECHECK_SECONDS)

    async def access_check(self, *, max_age: float) -> bool:
        """Whether the agent may still act and see; closes the socket once they may not."""
        if self.access_lost:
            return False
        now = time.monotonic()
        if max_age > 0 and now - self.access_checked_at < max_age:
            return True
        session = self.scope.get("session")
        agent = await selectors.aagent_access_check(
            agent=self.agent, session_key=getattr(session, "session_key", None)
        )
        if agent is None:
            self.access_lost = True
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.send_error(
                AgentErrorCode.ACCESS_REVOKED, "You no longer have access to this console."
            )
            await self.close(code=CLOSE_ACCESS_LOST)
            return False
        self.agent, self.access_checked_at = agent, now
        return True

    async def send_lists(self) -> None:
        lists = await selectors.aopen_conversations_for_agents(
            tenant_id=self.agent.tenant.pk, user_id=self.agent.user_id
        )
        await self.send_frame(Lists(queue=lists["queue"], mine=lists["mine"]))

    async def send_detail(self, conversation_id: int) -> None:
        detail = await selectors.aconversation_detail(
            agent=self.agent, conversation_id=conversation_id
        )
        await self.send_frame(ConversationDetail(**detail))

    # Client frames ------------------------------------------------------------------------------

    async def on_ping(self, frame: AgentPing) -> None:
        await agents.apresence_set(agent=self.agent, status=frame.status)
        await self.send_frame(AgentPong())

    async def on_presence(self, frame: Presence) -> None:
        await agents.apresence_set(agent=self.agent, status=frame.status)
        await self.send_frame(PresenceSet(status=frame.status))

    async def on_open(self, frame: Open) -> None:
        await self.send_detail(frame.conversation_id)

    async def on_accept(self, frame: Accept) -> None:
        conversation = await agents.aconversation_accept(
            agent=self.agent, conversation_id=frame.conversation_id
        )
        await self.send_detail(conversation.pk)

    async def on_reply(self, frame: Reply) -> None:
        await agents.aagent_reply(
            agent=self.agent,
            conversation_id=frame.conversation_id,
            text=frame.text.strip(),
            internal=frame.internal,
        )

    async def on_typing(self, frame: AgentTypingFrame) -> None:
        if await typing_throttle_pass(
            tenant_id=self.agent.tenant.pk, conversation_id=frame.conversation_id, sender="agent"
        ) and await selectors.aconversation_exists(
            agent=self.agent, conversation_id=frame.conversation_id
        ):
            await self.channel_layer.group_send(
                conversation_group(self.agent.tenant.pk, frame.conversation_id),
                {"type": "agent.typing", "author": self.agent.name},
            )

    async def on_transfer(self, frame: Transfer) -> None:
        await agents.aconversation_transfer(
            agent=self.agent, conversation_id=frame.conversation_id, to_user_id=frame.agent_id
        )

    async def on_handback(self, frame: Handback) -> None:
        await agents.aconversation_hand_back(
            agent=self.agent, conversation_id=frame.conversation_id
        )

    async def on_resolve(self, frame: Resolve) -> None:
        await agents.aconversation_resolve(agent=self.agent, conversation_id=frame.conversation_id)

    async def on_suggest(self, frame: Suggest) -> None:
        question = await selectors.alast_customer_question(
            agent=self.agent, conversation_id=frame.conversation_id
        )
        text = await draft_reply(tenant=self.agent.tenant, question=question)
        await self.send_frame(Draft(conversation_id=frame.conversation_id, text=text))

    async def on_agents(self, frame: Agents) -> None:
        directory = await selectors.aagent_directory(agent=self.agent)
        await self.send_frame(AgentDirectory(agents=directory))

    async def on_canned(self, frame: Canned) -> None:
        items = await selectors.acanned_responses(agent=self.agent)
        await self.send_frame(CannedResponses(items=items))

    # Channel-layer events -----------------------------------------------------------------------

    async def queue_changed(self, event: dict[str, Any]) -> None:
        if await self.access_check(max_age=self.recheck_seconds()):
            await self.send_lists()

    async def conversation_message(self, event: dict[str, Any]) -> None:
        if not await self.access_check(max_age=self.recheck_seconds()):
            return
        await self.send_frame(ConversationUpdated(id=event["conversation_id"]))

    async def customer_message(self, event: dict[str, Any]) -> None:
        if not await self.access_check(max_age=self.recheck_seconds()):
            return
        await self.send_frame(
            CustomerMessage(
                conversation_id=event["conversation_id"],
                message_id=event["message_id"],
                text=event["text"],
            )
        )

    async def customer_typing(self, event: dict[str, Any]) -> None:
        if not await self.access_check(max_age=self.recheck_seconds()):
            return
        await self.send_frame(CustomerTyping(conversation_id=event["conversation_id"]))
