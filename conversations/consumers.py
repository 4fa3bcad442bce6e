"""WebSocket consumers. They route frames and check access; the work happens in services."""

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from conversations import services
from conversations.models import Conversation
from conversations.pipeline import MAX_MESSAGE_CHARS, ChatContext, answer_customer_message
from tenants.models import Language, Tenant

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024
CLOSE_FORBIDDEN = 4403


def origin_allowed(*, origin: str, host: str, allowed_origins: list[str]) -> bool:
    """An embedding page may connect if its origin is listed, or if it is Kefu's own host."""
    if not origin:
        return False
    normalised = origin.rstrip("/").lower()
    if normalised in allowed_origins:
        return True
    return bool(host) and urlsplit(normalised).netloc == host.lower()


def visitor_identity(raw: Any) -> services.VisitorIdentity | None:
    """The ``identity`` of a hello frame: ``{external_id, signature, name?, email?}``."""
    if not isinstance(raw, dict):
        return None
    fields = {key: raw.get(key) for key in ("external_id", "signature", "name", "email")}
    if not all(isinstance(value, str) for value in fields.values() if value is not None):
        return None
    return services.VisitorIdentity(
        external_id=fields["external_id"] or "",
        signature=fields["signature"] or "",
        name=fields["name"] or "",
        email=fields["email"] or "",
    )


def widget_language(requested: Any, fallback: str) -> str:
    if isinstance(requested, str):
        code = requested.lower()
        if code.startswith("zh"):
            return Language.CHINESE
        if code.startswith("en"):
            return Language.ENGLISH
    return fallback


class WidgetConsumer(AsyncWebsocketConsumer):
    """The customer widget's socket: ``/ws/widget/<public_key>/`` (docs/widget-protocol.md).

    Frames are handled in order, but an answer streams in a task of its own, so that pings and
    feedback are answered while it streams; answers to one socket never overlap.
    """

    tenant: Tenant
    language: str
    chat: ChatContext | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answering = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        public_key = self.scope["url_route"]["kwargs"]["public_key"]
        tenant = await Tenant.objects.filter(public_key=public_key, is_active=True).afirst()
        headers = {
            name.decode("latin1"): value.decode("latin1") for name, value in self.scope["headers"]
        }
        if tenant is None or not origin_allowed(
            origin=headers.get("origin", ""),
            host=headers.get("host", ""),
            allowed_origins=tenant.allowed_origins,
        ):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.tenant = tenant
        self.language = tenant.default_language
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for task in self.tasks:
            task.cancel()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None or len(text_data.encode()) > MAX_FRAME_BYTES:
            await self.send_error("bad_frame", _("Frames must be JSON text of at most 16 KB."))
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self.send_error("bad_json", _("The frame is not valid JSON."))
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.send_error("bad_frame", _("A frame is a JSON object with a “type”."))
            return
        handler = getattr(self, f"on_{frame['type']}", None)
        if handler is None:
            await self.send_error("unknown_type", _("Unknown frame type."))
            return
        await handler(frame)

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await self.send_frame({"type": "pong", "id": frame.get("id")})

    async def on_hello(self, frame: dict[str, Any]) -> None:
        token = frame.get("visitor_token")
        self.language = widget_language(frame.get("language"), self.tenant.default_language)
        session = await database_sync_to_async(services.widget_session_start)(
            tenant=self.tenant,
            visitor_token=token if isinstance(token, str) else None,
            language=self.language,
            identity=visitor_identity(frame.get("identity")),
        )
        self.chat = ChatContext(
            tenant=self.tenant,
            visitor_id=session.external_id,
            customer_id=session.customer_id,
            conversation_id=session.conversation_id,
            language=self.language,
        )
        await self.send_frame(
            {
                "type": "welcome",
                "visitor_token": session.visitor_token,
                "conversation_id": session.conversation_id,
                "status": session.conversation_status,
                "resumed": session.resumed,
                "language": self.language,
                "history": [
                    {
                        "id": item.id,
                        "role": item.role,
                        "text": item.content,
                        "source": item.source,
                        "at": item.created_at,
                    }
                    for item in session.history
                ],
            }
        )
        if session.identity_rejected:
            await self.send_error(
                "identity_rejected", _("The visitor's identity could not be verified.")
            )

    async def on_message(self, frame: dict[str, Any]) -> None:
        if self.chat is None:
            await self.send_error("hello_first", _("Say hello first."))
            return
        text, client_id = frame.get("text"), frame.get("id")
        if not isinstance(text, str) or not text.strip():
            await self.send_error("bad_frame", _("A message needs some text."))
            return
        if not isinstance(client_id, str) or not 0 < len(client_id) <= 64:
            await self.send_error(
                "bad_frame", _("A message needs an “id” of at most 64 characters.")
            )
            return
        if len(text) > MAX_MESSAGE_CHARS:
            await self.send_error("too_long", _("Messages are limited to 2,000 characters."))
            return
        chat = self.chat
        task = asyncio.create_task(self._answer(chat, text.strip(), client_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, chat: ChatContext, text: str, client_id: str) -> None:
        async with self.answering:
            try:
                await answer_customer_message(
                    ctx=chat, text=text, client_message_id=client_id, send=self.send_frame
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # the customer gets an error frame, never a dead socket
                logger.exception("answering failed tenant=%s", chat.tenant.pk)
                await self.send_error(
                    "internal", _("Something went wrong on our side. Please try again.")
                )

    async def on_feedback(self, frame: dict[str, Any]) -> None:
        if self.chat is None:
            await self.send_error("hello_first", _("Say hello first."))
            return
        message_id, value = frame.get("message_id"), frame.get("value")
        recorded = isinstance(message_id, int) and await database_sync_to_async(
            services.message_feedback_record
        )(
            tenant_id=self.tenant.pk,
            conversation_id=self.chat.conversation_id,
            message_id=message_id,
            value=value,
        )
        if not recorded:
            await self.send_error("bad_frame", _("No such answer to rate."))
            return
        await self.send_frame({"type": "ack", "feedback": message_id, "value": value})

    async def on_handoff(self, frame: dict[str, Any]) -> None:
        if self.chat is None:
            await self.send_error("hello_first", _("Say hello first."))
            return
        status = await database_sync_to_async(services.conversation_handoff_request)(
            tenant_id=self.tenant.pk,
            conversation_id=self.chat.conversation_id,
            reason=Conversation.HandoffReason.CUSTOMER_REQUEST,
        )
        with translation.override(self.language):
            text = str(_("A person will be with you shortly."))
        await self.send_frame({"type": "status", "status": status, "text": text})

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"v": PROTOCOL_VERSION, **frame}, ensure_ascii=False))

    async def send_error(self, code: str, text: "StrOrPromise") -> None:
        with translation.override(self.language):
            await self.send_frame({"type": "error", "code": code, "text": str(text)})
