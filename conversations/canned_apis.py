"""Canned responses over the REST API: the ready-made replies agents insert in the console."""

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from conversations import canned, selectors
from conversations.models import CannedResponse
from helpdesk_site.api import api_tenant, found, paginated_response, query_filters, validated
from helpdesk_site.api_view import IDEMPOTENCY_PARAMETER, ApiView
from tenants.models import ApiKey

Scope = ApiKey.Scope
TAGS = ["canned responses"]
TITLE_MAX_CHARS = CannedResponse._meta.get_field("title").max_length
TEXT_MAX_CHARS = 10_000


def _canned_response(request: Request, canned_response_id: int) -> CannedResponse:
    responses = selectors.canned_response_list(tenant=api_tenant(request))
    return found(responses.filter(pk=canned_response_id).first(), _("No such canned response."))


class CannedResponseOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = CannedResponse
        ref_name = "CannedResponse"
        fields = ["id", "title", "text", "created_at", "updated_at"]
        read_only_fields = fields


class CannedResponseInputSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=TITLE_MAX_CHARS)
    text = serializers.CharField(max_length=TEXT_MAX_CHARS)

    class Meta:
        ref_name = "CannedResponseInput"


class CannedResponseFilterSerializer(serializers.Serializer):
    q = serializers.CharField(
        required=False, allow_blank=True, help_text="Text in the title or the reply."
    )

    class Meta:
        ref_name = "CannedResponseFilter"


class CannedResponseListApi(ApiView):
    """Canned responses: list and create."""

    required_scope = {"GET": Scope.CONVERSATIONS_READ, "POST": Scope.CONVERSATIONS_WRITE}
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="canned_responses_list",
        tags=TAGS,
        parameters=[CannedResponseFilterSerializer],
        responses=CannedResponseOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = query_filters(CannedResponseFilterSerializer, request)
        responses = selectors.canned_response_list(tenant=api_tenant(request), **filters)
        return paginated_response(
            request=request,
            view=self,
            queryset=responses,
            serializer_class=CannedResponseOutputSerializer,
        )

    @extend_schema(
        operation_id="canned_responses_create",
        tags=TAGS,
        parameters=[IDEMPOTENCY_PARAMETER],
        request=CannedResponseInputSerializer,
        responses={201: CannedResponseOutputSerializer},
        examples=[
            OpenApiExample(
                "A greeting",
                value={"title": "Greeting", "text": "Hello! How can I help you today?"},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = validated(CannedResponseInputSerializer, request.data)
        created = canned.canned_response_create(tenant=api_tenant(request), **data)
        return Response(
            CannedResponseOutputSerializer(created).data, status=status.HTTP_201_CREATED
        )


class CannedResponseDetailApi(ApiView):
    """One canned response: read, change (only the fields sent), delete."""

    required_scope = {
        "GET": Scope.CONVERSATIONS_READ,
        "PATCH": Scope.CONVERSATIONS_WRITE,
        "DELETE": Scope.CONVERSATIONS_WRITE,
    }
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="canned_responses_retrieve",
        tags=TAGS,
        responses=CannedResponseOutputSerializer,
    )
    def get(self, request: Request, canned_response_id: int) -> Response:
        found = _canned_response(request, canned_response_id)
        return Response(CannedResponseOutputSerializer(found).data)

    @extend_schema(
        operation_id="canned_responses_update",
        tags=TAGS,
        request=CannedResponseInputSerializer(partial=True),
        responses=CannedResponseOutputSerializer,
    )
    def patch(self, request: Request, canned_response_id: int) -> Response:
        found = _canned_response(request, canned_response_id)
        data = validated(CannedResponseInputSerializer, request.data, partial=True)
        updated = canned.canned_response_update(canned_response=found, changes=data)
        return Response(CannedResponseOutputSerializer(updated).data)

    @extend_schema(operation_id="canned_responses_destroy", tags=TAGS, responses={204: None})
    def delete(self, request: Request, canned_response_id: int) -> Response:
        canned.canned_response_delete(canned_response=_canned_response(request, canned_response_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
