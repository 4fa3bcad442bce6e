"""The tenant console: Django's admin site, scoped to the signed-in member's tenant."""

from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from analytics import views as analytics_views
from analytics.dashboards.pages import overview_kpis
from analytics.rollups import rollups_refresh_on_view
from analytics.views_topics import gaps_view, topics_view
from conversations.lifecycle import conversations_sweep
from conversations.models import Conversation
from conversations.selectors import AGENT_ROLES
from knowledge.views import hit_test_view
from tenants.request import active_membership, set_active_tenant
from tenants.selectors import membership_list_for_user, tenant_website


class ConsoleAuthenticationForm(AuthenticationForm):
    """Console sign-in for tenant members and superusers; Django's ``is_staff`` plays no part."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "no_tenant": gettext_lazy("This account is not a member of any active tenant."),
    }

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if not user.is_superuser and not membership_list_for_user(user=user).exists():
            raise forms.ValidationError(self.error_messages["no_tenant"], code="no_tenant")


class ConsoleAdminSite(admin.AdminSite):
    login_form = ConsoleAuthenticationForm
    site_header = gettext_lazy("Kefu console")
    site_title = gettext_lazy("Kefu")
    index_title = gettext_lazy("Overview")
    # "View site" leads to the tenant's own website (each_context); without one it is hidden.
    site_url = None

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        if not user.is_active:
            return False
        return user.is_superuser or active_membership(request) is not None

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        context = super().each_context(request)
        if request.user.is_authenticated:
            membership = active_membership(request)
            context["kefu_membership"] = membership
            context["kefu_memberships"] = list(membership_list_for_user(user=request.user))
            if membership is not None:
                context["site_url"] = tenant_website(tenant=membership.tenant)
                context["kefu_reports_url"] = reverse(
                    "admin:analytics_overview"
                    if analytics_views.sees_tenant_reports(membership)
                    else "admin:analytics_mine"
                )
        return context

    def get_urls(self) -> list[URLResolver | URLPattern]:
        custom: list[URLResolver | URLPattern] = [
            path(
                "knowledge/hit-test/",
                self.admin_view(partial(hit_test_view, admin_site=self)),
                name="knowledge_hit_test",
            ),
            *self._analytics_urls(),
            path("agent/", self.admin_view(self.agent_console_view), name="agent_console"),
            # Hot topics and knowledge gaps (analytics/views_topics.py).
            path(
                "analytics/topics/",
                self.admin_view(partial(topics_view, admin_site=self)),
                name="analytics_topics",
            ),
            path(
                "analytics/gaps/",
                self.admin_view(partial(gaps_view, admin_site=self)),
                name="analytics_gaps",
            ),
            path(
                "switch-tenant/",
                self.admin_view(require_POST(self.switch_tenant_view)),
                name="switch_tenant",
            ),
        ]
        return custom + super().get_urls()

    def _analytics_urls(self) -> list[URLPattern]:
        pages = [
            path(
                f"analytics/{name}/",
                self.admin_view(
                    partial(analytics_views.dashboard_view, admin_site=self, page_name=name)
                ),
                name=f"analytics_{name}",
            )
            for name in analytics_views.PAGES
        ]
        export = partial(analytics_views.conversations_csv_view, admin_site=self)
        return [
            *pages,
            path(
                "analytics/conversations.csv",
                self.admin_view(export),
                name="analytics_conversations_csv",
            ),
        ]

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        membership = active_membership(request)
        extra = dict(extra_context or {})
        if membership is not None:
            tenant = membership.tenant
            # Without Celery beat (the embedded defaults) nothing else records how the tenant's
            # idle conversations ended; with it, this only brings the figures up to the minute.
            conversations_sweep(tenant_id=tenant.pk, max_batches=1)
            if analytics_views.sees_tenant_reports(membership):
                rollups_refresh_on_view(tenant=tenant)
                period = analytics_views.default_period(tenant=tenant)
                extra["kefu_overview"] = overview_kpis(tenant=tenant, period=period)
                extra["kefu_overview_period"] = period
        return super().index(request, extra)

    def agent_console_view(self, request: HttpRequest) -> HttpResponse:
        """The live agent console (the page; the work happens over ``/ws/agent/``)."""
        membership = active_membership(request)
        if membership is None or membership.role not in AGENT_ROLES:
            raise PermissionDenied
        strings = {
            "queueEmpty": _("Nobody is waiting."),
            "mineEmpty": _("No conversations yet."),
            "note": _("Internal note"),
            "canned": _("Canned responses…"),
            "roles": {
                "customer": _("Customer"),
                "assistant": _("Assistant"),
                "agent": _("Agent"),
                "system": _("System"),
            },
            "visitor": _("Visitor #%(number)s") % {"number": "{number}"},
            "accessLost": _("You no longer have access to the agent console."),
            "statuses": dict(Conversation.Status.choices),
            "reasons": dict(Conversation.HandoffReason.choices),
        }
        context = {
            **self.each_context(request),
            "title": _("Agent console"),
            "strings": {key: value for key, value in strings.items()},
        }
        return TemplateResponse(request, "admin/agent_console.html", context)

    def switch_tenant_view(self, request: HttpRequest) -> HttpResponse:
        try:
            tenant_id = int(request.POST.get("tenant", ""))
        except ValueError:
            tenant_id = -1
        if set_active_tenant(request, tenant_id) is None:
            messages.error(request, _("You are not a member of that tenant."))
        target = request.POST.get("next") or reverse("admin:index")
        if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
            target = reverse("admin:index")
        return HttpResponseRedirect(target)
