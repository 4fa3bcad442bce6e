"""The agent console's socket: ``/ws/agent/``. Signed-in agents of the active tenant only.

Client → server: ``presence`` {status}, ``ping``, ``open`` {conversation_id}, ``accept``,
``reply`` {conversation_id, text, internal}, ``typing``, ``transfer`` {conversation_id,
agent_id}, ``handback``, ``resolve``, ``suggest`` (an AI draft), ``canned``.
Server → client: ``lists`` {queue, mine}, ``conversation`` (detail), ``customer_message``,
``customer_typing``, ``draft``, ``agents``, ``canned``, ``error`` {code, text}.

Frames are checked at the edge: a frame that is not a JSON object of at most 32 KB with a known
``type``, or whose fields have the wrong type (ids are positive whole numbers, a presence status
is one of ``AgentPresence.Status``), gets an ``error`` frame and changes nothing; the socket
stays open.

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
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied

from conversations import agents
from conversations.handoff import (
    agents_group,
    conversation_group,
    open_conversations_for_agents,
)
from conversations.models import AgentPresence, Conversation
from conversations.pipeline import draft_reply
from conversations.throttle import typing_throttle_pass
from helpdesk_site.untrusted import FrameTooDeep, frame_clean
from tenants.request import ACTIVE_TENANT_SESSION_KEY
from tenants.scoping import enter_tenant_scope, scope_entry_enter

logger = logging.getLogger(__name__)

MAX_REPLY_CHARS = 4000
# A reply of MAX_REPLY_CHARS characters fits, even with every character escaped.
MAX_FRAME_CHARS = 32 * 1024
# Ids are database keys: PostgreSQL's bigint.
MAX_ID = 2**63 - 1
CLOSE_ACCESS_LOST = 4403
# Frames that arrive in bursts may rely on a membership read this recently (see the docstring).
BURST_FRAMES = frozenset({"typing", "ping"})


class BadFrame(Exception):
    """A client frame that is malformed: answered with ``error`` {code: bad_frame}."""


def frame_id(frame: dict[str, Any], key: str) -> int:
    value = frame.get(key)
    # bool is an int in Python; floats (1e400 is infinity) are refused, not truncated.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise BadFrame(f"“{key}” must be a positive whole number.")
    return value


def frame_presence(frame: dict[str, Any]) -> str:
    status = frame.get("status", AgentPresence.Status.ONLINE)
    if status not in AgentPresence.Status.values:
        raise BadFrame(f"“status” must be one of: {', '.join(AgentPresence.Status.values)}.")
    return str(status)


class AgentConsumer(AsyncJsonWebsocketConsumer):
    agent: agents.Agent
    access_checked_at: float = 0.0
    access_lost: bool = False

    async def connect(self) -> None:
        scope_entry_enter()  # this socket's task, whatever scope it was started from
        user = self.scope.get("user")
        session = self.scope.get("session") or {}
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        agent = await database_sync_to_async(agents.agent_for_user)(
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
        await database_sync_to_async(agents.presence_set)(
            agent=agent, status=AgentPresence.Status.ONLINE
        )
        await self.send_lists()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "agent"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await database_sync_to_async(agents.presence_set)(
                agent=self.agent, status=AgentPresence.Status.AWAY
            )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.access_lost:
            return
        if text_data is None or len(text_data) > MAX_FRAME_CHARS:
            await self.send_error("bad_frame", "Frames are JSON text of at most 32 KB.")
            return
        try:
            frame = frame_clean(json.loads(text_data))
        except (ValueError, RecursionError):
            await self.send_error("bad_json", "The frame is not valid JSON.")
            return
        except FrameTooDeep:
            await self.send_error("bad_frame", "Frames nest at most a few levels.")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.send_error("bad_frame", "A frame is a JSON object with a “type”.")
            return
        handler = getattr(self, f"on_{frame['type']}", None)
        if handler is None:
            await self.send_error("unknown_type", "Unknown frame type.")
            return
        max_age = self.recheck_seconds() if frame["type"] in BURST_FRAMES else 0.0
        try:
            if await self.access_check(max_age=max_age):
                await handler(frame)
        except BadFrame as bad:
            await self.send_error("bad_frame", str(bad))
        except PermissionDenied as denied:
            await self.send_error("forbidden", str(denied))
        except Exception:  # the agent gets an error frame, never a dead socket
            logger.exception("agent frame failed tenant=%s", self.agent.tenant.pk)
            await self.send_error("internal", "Something went wrong on our side.")

    async def send_error(self, code: str, text: str) -> None:
        await self.send_json({"type": "error", "code": code, "text": text})

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
        agent = await database_sync_to_async(agents.agent_access_check)(
            agent=self.agent, session_key=getattr(session, "session_key", None)
        )
        if agent is None:
            self.access_lost = True
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.send_error("access_revoked", "You no longer have access to this console.")
            await self.close(code=CLOSE_ACCESS_LOST)
            return False
        self.agent, self.access_checked_at = agent, now
        return True

    async def send_lists(self) -> None:
        lists = await database_sync_to_async(open_conversations_for_agents)(
            tenant_id=self.agent.tenant.pk, user_id=self.agent.user_id
        )
        await self.send_json({"type": "lists", **lists})

    async def send_detail(self, conversation_id: int) -> None:
        detail = await database_sync_to_async(agents.conversation_detail)(
            agent=self.agent, conversation_id=conversation_id
        )
        await self.send_json({"type": "conversation", **detail})

    # Client frames ------------------------------------------------------------------------------

    async def on_ping(self, frame: dict[str, Any]) -> None:
        status = frame_presence(frame)
        await database_sync_to_async(agents.presence_set)(agent=self.agent, status=status)
        await self.send_json({"type": "pong"})

    async def on_presence(self, frame: dict[str, Any]) -> None:
        if "status" not in frame:
            raise BadFrame("A presence frame needs a “status”.")
        status = frame_presence(frame)
        await database_sync_to_async(agents.presence_set)(agent=self.agent, status=status)
        await self.send_json({"type": "presence", "status": status})

    async def on_open(self, frame: dict[str, Any]) -> None:
        await self.send_detail(frame_id(frame, "conversation_id"))

    async def on_accept(self, frame: dict[str, Any]) -> None:
        conversation = await database_sync_to_async(agents.conversation_accept)(
            agent=self.agent, conversation_id=frame_id(frame, "conversation_id")
        )
        await self.send_detail(conversation.pk)

    async def on_reply(self, frame: dict[str, Any]) -> None:
        text, internal = frame.get("text"), frame.get("internal", False)
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_REPLY_CHARS:
            raise BadFrame(f"A reply is text of 1 to {MAX_REPLY_CHARS:,} characters.")
        if not isinstance(internal, bool):
            raise BadFrame("“internal” must be true or false.")
        await database_sync_to_async(agents.agent_reply)(
            agent=self.agent,
            conversation_id=frame_id(frame, "conversation_id"),
            text=text.strip(),
            internal=internal,
        )

    async def on_typing(self, frame: dict[str, Any]) -> None:
        conversation_id = frame_id(frame, "conversation_id")
        tenant_id = self.agent.tenant.pk
        if (
            await typing_throttle_pass(
                tenant_id=tenant_id, conversation_id=conversation_id, sender="agent"
            )
            and await Conversation.objects.filter(pk=conversation_id, tenant_id=tenant_id).aexists()
        ):
            await self.channel_layer.group_send(
                conversation_group(tenant_id, conversation_id),
                {"type": "agent.typing", "author": self.agent.name},
            )

    async def on_transfer(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(agents.conversation_transfer)(
            agent=self.agent,
            conversation_id=frame_id(frame, "conversation_id"),
            to_user_id=frame_id(frame, "agent_id"),
        )

    async def on_handback(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(agents.conversation_hand_back)(
            agent=self.agent, conversation_id=frame_id(frame, "conversation_id")
        )

    async def on_resolve(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(agents.conversation_resolve)(
            agent=self.agent, conversation_id=frame_id(frame, "conversation_id")
        )

    async def on_suggest(self, frame: dict[str, Any]) -> None:
        conversation_id = frame_id(frame, "conversation_id")
        question = await database_sync_to_async(agents.last_customer_question)(
            agent=self.agent, conversation_id=conversation_id
        )
        text = await draft_reply(tenant=self.agent.tenant, question=question)
        await self.send_json({"type": "draft", "conversation_id": conversation_id, "text": text})

    async def on_agents(self, frame: dict[str, Any]) -> None:
        directory = await database_sync_to_async(agents.agent_directory)(agent=self.agent)
        await self.send_json({"type": "agents", "agents": directory})

    async def on_canned(self, frame: dict[str, Any]) -> None:
        items = await database_sync_to_async(agents.canned_responses)(agent=self.agent)
        await self.send_json({"type": "canned", "items": items})

    # Channel-layer events -----------------------------------------------------------------------

    async def queue_changed(self, event: dict[str, Any]) -> None:
        if await self.access_check(max_age=self.recheck_seconds()):
            await self.send_lists()

    async def conversation_message(self, event: dict[str, Any]) -> None:
        if not await self.access_check(max_age=self.recheck_seconds()):
            return
        await self.send_json({"type": "conversation_updated", "id": event["conversation_id"]})

    async def customer_message(self, event: dict[str, Any]) -> None:
        if not await self.access_check(max_age=self.recheck_seconds()):
            return
        await self.send_json(
            {
                "type": "customer_message",
                "conversation_id": event["conversation_id"],
                "message_id": event["message_id"],
                "text": event["text"],
            }
        )

    async def customer_typing(self, event: dict[str, Any]) -> None:
        if not await self.access_check(max_age=self.recheck_seconds()):
            return
        await self.send_json(
            {"type": "customer_typing", "conversation_id": event["conversation_id"]}
        )
