"""The OpenAPI schema's conventions: every operation documents the errors it can answer in the
API's one error shape (helpdesk_site/api.py), and the API-key authentication."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from helpdesk_site.api import ApiErrorCode
from tenants.authentication import ANY_KEY, required_scope


def error_codes() -> list[str]:
    """The values of ``error.code``: one ``ErrorCode`` component (SPECTACULAR_SETTINGS
    ENUM_NAME_OVERRIDES), whatever serializer carries them."""
    return [code.value for code in ApiErrorCode]


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=error_codes())
    message = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]  # a declared field
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Field name (dotted for nested fields) to what is wrong with it.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# Per status: what the schema says of it, and an example body with its usual code.
_ERRORS: dict[str, tuple[str, ApiErrorCode, str]] = {
    "400": (
        "The request is not valid: error.fields names each field.",
        ApiErrorCode.INVALID,
        "Some fields are not valid.",
    ),
    "401": (
        "No API key, or an unknown or revoked one.",
        ApiErrorCode.UNAUTHENTICATED,
        "Authentication credentials were not provided.",
    ),
    "403": (
        "The API key lacks the scope this endpoint needs (missing_scope).",
        ApiErrorCode.MISSING_SCOPE,
        "This API key does not have the “tickets:read” scope.",
    ),
    "404": (
        "Not found (objects of other tenants are never found).",
        ApiErrorCode.NOT_FOUND,
        "Not found.",
    ),
    "409": (
        "The object's state does not allow it, or the first request with this "
        "Idempotency-Key is still running.",
        ApiErrorCode.IDEMPOTENCY_IN_PROGRESS,
        "A request with this Idempotency-Key is still being processed.",
    ),
    "415": (
        "The body's Content-Type is not one the endpoint reads (JSON, or multipart where it "
        "takes files).",
        ApiErrorCode.UNSUPPORTED_MEDIA_TYPE,
        'Unsupported media type "text/plain" in request.',
    ),
    "422": (
        "The Idempotency-Key was used for another request.",
        ApiErrorCode.IDEMPOTENCY_KEY_REUSED,
        "This Idempotency-Key was used for another request.",
    ),
    "429": (
        "Rate limited: retry after the Retry-After header's seconds.",
        ApiErrorCode.RATE_LIMITED,
        "Request was throttled. Expected available in 12 seconds.",
    ),
}


class KefuAutoSchema(AutoSchema):
    """drf-spectacular's schema, with the scope and the error responses of every operation."""

    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        # The scope is added here rather than in get_description, which an explicit
        # ``@extend_schema(description=…)`` bypasses.
        operation = super().get_operation(*args, **kwargs)
        scope = required_scope(self.view, self.method)
        if operation is None or scope is None:
            return operation
        needed = "any live API key" if scope == ANY_KEY else f"`{scope}` (or `admin`)"
        description = operation.get("description", "")
        operation["description"] = f"{description}\n\n**Scope:** {needed}".strip()
        return operation

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        public = not getattr(self.view, "required_scope", None)
        codes = ["400", "429"] if public else ["400", "401", "403", "404", "429"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["415"]
        if self.method == "POST" and not public:
            codes += ["409", "422"]
        for code in codes:
            if code not in responses:
                description, error_code, message = _ERRORS[code]
                responses[code] = self._get_response_for_code(ErrorSerializer, code)
                responses[code]["description"] = description
                body = responses[code]["content"]["application/json"]
                body["example"] = {"error": {"code": error_code.value, "message": message}}
        responses["429"]["headers"] = {
            "Retry-After": {
                "schema": {"type": "integer"},
                "description": "Seconds until the key may call again.",
            }
        }
        return responses


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "kefu_…",
            "description": "An API key issued in the console (API keys): "
            "`Authorization: Bearer kefu_…`.",
        }
