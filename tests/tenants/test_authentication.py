"""API key scopes: every REST API view declares one, and an undeclared scope fails closed."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from helpdesk_site.api_view import ApiView
from tenants import services
from tenants.authentication import ANY_KEY, HasScope, required_scope
from tenants.models import ApiKey


def _api_views(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, type[APIView]]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _api_views(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            view_class = getattr(pattern.callback, "cls", None)
            if isinstance(view_class, type) and issubclass(view_class, APIView):
                yield prefix + str(pattern.pattern), view_class


# The OpenAPI schema and its readers: public, they describe the API and hold no data.
PUBLIC_VIEWS = (SpectacularAPIView, SpectacularSwaggerView, SpectacularRedocView)


def test_every_api_view_checks_a_declared_scope() -> None:
    views = [
        (route, view)
        for route, view in _api_views(get_resolver().url_patterns)
        if not issubclass(view, PUBLIC_VIEWS)
    ]

    assert views, "no REST API view found: the walk over the URLs is broken"
    for route, view in views:
        assert issubclass(view, ApiView), f"{route}: API views derive from ApiView"
        assert HasScope in view.permission_classes, route
        declared = getattr(view, "required_scope", None)
        methods = [m.upper() for m in view.http_method_names if hasattr(view, m) and m != "options"]
        for method in methods:
            scope = required_scope(view, method)
            assert scope == ANY_KEY or scope in ApiKey.Scope.values, (
                f"{route} {method}: {declared!r}"
            )


class UndeclaredApi(APIView):
    """A view whose author forgot ``required_scope`` (and ``permission_classes``)."""

    def get(self, request: Request) -> Response:
        return Response({"secret": "tenant data"})


class KnowledgeReadApi(APIView):
    required_scope = ApiKey.Scope.KNOWLEDGE_READ

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns = [
    path("undeclared/", UndeclaredApi.as_view()),
    path("knowledge/", KnowledgeReadApi.as_view()),
]


@pytest.mark.urls(__name__)
def test_a_view_without_a_declared_scope_refuses_every_key(client, tenant_a) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="All", scopes=ApiKey.Scope.values)

    response = client.get("/undeclared/", HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")

    assert response.status_code == 403
    assert b"tenant data" not in response.content


@pytest.mark.urls(__name__)
def test_a_declared_scope_admits_only_keys_that_carry_it(client, tenant_a) -> None:
    reader = services.api_key_issue(tenant=tenant_a, name="R", scopes=["knowledge:read"])
    writer = services.api_key_issue(tenant=tenant_a, name="W", scopes=["tickets:write"])

    allowed = client.get("/knowledge/", HTTP_AUTHORIZATION=f"Bearer {reader.raw_key}")
    refused = client.get("/knowledge/", HTTP_AUTHORIZATION=f"Bearer {writer.raw_key}")
    anonymous = client.get("/knowledge/")

    assert allowed.status_code == 200
    assert refused.status_code == 403
    assert anonymous.status_code == 401
