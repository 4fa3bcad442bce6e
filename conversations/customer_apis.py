"""REST API: customers (scopes ``conversations:read`` and ``conversations:write``; their tickets
``tickets:read``).

Choices an integration relies on:

- ``POST /customers`` creates an API customer (``channel: "api"``) named by your own
  ``external_id``; one that exists already is a 409 ``conflict`` whose message names its id (no
  upsert: update it with PATCH).
- ``PATCH`` merges ``attributes`` into the stored ones: a key set to ``null`` is deleted, the
  others are set; ``"attributes": null`` deletes them all.
- ``DELETE`` anonymises the customer (``conversations.customers.customer_anonymize``): their
  personal data is erased and their rows and statistics are kept. It answers 204, again too.
"""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext as _
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from conversations import selectors
from conversations.apis import ConversationSerializer
from conversations.customers import (
    CustomerAnonymized,
    CustomerExists,
    attributes_validate,
    customer_anonymize,
    customer_create,
    customer_update,
    phone_validate,
)
from conversations.models import Channel, Customer
from conversations.ticket_apis import (
    TicketFilterSerializer,
    TicketOutputSerializer,
    anonymized_conflict,
    tickets_page,
)
from helpdesk_site.api import (
    api_tenant,
    conflict,
    found,
    paginated_response,
    query_filters,
    validated,
)
from helpdesk_site.api_fields import TextField
from helpdesk_site.api_schema import ErrorSerializer
from helpdesk_site.api_view import ApiView
from tenants.models import ApiKey

Scope = ApiKey.Scope

_SCALAR = [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]


class _AttributesField(serializers.JSONField):
    """Custom attributes: a flat JSON object of string keys to strings, numbers or booleans
    (``conversations.customers.attributes_validate``: at most 50 keys, 8 KiB)."""

    allow_null_values = False

    def to_internal_value(self, data: Any) -> Any:
        data = super().to_internal_value(data)
        if not isinstance(data, dict):
            raise serializers.ValidationError(_("Send a JSON object."))
        try:
            attributes_validate(data, allow_null=self.allow_null_values)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from error
        return data


@extend_schema_field(
    {"type": "object", "additionalProperties": {"oneOf": _SCALAR}, "maxProperties": 50}
)
class AttributesField(_AttributesField):
    pass


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "additionalProperties": {"oneOf": _SCALAR, "nullable": True},
        "maxProperties": 50,
        "description": "Merged into the stored attributes: a key set to null is deleted. "
        "null deletes them all.",
    }
)
class AttributesPatchField(_AttributesField):
    allow_null_values = True


class CustomerOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField(
        help_text="Your id for an API customer; a random token once anonymised."
    )
    channel = serializers.ChoiceField(choices=Channel.choices)
    name = serializers.CharField(source="display_name")
    email = serializers.CharField()
    phone = serializers.CharField()
    attributes = AttributesField(source="metadata")
    identified = serializers.BooleanField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    anonymized = serializers.SerializerMethodField()
    anonymized_at = serializers.DateTimeField(allow_null=True)
    conversation_count = serializers.IntegerField()

    class Meta:
        ref_name = "Customer"

    def get_anonymized(self, customer: Customer) -> bool:
        return customer.anonymized_at is not None


class CustomerFilterSerializer(serializers.Serializer):
    q = serializers.CharField(
        required=False, max_length=200, help_text="Part of the name, e-mail, phone or external id."
    )
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    external_id = serializers.CharField(required=False, max_length=128)
    email = serializers.CharField(
        required=False, max_length=254, help_text="The whole address (in any case)."
    )
    identified = serializers.BooleanField(required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)

    class Meta:
        ref_name = "CustomerFilters"


def _customer(request: Request, customer_id: int) -> Customer:
    customer = selectors.customer_get(tenant=api_tenant(request), customer_id=customer_id)
    return found(customer, _("No such customer."))


def _customer_out(request: Request, customer_id: int) -> dict[str, Any]:
    return CustomerOutputSerializer(_customer(request, customer_id)).data


class CustomerListApi(ApiView):
    """The tenant's customers (GET), or a new API customer (POST)."""

    required_scope = {"GET": Scope.CONVERSATIONS_READ, "POST": Scope.CONVERSATIONS_WRITE}

    class InputSerializer(serializers.Serializer):
        external_id = TextField(max_length=128, help_text="Your own id of the customer.")
        name = TextField(required=False, allow_blank=True, max_length=120)
        email = serializers.EmailField(required=False, allow_blank=True)
        phone = TextField(
            required=False, allow_blank=True, max_length=40, validators=[phone_validate]
        )
        attributes = AttributesField(required=False)

        class Meta:
            ref_name = "CustomerCreate"

    @extend_schema(
        operation_id="customers_list",
        tags=["customers"],
        parameters=[CustomerFilterSerializer],
        responses=CustomerOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        data = query_filters(CustomerFilterSerializer, request)
        filters = selectors.CustomerFilters(
            q=data.get("q", ""),
            channel=data.get("channel"),
            external_id=data.get("external_id"),
            email=data.get("email"),
            identified=data.get("identified"),
            created_after=data.get("created_after"),
            created_before=data.get("created_before"),
        )
        customers = selectors.customer_list(tenant=api_tenant(request), filters=filters)
        return paginated_response(
            request=request,
            view=self,
            queryset=customers,
            serializer_class=CustomerOutputSerializer,
        )

    @extend_schema(
        operation_id="customers_create",
        tags=["customers"],
        request=InputSerializer,
        responses={201: CustomerOutputSerializer},
        examples=[
            OpenApiExample(
                "A customer of your shop",
                value={
                    "external_id": "user-981",
                    "name": "Li Wei",
                    "email": "li.wei@example.com",
                    "phone": "+86 138 0013 8000",
                    "attributes": {"plan": "gold", "orders": 12},
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = validated(self.InputSerializer, request.data)
        try:
            customer = customer_create(
                tenant=api_tenant(request),
                external_id=data["external_id"],
                name=data.get("name", ""),
                email=data.get("email", ""),
                phone=data.get("phone", ""),
                attributes=data.get("attributes"),
            )
        except CustomerExists as exists:
            raise conflict(
                _("A customer with this external_id exists already: id %(id)d.")
                % {"id": exists.customer_id}
            ) from None
        return Response(_customer_out(request, customer.pk), status=status.HTTP_201_CREATED)


class CustomerDetailApi(ApiView):
    """One customer (GET), a change of their details (PATCH), or their anonymisation (DELETE)."""

    required_scope = {
        "GET": Scope.CONVERSATIONS_READ,
        "PATCH": Scope.CONVERSATIONS_WRITE,
        "DELETE": Scope.CONVERSATIONS_WRITE,
    }

    class InputSerializer(serializers.Serializer):
        name = TextField(required=False, allow_blank=True, max_length=120)
        email = serializers.EmailField(required=False, allow_blank=True)
        phone = TextField(
            required=False, allow_blank=True, max_length=40, validators=[phone_validate]
        )
        attributes = AttributesPatchField(required=False, allow_null=True)

        class Meta:
            ref_name = "CustomerUpdate"

    @extend_schema(
        operation_id="customers_retrieve", tags=["customers"], responses=CustomerOutputSerializer
    )
    def get(self, request: Request, customer_id: int) -> Response:
        return Response(_customer_out(request, customer_id))

    @extend_schema(
        operation_id="customers_update",
        tags=["customers"],
        request=InputSerializer,
        responses={
            200: CustomerOutputSerializer,
            409: OpenApiResponse(ErrorSerializer, description="The customer was anonymised."),
        },
        examples=[
            OpenApiExample(
                "New e-mail, one attribute set and one deleted",
                value={
                    "email": "wei.li@example.com",
                    "attributes": {"plan": "platinum", "coupon": None},
                },
                request_only=True,
            )
        ],
    )
    def patch(self, request: Request, customer_id: int) -> Response:
        customer = _customer(request, customer_id)
        data = validated(self.InputSerializer, request.data)
        changes = {
            key: data[key] for key in ("name", "email", "phone", "attributes") if key in data
        }
        try:
            customer_update(customer=customer, **changes)
        except CustomerAnonymized:
            raise anonymized_conflict() from None
        return Response(_customer_out(request, customer_id))

    @extend_schema(
        operation_id="customers_anonymize",
        tags=["customers"],
        description="Anonymises the customer: erases their name, e-mail, phone, attributes and "
        "external id (replaced by a random token), the text of their messages and ticket "
        "replies, their tickets' subjects, descriptions and contact details, and their "
        "satisfaction comments; keeps every row, status, time, rating and token count. "
        "Answers 204 again for a customer anonymised before.",
        request=None,
        responses={204: None},
    )
    def delete(self, request: Request, customer_id: int) -> Response:
        customer_anonymize(customer=_customer(request, customer_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class CustomerConversationListApi(ApiView):
    """The customer's conversations, newest first by default, as the conversation list shows
    them."""

    required_scope = Scope.CONVERSATIONS_READ

    @extend_schema(
        operation_id="customers_conversations_list",
        tags=["customers"],
        responses=ConversationSerializer(many=True),
    )
    def get(self, request: Request, customer_id: int) -> Response:
        customer = _customer(request, customer_id)
        conversations = selectors.conversation_list(
            tenant=api_tenant(request),
            filters=selectors.ConversationFilters(customer_id=customer.pk),
        )
        return paginated_response(
            request=request,
            view=self,
            queryset=conversations,
            serializer_class=ConversationSerializer,
        )


class CustomerTicketFilterSerializer(TicketFilterSerializer):
    customer = None  # type: ignore[assignment]  # the path names the customer

    class Meta:
        ref_name = "CustomerTicketFilters"


class CustomerTicketListApi(ApiView):
    """The customer's tickets, with the filters of the ticket list."""

    required_scope = Scope.TICKETS_READ

    @extend_schema(
        operation_id="customers_tickets_list",
        tags=["customers"],
        parameters=[CustomerTicketFilterSerializer],
        responses=TicketOutputSerializer(many=True),
    )
    def get(self, request: Request, customer_id: int) -> Response:
        customer = _customer(request, customer_id)
        return tickets_page(self, request, CustomerTicketFilterSerializer, customer_id=customer.pk)
