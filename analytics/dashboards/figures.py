"""What the analytics pages show, and how: a period, key figures beside the previous period's,
tables that export as CSV, charts, and drill-down links to the conversation list. Read from the
rollups only (analytics/selectors.py)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from analytics import selectors
from analytics.rollups import tenant_zone
from tenants.models import Tenant

M = TypeVar("M")
MICRO = Decimal("0.000001")  # money in exports, as the REST API gives it

# Each metric's definition (docs/analytics.md), shown beside it.
HELP = {
    "conversations": gettext_lazy(
        "Conversations started in the period: the customer's first message, handoff request "
        "or contact details start one; page views do not."
    ),
    "automation_rate": gettext_lazy(
        "(Resolutions by the assistant − those the customer reopened by writing again) ÷ "
        "conversations started."
    ),
    "resolution_confirmed": gettext_lazy(
        "Conversations the assistant resolved in which the customer had rated an answer "
        "helpful before the resolution ÷ conversations started."
    ),
    "resolution_assumed": gettext_lazy(
        "The assistant's other resolutions (the customer left answered, without asking for a "
        "person) ÷ conversations started."
    ),
    "handoff_rate": gettext_lazy(
        "Handoffs to a person ÷ conversations started; a conversation handed over twice "
        "counts twice."
    ),
    "abandonment_rate": gettext_lazy(
        "Conversations closed after waiting in the queue with nobody taking them and no "
        "contact details left ÷ handoffs."
    ),
    "thumbs_up_rate": gettext_lazy(
        "Answers rated helpful ÷ answers rated helpful or not helpful in the period; a "
        "customer who changes their mind counts once each way."
    ),
    "sources": gettext_lazy(
        "The assistant's answers by source: FAQ, knowledge + LLM, LLM, offline responder, "
        "fallback (an answer cut off mid-stream counts too)."
    ),
    "handoffs": gettext_lazy("Handoffs to a person in the period, by reason."),
    "first_response": gettext_lazy(
        "From a conversation's start to its first answer by anybody (assistant or person), "
        "counted in the period the answer came. Percentiles are the upper bounds of "
        "histogram buckets."
    ),
    "human_response": gettext_lazy(
        "From a handoff to the first reply of a person after it (or from an agent taking the "
        "conversation from the assistant); one sample per handoff that got a reply."
    ),
    "human_response_business": gettext_lazy(
        "The reply time after handoff counting only the time within the tenant's business "
        "hours: a question handed over at 17:50 and answered at 09:10 the next working day, "
        "with hours 09:00–18:00, took 20 minutes. Equal to the plain reply time when no "
        "business hours are set."
    ),
    "first_response_business": gettext_lazy(
        "The first response time counting only the time within the tenant's business hours. "
        "Equal to the plain first response time when no business hours are set."
    ),
    "resolution_time": gettext_lazy(
        "From a conversation's start to its resolution, by the assistant, an agent or a ticket."
    ),
    "agents": gettext_lazy(
        "Per agent: replies sent, reply time after handoff, conversations they resolved and "
        "how long those took, ratings received and their mean."
    ),
    "tickets": gettext_lazy(
        "Tickets opened and solved in the period; SLA met = solved within their due time ÷ "
        "solved with a due time; open and pending tickets now."
    ),
    "sla_met": gettext_lazy("Tickets solved within their due time ÷ tickets solved with one."),
    "csat": gettext_lazy("Ratings of 4 or 5 ÷ all ratings given in the period."),
    "response_rate": gettext_lazy(
        "Ratings ÷ conversations resolved by a person in the period (only those are asked "
        "for a rating)."
    ),
    "distribution": gettext_lazy("How many ratings of each score, 1 to 5, and the mean score."),
    "cost": gettext_lazy(
        "What the answers that called an LLM cost (or were estimated after a cut-off), by "
        "provider and model, with their input and output tokens."
    ),
    "llm_latency": gettext_lazy(
        "Total time of the answers written by an LLM (knowledge + LLM, LLM), from the "
        "customer's message to the answer's end."
    ),
    "fallback_rate": gettext_lazy(
        "Fallback answers (every provider failed; the best knowledge was given) ÷ answers "
        "that tried an LLM."
    ),
    "heatmap": gettext_lazy("Customer messages by local weekday and hour."),
    "channels": gettext_lazy("Conversations started in the period, by channel."),
}


# The period -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The tenant's local days ``since`` to ``until``, both included."""

    since: date
    until: date
    preset: str
    compare: bool

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    @property
    def previous(self) -> tuple[date, date]:
        """The as long period just before."""
        length = timedelta(days=self.days)
        return self.since - length, self.until - length

    def query(self, **extra: str) -> str:
        """The query string that names this period (and ``extra``)."""
        values = {"since": self.since.isoformat(), "until": self.until.isoformat()}
        if self.preset != "custom":
            values = {"preset": self.preset}
        if self.compare:
            values["compare"] = "1"
        return urlencode({**values, **extra})


# What a page shows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A table cell: its text on the page, its value in the CSV, and where it drills down."""

    text: str
    value: object
    link: str = ""


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    help: str = ""


@dataclass(frozen=True)
class Kpi:
    key: str
    label: str
    help: str
    value: float | None
    previous: float | None
    kind: str  # count, percent, ms, money, score
    link: str = ""
    lower_is_better: bool = False

    @property
    def text(self) -> str:
        return format_value(self.value, self.kind)

    @property
    def previous_text(self) -> str:
        return format_value(self.previous, self.kind)

    @property
    def change(self) -> float | None:
        """The change from the previous period, as a share of it; None without a base."""
        if self.value is None or not self.previous:
            return None
        return (self.value - self.previous) / self.previous

    @property
    def change_text(self) -> str:
        change = self.change
        if change is None:
            return ""
        return f"{abs(change) * 100:.1f}%"

    @property
    def trend(self) -> str:
        """up, down or flat; and whether that is good news, for the arrow's colour."""
        change = self.change
        if not change:
            return "flat"
        return "up" if change > 0 else "down"

    @property
    def good(self) -> bool:
        return (self.trend == "up") != self.lower_is_better


@dataclass(frozen=True)
class Compared(Generic[M]):
    """A selector's metrics over the period (``now``) and the as long one before."""

    now: M
    before: M

    @classmethod
    def read(cls, select: Callable[..., M], *, tenant: Tenant, period: Period) -> "Compared[M]":
        since, until = period.previous
        return cls(
            select(tenant=tenant, since=period.since, until=period.until),
            select(tenant=tenant, since=since, until=until),
        )

    def kpi(
        self,
        key: str,
        label: str,
        attribute: str,
        kind: str,
        link: str = "",
        *,
        help_key: str = "",
        lower_is_better: bool = False,
    ) -> Kpi:
        """A key figure: the metrics' ``attribute`` (a dotted path) now and before."""
        read = attrgetter(attribute)
        return Kpi(
            key,
            label,
            str(HELP[help_key or key]),
            _number(read(self.now)),
            _number(read(self.before)),
            kind,
            link,
            lower_is_better,
        )


def _number(value: float | Decimal | None) -> float | None:
    return None if value is None else float(value)


def kpi_table(key: str, title: str, kpis: list[Kpi]) -> Table:
    """The key figures as a table (for their CSV export)."""
    return Table(
        key,
        title,
        [_("Metric"), _("This period"), _("Previous period")],
        [
            [
                Cell(kpi.label, kpi.key),
                Cell(kpi.text, kpi.value, kpi.link),
                Cell(kpi.previous_text, kpi.previous),
            ]
            for kpi in kpis
        ],
    )


@dataclass
class Page:
    kpis: list[Kpi] = field(default_factory=list)
    charts: list[dict[str, Any]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    notes_link: str = ""


def format_value(value: float | Decimal | None, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "percent":
        return f"{float(value) * 100:.1f}%"
    if kind == "ms":
        return duration_text(int(value))
    if kind == "money":
        return f"{Decimal(value):.4f}"
    if kind == "score":
        return f"{float(value):.2f}"
    return f"{int(value):,}"


def duration_text(ms: int) -> str:
    if ms < 1000:
        return _("%(n)d ms") % {"n": ms}
    if ms < 60_000:
        return _("%(n)s s") % {"n": f"{ms / 1000:.1f}".removesuffix(".0")}
    if ms < 3_600_000:
        return _("%(n)s min") % {"n": f"{ms / 60_000:.1f}".removesuffix(".0")}
    return _("%(n)s h") % {"n": f"{ms / 3_600_000:.1f}".removesuffix(".0")}


def count_cell(value: int, link: str = "") -> Cell:
    return Cell(format_value(value, "count"), value, link)


def ms_cell(value: int | None) -> Cell:
    return Cell(format_value(value, "ms"), value)


class Links:
    """Drill-downs to the conversation list, filtered by the period's local days."""

    def __init__(self, period: Period) -> None:
        self.period = period

    def conversations(self, on: str = "started", /, **filters: object) -> str:
        params = {
            f"{on}_since": self.period.since.isoformat(),
            f"{on}_until": self.period.until.isoformat(),
            **{name: str(value) for name, value in filters.items()},
        }
        return f"{reverse('admin:conversations_conversation_changelist')}?{urlencode(params)}"

    @staticmethod
    def tickets(status: str) -> str:
        changelist = reverse("admin:conversations_ticket_changelist")
        return f"{changelist}?{urlencode({'status__exact': status})}"


# Charts -----------------------------------------------------------------------------------------


def days_of(since: date, until: date) -> list[date]:
    return [since + timedelta(days=n) for n in range((until - since).days + 1)]


def daily_series(
    tenant: Tenant,
    since: date,
    until: date,
    metric: str,
    dimension: str = "",
    key: str | None = None,
    measure: str = "count",
) -> list[float | None]:
    """A rollup metric per local day of the range: its count, the total of its measure
    (``total``) or the mean (``mean``); 0 on days without any, but no mean (None, a gap in
    the line) for a day without samples."""
    zone = tenant_zone(tenant)
    points = selectors.metric_series(
        tenant=tenant, metric=metric, since=since, until=until, dimension=dimension, key=key
    )
    by_day: dict[date, float | None] = {}
    for point in points:
        if measure == "total":
            value: float | None = float(point.total)
        elif measure == "mean":
            value = float(point.total / point.count) if point.count else None
        else:
            value = float(point.count)
        by_day[point.bucket_start.astimezone(zone).date()] = value
    missing = None if measure == "mean" else 0.0
    return [by_day.get(day, missing) for day in days_of(since, until)]


def rates(parts: list[float | None], wholes: list[float | None]) -> list[float | None]:
    """Each day's share, None on a day with nothing to divide by."""
    return [
        (part or 0) / whole if whole else None for part, whole in zip(parts, wholes, strict=True)
    ]


SeriesFn = Callable[[date, date], list[Any]]


def line_chart(
    *,
    chart_id: str,
    title: str,
    period: Period,
    series: list[tuple[str, SeriesFn]],
    kind: str = "count",
    chart: str = "line",
) -> dict[str, Any]:
    """A chart over the period's days; with ``compare``, each series of the previous period
    too, drawn dashed on the same days."""
    drawn: list[dict[str, Any]] = [
        {"name": name, "data": values(period.since, period.until)} for name, values in series
    ]
    if period.compare:
        since, until = period.previous
        drawn += [
            {"name": _("%(name)s (previous)") % {"name": name}, "data": values(since, until)}
            | {"previous": True}
            for name, values in series
        ]
    return {
        "id": chart_id,
        "title": title,
        "type": chart,
        "format": kind,
        "x": [day.isoformat() for day in days_of(period.since, period.until)],
        "series": drawn,
    }


def bar_chart(chart_id: str, title: str, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": chart_id,
        "title": title,
        "type": "bar",
        "format": "count",
        "x": list(counts),
        "series": [{"name": title, "data": list(counts.values())}],
    }


def heatmap_chart(tenant: Tenant, period: Period) -> dict[str, Any]:
    cells = selectors.volume_heatmap(tenant=tenant, since=period.since, until=period.until)
    weekdays = [_("Mon"), _("Tue"), _("Wed"), _("Thu"), _("Fri"), _("Sat"), _("Sun")]
    return {
        "id": "heatmap",
        "title": _("When customers write"),
        "type": "heatmap",
        "format": "count",
        "x": [f"{hour:02d}" for hour in range(24)],
        "y": weekdays,
        "cells": [[hour, day, count] for (day, hour), count in sorted(cells.items())],
    }
