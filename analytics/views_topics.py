"""Console pages: hot topics (``admin:analytics_topics``) and knowledge gaps
(``admin:analytics_gaps``). Owners and admins change them, viewers read them, agents have no
access. Each page is also a CSV file (``?format=csv``)."""

from datetime import date, timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.http import (
    Http404,
    HttpRequest,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from analytics import gaps as gap_services
from analytics import topic_selectors as selectors
from analytics import topics as topic_services
from analytics.models import KnowledgeGap
from analytics.tasks import analytics_topics_tenant_task
from analytics.views import analytics_nav
from knowledge.models import KnowledgeEntry
from tenants.models import Membership, Tenant
from tenants.request import active_membership
from tenants.roles import Action, Area, role_allows

MAX_PERIOD_DAYS = 366
GAPS_PER_PAGE = 25


def _membership(request: HttpRequest) -> Membership:
    membership = active_membership(request)
    if membership is None:
        raise Http404(_("Open a tenant's console to see its analytics."))
    if not role_allows(membership.role, Area.REPORTS, Action.VIEW):
        raise PermissionDenied
    return membership


def _may_change(membership: Membership) -> bool:
    return role_allows(membership.role, Area.REPORTS, Action.CHANGE)


def _period(request: HttpRequest, tenant: Tenant) -> tuple[date, date, list[str]]:
    """``?since=&until=`` (the tenant's local days), by default the last 7 days."""
    default_since, default_until = topic_services.default_period(tenant)
    errors: list[str] = []
    try:
        until = date.fromisoformat(request.GET.get("until") or default_until.isoformat())
        since = date.fromisoformat(
            request.GET.get("since") or (until - (default_until - default_since)).isoformat()
        )
    except ValueError:
        errors.append(_("Give the days as YYYY-MM-DD."))
        since, until = default_since, default_until
    if since > until or (until - since).days >= MAX_PERIOD_DAYS:
        errors.append(_("Give a period of 1 to %(days)d days.") % {"days": MAX_PERIOD_DAYS})
        since, until = default_since, default_until
    return since, until, errors


def _csv_response(lines: Any, name: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    return response


def _back(request: HttpRequest, url_name: str) -> HttpResponseRedirect:
    query = {k: str(request.GET[k]) for k in ("since", "until", "status") if k in request.GET}
    suffix = f"?{urlencode(query)}" if query else ""
    return HttpResponseRedirect(reverse(url_name) + suffix)


def topics_view(request: HttpRequest, admin_site: Any) -> HttpResponseBase:
    membership = _membership(request)
    tenant = membership.tenant
    since, until, errors = _period(request, tenant)
    if request.method == "POST":
        if not _may_change(membership):
            raise PermissionDenied
        _topics_change(request, tenant, since, until)
        return _back(request, "admin:analytics_topics")
    rows = selectors.topic_rows(tenant=tenant, since=since, until=until, hidden=None)
    if request.GET.get("format") == "csv":
        visible = [r for r in rows if not r.hidden]
        return _csv_response(selectors.topics_csv(visible), f"topics-{since}-{until}")
    for error in errors:
        messages.error(request, error)
    previous = topic_services.previous_period(since, until)
    context = {
        **admin_site.each_context(request),
        "title": _("Hot topics"),
        "analytics_tabs": analytics_nav(membership=membership, current="topics"),
        "since": since,
        "until": until,
        "previous_since": previous[0],
        "previous_until": previous[1],
        "rows": [r for r in rows if not r.hidden],
        "hidden_rows": [r for r in rows if r.hidden],
        "may_change": _may_change(membership),
        "last_period": selectors.topic_last_period(tenant=tenant),
        "csv_query": urlencode({"since": str(since), "until": str(until), "format": "csv"}),
    }
    return TemplateResponse(request, "admin/analytics/topics.html", context)


def _topics_change(request: HttpRequest, tenant: Tenant, since: date, until: date) -> None:
    action = request.POST.get("action")
    if action == "refresh":
        period = (tenant.pk, since.isoformat(), until.isoformat())
        transaction.on_commit(lambda: analytics_topics_tenant_task.delay(*period))
        messages.success(request, _("The topics and gaps of this period are being refreshed."))
        return
    topic = selectors.topic_get(tenant=tenant, topic_id=request.POST.get("topic"))
    if topic is None:
        messages.error(request, _("That topic does not exist."))
        return
    if action == "rename":
        topic_services.topic_rename(topic=topic, name=request.POST.get("name", ""))
        messages.success(request, _("Topic renamed."))
    elif action in ("hide", "unhide"):
        topic_services.topic_set_hidden(topic=topic, hidden=action == "hide")
        messages.success(request, _("Topic hidden.") if action == "hide" else _("Topic shown."))
    elif action == "merge":
        into = selectors.topic_get(tenant=tenant, topic_id=request.POST.get("into"))
        if into is None:
            messages.error(request, _("Choose the topic to merge into."))
            return
        try:
            topic_services.topic_merge(topic=topic, into=into)
        except topic_services.TopicError as error:
            messages.error(request, str(error))
            return
        messages.success(request, _("Topics merged."))
    else:
        messages.error(request, _("Unknown action."))


def gaps_view(request: HttpRequest, admin_site: Any) -> HttpResponseBase:
    membership = _membership(request)
    tenant = membership.tenant
    status = request.GET.get("status") or KnowledgeGap.Status.OPEN
    if status not in KnowledgeGap.Status.values:
        status = KnowledgeGap.Status.OPEN
    if request.method == "POST":
        if not _may_change(membership):
            raise PermissionDenied
        gap = gap_services.knowledge_gap_get(tenant=tenant, gap_id=request.POST.get("gap"))
        action = request.POST.get("action")
        if gap is None or action not in ("dismiss", "reopen"):
            messages.error(request, _("That gap does not exist."))
        else:
            new_status = KnowledgeGap.Status.DISMISSED if action == "dismiss" else "open"
            gap_services.knowledge_gap_set_status(gap=gap, status=new_status)
            messages.success(
                request, _("Gap dismissed.") if action == "dismiss" else _("Gap reopened.")
            )
        return _back(request, "admin:analytics_gaps")
    gaps = selectors.knowledge_gaps(tenant=tenant, status=status)
    if request.GET.get("format") == "csv":
        return _csv_response(selectors.gaps_csv(gaps.iterator()), f"knowledge-gaps-{status}")
    today = topic_services.default_period(tenant)[1]
    page = Paginator(gaps, GAPS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        **admin_site.each_context(request),
        "title": _("Knowledge gaps"),
        "analytics_tabs": analytics_nav(membership=membership, current="gaps"),
        "gaps": page.object_list,
        "page_obj": page,
        "status": status,
        "statuses": KnowledgeGap.Status.choices,
        "may_change": _may_change(membership),
        "may_add_faq": role_allows(membership.role, Area.KNOWLEDGE, Action.ADD),
        "faq_add_url": reverse("admin:knowledge_knowledgeentry_add"),
        "entry_opts": KnowledgeEntry._meta,
        "refresh_query": urlencode(
            {
                "since": str(today - timedelta(days=topic_services.DEFAULT_DAYS - 1)),
                "until": str(today),
            }
        ),
        "csv_query": urlencode({"status": status, "format": "csv"}),
    }
    return TemplateResponse(request, "admin/analytics/gaps.html", context)
