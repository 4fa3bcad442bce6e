"""The agent console's socket: ``/ws/agent/``. Signed-in agents of the active tenant only.

Client → server: ``presence`` {status}, ``ping``, ``open`` {conversation_id}, ``accept``,
``reply`` {conversation_id, text, internal}, ``typing``, ``transfer`` {conversation_id,
agent_id}, ``handback``, ``resolve``, ``suggest`` (an AI draft), ``canned``.
Server → client: ``lists`` {queue, mine}, ``conversation`` (detail), ``customer_message``,
``customer_typing``, ``draft``, ``agents``, ``canned``, ``error``.
"""

import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import PermissionDenied

from conversations import agents
from conversations.handoff import (
    agents_group,
    conversation_group,
    open_conversations_for_agents,
)
from conversations.models import AgentPresence, Conversation
from conversations.pipeline import draft_reply
from tenants.request import ACTIVE_TENANT_SESSION_KEY

logger = logging.getLogger(__name__)

MAX_REPLY_CHARS = 4000


class AgentConsumer(AsyncJsonWebsocketConsumer):
    agent: agents.Agent

    async def connect(self) -> None:
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
        self.agent = agent
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

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_json({"type": "error", "code": "bad_frame"})
            return
        handler = getattr(self, f"on_{content['type']}", None)
        if handler is None:
            await self.send_json({"type": "error", "code": "unknown_type"})
            return
        try:
            await handler(content)
        except PermissionDenied as denied:
            await self.send_json({"type": "error", "code": "forbidden", "text": str(denied)})
        except (KeyError, TypeError, ValueError):
            await self.send_json({"type": "error", "code": "bad_frame"})

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
        await database_sync_to_async(agents.presence_set)(
            agent=self.agent, status=frame.get("status", AgentPresence.Status.ONLINE)
        )
        await self.send_json({"type": "pong"})

    async def on_presence(self, frame: dict[str, Any]) -> None:
        status = frame["status"]
        if status not in AgentPresence.Status.values:
            raise ValueError(status)
        await database_sync_to_async(agents.presence_set)(agent=self.agent, status=status)
        await self.send_json({"type": "presence", "status": status})

    async def on_open(self, frame: dict[str, Any]) -> None:
        await self.send_detail(int(frame["conversation_id"]))

    async def on_accept(self, frame: dict[str, Any]) -> None:
        conversation = await database_sync_to_async(agents.conversation_accept)(
            agent=self.agent, conversation_id=int(frame["conversation_id"])
        )
        await self.send_detail(conversation.pk)

    async def on_reply(self, frame: dict[str, Any]) -> None:
        text = str(frame["text"]).strip()
        if not text or len(text) > MAX_REPLY_CHARS:
            raise ValueError("empty or too long")
        await database_sync_to_async(agents.agent_reply)(
            agent=self.agent,
            conversation_id=int(frame["conversation_id"]),
            text=text,
            internal=bool(frame.get("internal", False)),
        )

    async def on_typing(self, frame: dict[str, Any]) -> None:
        conversation_id = int(frame["conversation_id"])
        if await Conversation.objects.filter(
            pk=conversation_id, tenant=self.agent.tenant
        ).aexists():
            await self.channel_layer.group_send(
                conversation_group(self.agent.tenant.pk, conversation_id),
                {"type": "agent.typing", "author": self.agent.name},
            )

    async def on_transfer(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(agents.conversation_transfer)(
            agent=self.agent,
            conversation_id=int(frame["conversation_id"]),
            to_user_id=int(frame["agent_id"]),
        )

    async def on_handback(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(agents.conversation_hand_back)(
            agent=self.agent, conversation_id=int(frame["conversation_id"])
        )

    async def on_resolve(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(agents.conversation_resolve)(
            agent=self.agent, conversation_id=int(frame["conversation_id"])
        )

    async def on_suggest(self, frame: dict[str, Any]) -> None:
        conversation_id = int(frame["conversation_id"])
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
        await self.send_lists()

    async def conversation_message(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "conversation_updated", "id": event["conversation_id"]})

    async def customer_message(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "customer_message",
                "conversation_id": event["conversation_id"],
                "message_id": event["message_id"],
                "text": event["text"],
            }
        )

    async def customer_typing(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {"type": "customer_typing", "conversation_id": event["conversation_id"]}
        )
