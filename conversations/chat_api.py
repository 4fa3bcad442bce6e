"""Headless chat over the REST API: the widget's answer pipeline for the integrator's own
customers, streamed as server-sent events or answered in one response
(conversations/headless.py, conversations/chat_stream.py)."""

from collections.abc import Mapping
from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    OpenApiTypes,
    extend_schema,
)
from rest_framework import exceptions, serializers, status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from conversations import chat_stream, headless, selectors
from conversations.handoff import handoff_text
from conversations.models import Channel, Message
from conversations.pipeline import ChatContext
from conversations.protocol import MAX_MESSAGE_CHARS, WidgetErrorCode
from helpdesk_site.api import ApiError, ApiErrorCode, api_tenant
from helpdesk_site.api_view import IDEMPOTENCY_HEADER, IDEMPOTENCY_PARAMETER, ApiView
from helpdesk_site.asyncdb import db_parallel
from tenants.models import ApiKey

EVENT_STREAM = "text/event-stream"


class EventStreamRenderer(BaseRenderer):
    """Lets a client ask for ``Accept: text/event-stream``; a refusal before the stream starts
    (validation, authentication) is then one ``error`` event."""

    media_type = EVENT_STREAM
    format = ""  # asked for by the Accept header only, not by a ?format= parameter
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        error = data.get("error") if isinstance(data, dict) else None
        return chat_stream.ChatEvent("error", error or {"detail": data}).encode()


STREAM_DESCRIPTION = """
**Streaming** (`response_mode: "streaming"`, the default): `text/event-stream`, one event per
answer step, each `event: <name>\\ndata: <json>\\n\\n`, and a `: ping` comment line every 10 s
while the answer is waited for:

- `message_start` `{conversation_id, message_id, duplicate}`: the question is stored
  (`message_id` is the customer's message: stop the answer with it). Always first.
- `message` `{conversation_id, message_id, text}`: a piece of the answer, to be appended.
- `message_end` `{conversation_id, message_id, reply_to, source, citations, tokens_in,
  tokens_out, cost, latency_ms, first_token_ms, interrupted}`: the answer is stored
  (`message_id` is the answer's: rate it with it; `reply_to` is the customer's message).
- `handoff` `{conversation_id, status, position, agents_available, text}`: the conversation
  went to a person.
- `error` `{code, message, retry_after}`: not answered (`rate_limited`, `blocked`,
  `answer_pending`, `internal`).

A client that disconnects stops the answer; what was shown is stored (`interrupted`).
No events follow `message_start` when a person owns the conversation.

**Blocking** (`response_mode: "blocking"`): one JSON object once the answer is stored.

An `Idempotency-Key` makes a retry safe: the question is stored once, and the retry is answered
with the answer stored to it (blocking responses are replayed as they were).
""".strip()


class ChatHandoffSerializer(serializers.Serializer):
    status = serializers.CharField()
    position = serializers.IntegerField(allow_null=True)
    agents_available = serializers.BooleanField()
    text = serializers.CharField()

    class Meta:
        ref_name = "ChatHandoff"


class PooledApiView(ApiView):
    """An API view served from async code: DRF's (sync) dispatch runs on the worker pool,
    whose threads keep their database connections. Under ASGI a sync view gets a new thread
    per request, and with it a new database connection that outlives it (``CONN_MAX_AGE``):
    under load PostgreSQL ran out of connections."""

    view_is_async = True

    async def dispatch(  # type: ignore[override]
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        response: HttpResponseBase = await db_parallel(super().dispatch)(request, *args, **kwargs)
        return response


class ChatMessageApi(PooledApiView):
    __doc__ = "Sends a customer's message to the assistant and returns its answer.\n\n" + (
        STREAM_DESCRIPTION
    )

    required_scope = ApiKey.Scope.CHAT
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    class InputSerializer(serializers.Serializer):
        query = serializers.CharField(max_length=MAX_MESSAGE_CHARS)
        user = serializers.CharField(
            max_length=100, help_text="Your own id of the customer (made on first use)."
        )
        conversation_id = serializers.IntegerField(
            min_value=1,
            required=False,
            help_text="One of this customer's conversations; default: their open one, or a "
            "new one.",
        )
        name = serializers.CharField(max_length=120, required=False, allow_blank=True)
        email = serializers.EmailField(required=False, allow_blank=True)
        language = serializers.ChoiceField(choices=["en", "zh-hans"], required=False)
        response_mode = serializers.ChoiceField(
            choices=["streaming", "blocking"], default="streaming"
        )

        class Meta:
            ref_name = "ChatMessageInput"

    class OutputSerializer(serializers.Serializer):
        conversation_id = serializers.IntegerField()
        question_id = serializers.IntegerField(allow_null=True, help_text="The customer's message.")
        duplicate = serializers.BooleanField(help_text="The question was sent before.")
        message_id = serializers.IntegerField(
            allow_null=True, help_text="The stored answer (null: none, a person owns it)."
        )
        answer = serializers.CharField(allow_blank=True)
        source = serializers.ChoiceField(  # type: ignore[assignment]  # a declared field
            choices=[*Message.Source.values, ""], allow_blank=True, required=False
        )
        citations = serializers.ListField(child=serializers.CharField())
        tokens_in = serializers.IntegerField()
        tokens_out = serializers.IntegerField()
        cost = serializers.DecimalField(max_digits=12, decimal_places=6)
        latency_ms = serializers.IntegerField(allow_null=True)
        first_token_ms = serializers.IntegerField(allow_null=True)
        interrupted = serializers.BooleanField()
        handoff = ChatHandoffSerializer(allow_null=True)

        class Meta:
            ref_name = "ChatMessageOutput"

    @extend_schema(
        operation_id="chat_message_send",
        tags=["chat"],
        request=InputSerializer,
        # The stream is asked for in the body (response_mode), not with ?format=.
        parameters=[IDEMPOTENCY_PARAMETER, OpenApiParameter("format", exclude=True)],
        responses={
            (200, "application/json"): OutputSerializer,
            (200, EVENT_STREAM): OpenApiResponse(
                # One server-sent event, as a client's parser yields it: its name and its data
                # (a JSON object, see the table above).
                response={
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                        "event": {
                            "type": "string",
                            "enum": ["message_start", "message", "message_end", "handoff", "error"],
                        },
                        "data": {"type": "string", "description": "A JSON object."},
                    },
                },
                description="Server-sent events (see the table above).",
                examples=[
                    OpenApiExample(
                        "An answer from the FAQ",
                        media_type=EVENT_STREAM,
                        value=(
                            "event: message_start\n"
                            'data: {"conversation_id":7,"message_id":41,"duplicate":false}\n\n'
                            "event: message\n"
                            'data: {"conversation_id":7,"message_id":41,'
                            '"text":"Delivery takes 3-5 working days."}\n\n'
                            "event: message_end\n"
                            'data: {"conversation_id":7,"message_id":42,"reply_to":41,'
                            '"source":"faq","citations":["faq-3"],"tokens_in":0,'
                            '"tokens_out":0,"cost":"0.000000","latency_ms":4,'
                            '"first_token_ms":4,"interrupted":false}\n\n'
                        ),
                    )
                ],
            ),
        },
        examples=[
            OpenApiExample(
                "Ask, blocking",
                request_only=True,
                value={
                    "query": "How long does delivery take?",
                    "user": "customer-1042",
                    "response_mode": "blocking",
                },
            ),
            OpenApiExample(
                "A blocking answer",
                response_only=True,
                media_type="application/json",
                value={
                    "conversation_id": 7,
                    "question_id": 41,
                    "duplicate": False,
                    "message_id": 42,
                    "answer": "Delivery takes 3-5 working days.",
                    "source": "faq",
                    "citations": ["faq-3"],
                    "tokens_in": 0,
                    "tokens_out": 0,
                    "cost": "0.000000",
                    "latency_ms": 4,
                    "first_token_ms": 4,
                    "interrupted": False,
                    "handoff": None,
                },
            ),
        ],
    )
    def post(self, request: Request) -> Any:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        tenant = api_tenant(request)
        try:
            chat = headless.api_chat_start(
                tenant=tenant,
                user=data["user"],
                name=data.get("name", ""),
                email=data.get("email", ""),
                language=data.get("language", ""),
                conversation_id=data.get("conversation_id"),
            )
        except headless.ApiConversationNotFound as missing:
            raise exceptions.NotFound(_("No such conversation of this customer.")) from missing
        ctx = ChatContext(
            tenant=tenant,
            visitor_id=f"api:{data['user']}",
            customer_id=chat.started.customer_id,
            conversation_id=chat.started.conversation_id,
            conversation_key=chat.started.conversation_key,
            language=chat.language,
            new_conversation=chat.started.new_conversation,
            channel=Channel.API,
        )
        client_message_id = headless.api_client_message_id(
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER)
        )
        question = data["query"].strip()
        if data["response_mode"] == "streaming":
            response = StreamingHttpResponse(
                chat_stream.chat_event_stream(
                    ctx=ctx, text=question, client_message_id=client_message_id
                ),
                content_type=EVENT_STREAM,
            )
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"
            return response
        # Answered on the event loop once this thread is free (``dispatch``).
        return _AnswerPending(ctx=ctx, text=question, client_message_id=client_message_id)

    async def dispatch(  # type: ignore[override]
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        response = await super().dispatch(request, *args, **kwargs)
        if not isinstance(response, _AnswerPending):
            return response
        reply = await chat_stream.chat_reply_collect(
            ctx=response.ctx, text=response.text, client_message_id=response.client_message_id
        )
        if self._idempotency is None:  # nothing to record: no database, no thread
            return self._answered(reply)
        answered: HttpResponseBase = await db_parallel(self._answered)(reply)
        return answered

    def _answered(self, reply: chat_stream.ChatReply) -> HttpResponseBase:
        """The blocking answer as the response, finalized (and recorded for its
        Idempotency-Key) as DRF's dispatch would have."""
        response: Response
        try:
            if reply.error is not None:
                raise _refusal(reply.error)
            response = Response(self.OutputSerializer(_blocking_body(reply)).data)
        except exceptions.APIException as refused:
            response = self.handle_exception(refused)
        return self.finalize_response(self.request, response)

    def finalize_response(  # type: ignore[override]
        self, request: Request, response: Any, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if isinstance(response, _AnswerPending):
            return response  # finalized with the answer (``_answered``)
        return super().finalize_response(request, response, *args, **kwargs)


class _AnswerPending(Response):
    """What the blocking answer needs, handed from DRF's dispatch (a worker thread) to the
    event loop."""

    def __init__(self, *, ctx: ChatContext, text: str, client_message_id: str) -> None:
        super().__init__()
        self.ctx = ctx
        self.text = text
        self.client_message_id = client_message_id


def _refusal(error: dict[str, Any]) -> exceptions.APIException:
    if error["code"] == WidgetErrorCode.RATE_LIMITED:
        return exceptions.Throttled(wait=error["retry_after"], detail=error["message"])
    if error["code"] == WidgetErrorCode.BLOCKED:
        return ApiError(
            status.HTTP_400_BAD_REQUEST,
            ApiErrorCode.INVALID,
            error["message"],
            fields={"query": [error["message"]]},
        )
    if error["code"] == chat_stream.ANSWER_PENDING:
        return ApiError(status.HTTP_409_CONFLICT, ApiErrorCode.CONFLICT, error["message"])
    return exceptions.APIException(error["message"])


def _blocking_body(reply: chat_stream.ChatReply) -> dict[str, Any]:
    end = reply.end or {}
    return {
        "conversation_id": reply.conversation_id,
        "question_id": reply.question_id,
        "duplicate": reply.duplicate,
        "message_id": end.get("message_id"),
        "answer": reply.text,
        "source": end.get("source", ""),
        "citations": end.get("citations", []),
        "tokens_in": end.get("tokens_in", 0),
        "tokens_out": end.get("tokens_out", 0),
        "cost": end.get("cost", "0"),
        "latency_ms": end.get("latency_ms"),
        "first_token_ms": end.get("first_token_ms"),
        "interrupted": end.get("interrupted", False),
        "handoff": reply.handoff,
    }


MESSAGE_ID = OpenApiParameter(
    "message_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="A message's id."
)


def _message_found(tenant_id: int, message_id: int, role: str) -> None:
    if not selectors.message_exists(tenant_id=tenant_id, message_id=message_id, role=role):
        raise ApiError(status.HTTP_404_NOT_FOUND, ApiErrorCode.NOT_FOUND, _("No such message."))


class ChatStopApi(PooledApiView):
    """Stops the answer being streamed to the customer's message ``message_id`` (the
    ``message_id`` of its ``message_start`` event), whichever server streams it. The part
    already sent is stored."""

    required_scope = ApiKey.Scope.CHAT

    class OutputSerializer(serializers.Serializer):
        stopped = serializers.BooleanField(help_text="False: nothing was streaming.")

        class Meta:
            ref_name = "ChatStop"

    @extend_schema(
        operation_id="chat_message_stop",
        tags=["chat"],
        request=None,
        parameters=[MESSAGE_ID, IDEMPOTENCY_PARAMETER],
        responses=OutputSerializer,
    )
    def post(self, request: Request, message_id: int) -> Response:
        tenant_id = api_tenant(request).pk
        _message_found(tenant_id, message_id, Message.Role.CUSTOMER)
        stopped = async_to_sync(chat_stream.chat_stream_stop)(
            tenant_id=tenant_id, message_id=message_id
        )
        return Response(self.OutputSerializer({"stopped": stopped}).data)


class MessageFeedbackApi(PooledApiView):
    """The customer ``user`` rates an answer in one of their conversations. A thumbs-down may
    hand the conversation to a person (the tenant's handoff settings)."""

    required_scope = ApiKey.Scope.CHAT

    class InputSerializer(serializers.Serializer):
        rating = serializers.ChoiceField(choices=Message.Feedback.values)
        user = serializers.CharField(max_length=100)

        class Meta:
            ref_name = "MessageFeedbackInput"

    class OutputSerializer(serializers.Serializer):
        message_id = serializers.IntegerField()
        rating = serializers.CharField()
        handoff = ChatHandoffSerializer(allow_null=True)

        class Meta:
            ref_name = "MessageFeedbackOutput"

    @extend_schema(
        operation_id="message_feedback",
        tags=["chat"],
        request=InputSerializer,
        parameters=[MESSAGE_ID, IDEMPOTENCY_PARAMETER],
        responses=OutputSerializer,
        examples=[
            OpenApiExample(
                "Thumbs down", request_only=True, value={"rating": "down", "user": "customer-1042"}
            )
        ],
    )
    def post(self, request: Request, message_id: int) -> Response:
        tenant = api_tenant(request)
        _message_found(tenant.pk, message_id, Message.Role.ASSISTANT)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        recorded = headless.api_message_feedback(
            tenant=tenant,
            user=serializer.validated_data["user"],
            message_id=message_id,
            rating=serializer.validated_data["rating"],
        )
        if recorded is None:
            raise exceptions.NotFound(_("No such answer in this customer's conversations."))
        outcome = recorded.handoff
        handoff = (
            {
                "status": outcome.status,
                "position": outcome.position,
                "agents_available": outcome.agents_available,
                "text": handoff_text(outcome, tenant.default_language),
            }
            if outcome is not None
            else None
        )
        return Response(
            self.OutputSerializer(
                {"message_id": message_id, "rating": recorded.rating, "handoff": handoff}
            ).data
        )
