"""The REST API's conversations and messages (docs/api.md): what the agent console does, for
the tenant's own systems. Writes go through the console's services, so the same events are
published: a customer's widget sees an agent's reply live whichever way it was sent."""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
)
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from conversations import agents, handoff, selectors, services
from conversations.models import Channel, Conversation, Message, Priority
from helpdesk_site.api import (
    api_tenant,
    conflict,
    found,
    paginated_response,
    validated,
)
from helpdesk_site.api_fields import MemberField
from helpdesk_site.api_view import IDEMPOTENCY_PARAMETER, ApiView
from tenants.models import ApiKey, Tenant

Scope = ApiKey.Scope
TAGS = ["conversations"]
MAX_TAGS = 20
MAX_TAG_CHARS = 50
MAX_TEXT_CHARS = 4000


def _conversation(request: Request, conversation_id: int) -> Conversation:
    conversation = selectors.conversation_get(
        tenant=api_tenant(request), conversation_id=conversation_id
    )
    return found(conversation, _("No such conversation."))


def api_member(*, tenant: Tenant, user: int | str, field: str) -> selectors.Agent:
    """The tenant's member ``user`` (a ``MemberField``'s value) who works conversations and
    tickets; a 400 naming ``field`` if there is none."""
    agent = selectors.agent_for_member(tenant=tenant, user=user)
    if agent is None:
        raise exceptions.ValidationError(
            {field: [_("Not an active member of this tenant who works conversations and tickets.")]}
        )
    return agent


# Fields -----------------------------------------------------------------------------------------


class OptionalText(serializers.CharField):
    """A text field the model keeps blank when unset: null in the API."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_null=True, **kwargs)

    def to_representation(self, value: Any) -> str | None:  # type: ignore[override]
        return str(value) if value else None


# Output -----------------------------------------------------------------------------------------


class CustomerRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    name = serializers.CharField(source="display_name")

    class Meta:
        ref_name = "ConversationCustomer"


class MemberRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(source="get_username")
    email = serializers.EmailField()

    class Meta:
        ref_name = "ConversationMember"


class CsatSerializer(serializers.Serializer):
    rating = serializers.IntegerField(source="csat_rating", min_value=1, max_value=5)
    comment = serializers.CharField(source="csat_comment")

    class Meta:
        ref_name = "ConversationCsat"


class ConversationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Conversation.Status.choices)
    channel = serializers.ChoiceField(choices=Channel.choices)
    priority = serializers.ChoiceField(choices=Priority.choices)
    tags = serializers.ListField(child=serializers.CharField())
    language = serializers.CharField()
    customer = CustomerRefSerializer()
    assignee = MemberRefSerializer(allow_null=True)
    handoff_reason = OptionalText(help_text="Why it went to a person; null when it never did.")
    resolution_kind = OptionalText(help_text="ai, agent, ticket or abandoned; null while open.")
    csat = serializers.SerializerMethodField()
    message_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    last_message_at = serializers.DateTimeField(allow_null=True)
    queued_at = serializers.DateTimeField(allow_null=True)
    assigned_at = serializers.DateTimeField(allow_null=True)
    resolved_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "Conversation"

    @extend_schema_field(CsatSerializer(allow_null=True))
    def get_csat(self, conversation: Conversation) -> dict[str, Any] | None:
        if conversation.csat_rating is None:
            return None
        return dict(CsatSerializer(conversation).data)


class AnswerSerializer(serializers.Serializer):
    citations = serializers.ListField(
        source="knowledge_refs",
        child=serializers.CharField(),
        help_text="The knowledge the answer used: faq-<id> entries and document passages.",
    )
    provider = serializers.CharField()
    model = serializers.CharField()
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=12, decimal_places=6)
    first_token_ms = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.IntegerField(allow_null=True)
    confidence = serializers.FloatField(allow_null=True)

    class Meta:
        ref_name = "ConversationMessageAnswer"


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    role = serializers.ChoiceField(choices=Message.Role.choices)
    text = serializers.CharField(source="content")
    source = OptionalText(  # type: ignore[assignment]  # a declared field
        help_text="faq, rag, llm, offline, agent or fallback."
    )
    internal = serializers.BooleanField(help_text="An internal note: agents see it, customers not.")
    author = MemberRefSerializer(allow_null=True, help_text="The agent, for agents' messages.")
    feedback = OptionalText(help_text="The customer's up or down on an answer.")
    created_at = serializers.DateTimeField()
    answer = serializers.SerializerMethodField()

    class Meta:
        ref_name = "ConversationMessage"

    @extend_schema_field(AnswerSerializer(allow_null=True))
    def get_answer(self, message: Message) -> dict[str, Any] | None:
        """How the assistant answered: null for anyone else's message."""
        if message.role != Message.Role.ASSISTANT:
            return None
        return dict(AnswerSerializer(message).data)


# Views ------------------------------------------------------------------------------------------

_CONVERSATION_ID = OpenApiParameter("conversation_id", int, OpenApiParameter.PATH)
_TIME = "ISO 8601, e.g. 2026-12-01T09:00:00Z (UTC without an offset)."
_FILTERS = [
    OpenApiParameter(
        "status",
        {"type": "array", "items": {"type": "string", "enum": Conversation.Status.values}},
        description="Repeat it (status=queued&status=human) or list with commas.",
        explode=True,
    ),
    OpenApiParameter("channel", str, enum=Channel.values),
    OpenApiParameter("assignee", str, description="A user id, or `none` for unassigned."),
    OpenApiParameter("tag", str, description="Conversations carrying this tag."),
    OpenApiParameter("customer", int, description="The customer's id."),
    OpenApiParameter("created_after", OpenApiTypes.DATETIME, description=_TIME),
    OpenApiParameter("created_before", OpenApiTypes.DATETIME, description=_TIME),
    OpenApiParameter("updated_after", OpenApiTypes.DATETIME, description=_TIME),
    OpenApiParameter("updated_before", OpenApiTypes.DATETIME, description=_TIME),
    OpenApiParameter("q", str, description="Text in any of its messages (case-insensitive)."),
]


class ConversationListApi(ApiView):
    """The tenant's conversations, newest first, filtered."""

    required_scope = Scope.CONVERSATIONS_READ

    class FilterSerializer(serializers.Serializer):
        status = serializers.ListField(
            child=serializers.ChoiceField(choices=Conversation.Status.values), required=False
        )
        channel = serializers.ChoiceField(choices=Channel.values, required=False)
        assignee = serializers.RegexField(
            r"^(none|[1-9][0-9]{0,17})$",
            required=False,
            error_messages={"invalid": _("Give a user id, or none.")},
        )
        tag = serializers.CharField(max_length=MAX_TAG_CHARS, required=False)
        customer = serializers.IntegerField(min_value=1, required=False)
        created_after = serializers.DateTimeField(required=False)
        created_before = serializers.DateTimeField(required=False)
        updated_after = serializers.DateTimeField(required=False)
        updated_before = serializers.DateTimeField(required=False)
        q = serializers.CharField(max_length=200, required=False)

    @extend_schema(
        operation_id="conversations_list",
        tags=TAGS,
        parameters=_FILTERS,
        responses=ConversationSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        data: dict[str, Any] = {
            key: params[key] for key in self.FilterSerializer().get_fields() if key in params
        }
        if "status" in params:
            data["status"] = [
                part.strip() for raw in params.getlist("status") for part in raw.split(",")
            ]
        values = validated(self.FilterSerializer, data)
        assignee = values.get("assignee")
        rows = selectors.conversation_list(
            tenant=api_tenant(request),
            filters=selectors.ConversationFilters(
                statuses=tuple(values.get("status", ())),
                channel=values.get("channel"),
                assignee_id=int(assignee) if assignee and assignee != "none" else None,
                unassigned=assignee == "none",
                tag=values.get("tag"),
                customer_id=values.get("customer"),
                created_after=values.get("created_after"),
                created_before=values.get("created_before"),
                updated_after=values.get("updated_after"),
                updated_before=values.get("updated_before"),
                text=values.get("q"),
            ),
        )
        return paginated_response(
            request=request, view=self, queryset=rows, serializer_class=ConversationSerializer
        )


class ConversationDetailApi(ApiView):
    """One conversation: its state, customer, assignee, rating and times."""

    required_scope = {"GET": Scope.CONVERSATIONS_READ, "PATCH": Scope.CONVERSATIONS_WRITE}

    class UpdateSerializer(serializers.Serializer):
        status = serializers.ChoiceField(
            choices=services.SETTABLE_STATUSES,
            required=False,
            help_text="resolved, or bot: back to the assistant, for a conversation the "
            "assistant resolved or that was abandoned in the queue. A person takes a "
            "conversation through `assignee`; the handoff endpoint queues it.",
        )
        priority = serializers.ChoiceField(choices=Priority.choices, required=False)
        assignee = MemberField(
            required=False,
            allow_null=True,
            help_text="An active member who works conversations: it is taken for them from "
            "the assistant or the queue, or transferred to them. null hands a conversation "
            "with a person back to the assistant.",
        )
        tags = serializers.ListField(
            child=serializers.CharField(max_length=MAX_TAG_CHARS),
            max_length=MAX_TAGS,
            required=False,
            help_text=f"Replaces the tags: at most {MAX_TAGS} of {MAX_TAG_CHARS} characters, "
            "stripped, each once.",
        )

        class Meta:
            ref_name = "ConversationUpdate"

        def validate_tags(self, tags: list[str]) -> list[str]:
            return list(dict.fromkeys(tags))  # the first of each, in order (already stripped)

    @extend_schema(
        operation_id="conversations_retrieve",
        tags=TAGS,
        parameters=[_CONVERSATION_ID],
        responses=ConversationSerializer,
    )
    def get(self, request: Request, conversation_id: int) -> Response:
        return Response(ConversationSerializer(_conversation(request, conversation_id)).data)

    @extend_schema(
        operation_id="conversations_update",
        tags=TAGS,
        parameters=[_CONVERSATION_ID],
        request=UpdateSerializer,
        responses=ConversationSerializer,
        examples=[
            OpenApiExample(
                "Escalate", value={"priority": "high", "tags": ["refund", "vip"]}, request_only=True
            ),
            OpenApiExample("Give to an agent", value={"assignee": 42}, request_only=True),
            OpenApiExample("Resolve", value={"status": "resolved"}, request_only=True),
        ],
    )
    def patch(self, request: Request, conversation_id: int) -> Response:
        tenant = api_tenant(request)
        conversation = _conversation(request, conversation_id)
        values = validated(self.UpdateSerializer, request.data)
        assign = "assignee" in values
        assignee = values.get("assignee")
        changes = services.ConversationChanges(
            status=values.get("status"),
            priority=values.get("priority"),
            tags=tuple(values["tags"]) if "tags" in values else None,
            assign=assign,
            assignee=api_member(tenant=tenant, user=assignee, field="assignee")
            if assignee is not None
            else None,
        )
        try:
            services.conversation_update(
                tenant=tenant, conversation_id=conversation.pk, changes=changes
            )
        except PermissionDenied as refused:
            raise conflict(
                _("The conversation's state (%(status)s) does not allow this change.")
                % {"status": conversation.status}
            ) from refused
        return Response(ConversationSerializer(_conversation(request, conversation_id)).data)


class ConversationMessagesApi(ApiView):
    """A conversation's messages, oldest first, internal notes included (flagged); and an
    agent's reply or internal note."""

    required_scope = {"GET": Scope.CONVERSATIONS_READ, "POST": Scope.CONVERSATIONS_WRITE}
    default_order = "asc"

    class ReplySerializer(serializers.Serializer):
        text = serializers.CharField(max_length=MAX_TEXT_CHARS)
        agent = MemberField(
            help_text="Who writes: an active member who works conversations (id or e-mail)."
        )
        internal = serializers.BooleanField(
            default=False, help_text="An internal note: only agents see it."
        )

        class Meta:
            ref_name = "ConversationReply"

    @extend_schema(
        operation_id="conversations_messages_list",
        description="The conversation's messages, oldest first (`order=desc`: newest first), "
        "internal notes included and flagged.",
        tags=TAGS,
        parameters=[_CONVERSATION_ID],
        responses=MessageSerializer(many=True),
    )
    def get(self, request: Request, conversation_id: int) -> Response:
        conversation = _conversation(request, conversation_id)
        rows = selectors.conversation_messages(
            tenant=api_tenant(request), conversation=conversation
        )
        return paginated_response(
            request=request, view=self, queryset=rows, serializer_class=MessageSerializer
        )

    @extend_schema(
        operation_id="conversations_messages_create",
        description="An agent's reply, which the customer sees at once (a conversation with "
        "the assistant or in the queue is first taken for the agent, as the console's accept "
        "does), or an internal note (`internal: true`), which only agents see.",
        tags=TAGS,
        parameters=[_CONVERSATION_ID, IDEMPOTENCY_PARAMETER],
        request=ReplySerializer,
        responses={201: MessageSerializer},
        examples=[
            OpenApiExample(
                "Reply",
                value={"text": "Your parcel left today.", "agent": "li@shop.example"},
                request_only=True,
            ),
            OpenApiExample(
                "Internal note",
                value={"text": "VIP customer", "agent": 42, "internal": True},
                request_only=True,
            ),
        ],
    )
    def post(self, request: Request, conversation_id: int) -> Response:
        tenant = api_tenant(request)
        conversation = _conversation(request, conversation_id)
        values = validated(self.ReplySerializer, request.data)
        agent = api_member(tenant=tenant, user=values["agent"], field="agent")
        try:
            message = agents.agent_reply_taking(
                agent=agent,
                conversation_id=conversation.pk,
                text=values["text"],
                internal=values["internal"],
            )
        except PermissionDenied as refused:
            raise conflict(
                _("This agent cannot reply: the conversation is with another agent, or it ended.")
            ) from refused
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)


class ConversationHandoffApi(ApiView):
    """Hands the conversation to the people: queued, or given at once to the least busy
    online agent when the tenant assigns automatically."""

    required_scope = Scope.CONVERSATIONS_WRITE

    class InputSerializer(serializers.Serializer):
        reason = serializers.ChoiceField(
            choices=Conversation.HandoffReason.values,
            default=Conversation.HandoffReason.CUSTOMER_REQUEST,
        )

        class Meta:
            ref_name = "ConversationHandoff"

    class OutputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Conversation.Status.values)
        moved = serializers.BooleanField(
            help_text="False when it already was with the people (nothing changed)."
        )
        queue_position = serializers.IntegerField(source="position", allow_null=True)
        agents_available = serializers.BooleanField(
            help_text="An agent is online within business hours."
        )

        class Meta:
            ref_name = "ConversationHandoffOutcome"

    @extend_schema(
        operation_id="conversations_handoff",
        tags=TAGS,
        parameters=[_CONVERSATION_ID, IDEMPOTENCY_PARAMETER],
        request=InputSerializer,
        responses=OutputSerializer,
    )
    def post(self, request: Request, conversation_id: int) -> Response:
        tenant = api_tenant(request)
        conversation = _conversation(request, conversation_id)
        reason = validated(self.InputSerializer, request.data)["reason"]
        outcome = handoff.conversation_handoff(
            tenant=tenant,
            conversation_id=conversation.pk,
            reason=reason,
            # The integration asks for a person on the customer's behalf, as the widget does.
            by_customer=True,
            agents_reachable=selectors.agents_reachable(tenant_id=tenant.pk),
            announce=True,  # the customer's widget, if any, shows it
        )
        return Response(self.OutputSerializer(outcome).data)


class ConversationResolveApi(ApiView):
    """Resolves the conversation: by the assistant while it is with the assistant, else by an
    agent (the customer's widget says so and asks for a rating). Resolving a resolved
    conversation changes nothing; a closed one is refused (409)."""

    required_scope = Scope.CONVERSATIONS_WRITE

    @extend_schema(
        operation_id="conversations_resolve",
        tags=TAGS,
        parameters=[_CONVERSATION_ID, IDEMPOTENCY_PARAMETER],
        request=None,
        responses=ConversationSerializer,
    )
    def post(self, request: Request, conversation_id: int) -> Response:
        conversation = _conversation(request, conversation_id)
        try:
            agents.conversation_resolve_for_tenant(
                tenant=api_tenant(request), conversation_id=conversation.pk
            )
        except PermissionDenied as refused:
            raise conflict(_("The conversation is closed.")) from refused
        return Response(ConversationSerializer(_conversation(request, conversation_id)).data)
