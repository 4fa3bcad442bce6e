from django.apps import apps
from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from conversations.apis import (
    ConversationDetailApi,
    ConversationHandoffApi,
    ConversationListApi,
    ConversationMessagesApi,
    ConversationResolveApi,
)
from conversations.views import widget_config
from tenants.apis import TenantCurrentApi


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability for load balancers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


api_v1 = [
    path("tenant/", TenantCurrentApi.as_view(), name="tenant-current"),
    path("conversations", ConversationListApi.as_view(), name="conversations"),
    path(
        "conversations/<int:conversation_id>",
        ConversationDetailApi.as_view(),
        name="conversation",
    ),
    path(
        "conversations/<int:conversation_id>/messages",
        ConversationMessagesApi.as_view(),
        name="conversation-messages",
    ),
    path(
        "conversations/<int:conversation_id>/handoff",
        ConversationHandoffApi.as_view(),
        name="conversation-handoff",
    ),
    path(
        "conversations/<int:conversation_id>/resolve",
        ConversationResolveApi.as_view(),
        name="conversation-resolve",
    ),
    # The OpenAPI schema and its readers: public (they describe, they hold no data).
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("docs/redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("console/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("healthz", healthz, name="healthz"),
    path("widget/<str:public_key>/config", widget_config, name="widget-config"),
]
# The demo shop page exists only where the devtools app is installed: never in production.
if apps.is_installed("devtools"):
    urlpatterns.append(path("", include("devtools.urls")))
