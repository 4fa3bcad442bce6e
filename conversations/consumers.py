"""WebSocket consumers. They route frames and check access; the work happens in services."""

import asyncio
import json
import logging
import re
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from redis.exceptions import RedisError

from conversations import services
from conversations.handoff import agents_group, conversation_group
from conversations.models import Conversation
from conversations.pii import pii_mask
from conversations.pipeline import (
    MAX_MESSAGE_CHARS,
    ChatContext,
    answer_customer_message,
    hand_off,
)
from conversations.ratelimit import contact_rate_limit_check
from conversations.throttle import typing_throttle_pass
from conversations.tickets import (
    ContactNotExpected,
    ticket_from_conversation,
    tickets_for_customer,
)
from helpdesk_site.asyncdb import db_parallel
from helpdesk_site.untrusted import FrameTooDeep, frame_clean
from tenants.models import Language, Tenant
from tenants.scoping import enter_tenant_scope, scope_entry_enter
from tenants.selectors import tenant_get_by_public_key

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024
CLOSE_FORBIDDEN = 4403
# A phone number as people type it: digits with spaces, dashes, dots, brackets, a leading +.
PHONE_PATTERN = re.compile(r"\+?[0-9][0-9 ()./-]{4,37}[0-9]")  # at most 40, as stored


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
    visitor: services.WidgetSession | None = None  # set by hello
    chat: ChatContext | None = None  # the visitor's conversation, once there is one
    group: str = ""

    # Made on the first message: most sockets stay idle, and each costs memory (many thousands
    # per process).
    answering: asyncio.Lock | None = None
    tasks: set[asyncio.Task[None]] | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its hop, before every frame and every group event, to the
        process's one shared database thread to close stale connections: under load every
        socket queued behind that thread. Each database call here runs in
        ``database_sync_to_async``, which closes stale connections around the call itself."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Channels' version also hops to the shared database thread (see dispatch); this
        # consumer joins its conversation group itself and leaves it in disconnect().
        await self.disconnect(message["code"])
        raise StopConsumer

    async def connect(self) -> None:
        scope_entry_enter()  # this socket's task, whatever scope it was started from
        public_key = self.scope["url_route"]["kwargs"]["public_key"]
        tenant = await db_parallel(tenant_get_by_public_key)(public_key=public_key)
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
        enter_tenant_scope(tenant.pk)  # for the life of the socket
        self.tenant = tenant
        self.language = tenant.default_language
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for task in self.tasks or ():
            task.cancel()
        if self.chat is not None:
            try:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            except (RedisError, OSError) as exc:
                # A burst of disconnects can find the layer's connections all busy. The
                # membership then lapses with the layer's group expiry; messages sent to it
                # meanwhile go to a channel nobody reads, which costs nothing.
                logger.warning("leaving the conversation group failed: %s", type(exc).__name__)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None or len(text_data.encode()) > MAX_FRAME_BYTES:
            await self.send_error("bad_frame", _("Frames must be JSON text of at most 16 KB."))
            return
        try:
            frame = frame_clean(json.loads(text_data))
        except (RecursionError, FrameTooDeep):  # RecursionError: too deep for the parser
            await self.send_error("bad_frame", _("Frames may not nest that deeply."))
            return
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
        identity = visitor_identity(frame.get("identity"))
        if not isinstance(token, str) and identity is None and self.visitor is not None:
            token = self.visitor.visitor_token  # hello again on this socket: the same visitor
        self.language = widget_language(frame.get("language"), self.tenant.default_language)
        session = await db_parallel(services.widget_session_start)(
            tenant=self.tenant,
            visitor_token=token if isinstance(token, str) else None,
            identity=identity,
        )
        await self._leave_conversation()
        self.visitor = session
        if (
            session.conversation_id is not None
            and session.conversation_key is not None
            and session.customer_id is not None
        ):
            await self._join_conversation(
                visitor=session,
                customer_id=session.customer_id,
                conversation_id=session.conversation_id,
                conversation_key=session.conversation_key,
            )
        # A new visitor has no tickets yet: no query.
        tickets = (
            await db_parallel(tickets_for_customer)(
                tenant_id=self.tenant.pk, customer_id=session.customer_id
            )
            if session.customer_id is not None
            else []
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
                "tickets": [asdict(ticket) for ticket in tickets],
                "pending": list(session.pending),
            }
        )
        if session.identity_rejected:
            await self.send_error(
                "identity_rejected", _("The visitor's identity could not be verified.")
            )

    async def _join_conversation(
        self,
        *,
        visitor: services.WidgetSession,
        customer_id: int,
        conversation_id: int,
        conversation_key: str,
        new_conversation: bool = False,
    ) -> ChatContext:
        self.chat = ChatContext(
            tenant=self.tenant,
            visitor_id=visitor.external_id,
            customer_id=customer_id,
            conversation_id=conversation_id,
            conversation_key=conversation_key,
            language=self.language,
            new_conversation=new_conversation,
        )
        self.group = conversation_group(self.tenant.pk, conversation_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        return self.chat

    async def _leave_conversation(self) -> None:
        if self.chat is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.chat = None

    async def _conversation(self, visitor: services.WidgetSession) -> ChatContext:
        """The socket's conversation, started when the visitor first needs one (a message, a
        handoff request): a page view alone writes nothing."""
        if self.chat is not None:
            return self.chat
        started = await db_parallel(services.widget_conversation_start)(
            tenant=self.tenant, external_id=visitor.external_id, language=self.language
        )
        return await self._join_conversation(
            visitor=visitor,
            customer_id=started.customer_id,
            conversation_id=started.conversation_id,
            conversation_key=started.conversation_key,
            new_conversation=started.new_conversation,
        )

    async def on_message(self, frame: dict[str, Any]) -> None:
        if self.visitor is None:
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
        if self.tasks is None:
            self.tasks = set()
        chat = await self._conversation(self.visitor)
        if chat.new_conversation:  # from now on it has messages
            self.chat = replace(chat, new_conversation=False)
        task = asyncio.create_task(self._answer(chat, text.strip(), client_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, chat: ChatContext, text: str, client_id: str) -> None:
        if self.answering is None:
            self.answering = asyncio.Lock()
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
        if self.visitor is None:
            await self.send_error("hello_first", _("Say hello first."))
            return
        message_id, value = frame.get("message_id"), frame.get("value")
        chat = self.chat
        recorded = (
            chat is not None
            and isinstance(message_id, int)
            and await database_sync_to_async(services.message_feedback_record)(
                tenant_id=self.tenant.pk,
                conversation_id=chat.conversation_id,
                message_id=message_id,
                value=value,
            )
        )
        if chat is None or not recorded:
            await self.send_error("bad_frame", _("No such answer to rate."))
            return
        await self.send_frame({"type": "ack", "feedback": message_id, "value": value})
        if value == "down" and self.tenant.handoff_on_negative_feedback:
            await hand_off(
                chat,
                Conversation.HandoffReason.NEGATIVE_FEEDBACK,
                self.send_frame,
                self.language,
            )

    async def on_handoff(self, frame: dict[str, Any]) -> None:
        if self.visitor is None:
            await self.send_error("hello_first", _("Say hello first."))
            return
        await hand_off(
            await self._conversation(self.visitor),
            Conversation.HandoffReason.CUSTOMER_REQUEST,
            self.send_frame,
            self.language,
            by_customer=True,
        )

    async def on_contact(self, frame: dict[str, Any]) -> None:
        """Nobody could take the conversation: the customer leaves details for a ticket."""
        if self.visitor is None:
            await self.send_error("hello_first", _("Say hello first."))
            return
        fields = {key: frame.get(key) or "" for key in ("name", "email", "phone", "text")}
        if not all(isinstance(value, str) for value in fields.values()):
            await self.send_error("bad_frame", _("Contact details must be text."))
            return
        email, phone = fields["email"].strip(), fields["phone"].strip()
        try:
            if email:
                validate_email(email)
        except ValidationError:
            await self.send_error("bad_contact", _("Please enter a valid e-mail address."))
            return
        if phone and not PHONE_PATTERN.fullmatch(phone):
            await self.send_error("bad_contact", _("Please enter a valid phone number."))
            return
        if not email and not phone:
            await self.send_error(
                "bad_contact", _("Please leave an e-mail address or a phone number.")
            )
            return
        decision = await contact_rate_limit_check(
            tenant_id=self.tenant.pk, visitor_id=self.visitor.external_id
        )
        if not decision.allowed:
            with translation.override(self.language):
                await self.send_frame(
                    {
                        "type": "error",
                        "code": "rate_limited",
                        "retry_after": round(decision.retry_after_seconds, 1),
                        "text": str(_("You are sending details too often. Please wait a while.")),
                    }
                )
            return
        try:
            if self.chat is None:
                raise ContactNotExpected
            contact = await database_sync_to_async(ticket_from_conversation)(
                tenant=self.tenant,
                conversation_id=self.chat.conversation_id,
                name=fields["name"].strip()[:120],
                email=email,
                phone=phone,
                note=pii_mask(fields["text"].strip()[:MAX_MESSAGE_CHARS]).text,
            )
        except ContactNotExpected:
            await self.send_error(
                "contact_not_expected",
                _("Contact details are taken only when nobody is available to chat."),
            )
            return
        with translation.override(self.language):
            message = (
                _("Thank you! We added your details to your request (#%(id)d).")
                if contact.updated
                else _("Thank you! We received your request (#%(id)d) and will get back to you.")
            )
            text = str(message % {"id": contact.ticket.pk})
        await self.send_frame(
            {"type": "ticket", "id": contact.ticket.pk, "updated": contact.updated, "text": text}
        )

    async def on_rating(self, frame: dict[str, Any]) -> None:
        value, comment = frame.get("value"), frame.get("comment", "")
        if self.chat is None or not isinstance(value, int) or not isinstance(comment, str):
            await self.send_error("bad_frame", _("A rating is a number from 1 to 5."))
            return
        rated = await database_sync_to_async(services.conversation_rate)(
            tenant_id=self.tenant.pk,
            conversation_id=self.chat.conversation_id,
            rating=value,
            comment=pii_mask(comment[:1000]).text,
        )
        if not rated:
            await self.send_error("bad_frame", _("A rating is a number from 1 to 5."))
            return
        await self.send_frame({"type": "ack", "rating": value})

    async def on_typing(self, frame: dict[str, Any]) -> None:
        if self.chat is not None and await typing_throttle_pass(
            tenant_id=self.tenant.pk, conversation_id=self.chat.conversation_id, sender="customer"
        ):
            await self.channel_layer.group_send(
                agents_group(self.tenant.pk),
                {"type": "customer.typing", "conversation_id": self.chat.conversation_id},
            )

    # Events from the channel layer (agents, handoff) ------------------------------------------

    async def conversation_status(self, event: dict[str, Any]) -> None:
        with translation.override(self.language):
            await self.send_frame(
                {"type": "status", "status": event["status"], "text": str(event.get("text", ""))}
            )

    async def agent_message(self, event: dict[str, Any]) -> None:
        await self.send_frame(
            {
                "type": "agent_message",
                "message_id": event["message_id"],
                "text": event["text"],
                "author": event["author"],
            }
        )

    async def agent_typing(self, event: dict[str, Any]) -> None:
        await self.send_frame({"type": "typing", "role": "agent", "author": event["author"]})

    async def rating_request(self, event: dict[str, Any]) -> None:
        with translation.override(self.language):
            text = str(_("How did we do? Please rate this conversation from 1 to 5."))
        await self.send_frame({"type": "rating_request", "text": text})

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"v": PROTOCOL_VERSION, **frame}, ensure_ascii=False))

    async def send_error(self, code: str, text: "StrOrPromise") -> None:
        with translation.override(self.language):
            await self.send_frame({"type": "error", "code": code, "text": str(text)})
