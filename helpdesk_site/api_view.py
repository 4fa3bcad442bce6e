"""The base of every API view: idempotent POSTs, times in UTC, the key scope declared (the
conventions are in helpdesk_site/api.py, which the REST framework settings name and so cannot
import the framework's views)."""

import datetime as dt
import hashlib
import json
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.http import HttpResponseBase, QueryDict
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from helpdesk_site.api import ApiError, ApiErrorCode, CursorPagination
from tenants import services as tenant_services
from tenants.models import ApiKey

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Any unique string (a UUID): a retry with the same key within 24 hours gets the first "
        "response again and does nothing twice."
    ),
)


class _Replay(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class ApiView(APIView):
    """The base of every API view: the conventions of the module docstring. Declare
    ``required_scope``; keep the view thin (validate, call a service or selector, serialize)."""

    # Lists are paginated (helpdesk_site.api.CursorPagination); naming the class here makes the
    # schema of a GET declared with ``responses=OutputSerializer(many=True)`` the page shape
    # {data, has_more, next_cursor} with its limit, cursor and order parameters.
    pagination_class = CursorPagination
    _idempotency: tuple[int, int] | None = None  # (tenant id, record id) of a claimed key

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        with timezone.override(dt.UTC):
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if request.method != "POST" or key is None or not isinstance(request.auth, ApiKey):
            return
        if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX:
            raise exceptions.ValidationError({IDEMPOTENCY_HEADER: [_("Use 1 to 255 characters.")]})
        claim = tenant_services.idempotency_claim(
            api_key=request.auth, key=key, fingerprint=_fingerprint(request)
        )
        match claim.outcome:
            case tenant_services.IdempotencyOutcome.NEW:
                assert claim.record_id is not None  # noqa: S101
                self._idempotency = (request.auth.tenant_id, claim.record_id)
            case tenant_services.IdempotencyOutcome.REPLAY:
                replayed = Response(claim.body, status=claim.status_code)
                replayed["Idempotent-Replayed"] = "true"
                raise _Replay(replayed)
            case tenant_services.IdempotencyOutcome.IN_PROGRESS:
                raise ApiError(
                    status.HTTP_409_CONFLICT,
                    ApiErrorCode.IDEMPOTENCY_IN_PROGRESS,
                    _("A request with this Idempotency-Key is still being processed."),
                )
            case tenant_services.IdempotencyOutcome.MISMATCH:
                raise ApiError(
                    status.HTTP_422_UNPROCESSABLE_ENTITY,
                    ApiErrorCode.IDEMPOTENCY_KEY_REUSED,
                    _("This Idempotency-Key was used for another request."),
                )

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, _Replay):
            return exc.response
        return super().handle_exception(exc)

    def finalize_response(  # type: ignore[override]
        self, request: Request, response: Any, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        response = super().finalize_response(request, response, *args, **kwargs)
        if self._idempotency is not None:
            tenant_id, record_id = self._idempotency
            self._idempotency = None
            if isinstance(response, Response) and response.status_code < 500:
                tenant_services.idempotency_record(
                    tenant_id=tenant_id,
                    record_id=record_id,
                    status_code=response.status_code,
                    body=response.data,
                )
            else:  # failed on our side, or a stream: a retry runs the request again
                tenant_services.idempotency_release(tenant_id=tenant_id, record_id=record_id)
        return response


def _fingerprint(request: Request) -> str:
    """What a retry must repeat for its key to replay: method, path, query and the parsed body.
    The body is compared as data, not bytes: JSON with its keys in another order or other
    spacing is the same request, and so is a multipart body sent again with another boundary
    (its fields, and each file's name, type and content digest). Parsing here also means a
    malformed body is refused before the key is claimed."""
    digest = hashlib.sha256()
    for part in (request.method or "", request._request.get_full_path()):
        digest.update(part.encode() + b"\0")
    digest.update(json.dumps(_canonical(request.data), sort_keys=True, default=str).encode())
    for name, uploads in sorted(request.FILES.lists()):
        for upload in uploads:
            content = hashlib.sha256()
            for chunk in upload.chunks():
                content.update(chunk)
            upload.seek(0)
            digest.update(
                json.dumps([name, upload.name, upload.content_type, content.hexdigest()]).encode()
            )
    return digest.hexdigest()


def _canonical(data: Any) -> Any:
    """A parsed body as plain JSON data: a form's QueryDict as a dict of value lists, without
    its files (they are compared by content)."""
    if isinstance(data, QueryDict):
        return {
            name: values
            for name, values in data.lists()
            if not any(isinstance(value, UploadedFile) for value in values)
        }
    return data
