"""The console's analytics pages: the metrics of docs/analytics.md over a period, read from
the rollups only (analytics/dashboards), with charts, drill-downs to the conversation list and
CSV exports; and the export of one row per conversation.

Owners, admins and viewers see the tenant-wide pages; agents see their own numbers only.
"""

from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from analytics import selectors
from analytics.dashboards import pages
from analytics.dashboards.figures import Page, Period, Table
from analytics.exports import csv_response
from analytics.rollups import local_today, rollups_refresh_on_view
from tenants.models import Membership, Tenant
from tenants.request import active_membership
from tenants.roles import Action, Area, role_allows

MAX_DAYS = 366
DEFAULT_PRESET = "30d"
# Days a period may name: enough for any real history, and far from the calendar's ends.
MIN_DAY, MAX_DAY = date(2000, 1, 1), date(2999, 12, 31)

# The period -------------------------------------------------------------------------------------

PRESETS = [
    ("today", gettext_lazy("Today")),
    ("7d", gettext_lazy("Last 7 days")),
    ("30d", gettext_lazy("Last 30 days")),
    ("90d", gettext_lazy("Last 90 days")),
    ("month", gettext_lazy("This month")),
    ("custom", gettext_lazy("Custom")),
]
_PRESET_DAYS = {"today": 1, "7d": 7, "30d": 30, "90d": 90}


class PeriodForm(forms.Form):
    preset = forms.ChoiceField(label=gettext_lazy("Period"), choices=PRESETS, required=False)
    since = forms.DateField(
        label=gettext_lazy("Since"),
        required=False,
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    until = forms.DateField(
        label=gettext_lazy("Until"),
        required=False,
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    compare = forms.BooleanField(
        label=gettext_lazy("Compare to the previous period"), required=False
    )

    def __init__(self, *args: Any, today: date | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.today = today

    def _within_years(self, name: str) -> date | None:
        day: date | None = self.cleaned_data.get(name)
        if day is not None and not MIN_DAY <= day <= MAX_DAY:
            raise forms.ValidationError(
                _("Give a day from %(min)s to %(max)s.") % {"min": MIN_DAY, "max": MAX_DAY}
            )
        return day

    def clean_since(self) -> date | None:
        return self._within_years("since")

    def clean_until(self) -> date | None:
        return self._within_years("until")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and not until and self.today and cleaned.get("preset") in ("", "custom", None):
            until = max(self.today, since)
        if since and until and until < since:
            self.add_error("until", _("Give a day on or after the first day."))
        elif since and until and (until - since).days + 1 > MAX_DAYS:
            self.add_error(
                "since", _("A period covers at most %(days)d days.") % {"days": MAX_DAYS}
            )
        return cleaned


def dashboard_period(*, tenant: Tenant, form: PeriodForm) -> Period:
    """The period a valid form names: a preset's days (the last 30 by default), ending today
    in the tenant's time zone, or its own ``since``/``until`` (preset ``custom`` or none)."""
    today = local_today(tenant)
    values = form.cleaned_data
    compare = bool(values.get("compare"))
    preset = values.get("preset") or ""
    since: date | None = values.get("since")
    until: date | None = values.get("until")
    if preset in ("", "custom") and (since or until):
        last = until or max(today, since or today)
        first = since or last - timedelta(days=_PRESET_DAYS[DEFAULT_PRESET] - 1)
        if (last - first).days + 1 <= MAX_DAYS:
            return Period(first, last, "custom", compare)
    if preset == "month":
        return Period(today.replace(day=1), today, preset, compare)
    preset = preset if preset in _PRESET_DAYS else DEFAULT_PRESET
    return Period(today - timedelta(days=_PRESET_DAYS[preset] - 1), today, preset, compare)


def default_period(*, tenant: Tenant) -> Period:
    """The last 30 days, today included."""
    form = PeriodForm({"preset": DEFAULT_PRESET})
    form.is_valid()
    return dashboard_period(tenant=tenant, form=form)


# The views --------------------------------------------------------------------------------------

PageBuilder = Callable[[Tenant, Period, Membership], Page]

PAGES: dict[str, tuple[Any, PageBuilder]] = {
    "overview": (gettext_lazy("Overview"), lambda t, p, m: pages.overview_page(t, p)),
    "ai": (gettext_lazy("Assistant"), lambda t, p, m: pages.ai_page(t, p)),
    "people": (gettext_lazy("People"), lambda t, p, m: pages.people_page(t, p)),
    "satisfaction": (gettext_lazy("Satisfaction"), lambda t, p, m: pages.satisfaction_page(t, p)),
    "cost": (gettext_lazy("Cost"), lambda t, p, m: pages.cost_page(t, p)),
    "mine": (gettext_lazy("My numbers"), lambda t, p, m: pages.mine_page(t, p, m.user_id)),
}
# Pages other parts of the product add to the tab bar once they exist: (url name, title).
OPTIONAL_PAGES = [
    ("admin:analytics_topics", gettext_lazy("Topics")),
    ("admin:analytics_gaps", gettext_lazy("Knowledge gaps")),
]


def sees_tenant_reports(membership: Membership) -> bool:
    return role_allows(membership.role, Area.REPORTS, Action.VIEW)


def analytics_nav(*, membership: Membership, current: str) -> list[dict[str, Any]]:
    """The analytics tab bar: the tenant-wide pages for those who may see them, then the
    member's own numbers."""
    names = list(PAGES) if sees_tenant_reports(membership) else ["mine"]
    tabs = [
        {
            "url": reverse(f"admin:analytics_{name}"),
            "title": PAGES[name][0],
            "active": name == current,
        }
        for name in names
        if name != "mine"
    ]
    if sees_tenant_reports(membership):
        for url_name, title in OPTIONAL_PAGES:
            try:
                url = reverse(url_name)
            except NoReverseMatch:
                continue
            tabs.append(
                {"url": url, "title": title, "active": url_name == f"admin:analytics_{current}"}
            )
    tabs.append(
        {
            "url": reverse("admin:analytics_mine"),
            "title": PAGES["mine"][0],
            "active": current == "mine",
        }
    )
    return tabs


def _membership(request: HttpRequest) -> Membership:
    membership = active_membership(request)
    if membership is None:
        raise Http404(_("Open a tenant's console to see its reports."))
    return membership


def _chart_strings() -> dict[str, Any]:
    return {
        "noData": _("No data in this period"),
        "units": {"ms": _("ms"), "s": _("s"), "min": _("min"), "h": _("h")},
    }


def _table_csv(
    request: HttpRequest, page_name: str, table: Table, period: Period, tenant: Tenant
) -> HttpResponseBase:
    rows: Iterator[list[object]] = ([cell.value for cell in row] for row in table.rows)
    return csv_response(
        request=request,
        filename=f"{page_name}-{table.key}-{period.since}-{period.until}.csv",
        header=table.columns,
        rows=rows,
        tenant_id=tenant.pk,
    )


def dashboard_view(request: HttpRequest, admin_site: Any, page_name: str) -> HttpResponseBase:
    """One analytics page; ``?format=csv&table=<key>`` exports one of its tables."""
    membership = _membership(request)
    if page_name != "mine" and not sees_tenant_reports(membership):
        raise PermissionDenied
    tenant = membership.tenant
    form = PeriodForm(request.GET or None, today=local_today(tenant))
    title, build = PAGES[page_name]
    context: dict[str, Any] = {
        **admin_site.each_context(request),
        "title": _("Reports"),
        "subtitle": title,
        "page_name": page_name,
        "analytics_tabs": analytics_nav(membership=membership, current=page_name),
        "form": form,
        "presets": PRESETS[:-1],
        "time_zone": tenant.time_zone,
    }
    if form.is_bound and not form.is_valid():
        return TemplateResponse(request, "admin/analytics/dashboard.html", context, status=400)
    rollups_refresh_on_view(tenant=tenant)
    period = (
        dashboard_period(tenant=tenant, form=form)
        if form.is_bound
        else default_period(tenant=tenant)
    )
    page = build(tenant, period, membership)
    if request.GET.get("format") == "csv":
        table = next((t for t in page.tables if t.key == request.GET.get("table")), None)
        if table is None:
            raise Http404(_("This page has no such table."))
        return _table_csv(request, page_name, table, period, tenant)
    context.update(
        {
            "form": PeriodForm(
                initial={
                    "preset": period.preset,
                    "since": period.since,
                    "until": period.until,
                    "compare": period.compare,
                }
            ),
            "period": period,
            "page": page,
            "csv_query": period.query(format="csv"),
            "conversations_csv": (
                f"{reverse('admin:analytics_conversations_csv')}?"
                f"{urlencode({'since': period.since, 'until': period.until})}"
                if sees_tenant_reports(membership)
                else ""
            ),
            "charts": {"charts": page.charts, "strings": _chart_strings()},
        }
    )
    return TemplateResponse(request, "admin/analytics/dashboard.html", context)


def conversations_csv_view(request: HttpRequest, admin_site: Any) -> HttpResponseBase:
    """One row per conversation started in the period (``selectors.conversation_export_rows``)."""
    membership = _membership(request)
    if not sees_tenant_reports(membership):
        raise PermissionDenied
    tenant = membership.tenant
    form = PeriodForm(request.GET or {"preset": DEFAULT_PRESET}, today=local_today(tenant))
    if not form.is_valid():
        errors = "; ".join(f"{name}: {' '.join(map(str, e))}" for name, e in form.errors.items())
        return HttpResponse(errors, status=400, content_type="text/plain; charset=utf-8")
    period = dashboard_period(tenant=tenant, form=form)
    return csv_response(
        request=request,
        filename=f"conversations-{period.since}-{period.until}.csv",
        header=selectors.CONVERSATION_EXPORT_COLUMNS,
        rows=selectors.conversation_export_rows(
            tenant=tenant, since=period.since, until=period.until
        ),
        tenant_id=tenant.pk,
    )
