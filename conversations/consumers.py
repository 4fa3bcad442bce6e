"""WebSocket consumers. They route frames and check access; the work happens in services.

Frames are parsed once, at the edge, into the models of conversations/protocol.py; the database
is reached only through services' and selectors' async twins (helpdesk_site/asyncdb.py).
"""

import asyncio
import json
import logging
import re
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from pydantic import ValidationError as FrameInvalid
from redis.exceptions import RedisError

from conversations import events, services
from conversations.events import agents_group, conversation_group
from conversations.pii import pii_mask
from conversations.pipeline import (
    ChatContext,
    HandoffReason,
    answer_customer_message,
    hand_off,
)
from conversations.protocol import (
    CLIENT_FRAME,
    CLIENT_FRAME_TYPES,
    MAX_FRAME_BYTES,
    MAX_MESSAGE_CHARS,
    AgentMessage,
    AgentTyping,
    ChatMessage,
    Contact,
    Error,
    Feedback,
    FeedbackAck,
    Handoff,
    HandoffStatus,
    Hello,
    HistoryEntry,
    Identity,
    Ping,
    Pong,
    Rating,
    RatingAck,
    RatingRequest,
    Status,
    TicketEntry,
    TicketOpened,
    Typing,
    Welcome,
    WidgetErrorCode,
    WidgetServerFrame,
    widget_language,
)
from conversations.ratelimit import contact_rate_limit_check
from conversations.replies import WidgetSocketSink
from conversations.selectors import atickets_for_customer
from conversations.throttle import typing_throttle_pass
from conversations.tickets import ContactNotExpected, aticket_from_conversation
from helpdesk_site.untrusted import FrameTooDeep, frame_clean
from tenants.scoping import enter_tenant_scope, scope_entry_enter
from tenants.selectors import atenant_get_by_public_key

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from tenants.models import Tenant

logger = logging.getLogger(__name__)

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


def visitor_identity(identity: Identity | None) -> services.VisitorIdentity | None:
    """The ``identity`` of a hello frame: ``{external_id, signature, name?, email?}``."""
    if identity is None:
        return None
    return services.VisitorIdentity(
        external_id=identity.external_id or "",
        signature=identity.signature or "",
        name=identity.name or "",
        email=identity.email or "",
    )


class WidgetConsumer(AsyncWebsocketConsumer):
    """The customer widget's socket: ``/ws/widget/<public_key>/`` (docs/widget-protocol.md).

    Frames are handled in order, but an answer streams in a task of its own, so that pings and
    feedback are answered while it streams; answers to one socket never overlap.
    """

    tenant: "Tenant"
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
        tenant = await atenant_get_by_public_key(public_key=public_key)
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
        # What this socket's answers published reaches the subscribers before it is gone.
        await events.asubscribers_settle()
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
            await self.send_error(
                WidgetErrorCode.BAD_FRAME, _("Frames must be JSON text of at most 16 KB.")
            )
            return
        try:
            raw = frame_clean(json.loads(text_data))
        except (RecursionError, FrameTooDeep):  # RecursionError: too deep for the parser
            await self.send_error(WidgetErrorCode.BAD_FRAME, _("Frames may not nest that deeply."))
            return
        except ValueError:
            await self.send_error(WidgetErrorCode.BAD_JSON, _("The frame is not valid JSON."))
            return
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            await self.send_error(
                WidgetErrorCode.BAD_FRAME, _("A frame is a JSON object with a “type”.")
            )
            return
        model = CLIENT_FRAME_TYPES.get(raw["type"])
        if model is None:
            await self.send_error(WidgetErrorCode.UNKNOWN_TYPE, _("Unknown frame type."))
            return
        if model.needs_hello and self.visitor is None:
            await self.send_error(WidgetErrorCode.HELLO_FIRST, _("Say hello first."))
            return
        try:
            frame = CLIENT_FRAME.validate_python(raw)
        except FrameInvalid as invalid:
            await self.send_error(*model.refusal(invalid.errors(include_url=False)))
            return
        await getattr(self, f"on_{frame.type}")(frame)

    def _visitor(self) -> services.WidgetSession:
        """The visitor, for frames that only come after hello (``needs_hello``)."""
        if self.visitor is None:
            raise RuntimeError("a frame that needs a hello was handled before one")
        return self.visitor

    async def on_ping(self, frame: Ping) -> None:
        await self.send_frame(Pong(id=frame.id))

    async def on_hello(self, frame: Hello) -> None:
        token = frame.visitor_token
        identity = visitor_identity(frame.identity)
        if token is None and identity is None and self.visitor is not None:
            token = self.visitor.visitor_token  # hello again on this socket: the same visitor
        self.language = widget_language(frame.language, self.tenant.default_language)
        session = await services.awidget_session_start(
            tenant=self.tenant, visitor_token=token, identity=identity
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
            await atickets_for_customer(tenant_id=self.tenant.pk, customer_id=session.customer_id)
            if session.customer_id is not None
            else []
        )
        await self.send_frame(
            Welcome(
                visitor_token=session.visitor_token,
                conversation_id=session.conversation_id,
                status=session.conversation_status,
                resumed=session.resumed,
                language=self.language,
                history=[
                    HistoryEntry(
                        id=item.id,
                        role=item.role,
                        text=item.content,
                        source=item.source,
                        at=item.created_at,
                    )
                    for item in session.history
                ],
                tickets=[TicketEntry.model_validate(asdict(ticket)) for ticket in tickets],
                pending=list(session.pending),
            )
        )
        if session.identity_rejected:
            await self.send_error(
                WidgetErrorCode.IDENTITY_REJECTED,
                _("The visitor's identity could not be verified."),
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
        started = await services.awidget_conversation_start(
            tenant=self.tenant, external_id=visitor.external_id, language=self.language
        )
        return await self._join_conversation(
            visitor=visitor,
            customer_id=started.customer_id,
            conversation_id=started.conversation_id,
            conversation_key=started.conversation_key,
            new_conversation=started.new_conversation,
        )

    async def on_message(self, frame: ChatMessage) -> None:
        if self.tasks is None:
            self.tasks = set()
        chat = await self._conversation(self._visitor())
        if chat.new_conversation:  # from now on it has messages
            self.chat = replace(chat, new_conversation=False)
        task = asyncio.create_task(self._answer(chat, frame.text.strip(), frame.id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, chat: ChatContext, text: str, client_id: str) -> None:
        if self.answering is None:
            self.answering = asyncio.Lock()
        async with self.answering:
            try:
                await answer_customer_message(
                    ctx=chat,
                    text=text,
                    client_message_id=client_id,
                    replies=WidgetSocketSink(self.send_frame),
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # the customer gets an error frame, never a dead socket
                logger.exception("answering failed tenant=%s", chat.tenant.pk)
                await self.send_error(
                    WidgetErrorCode.INTERNAL,
                    _("Something went wrong on our side. Please try again."),
                )

    async def on_feedback(self, frame: Feedback) -> None:
        chat = self.chat
        recorded = chat is not None and await services.amessage_feedback_record(
            tenant_id=self.tenant.pk,
            conversation_id=chat.conversation_id,
            message_id=frame.message_id,
            value=frame.value,
        )
        if chat is None or not recorded:
            await self.send_error(WidgetErrorCode.BAD_FRAME, _("No such answer to rate."))
            return
        await self.send_frame(FeedbackAck(feedback=frame.message_id, value=frame.value))
        if frame.value == "down" and self.tenant.handoff_on_negative_feedback:
            await hand_off(
                chat,
                HandoffReason.NEGATIVE_FEEDBACK,
                WidgetSocketSink(self.send_frame),
                self.language,
            )

    async def on_handoff(self, frame: Handoff) -> None:
        await hand_off(
            await self._conversation(self._visitor()),
            HandoffReason.CUSTOMER_REQUEST,
            WidgetSocketSink(self.send_frame),
            self.language,
            by_customer=True,
        )

    async def on_contact(self, frame: Contact) -> None:
        """Nobody could take the conversation: the customer leaves details for a ticket."""
        visitor = self._visitor()
        email, phone = frame.email.strip(), frame.phone.strip()
        try:
            if email:
                validate_email(email)
        except ValidationError:
            await self.send_error(
                WidgetErrorCode.BAD_CONTACT, _("Please enter a valid e-mail address.")
            )
            return
        if phone and not PHONE_PATTERN.fullmatch(phone):
            await self.send_error(
                WidgetErrorCode.BAD_CONTACT, _("Please enter a valid phone number.")
            )
            return
        if not email and not phone:
            await self.send_error(
                WidgetErrorCode.BAD_CONTACT,
                _("Please leave an e-mail address or a phone number."),
            )
            return
        decision = await contact_rate_limit_check(
            tenant_id=self.tenant.pk, visitor_id=visitor.external_id
        )
        if not decision.allowed:
            with translation.override(self.language):
                await self.send_frame(
                    Error(
                        code=WidgetErrorCode.RATE_LIMITED,
                        retry_after=round(decision.retry_after_seconds, 1),
                        text=str(_("You are sending details too often. Please wait a while.")),
                    )
                )
            return
        try:
            if self.chat is None:
                raise ContactNotExpected
            contact = await aticket_from_conversation(
                tenant=self.tenant,
                conversation_id=self.chat.conversation_id,
                name=frame.name.strip()[:120],
                email=email,
                phone=phone,
                note=pii_mask(frame.text.strip()[:MAX_MESSAGE_CHARS]).text,
            )
        except ContactNotExpected:
            await self.send_error(
                WidgetErrorCode.CONTACT_NOT_EXPECTED,
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
            TicketOpened(id=contact.ticket.pk, updated=contact.updated, text=text)
        )

    async def on_rating(self, frame: Rating) -> None:
        rated = self.chat is not None and await services.aconversation_rate(
            tenant_id=self.tenant.pk,
            conversation_id=self.chat.conversation_id,
            rating=frame.value,
            comment=pii_mask(frame.comment[:1000]).text,
        )
        if not rated:
            await self.send_error(WidgetErrorCode.BAD_FRAME, _("A rating is a number from 1 to 5."))
            return
        await self.send_frame(RatingAck(rating=frame.value))

    async def on_typing(self, frame: Typing) -> None:
        if self.chat is not None and await typing_throttle_pass(
            tenant_id=self.tenant.pk, conversation_id=self.chat.conversation_id, sender="customer"
        ):
            await self.channel_layer.group_send(
                agents_group(self.tenant.pk),
                {"type": "customer.typing", "conversation_id": self.chat.conversation_id},
            )

    # Events from the channel layer (agents, handoff) ------------------------------------------

    async def conversation_status(self, event: dict[str, Any]) -> None:
        if "agents_available" in event:  # handed to the people by an integration or an agent
            await self.send_frame(
                HandoffStatus(
                    status=event["status"],
                    position=event["position"],
                    agents_available=event["agents_available"],
                    collect_contact=not event["agents_available"],
                    text=event["text"],
                )
            )
            return
        with translation.override(self.language):
            await self.send_frame(Status(status=event["status"], text=str(event.get("text", ""))))

    async def agent_message(self, event: dict[str, Any]) -> None:
        await self.send_frame(
            AgentMessage(message_id=event["message_id"], text=event["text"], author=event["author"])
        )

    async def agent_typing(self, event: dict[str, Any]) -> None:
        await self.send_frame(AgentTyping(author=event["author"]))

    async def rating_request(self, event: dict[str, Any]) -> None:
        with translation.override(self.language):
            text = str(_("How did we do? Please rate this conversation from 1 to 5."))
        await self.send_frame(RatingRequest(text=text))

    async def send_frame(self, frame: WidgetServerFrame) -> None:
        """Every frame the socket sends goes through here."""
        await self.send(text_data=frame.model_dump_json())

    async def send_error(self, code: str, text: "StrOrPromise") -> None:
        with translation.override(self.language):
            await self.send_frame(Error(code=WidgetErrorCode(code), text=str(text)))
