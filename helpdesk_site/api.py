"""The REST API's conventions, the same on every endpoint (docs/api.md):

- **Errors** have one shape, ``{"error": {"code", "message", "fields"?}}``, with the stable codes
  of ``ApiErrorCode``; a validation error names each field it refuses (``fields``, a field name
  to messages; nested fields are dotted: ``items.3.answer``).
- **Lists** are cursor-paginated (``CursorPagination``): ``?limit=`` (1–100) and ``?cursor=``,
  answered with ``{data, has_more, next_cursor}``.
- **POSTs** may carry an ``Idempotency-Key``: a retry with the same key gets the first response
  again (header ``Idempotent-Replayed: true``) and does nothing twice (``ApiView``).
- **Rate limits** per API key (``ApiKeyRateThrottle``): 429 with ``Retry-After``.
- **Times** are ISO 8601 in UTC (``…Z``), whatever the server's ``TIME_ZONE``.

Every API view derives from ``helpdesk_site.api_view.ApiView`` and declares the key scope it needs
(``required_scope``, checked by ``tenants.authentication.HasScope``).
"""

import base64
import binascii
import json
import logging
from enum import StrEnum
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from conversations.ratelimit import rate_limit_hit_blocking, rate_limit_parse
from tenants.models import ApiKey, Tenant

logger = logging.getLogger(__name__)
Row = TypeVar("Row")


class ApiErrorCode(StrEnum):
    """The ``error.code`` of every API error response. Stable: integrations branch on them."""

    UNAUTHENTICATED = "unauthenticated"  # 401: no API key
    INVALID_API_KEY = "invalid_api_key"  # 401: unknown or revoked key
    MISSING_SCOPE = "missing_scope"  # 403: the key lacks the endpoint's scope
    FORBIDDEN = "forbidden"  # 403: anything else refused
    NOT_FOUND = "not_found"  # 404 (also another tenant's object)
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    NOT_ACCEPTABLE = "not_acceptable"  # 406
    INVALID = "invalid"  # 400: validation failed (see ``fields``)
    MALFORMED = "malformed_request"  # 400: the body is not valid JSON or multipart
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    CONFLICT = "conflict"  # 409: the object's state does not allow it
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"  # 409: the first try still runs
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"  # 422: the key was used for another request
    RATE_LIMITED = "rate_limited"  # 429, with Retry-After
    INTERNAL = "internal_error"  # 500


class ApiError(exceptions.APIException):
    """A refusal of the API's own, with its status and code: ``raise ApiError(409,
    ApiErrorCode.CONFLICT, _("The conversation is closed."))``."""

    def __init__(
        self,
        status_code: int,
        code: ApiErrorCode,
        message: str,
        fields: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.fields = fields


_DRF_CODES: dict[type[exceptions.APIException], ApiErrorCode] = {
    exceptions.NotAuthenticated: ApiErrorCode.UNAUTHENTICATED,
    exceptions.AuthenticationFailed: ApiErrorCode.INVALID_API_KEY,
    exceptions.NotFound: ApiErrorCode.NOT_FOUND,
    exceptions.MethodNotAllowed: ApiErrorCode.METHOD_NOT_ALLOWED,
    exceptions.NotAcceptable: ApiErrorCode.NOT_ACCEPTABLE,
    exceptions.ValidationError: ApiErrorCode.INVALID,
    exceptions.ParseError: ApiErrorCode.MALFORMED,
    exceptions.UnsupportedMediaType: ApiErrorCode.UNSUPPORTED_MEDIA_TYPE,
    exceptions.Throttled: ApiErrorCode.RATE_LIMITED,
}


def api_tenant(request: Request) -> Tenant:
    """The tenant of the request's API key (``HasScope`` let only keys in)."""
    api_key = request.auth
    assert isinstance(api_key, ApiKey)  # noqa: S101
    return api_key.tenant


def found(row: Row | None, message: str) -> Row:
    """``row``, or a 404 with ``message`` when the selector found none (for the tenant)."""
    if row is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, ApiErrorCode.NOT_FOUND, message)
    return row


def conflict(message: str) -> ApiError:
    """A 409 ``conflict``: the object's state does not allow the request."""
    return ApiError(status.HTTP_409_CONFLICT, ApiErrorCode.CONFLICT, message)


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict:
    error: dict[str, Any] = {"code": str(code), "message": str(message)}
    if fields:
        error["fields"] = fields
    return {"error": error}


def _flatten_fields(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested validation detail as ``{"a.0.b": ["message", …]}``."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for name, value in detail.items():
            flat.update(_flatten_fields(value, f"{prefix}.{name}" if prefix else str(name)))
        return flat
    if isinstance(detail, list) and detail and all(isinstance(d, str) for d in detail):
        return {prefix: [str(d) for d in detail]}
    if isinstance(detail, list):
        flat = {}
        for index, value in enumerate(detail):
            if value:
                flat.update(_flatten_fields(value, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    return {prefix: [str(detail)]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        exc = exceptions.ValidationError(detail=detail)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    # Imported here: this module is named in the REST framework settings, which
    # rest_framework.views reads while it is first imported.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    response = drf_exception_handler(exc, context)
    if response is None:  # not an API exception: a bug, logged, answered in the API's shape
        # The exception's type and traceback only: never the request (its headers hold the key).
        logger.error("API request failed", exc_info=exc)
        # What the request wrote so far must not be committed with an answer that says it failed.
        set_rollback()
        return Response(
            error_body(ApiErrorCode.INTERNAL, _("Something went wrong on our side.")),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    assert isinstance(exc, exceptions.APIException)  # noqa: S101 (DRF answered it)
    if isinstance(exc, ApiError):
        response.data = error_body(exc.error_code, str(exc.detail), exc.fields)
        return response
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten_fields(exc.detail)
        # Errors of the whole body: DRF's non_field_errors, Django's __all__, or a bare message.
        general: list[str] = []
        for name in ("non_field_errors", NON_FIELD_ERRORS, ""):
            general += fields.pop(name, [])
        message = general[0] if general else _("Some fields are not valid.")
        response.data = error_body(ApiErrorCode.INVALID, message, fields or None)
        return response
    if isinstance(exc, exceptions.PermissionDenied):
        codes = exc.get_codes()
        code = ApiErrorCode.MISSING_SCOPE if codes == ApiErrorCode.MISSING_SCOPE else None
        response.data = error_body(code or ApiErrorCode.FORBIDDEN, str(exc.detail))
        return response
    code = next(
        (value for kind, value in _DRF_CODES.items() if isinstance(exc, kind)),
        ApiErrorCode.INTERNAL if response.status_code >= 500 else ApiErrorCode.INVALID,
    )
    message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    response.data = error_body(code, str(message))
    return response


class ApiKeyRateThrottle(BaseThrottle):
    """Requests per API key: the tenant's ``api_rate_limit``, else ``API_RATE_LIMIT``. Counted
    in Redis across processes (conversations.ratelimit); requests without a key are not
    counted here (they are refused before any work)."""

    def __init__(self) -> None:
        self._retry_after: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True
        rule = rate_limit_parse(value=api_key.tenant.api_rate_limit or settings.API_RATE_LIMIT)
        # Asked from this (worker) thread: a hop to the event loop would cost more than Redis.
        decision = rate_limit_hit_blocking(bucket=f"api:{api_key.pk}", rule=rule)
        if not decision.allowed:
            self._retry_after = max(1.0, decision.retry_after_seconds)
        return decision.allowed

    def wait(self) -> float | None:
        return self._retry_after


class CursorPagination(BasePagination):
    """Keyset pagination on ``id``: ``?limit=`` (1–100, default 25), ``?cursor=`` (opaque, from
    ``next_cursor``), ``?order=desc`` (newest first, the default) or ``asc``. A row added while
    a client walks the list never shifts a page: no gaps, no repeats."""

    default_limit = 25
    max_limit = 100

    def __init__(self) -> None:
        self.has_more = False
        self.next_cursor: str | None = None

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any]:
        limit = self._limit(request)
        order = request.query_params.get("order", getattr(view, "default_order", "desc"))
        after: int | None = None
        if raw := request.query_params.get("cursor"):
            order, after = _cursor_decode(raw)
        if order not in ("asc", "desc"):
            raise exceptions.ValidationError({"order": [_("Use asc or desc.")]})
        if after is not None:
            queryset = (
                queryset.filter(id__gt=after) if order == "asc" else queryset.filter(id__lt=after)
            )
        rows = list(queryset.order_by("id" if order == "asc" else "-id")[: limit + 1])
        self.has_more = len(rows) > limit
        rows = rows[:limit]
        self.next_cursor = _cursor_encode(order, rows[-1].pk) if self.has_more else None
        return rows

    def _limit(self, request: Request) -> int:
        raw = request.query_params.get("limit")
        if raw is None:
            return self.default_limit
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= self.max_limit:
            raise exceptions.ValidationError(
                {"limit": [_("Use a whole number from 1 to %(max)d.") % {"max": self.max_limit}]}
            )
        return limit

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"data": data, "has_more": self.has_more, "next_cursor": self.next_cursor})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["data", "has_more", "next_cursor"],
            "properties": {
                "data": schema,
                "has_more": {"type": "boolean"},
                "next_cursor": {"type": "string", "nullable": True},
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": "Rows per page, 1–100 (default 25).",
                "schema": {"type": "integer", "minimum": 1, "maximum": 100},
            },
            {
                "name": "cursor",
                "in": "query",
                "required": False,
                "description": "The next_cursor of the previous page.",
                "schema": {"type": "string"},
            },
            {
                "name": "order",
                "in": "query",
                "required": False,
                "description": "desc: newest first; asc: oldest first.",
                "schema": {"type": "string", "enum": ["desc", "asc"]},
            },
        ]


def validated(
    serializer_class: type[serializers.Serializer], data: Any, *, partial: bool = False
) -> dict[str, Any]:
    """``data`` (a request's body or query) validated by ``serializer_class`` (``partial``: the
    fields sent only); a 400 naming each refused field."""
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def query_filters(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    """A list's filters from the query string, validated (400 naming the parameter). Read from
    a plain dict: a form's absent check box is False, an absent filter is no filter."""
    return validated(serializer_class, request.query_params.dict())


def paginated_response(
    *,
    request: Request,
    view: Any,
    queryset: Any,
    serializer_class: type[serializers.BaseSerializer],
) -> Response:
    """One page of ``queryset`` (``CursorPagination``), each row shaped by ``serializer_class``."""
    paginator = CursorPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


_MAX_ROW_ID = 2**63 - 1


def _cursor_encode(order: str, last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{order}:{last_id}".encode()).decode().rstrip("=")


def _cursor_decode(raw: str) -> tuple[str, int]:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        order, _sep, last_id = text.partition(":")
        # A row id fits a signed 64-bit column; a larger number would fail in the database.
        if (
            order in ("asc", "desc")
            and last_id.isascii()
            and last_id.isdigit()
            and int(last_id) <= _MAX_ROW_ID
        ):
            return order, int(last_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise exceptions.ValidationError({"cursor": [_("This cursor is not valid.")]})
