"""REST API: tickets and their replies (scopes ``tickets:read`` and ``tickets:write``).

Tickets made here behave as the console's: due after the tenant's SLA unless told otherwise,
the tenant's agents are e-mailed about a new one, an agent's reply is e-mailed to the customer.
"""

from dataclasses import replace
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from conversations import selectors
from conversations.apis import api_member
from conversations.customers import customer_for_ticket, phone_validate
from conversations.models import Conversation, Customer, Priority, Ticket, TicketReply
from conversations.tickets import (
    ticket_create,
    ticket_customer_reply,
    ticket_reply_send,
    ticket_update,
)
from helpdesk_site.api import (
    ApiError,
    api_tenant,
    conflict,
    found,
    paginated_response,
    query_filters,
    validated,
)
from helpdesk_site.api_fields import MemberField, TextField
from helpdesk_site.api_view import ApiView
from tenants.models import ApiKey, Tenant

Scope = ApiKey.Scope

# Shared by the REST API views of this app -------------------------------------------------------


def anonymized_conflict() -> ApiError:
    """The customer was anonymised: nothing personal of theirs is stored again."""
    return conflict(_("The customer was anonymised."))


# Serializers --------------------------------------------------------------------------------------


class MemberOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.SerializerMethodField()
    email = serializers.EmailField()

    class Meta:
        ref_name = "TicketMember"

    def get_name(self, user: Any) -> str:
        return user.get_full_name() or user.get_username()


class TicketOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    subject = serializers.CharField()
    description = serializers.CharField()
    status = serializers.ChoiceField(choices=Ticket.Status.choices)
    priority = serializers.ChoiceField(choices=Priority.choices)
    customer_id = serializers.IntegerField()
    conversation_id = serializers.IntegerField(allow_null=True)
    contact_email = serializers.CharField()
    contact_phone = serializers.CharField()
    assignee = MemberOutputSerializer(allow_null=True)
    sla_due_at = serializers.DateTimeField(allow_null=True)
    overdue = serializers.SerializerMethodField()
    solved_at = serializers.DateTimeField(allow_null=True)
    agents_emailed_at = serializers.DateTimeField(allow_null=True)
    reply_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Ticket"

    def get_overdue(self, ticket: Ticket) -> bool:
        """Past its SLA and not solved."""
        return (
            ticket.sla_due_at is not None
            and ticket.sla_due_at < timezone.now()
            and ticket.status != Ticket.Status.SOLVED
        )


class TicketReplyOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    ticket_id = serializers.IntegerField()
    text = serializers.CharField(source="content")
    from_customer = serializers.BooleanField()
    author = MemberOutputSerializer(allow_null=True)
    emailed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "TicketReply"


class TicketFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Ticket.Status.choices, required=False)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    assignee = serializers.RegexField(
        r"^(\d+|none)$", required=False, help_text="A user id, or none: unassigned tickets."
    )
    customer = serializers.IntegerField(required=False, help_text="A customer id.")
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    updated_after = serializers.DateTimeField(required=False)
    updated_before = serializers.DateTimeField(required=False)
    overdue = serializers.BooleanField(
        required=False, help_text="true: past the SLA and not solved; false: the others."
    )
    q = serializers.CharField(
        required=False, max_length=200, help_text="Part of the subject or description."
    )

    class Meta:
        ref_name = "TicketFilters"


def ticket_filters(data: dict[str, Any], **fixed: Any) -> selectors.TicketFilters:
    """The list's filters from its query parameters; ``fixed`` ones (the customer of
    ``/customers/{id}/tickets``) win over the query's."""
    assignee = data.get("assignee")
    filters = selectors.TicketFilters(
        status=data.get("status"),
        priority=data.get("priority"),
        assignee_id=int(assignee) if assignee not in (None, "none") else None,
        unassigned=assignee == "none",
        customer_id=data.get("customer"),
        created_after=data.get("created_after"),
        created_before=data.get("created_before"),
        updated_after=data.get("updated_after"),
        updated_before=data.get("updated_before"),
        overdue=data.get("overdue"),
        q=data.get("q", ""),
    )
    return replace(filters, **fixed)


def tickets_page(
    view: ApiView,
    request: Request,
    filter_serializer: type[serializers.Serializer] = TicketFilterSerializer,
    **fixed: Any,
) -> Response:
    """A page of the tenant's tickets by the request's filters (and ``fixed`` ones)."""
    filters = ticket_filters(query_filters(filter_serializer, request), **fixed)
    tickets = selectors.ticket_list(tenant=api_tenant(request), filters=filters).select_related(
        "assignee"
    )
    return paginated_response(
        request=request, view=view, queryset=tickets, serializer_class=TicketOutputSerializer
    )


class TicketCustomerSerializer(serializers.Serializer):
    external_id = TextField(max_length=128)
    name = TextField(max_length=120, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)

    class Meta:
        ref_name = "TicketCustomerRef"


# Views --------------------------------------------------------------------------------------------


def _ticket(request: Request, ticket_id: int) -> Ticket:
    ticket = selectors.ticket_get(tenant=api_tenant(request), ticket_id=ticket_id)
    return found(ticket, _("No such ticket."))


def _ticket_out(request: Request, ticket_id: int) -> dict[str, Any]:
    return TicketOutputSerializer(_ticket(request, ticket_id)).data


class TicketListApi(ApiView):
    """The tenant's tickets (GET), or a new ticket (POST)."""

    required_scope = {"GET": Scope.TICKETS_READ, "POST": Scope.TICKETS_WRITE}

    class InputSerializer(serializers.Serializer):
        subject = TextField(max_length=200)
        description = TextField(required=False, allow_blank=True, max_length=50_000)
        customer_id = serializers.IntegerField(required=False)
        customer = TicketCustomerSerializer(
            required=False,
            help_text="The customer by your own id: found, or created as an API customer.",
        )
        conversation_id = serializers.IntegerField(required=False)
        contact_email = serializers.EmailField(required=False, allow_blank=True)
        contact_phone = TextField(
            required=False, allow_blank=True, max_length=40, validators=[phone_validate]
        )
        priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
        assignee = MemberField(required=False, allow_null=True)
        sla_due_at = serializers.DateTimeField(
            required=False, help_text="Default: now plus the tenant's ticket SLA hours."
        )

        class Meta:
            ref_name = "TicketCreate"

        def validate(self, data: dict[str, Any]) -> dict[str, Any]:
            if "customer_id" in data and "customer" in data:
                raise serializers.ValidationError(
                    {"customer": [_("Give customer_id or customer, not both.")]}
                )
            if not {"customer_id", "customer", "conversation_id"} & data.keys():
                raise serializers.ValidationError(
                    {"customer_id": [_("Give customer_id, customer or conversation_id.")]}
                )
            return data

    @extend_schema(
        operation_id="tickets_list",
        tags=["tickets"],
        parameters=[TicketFilterSerializer],
        responses=TicketOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        return tickets_page(self, request)

    @extend_schema(
        operation_id="tickets_create",
        tags=["tickets"],
        request=InputSerializer,
        responses={201: TicketOutputSerializer},
        examples=[
            OpenApiExample(
                "By your customer id",
                value={
                    "subject": "Refund for order 1042",
                    "description": "The parcel arrived damaged.",
                    "customer": {"external_id": "user-981", "email": "li.wei@example.com"},
                    "priority": "high",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        tenant = api_tenant(request)
        data = validated(self.InputSerializer, request.data)
        conversation = self._conversation(tenant, data.get("conversation_id"))
        customer = self._customer(tenant, data, conversation)
        assignee = data.get("assignee")
        ticket = ticket_create(
            tenant=tenant,
            customer_id=customer.pk,
            conversation_id=conversation.pk if conversation is not None else None,
            subject=data["subject"],
            description=data.get("description", ""),
            contact_email=data.get("contact_email", ""),
            contact_phone=data.get("contact_phone", ""),
            priority=data["priority"],
            assignee_id=(
                api_member(tenant=tenant, user=assignee, field="assignee").user_id
                if assignee is not None
                else None
            ),
            sla_due_at=data.get("sla_due_at"),
        )
        return Response(_ticket_out(request, ticket.pk), status=status.HTTP_201_CREATED)

    @staticmethod
    def _conversation(tenant: Tenant, conversation_id: int | None) -> Conversation | None:
        if conversation_id is None:
            return None
        conversation = selectors.conversation_of_tenant(
            tenant=tenant, conversation_id=conversation_id
        )
        if conversation is None:
            raise exceptions.ValidationError({"conversation_id": [_("No such conversation.")]})
        return conversation

    @staticmethod
    def _customer(
        tenant: Tenant, data: dict[str, Any], conversation: Conversation | None
    ) -> Customer:
        if "customer" in data:
            ref = data["customer"]
            customer = customer_for_ticket(
                tenant=tenant,
                external_id=ref["external_id"],
                name=ref.get("name", ""),
                email=ref.get("email", ""),
            )
        elif "customer_id" in data:
            found = selectors.customer_get(tenant=tenant, customer_id=data["customer_id"])
            if found is None:
                raise exceptions.ValidationError({"customer_id": [_("No such customer.")]})
            customer = found
        else:
            assert conversation is not None  # noqa: S101 - the input requires one of them
            customer = conversation.customer
        if conversation is not None and conversation.customer_id != customer.pk:
            raise exceptions.ValidationError(
                {"conversation_id": [_("The conversation is another customer's.")]}
            )
        if customer.anonymized_at is not None:
            raise anonymized_conflict()
        return customer


class TicketDetailApi(ApiView):
    """One ticket (GET), or a change of its status, priority, assignee or SLA (PATCH)."""

    required_scope = {"GET": Scope.TICKETS_READ, "PATCH": Scope.TICKETS_WRITE}

    class InputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(
            choices=Ticket.Status.choices,
            required=False,
            help_text="solved records the time; open or pending clears it.",
        )
        priority = serializers.ChoiceField(choices=Priority.choices, required=False)
        assignee = MemberField(required=False, allow_null=True, help_text="null: unassign.")
        sla_due_at = serializers.DateTimeField(required=False, allow_null=True)

        class Meta:
            ref_name = "TicketUpdate"

    @extend_schema(
        operation_id="tickets_retrieve", tags=["tickets"], responses=TicketOutputSerializer
    )
    def get(self, request: Request, ticket_id: int) -> Response:
        return Response(_ticket_out(request, ticket_id))

    @extend_schema(
        operation_id="tickets_update",
        tags=["tickets"],
        request=InputSerializer,
        responses={200: TicketOutputSerializer},
        examples=[
            OpenApiExample(
                "Assign and solve",
                value={"status": "solved", "assignee": "agent@example.com"},
                request_only=True,
            )
        ],
    )
    def patch(self, request: Request, ticket_id: int) -> Response:
        ticket = _ticket(request, ticket_id)
        data = validated(self.InputSerializer, request.data)
        changes: dict[str, Any] = {
            key: data[key] for key in ("status", "priority", "sla_due_at") if key in data
        }
        if "assignee" in data:
            ref = data["assignee"]
            changes["assignee_id"] = (
                None
                if ref is None
                else api_member(tenant=api_tenant(request), user=ref, field="assignee").user_id
            )
        ticket_update(ticket=ticket, **changes)
        return Response(_ticket_out(request, ticket_id))


class TicketReplyListApi(ApiView):
    """A ticket's replies, oldest first (GET), or a new reply (POST)."""

    required_scope = {"GET": Scope.TICKETS_READ, "POST": Scope.TICKETS_WRITE}
    default_order = "asc"

    class InputSerializer(serializers.Serializer):
        text = TextField(max_length=20_000)
        agent = MemberField(
            required=False, help_text="The agent who replies: the customer is e-mailed."
        )
        from_customer = serializers.BooleanField(
            default=False, help_text="true: the customer's own reply (it reopens a solved ticket)."
        )

        class Meta:
            ref_name = "TicketReplyCreate"

        def validate(self, data: dict[str, Any]) -> dict[str, Any]:
            if ("agent" in data) == data["from_customer"]:
                raise serializers.ValidationError(
                    {"agent": [_("Give agent, or from_customer: true (not both).")]}
                )
            return data

    @extend_schema(
        operation_id="tickets_replies_list",
        tags=["tickets"],
        responses=TicketReplyOutputSerializer(many=True),
    )
    def get(self, request: Request, ticket_id: int) -> Response:
        ticket = _ticket(request, ticket_id)
        replies = selectors.ticket_replies(
            tenant=api_tenant(request), ticket_id=ticket.pk
        ).select_related("author")
        return paginated_response(
            request=request,
            view=self,
            queryset=replies,
            serializer_class=TicketReplyOutputSerializer,
        )

    @extend_schema(
        operation_id="tickets_replies_create",
        tags=["tickets"],
        request=InputSerializer,
        responses={201: TicketReplyOutputSerializer},
        examples=[
            OpenApiExample(
                "An agent's reply",
                value={"text": "Your refund is on its way.", "agent": "agent@example.com"},
                request_only=True,
            ),
            OpenApiExample(
                "The customer's reply",
                value={"text": "Thanks, received.", "from_customer": True},
                request_only=True,
            ),
        ],
    )
    def post(self, request: Request, ticket_id: int) -> Response:
        ticket = _ticket(request, ticket_id)
        data = validated(self.InputSerializer, request.data)
        reply: TicketReply
        if data["from_customer"]:
            if ticket.customer.anonymized_at is not None:
                raise anonymized_conflict()
            reply = ticket_customer_reply(ticket=ticket, content=data["text"])
        else:
            agent = api_member(tenant=api_tenant(request), user=data["agent"], field="agent")
            reply = ticket_reply_send(ticket=ticket, author_id=agent.user_id, content=data["text"])
        return Response(TicketReplyOutputSerializer(reply).data, status=status.HTTP_201_CREATED)
