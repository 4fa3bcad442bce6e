from django.apps import apps
from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from conversations.chat_api import ChatMessageApi, ChatStopApi, MessageFeedbackApi
from conversations.views import widget_config
from tenants.apis import TenantCurrentApi


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability for load balancers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


api_v1 = [
    path("tenant/", TenantCurrentApi.as_view(), name="tenant-current"),
    path("chat/messages", ChatMessageApi.as_view(), name="chat-messages"),
    path("chat/messages/<int:message_id>/stop", ChatStopApi.as_view(), name="chat-message-stop"),
    path(
        "messages/<int:message_id>/feedback", MessageFeedbackApi.as_view(), name="message-feedback"
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
