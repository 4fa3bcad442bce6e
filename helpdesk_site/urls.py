from django.apps import apps
from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.utils.translation import gettext
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from analytics.apis import ReportConversationsCsvApi, ReportSummaryApi, ReportTimeseriesApi
from analytics.topic_apis import ReportKnowledgeGapsApi, ReportTopicsApi
from conversations.apis import (
    ConversationDetailApi,
    ConversationHandoffApi,
    ConversationListApi,
    ConversationMessagesApi,
    ConversationResolveApi,
)
from conversations.canned_apis import CannedResponseDetailApi, CannedResponseListApi
from conversations.chat_api import ChatMessageApi, ChatStopApi, MessageFeedbackApi
from conversations.customer_apis import (
    CustomerConversationListApi,
    CustomerDetailApi,
    CustomerListApi,
    CustomerTicketListApi,
)
from conversations.ticket_apis import TicketDetailApi, TicketListApi, TicketReplyListApi
from conversations.views import widget_config
from helpdesk_site.api import ApiErrorCode, error_body
from knowledge import apis as knowledge_apis
from tenants.apis import TenantCurrentApi


def api_not_found(request: HttpRequest) -> JsonResponse:
    """A path under /api/ that names no endpoint: 404 in the API's error shape, not a page."""
    return JsonResponse(
        error_body(
            ApiErrorCode.NOT_FOUND, gettext("No such endpoint: %(path)s") % {"path": request.path}
        ),
        status=404,
    )


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability for load balancers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


api_v1 = [
    path("knowledge/faqs", knowledge_apis.FaqListApi.as_view(), name="knowledge-faqs"),
    path(
        "knowledge/faqs/bulk-upsert",
        knowledge_apis.FaqBulkUpsertApi.as_view(),
        name="knowledge-faqs-bulk-upsert",
    ),
    path(
        "knowledge/faqs/<int:faq_id>",
        knowledge_apis.FaqDetailApi.as_view(),
        name="knowledge-faq",
    ),
    path(
        "knowledge/documents",
        knowledge_apis.DocumentListApi.as_view(),
        name="knowledge-documents",
    ),
    path(
        "knowledge/documents/<int:document_id>",
        knowledge_apis.DocumentDetailApi.as_view(),
        name="knowledge-document",
    ),
    path(
        "knowledge/documents/<int:document_id>/chunks",
        knowledge_apis.ChunkListApi.as_view(),
        name="knowledge-chunks",
    ),
    path(
        "knowledge/documents/<int:document_id>/chunks/<int:chunk_id>",
        knowledge_apis.ChunkDetailApi.as_view(),
        name="knowledge-chunk",
    ),
    path("knowledge/retrieve", knowledge_apis.RetrieveApi.as_view(), name="knowledge-retrieve"),
    path("canned-responses", CannedResponseListApi.as_view(), name="canned-responses"),
    path(
        "canned-responses/<int:canned_response_id>",
        CannedResponseDetailApi.as_view(),
        name="canned-response",
    ),
    path("customers", CustomerListApi.as_view(), name="customers"),
    path("customers/<int:customer_id>", CustomerDetailApi.as_view(), name="customer"),
    path(
        "customers/<int:customer_id>/conversations",
        CustomerConversationListApi.as_view(),
        name="customer-conversations",
    ),
    path(
        "customers/<int:customer_id>/tickets",
        CustomerTicketListApi.as_view(),
        name="customer-tickets",
    ),
    path("tickets", TicketListApi.as_view(), name="tickets"),
    path("tickets/<int:ticket_id>", TicketDetailApi.as_view(), name="ticket"),
    path("tickets/<int:ticket_id>/replies", TicketReplyListApi.as_view(), name="ticket-replies"),
    path("tenant", TenantCurrentApi.as_view(), name="tenant-current"),
    path("reports/summary", ReportSummaryApi.as_view(), name="reports-summary"),
    path("reports/timeseries", ReportTimeseriesApi.as_view(), name="reports-timeseries"),
    path(
        "reports/conversations.csv",
        ReportConversationsCsvApi.as_view(),
        name="reports-conversations-csv",
    ),
    path("reports/topics", ReportTopicsApi.as_view(), name="reports-topics"),
    path("reports/knowledge-gaps", ReportKnowledgeGapsApi.as_view(), name="reports-knowledge-gaps"),
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
    path("chat/messages", ChatMessageApi.as_view(), name="chat-messages"),
    path("chat/messages/<int:message_id>/stop", ChatStopApi.as_view(), name="chat-message-stop"),
    path(
        "messages/<int:message_id>/feedback", MessageFeedbackApi.as_view(), name="message-feedback"
    ),
    # The OpenAPI schema and its readers: public (they describe, they hold no data).
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("docs/redoc", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("console/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    re_path(r"^api/", api_not_found),  # after the API's routes: any other path under /api/
    path("healthz", healthz, name="healthz"),
    path("widget/<str:public_key>/config", widget_config, name="widget-config"),
]
# The demo shop page exists only where the devtools app is installed: never in production.
if apps.is_installed("devtools"):
    urlpatterns.append(path("", include("devtools.urls")))
