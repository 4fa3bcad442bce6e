"""The REST API's conventions (helpdesk_site/api.py, api_view.py), the same on every endpoint:
the error shape, scopes, idempotent POSTs, cursor pagination, rate limits and UTC times.

Small test-only views stand in for endpoints that do not exist yet; /api/v1/tenant is real."""

import base64
import datetime as dt
import logging
import threading
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.shortcuts import get_object_or_404
from django.test.client import encode_multipart
from django.urls import include, path
from django.utils import timezone
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient

from conversations.models import CannedResponse
from helpdesk_site.api import CursorPagination
from helpdesk_site.api_view import ApiView
from helpdesk_site.urls import api_v1
from tenants import services
from tenants.models import ApiKey, IdempotencyRecord
from tests.support.api import key_client
from tests.support.factories import CannedResponseFactory, TenantFactory

Scope = ApiKey.Scope


class CannedOut(serializers.ModelSerializer):
    class Meta:
        model = CannedResponse
        fields = ["id", "title", "created_at"]


class ItemIn(serializers.Serializer):
    question = serializers.CharField()
    answer = serializers.CharField()


class CannedIn(serializers.Serializer):
    title = serializers.CharField(max_length=100)
    items = ItemIn(many=True, required=False)


def _create(request: Request) -> Response:
    """Makes a row: what an idempotent retry must not make twice."""
    data = CannedIn(data=request.data)
    data.is_valid(raise_exception=True)
    row = CannedResponse.objects.create(
        tenant_id=request.auth.tenant_id, title=data.validated_data["title"], text="t"
    )
    return Response(CannedOut(row).data, status=201)


class CannedCreateApi(ApiView):
    required_scope = Scope.CONVERSATIONS_WRITE

    def post(self, request: Request) -> Response:
        return _create(request)


class CannedListApi(ApiView):
    required_scope = {"GET": Scope.CONVERSATIONS_READ, "POST": Scope.CONVERSATIONS_WRITE}

    def get(self, request: Request) -> Response:
        paginator = CursorPagination()
        page = paginator.paginate_queryset(CannedResponse.objects.all(), request, view=self)
        return paginator.get_paginated_response(CannedOut(page, many=True).data)

    def post(self, request: Request) -> Response:
        return _create(request)


class CannedDetailApi(ApiView):
    required_scope = Scope.CONVERSATIONS_READ

    def get(self, request: Request, canned_response_id: int) -> Response:
        return Response(CannedOut(get_object_or_404(CannedResponse, pk=canned_response_id)).data)


class UploadApi(ApiView):
    required_scope = Scope.KNOWLEDGE_WRITE
    parser_classes = [MultiPartParser]

    def post(self, request: Request) -> Response:
        upload = request.FILES["file"]
        row = CannedResponse.objects.create(
            tenant_id=request.auth.tenant_id,
            title=request.POST["title"],
            text=upload.read().decode(),
        )
        return Response(CannedOut(row).data, status=201)


class Switch:
    """What the next request to a test view does; set by each test."""

    fail_next = False
    entered = threading.Event()
    release = threading.Event()


class FlakyApi(ApiView):
    """Fails on our side once when told to, then makes its row."""

    required_scope = Scope.CONVERSATIONS_WRITE

    def post(self, request: Request) -> Response:
        if Switch.fail_next:
            Switch.fail_next = False
            raise RuntimeError("the disk is full")
        return _create(request)


class SlowApi(ApiView):
    """Holds its request until the test releases it: a first try still running."""

    required_scope = Scope.CONVERSATIONS_WRITE

    def post(self, request: Request) -> Response:
        Switch.entered.set()
        Switch.release.wait(30)
        return _create(request)


class ServiceRefusalApi(ApiView):
    """A service's own ValidationError, of one field and of the whole request."""

    required_scope = Scope.CONVERSATIONS_WRITE

    def post(self, request: Request) -> Response:
        raise DjangoValidationError(
            {"__all__": ["The conversation is closed."], "priority": ["Not a priority."]}
        )


class TimesApi(ApiView):
    required_scope = Scope.CONVERSATIONS_READ

    class OutputSerializer(serializers.Serializer):
        at = serializers.DateTimeField()
        row = CannedOut()

    def get(self, request: Request) -> Response:
        at = dt.datetime(2026, 1, 2, 11, 4, 5, tzinfo=ZoneInfo("Asia/Shanghai"))
        row = CannedResponse.objects.first()
        return Response(self.OutputSerializer({"at": at, "row": row}).data)


urlpatterns = [
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("t/canned", CannedListApi.as_view()),
    path("t/canned/<int:canned_response_id>", CannedDetailApi.as_view()),
    path("t/create", CannedCreateApi.as_view()),
    path("t/upload", UploadApi.as_view()),
    path("t/flaky", FlakyApi.as_view()),
    path("t/slow", SlowApi.as_view()),
    path("t/times", TimesApi.as_view()),
    path("t/refusal", ServiceRefusalApi.as_view()),
]

pytestmark = pytest.mark.urls(__name__)


def _key(tenant: Any, scopes: list[str]) -> str:
    return services.api_key_issue(tenant=tenant, name="Test", scopes=scopes).raw_key


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


# --- Errors ---------------------------------------------------------------------------------


def test_no_key_invalid_key_and_revoked_key_are_401(tenant_a) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="Old", scopes=["admin"])
    services.api_key_revoke(api_key=issued.api_key)

    missing = key_client(None).get("/api/v1/tenant")
    unknown = key_client("kefu_deadbeef_nope").get("/api/v1/tenant")
    revoked = key_client(issued.raw_key).get("/api/v1/tenant")

    _error(missing, 401, "unauthenticated")
    assert missing["WWW-Authenticate"] == "Bearer"
    _error(unknown, 401, "invalid_api_key")
    _error(revoked, 401, "invalid_api_key")


def test_a_key_of_an_inactive_tenant_is_401(tenant_a) -> None:
    raw = _key(tenant_a, ["admin"])
    tenant_a.is_active = False
    tenant_a.save(update_fields=["is_active"])

    _error(key_client(raw).get("/api/v1/tenant"), 401, "invalid_api_key")


def test_tenant_endpoint_answers_any_live_key_without_secrets(tenant_a) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="Reader", scopes=["tickets:read"])

    response = key_client(issued.raw_key).get("/api/v1/tenant")

    assert response.status_code == 200
    assert response.json() == {
        "slug": "tenant-a",
        "name": "Tenant A",
        "key_prefix": issued.api_key.prefix,
        "scopes": ["tickets:read"],
    }
    assert key_client(issued.raw_key).get("/api/v1/tenant/").status_code == 404  # no trailing slash


def test_missing_scope_is_403_naming_the_scope_per_method(tenant_a) -> None:
    reader = key_client(_key(tenant_a, ["conversations:read"]))

    listed = reader.get("/t/canned")
    refused = reader.post("/t/canned", {"title": "Hi"}, format="json")

    assert listed.status_code == 200
    error = _error(refused, 403, "missing_scope")
    assert "conversations:write" in error["message"]
    assert CannedResponse.objects.count() == 0


def test_the_admin_scope_grants_every_scope(tenant_a) -> None:
    admin = key_client(_key(tenant_a, ["admin"]))

    assert admin.get("/t/canned").status_code == 200
    assert admin.post("/t/canned", {"title": "Hi"}, format="json").status_code == 201
    assert admin.post("/t/upload", {"title": "F", "file": _file(b"x")}).status_code == 201


def test_a_method_a_view_does_not_have_is_405(tenant_a) -> None:
    admin = key_client(_key(tenant_a, ["admin"]))
    reader = key_client(_key(tenant_a, ["conversations:read"]))

    _error(admin.delete("/t/canned"), 405, "method_not_allowed")  # per-method scopes
    _error(reader.delete("/t/canned"), 405, "method_not_allowed")
    _error(admin.post("/api/v1/tenant", {}, format="json"), 405, "method_not_allowed")
    # Without a key nothing is said about the endpoint but that a key is needed.
    _error(key_client(None).delete("/t/canned"), 401, "unauthenticated")


def test_another_tenants_object_is_404_like_a_missing_one(tenant_a, tenant_b) -> None:
    theirs = CannedResponseFactory(tenant=tenant_b)
    mine = CannedResponseFactory(tenant=tenant_a)
    client = key_client(_key(tenant_a, ["conversations:read"]))

    assert client.get(f"/t/canned/{mine.pk}").status_code == 200
    hidden = _error(client.get(f"/t/canned/{theirs.pk}"), 404, "not_found")
    missing = _error(client.get(f"/t/canned/{theirs.pk + 1000}"), 404, "not_found")
    assert hidden == missing


def test_validation_errors_name_each_field_dotted(tenant_a) -> None:
    client = key_client(_key(tenant_a, ["conversations:write"]))

    response = client.post(
        "/t/create",
        {"title": "x" * 101, "items": [{"question": "q", "answer": "a"}, {"question": "q"}]},
        format="json",
    )

    error = _error(response, 400, "invalid")
    assert set(error["fields"]) == {"title", "items.1.answer"}
    assert all(isinstance(m, str) for ms in error["fields"].values() for m in ms)
    assert CannedResponse.objects.count() == 0


def test_a_services_validation_error_is_a_400_with_its_general_message(tenant_a) -> None:
    client = key_client(_key(tenant_a, ["conversations:write"]))

    error = _error(client.post("/t/refusal", {}, format="json"), 400, "invalid")

    assert error["message"] == "The conversation is closed."
    assert error["fields"] == {"priority": ["Not a priority."]}


def test_malformed_json_and_an_unsupported_media_type_are_refused(tenant_a) -> None:
    client = key_client(_key(tenant_a, ["conversations:write"]))

    malformed = client.post("/t/create", b'{"title": ', content_type="application/json")
    unsupported = client.post("/t/create", b"title=x", content_type="text/plain")

    _error(malformed, 400, "malformed_request")
    _error(unsupported, 415, "unsupported_media_type")


def test_a_bug_is_a_500_in_the_json_shape_logged_without_the_key(tenant_a, caplog) -> None:
    raw = _key(tenant_a, ["conversations:write"])
    Switch.fail_next = True

    with caplog.at_level(logging.INFO):
        response = key_client(raw).post("/t/flaky", {"title": "x"}, format="json")

    error = _error(response, 500, "internal_error")
    assert "disk" not in error["message"]  # the cause stays in the log
    failures = [r for r in caplog.records if r.getMessage() == "API request failed"]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert "the disk is full" in caplog.text
    assert raw not in caplog.text
    assert raw.split("_")[-1] not in caplog.text


# --- Idempotency-Key ------------------------------------------------------------------------


def test_a_retry_replays_the_first_response_and_creates_nothing_twice(tenant_a) -> None:
    client = key_client(_key(tenant_a, ["conversations:write"]))
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-17"}

    first = client.post("/t/create", {"title": "Hi"}, format="json", **headers)
    # The same data with its keys in another order and other spacing is the same request.
    retry = client.post(
        "/t/create", b'{ "title" :  "Hi" }', content_type="application/json", **headers
    )

    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert CannedResponse.objects.count() == 1


def test_the_same_key_with_another_body_or_path_is_422(tenant_a) -> None:
    client = key_client(_key(tenant_a, ["conversations:write"]))
    headers = {"HTTP_IDEMPOTENCY_KEY": "k1"}
    assert client.post("/t/create", {"title": "A"}, format="json", **headers).status_code == 201

    other_body = client.post("/t/create", {"title": "B"}, format="json", **headers)
    other_path = client.post("/t/flaky", {"title": "A"}, format="json", **headers)

    _error(other_body, 422, "idempotency_key_reused")
    _error(other_path, 422, "idempotency_key_reused")
    assert CannedResponse.objects.count() == 1


def test_a_key_is_per_api_key_and_tenant(tenant_a, tenant_b) -> None:
    headers = {"HTTP_IDEMPOTENCY_KEY": "same"}
    one = key_client(_key(tenant_a, ["conversations:write"]))
    two = key_client(_key(tenant_a, ["conversations:write"]))
    other_tenant = key_client(_key(tenant_b, ["conversations:write"]))

    responses = [
        c.post("/t/create", {"title": "Hi"}, format="json", **headers)
        for c in (one, two, other_tenant)
    ]

    assert [r.status_code for r in responses] == [201, 201, 201]
    assert not any("Idempotent-Replayed" in r for r in responses)
    assert len({r.json()["id"] for r in responses}) == 3


def test_a_server_error_releases_the_key_for_a_retry(tenant_a) -> None:
    client = key_client(_key(tenant_a, ["conversations:write"]))
    headers = {"HTTP_IDEMPOTENCY_KEY": "retry-me"}
    Switch.fail_next = True

    failed = client.post("/t/flaky", {"title": "Hi"}, format="json", **headers)
    retried = client.post("/t/flaky", {"title": "Hi"}, format="json", **headers)
    replayed = client.post("/t/flaky", {"title": "Hi"}, format="json", **headers)

    assert failed.status_code == 500
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried
    assert replayed["Idempotent-Replayed"] == "true"
    assert CannedResponse.objects.count() == 1


def test_a_key_expires_after_its_time_to_live(tenant_a, settings) -> None:
    settings.API_IDEMPOTENCY_TTL_SECONDS = 60
    client = key_client(_key(tenant_a, ["conversations:write"]))
    headers = {"HTTP_IDEMPOTENCY_KEY": "old"}
    first = client.post("/t/create", {"title": "Hi"}, format="json", **headers)
    IdempotencyRecord.objects.update(created_at=timezone.now() - dt.timedelta(seconds=59))
    within = client.post("/t/create", {"title": "Hi"}, format="json", **headers)
    IdempotencyRecord.objects.update(created_at=timezone.now() - dt.timedelta(seconds=61))

    after = client.post("/t/create", {"title": "Hi"}, format="json", **headers)

    assert within["Idempotent-Replayed"] == "true"
    assert after.status_code == 201 and "Idempotent-Replayed" not in after
    assert after.json()["id"] != first.json()["id"]
    assert IdempotencyRecord.objects.count() == 1


def test_a_claim_whose_request_died_is_taken_over_after_the_timeout(tenant_a, settings) -> None:
    settings.API_IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS = 600
    client = key_client(_key(tenant_a, ["conversations:write"]))
    headers = {"HTTP_IDEMPOTENCY_KEY": "dead"}
    client.post("/t/create", {"title": "Hi"}, format="json", **headers)
    # As if that first try had claimed the key and its process had been killed mid-request.
    CannedResponse.objects.all().delete()
    IdempotencyRecord.objects.update(status_code=None, body=None)

    IdempotencyRecord.objects.update(created_at=timezone.now() - dt.timedelta(seconds=599))
    waiting = client.post("/t/create", {"title": "Hi"}, format="json", **headers)
    IdempotencyRecord.objects.update(created_at=timezone.now() - dt.timedelta(seconds=601))
    taken_over = client.post("/t/create", {"title": "Hi"}, format="json", **headers)
    replayed = client.post("/t/create", {"title": "Hi"}, format="json", **headers)

    _error(waiting, 409, "idempotency_in_progress")
    assert taken_over.status_code == 201 and "Idempotent-Replayed" not in taken_over
    assert replayed["Idempotent-Replayed"] == "true"
    assert CannedResponse.objects.count() == 1


def test_an_idempotency_key_longer_than_255_is_400(tenant_a) -> None:
    client = key_client(_key(tenant_a, ["conversations:write"]))

    response = client.post(
        "/t/create", {"title": "Hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 256
    )

    assert set(_error(response, 400, "invalid")["fields"]) == {"Idempotency-Key"}
    assert CannedResponse.objects.count() == 0


def _file(content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("faq.txt", content, content_type="text/plain")


def _multipart(client: APIClient, boundary: str, content: bytes, **headers: Any) -> Any:
    body = encode_multipart(boundary, {"title": "Upload", "file": _file(content)})
    return client.post(
        "/t/upload",
        body,
        content_type=f"multipart/form-data; boundary={boundary}",
        **headers,
    )


def test_a_multipart_retry_with_another_boundary_replays(tenant_a) -> None:
    client = key_client(_key(tenant_a, ["knowledge:write"]))
    headers = {"HTTP_IDEMPOTENCY_KEY": "upload-1"}

    first = _multipart(client, "boundary-one", b"hello", **headers)
    retry = _multipart(client, "another-much-longer-boundary-2", b"hello", **headers)
    # Another file of the same length is another request.
    other = _multipart(client, "boundary-one", b"HELLO", **headers)

    assert first.status_code == 201
    assert retry["Idempotent-Replayed"] == "true" and retry.json() == first.json()
    _error(other, 422, "idempotency_key_reused")
    assert CannedResponse.objects.get().text == "hello"


@pytest.mark.django_db(transaction=True)
def test_a_retry_while_the_first_try_runs_is_409(tenant_a) -> None:
    raw = _key(tenant_a, ["conversations:write"])
    headers = {"HTTP_IDEMPOTENCY_KEY": "slow"}
    Switch.entered.clear()
    Switch.release.clear()
    results: dict[str, Any] = {}

    def first_try() -> None:
        try:
            results["first"] = key_client(raw).post(
                "/t/slow", {"title": "Hi"}, format="json", **headers
            )
        finally:
            connection.close()

    thread = threading.Thread(target=first_try)
    thread.start()
    try:
        assert Switch.entered.wait(30)
        during = key_client(raw).post("/t/slow", {"title": "Hi"}, format="json", **headers)
    finally:
        Switch.release.set()
        thread.join(30)
    after = key_client(raw).post("/t/slow", {"title": "Hi"}, format="json", **headers)

    _error(during, 409, "idempotency_in_progress")
    assert results["first"].status_code == 201
    assert after["Idempotent-Replayed"] == "true"
    assert CannedResponse.objects.count() == 1


def test_expired_records_are_purged_by_the_beat_task(tenant_a, settings) -> None:
    from helpdesk_site.celery import app as celery_app
    from tenants.tasks import idempotency_purge_task

    settings.API_IDEMPOTENCY_TTL_SECONDS = 3600
    client = key_client(_key(tenant_a, ["conversations:write"]))
    for key in ("old", "new"):
        client.post("/t/create", {"title": key}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    IdempotencyRecord.objects.filter(key="old").update(
        created_at=timezone.now() - dt.timedelta(seconds=3601)
    )

    deleted = idempotency_purge_task.delay().get()

    assert deleted == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
    entry = settings.CELERY_BEAT_SCHEDULE["idempotency-purge"]
    celery_app.loader.import_default_modules()
    assert entry["task"] in celery_app.tasks
    assert entry["schedule"] <= 3600


# --- Pagination -----------------------------------------------------------------------------


def _walk(client: APIClient, order: str, during: Any = None) -> list[int]:
    seen: list[int] = []
    url = f"/t/canned?limit=100&order={order}"
    while True:
        page = client.get(url)
        assert page.status_code == 200, page.content
        body = page.json()
        assert set(body) == {"data", "has_more", "next_cursor"}
        seen += [row["id"] for row in body["data"]]
        if during is not None:
            during()
            during = None
        if not body["has_more"]:
            assert body["next_cursor"] is None
            return seen
        url = f"/t/canned?limit=100&cursor={body['next_cursor']}"


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_walking_a_list_has_no_gaps_or_repeats_while_rows_are_added(tenant_a, order) -> None:
    rows = CannedResponseFactory.create_batch(250, tenant=tenant_a)
    CannedResponseFactory.create_batch(5, tenant=TenantFactory())  # never listed
    ids = sorted(row.pk for row in rows)
    client = key_client(_key(tenant_a, ["conversations:read"]))
    added: list[int] = []

    seen = _walk(
        client,
        order,
        during=lambda: added.extend(
            r.pk for r in CannedResponseFactory.create_batch(3, tenant=tenant_a)
        ),
    )

    assert len(seen) == len(set(seen))
    if order == "asc":
        assert seen == ids + added  # rows added behind the walk come at its end
    else:
        assert seen == ids[::-1]  # newest first: rows added meanwhile are before the start


def test_limit_is_bounded_and_defaults_to_25(tenant_a) -> None:
    CannedResponseFactory.create_batch(30, tenant=tenant_a)
    client = key_client(_key(tenant_a, ["conversations:read"]))

    assert len(client.get("/t/canned").json()["data"]) == 25
    assert len(client.get("/t/canned?limit=1").json()["data"]) == 1
    assert len(client.get("/t/canned?limit=100").json()["data"]) == 30
    for bad in ("0", "101", "-1", "ten", ""):
        error = _error(client.get(f"/t/canned?limit={bad}"), 400, "invalid")
        assert set(error["fields"]) == {"limit"}, bad


def test_a_bad_cursor_or_order_is_400_naming_the_field(tenant_a) -> None:
    client = key_client(_key(tenant_a, ["conversations:read"]))

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    for cursor in ("%%%", "abc", b64("up:5"), b64("asc:-1"), b64("asc:" + "9" * 30), b64("asc:²")):
        error = _error(client.get(f"/t/canned?cursor={cursor}"), 400, "invalid")
        assert set(error["fields"]) == {"cursor"}, cursor
    error = _error(client.get("/t/canned?order=sideways"), 400, "invalid")
    assert set(error["fields"]) == {"order"}


# --- Rate limits ----------------------------------------------------------------------------


def _forget_windows(raw_keys: list[str]) -> None:
    """Test databases reuse key ids: a window left in Redis by an earlier run would count."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    for raw in raw_keys:
        api_key = services.api_key_authenticate(raw_key=raw)
        assert api_key is not None
        client.delete(f"kefu:rl:api:{api_key.pk}")
    client.close()


def _rate_limit_is_per_key(tenant: Any) -> None:
    one, two = _key(tenant, ["admin"]), _key(tenant, ["admin"])
    _forget_windows([one, two])

    statuses = [key_client(one).get("/api/v1/tenant").status_code for _ in range(4)]
    limited = key_client(one).get("/api/v1/tenant")
    other = key_client(two).get("/api/v1/tenant")

    assert statuses == [200, 200, 200, 429]
    _error(limited, 429, "rate_limited")
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert other.status_code == 200


def test_rate_limit_per_key_in_process(tenant_a, settings) -> None:
    settings.REDIS_URL = ""
    settings.API_RATE_LIMIT = "3/60"
    _rate_limit_is_per_key(tenant_a)


def test_rate_limit_per_key_on_redis(tenant_a, settings, redis_url) -> None:
    settings.API_RATE_LIMIT = "3/60"
    _rate_limit_is_per_key(tenant_a)


def test_a_tenants_own_rate_limit_overrides_the_default(tenant_a, tenant_b, settings) -> None:
    settings.API_RATE_LIMIT = "100/60"
    tenant_a.api_rate_limit = "2/60"
    tenant_a.save(update_fields=["api_rate_limit"])
    limited, default = _key(tenant_a, ["admin"]), _key(tenant_b, ["admin"])
    _forget_windows([limited, default])

    a = [key_client(limited).get("/api/v1/tenant").status_code for _ in range(3)]
    b = [key_client(default).get("/api/v1/tenant").status_code for _ in range(3)]

    assert a == [200, 200, 429]
    assert b == [200, 200, 200]


# --- Times ----------------------------------------------------------------------------------


def test_times_are_utc_with_z_whatever_the_time_zone(tenant_a, settings) -> None:
    settings.TIME_ZONE = "Asia/Shanghai"
    row = CannedResponseFactory(tenant=tenant_a)
    timezone.activate(ZoneInfo("Asia/Shanghai"))
    try:
        body = key_client(_key(tenant_a, ["conversations:read"])).get("/t/times").json()
    finally:
        timezone.deactivate()

    assert body["at"] == "2026-01-02T03:04:05Z"
    assert body["row"]["created_at"].endswith("Z")
    parsed = dt.datetime.fromisoformat(body["row"]["created_at"])
    assert abs(parsed - row.created_at) < dt.timedelta(milliseconds=1)
    assert abs(time.time() - parsed.timestamp()) < 60
