from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from helpdesk_site.api_view import ApiView
from tenants.authentication import ANY_KEY


class TenantCurrentApi(ApiView):
    """The tenant and scopes of the API key in use: a way to check a key works."""

    required_scope = ANY_KEY

    class OutputSerializer(serializers.Serializer):
        slug = serializers.CharField(source="tenant.slug")
        name = serializers.CharField(source="tenant.name")
        key_prefix = serializers.CharField(source="prefix")
        scopes = serializers.ListField(child=serializers.CharField())

        class Meta:
            ref_name = "TenantCurrent"

    @extend_schema(responses=OutputSerializer, operation_id="tenant_current", tags=["tenant"])
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(request.auth).data)
