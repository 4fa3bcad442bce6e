"""Rollups: the reporting rows summed per tenant, per day and per hour of the tenant's time zone.

``rollups_rebuild`` deletes and recomputes every bucket of a range of local days, one
transaction per tenant and day: idempotent (run twice, the same rows) and safe to run over any
range at any time (the Celery beat task rebuilds yesterday and today; ``manage.py
analytics_rollup`` any range). Daily buckets are kept for ever; hourly ones for the last
``ANALYTICS_HOURLY_DAYS`` days.

Each rollup row holds the ``count`` of reporting rows and the ``total`` of their measure for one
``(metric, dimension, key)``. Durations are also counted in a fixed-bucket histogram
(dimension ``hist``, key the bucket's upper bound in milliseconds, ``inf`` for the last), so
that percentiles over any range come from sums of rollups (analytics/selectors.py).
"""

import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics.models import ReportRow, Rollup
from conversations.models import Conversation, Message
from tenants.business_hours import BusinessHours, business_hours
from tenants.models import Tenant
from tenants.scoping import tenant_scope

Kind = ReportRow.Kind
Granularity = Rollup.Granularity

# Upper bounds (ms) of the duration histograms: 100 ms to a week, finer where answers fall.
HISTOGRAM_BOUNDS_MS: tuple[int, ...] = (
    100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 20_000,
    30_000, 45_000, 60_000, 90_000, 120_000, 180_000, 300_000, 600_000, 900_000, 1_200_000,
    1_800_000, 2_700_000, 3_600_000, 7_200_000, 10_800_000, 14_400_000, 21_600_000, 28_800_000,
    43_200_000, 86_400_000, 172_800_000, 259_200_000, 604_800_000,
)  # fmt: skip
OVERFLOW = "inf"
HIST = "hist"
AGENT_HIST = "agent_hist"
WEEKDAY_HOUR = "weekday_hour"  # key "<weekday 0 = Monday>:<hour>", local time
ROWS_FETCHED = 20_000  # reporting rows per fetch of the rebuild's cursor
ROLLUPS_INSERTED = 5_000  # rollup rows per INSERT
LLM_SOURCES = frozenset({Message.Source.RAG, Message.Source.LLM})


def histogram_key(duration_ms: int) -> str:
    """The histogram bucket of a duration: the smallest upper bound it does not exceed."""
    for bound in HISTOGRAM_BOUNDS_MS:
        if duration_ms <= bound:
            return str(bound)
    return OVERFLOW


def tenant_zone(tenant: Tenant) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(tenant.time_zone)


def local_day_bounds(day: date, zone: zoneinfo.ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants at which the local ``day`` starts and the next one does."""
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def local_today(tenant: Tenant) -> date:
    return timezone.now().astimezone(tenant_zone(tenant)).date()


def _days(since: date, until: date) -> Iterator[date]:
    day = since
    while day <= until:
        yield day
        day += timedelta(days=1)


@dataclass
class _Sum:
    count: int = 0
    total: Decimal = Decimal("0")


class _Buckets:
    """The sums of one local day: daily, and hourly when wanted."""

    def __init__(
        self,
        day_start: datetime,
        zone: zoneinfo.ZoneInfo,
        *,
        hourly: bool,
        hours: BusinessHours | None = None,
    ) -> None:
        self.day_start = day_start
        self.zone = zone
        self.hourly = hourly
        self.hours = hours
        self.sums: dict[tuple[str, datetime, str, str, str], _Sum] = defaultdict(_Sum)
        self.distinct: dict[tuple[str, datetime, str, str, str], set[int]] = defaultdict(set)
        self._daily = [(Granularity.DAY.value, day_start)]
        self._hourly: dict[int, list[tuple[str, datetime]]] = {}

    def _starts(self, occurred_at: datetime, *, daily: bool = False) -> list[tuple[str, datetime]]:
        if not self.hourly or daily:
            return self._daily
        # Zone offsets are whole quarter-hours: every instant of a UTC quarter-hour falls in the
        # same local hour, so each quarter-hour's local hour is worked out once.
        quarter = int(occurred_at.timestamp()) // 900
        starts = self._hourly.get(quarter)
        if starts is None:
            local = occurred_at.astimezone(self.zone).replace(minute=0, second=0, microsecond=0)
            starts = [*self._daily, (Granularity.HOUR.value, local.astimezone(UTC))]
            self._hourly[quarter] = starts
        return starts

    def add(
        self,
        occurred_at: datetime,
        metric: str,
        dimension: str = "",
        key: object = "",
        total: Decimal | int = 0,
        *,
        daily: bool = False,
    ) -> None:
        sums = self.sums
        for granularity, start in self._starts(occurred_at, daily=daily):
            found = sums[(granularity, start, metric, dimension, str(key))]
            found.count += 1
            if total:
                found.total += total

    def add_duration(
        self, occurred_at: datetime, metric: str, duration_ms: int | None, agent_id: int | None
    ) -> None:
        """A duration: its sum (for the mean), its histogram bucket, and the agent's."""
        if duration_ms is None:
            return
        bucket = histogram_key(duration_ms)
        self.add(occurred_at, metric, total=duration_ms)
        self.add(occurred_at, metric, HIST, bucket, total=duration_ms)
        if agent_id is not None:
            self.add(occurred_at, metric, "agent", agent_id, total=duration_ms)
            self.add(occurred_at, metric, AGENT_HIST, f"{agent_id}:{bucket}", total=duration_ms)

    def add_response(
        self, occurred_at: datetime, metric: str, duration_ms: int | None, agent_id: int | None
    ) -> None:
        """A response time (``<metric>_ms``), and the part of it within business hours
        (``<metric>_business_ms``: all of it when the tenant sets no hours)."""
        self.add_duration(occurred_at, f"{metric}_ms", duration_ms, agent_id)
        if duration_ms is None:
            return
        if self.hours is not None:
            started = occurred_at - timedelta(milliseconds=duration_ms)
            duration_ms = self.hours.open_ms_between(started, occurred_at)
        self.add_duration(occurred_at, f"{metric}_business_ms", duration_ms, agent_id)

    def add_distinct(
        self, occurred_at: datetime, metric: str, dimension: str, key: str, member: int
    ) -> None:
        for granularity, start in self._starts(occurred_at):
            self.distinct[(granularity, start, metric, dimension, key)].add(member)

    def rollups(self, tenant_id: int) -> list[Rollup]:
        made = [
            Rollup(
                tenant_id=tenant_id,
                granularity=granularity,
                bucket_start=start,
                metric=metric,
                dimension=dimension,
                key=key,
                count=found.count,
                total=found.total,
            )
            for (granularity, start, metric, dimension, key), found in self.sums.items()
        ]
        made += [
            Rollup(
                tenant_id=tenant_id,
                granularity=granularity,
                bucket_start=start,
                metric=metric,
                dimension=dimension,
                key=key,
                count=len(members),
            )
            for (granularity, start, metric, dimension, key), members in self.distinct.items()
        ]
        return made


ROW_FIELDS = (
    "kind",
    "occurred_at",
    "channel",
    "customer_id",
    "agent_id",
    "entry_id",
    "reason",
    "provider",
    "model",
    "tokens_in",
    "tokens_out",
    "cost",
    "latency_ms",
    "duration_ms",
    "value",
)


class _Row(NamedTuple):
    """One reporting row as ``_row_add`` reads it (a named tuple: made straight from the
    fetched values, at a fraction of a dataclass's cost)."""

    kind: str
    occurred_at: datetime
    channel: str
    customer_id: int | None
    agent_id: int | None
    entry_id: int | None
    reason: str
    provider: str
    model: str
    tokens_in: int
    tokens_out: int
    cost: Decimal
    latency_ms: int | None
    duration_ms: int | None
    value: int | None


def _row_add(buckets: _Buckets, row: _Row) -> None:
    at = row.occurred_at
    if row.kind == Kind.CONVERSATION_CREATED:
        buckets.add(at, "conversations", "channel", row.channel)
    elif row.kind == Kind.CUSTOMER_MESSAGE:
        buckets.add(at, "customer_messages", "channel", row.channel)
        # The weekday × hour heat map, from the daily rollups (kept for ever).
        local = at.astimezone(buckets.zone)
        weekday_hour = f"{local.weekday()}:{local.hour}"
        buckets.add(at, "customer_messages", WEEKDAY_HOUR, weekday_hour, daily=True)
        if row.customer_id is not None:
            buckets.add_distinct(at, "active_customers", "channel", row.channel, row.customer_id)
    elif row.kind == Kind.ANSWER:
        buckets.add(at, "answers", "source", row.reason)
        if row.provider or row.model or row.tokens_in or row.tokens_out:
            model = f"{row.provider}/{row.model}"
            buckets.add(at, "llm_tokens_in", "model", model, total=row.tokens_in)
            buckets.add(at, "llm_tokens_out", "model", model, total=row.tokens_out)
            buckets.add(at, "llm_cost", "model", model, total=row.cost)
        if row.reason in LLM_SOURCES and row.latency_ms is not None:
            buckets.add_duration(at, "llm_latency_ms", row.latency_ms, None)
    elif row.kind == Kind.FIRST_ANSWER:
        buckets.add_response(at, "first_response", row.duration_ms, None)
    elif row.kind == Kind.FAQ_HIT:
        buckets.add(at, "faq_hits", "entry", row.entry_id)
    elif row.kind == Kind.DOCUMENT_HIT:
        buckets.add(at, "document_hits", "document", row.entry_id)
    elif row.kind == Kind.HANDOFF:
        buckets.add(at, "handoffs", "reason", row.reason)
    elif row.kind == Kind.AGENT_REPLY:
        buckets.add(at, "agent_replies", "agent", row.agent_id or "")
    elif row.kind == Kind.FIRST_HUMAN_RESPONSE:
        buckets.add_response(at, "human_response", row.duration_ms, row.agent_id)
    elif row.kind == Kind.RESOLVED:
        buckets.add(at, "resolved", "kind", row.reason)
        if row.reason == Conversation.ResolutionKind.AI:
            buckets.add(at, "ai_resolved", "confirmation", "confirmed" if row.value else "assumed")
        agent = row.agent_id if row.reason == Conversation.ResolutionKind.AGENT else None
        buckets.add_duration(at, "resolution_ms", row.duration_ms, agent)
    elif row.kind == Kind.ABANDONED:
        buckets.add(at, "abandoned")
    elif row.kind == Kind.REOPENED:
        buckets.add(at, "reopened", "kind", row.reason)
    elif row.kind == Kind.RATING and row.value is not None:
        buckets.add(at, "ratings", "score", row.value, total=row.value)
        if row.agent_id is not None:
            buckets.add(at, "ratings", "agent", row.agent_id, total=row.value)
    elif row.kind == Kind.FEEDBACK:
        buckets.add(at, "feedback", "value", row.reason)
    elif row.kind == Kind.TICKET_OPENED:
        buckets.add(at, "tickets_opened")
    elif row.kind == Kind.TICKET_SLA_BREACHED:
        buckets.add(at, "tickets_sla_breached")
    elif row.kind == Kind.TICKET_SOLVED:
        sla = "none" if row.value is None else ("met" if row.value else "breached")
        buckets.add(at, "tickets_solved", "sla", sla)
        buckets.add_duration(at, "ticket_resolution_ms", row.duration_ms, None)


def rollups_rebuild(*, tenant: Tenant, since: date, until: date) -> int:
    """Deletes and recomputes the tenant's daily and hourly rollups of the local days ``since``
    to ``until`` (both included), one transaction per day. Returns the rollup rows written."""
    zone = tenant_zone(tenant)
    hours = business_hours(tenant)
    hourly_from = local_today(tenant) - timedelta(days=settings.ANALYTICS_HOURLY_DAYS)
    written = 0
    with tenant_scope(tenant.pk):
        for day in _days(since, until):
            start, end = local_day_bounds(day, zone)
            buckets = _Buckets(start, zone, hourly=day >= hourly_from, hours=hours)
            rows = (
                ReportRow.objects.filter(tenant=tenant, occurred_at__gte=start, occurred_at__lt=end)
                .order_by()
                .values_list(*ROW_FIELDS)
            )
            with transaction.atomic():
                make = _Row._make
                for values in rows.iterator(chunk_size=ROWS_FETCHED):
                    _row_add(buckets, make(values))
                Rollup.objects.filter(
                    tenant=tenant, bucket_start__gte=start, bucket_start__lt=end
                ).delete()
                made = buckets.rollups(tenant.pk)
                Rollup.objects.bulk_create(made, batch_size=ROLLUPS_INSERTED)
            written += len(made)
    return written


def hourly_rollups_purge(*, tenant: Tenant) -> int:
    """Deletes the tenant's hourly rollups older than ``ANALYTICS_HOURLY_DAYS`` (local days)."""
    oldest = local_today(tenant) - timedelta(days=settings.ANALYTICS_HOURLY_DAYS)
    cutoff, _end = local_day_bounds(oldest, tenant_zone(tenant))
    with tenant_scope(tenant.pk):
        deleted, _kinds = Rollup.objects.filter(
            tenant=tenant, granularity=Granularity.HOUR, bucket_start__lt=cutoff
        ).delete()
    return deleted


def rollups_refresh_on_view(*, tenant: Tenant) -> None:
    """Without Celery beat (``ANALYTICS_ROLLUP_ON_VIEW``, the embedded defaults) nothing else
    rebuilds the rollups: the pages that read them rebuild the tenant's yesterday and today."""
    if settings.ANALYTICS_ROLLUP_ON_VIEW:
        today = local_today(tenant)
        rollups_rebuild(tenant=tenant, since=today - timedelta(days=1), until=today)


def rollups_refresh(*, tenant_slug: str | None = None) -> Counter[str]:
    """What the beat task does: every active tenant's (or one's) yesterday and today rebuilt,
    and hourly rollups past their keeping purged. Returns rollup rows written by tenant slug."""
    tenants = Tenant.objects.filter(is_active=True)
    if tenant_slug is not None:
        tenants = tenants.filter(slug=tenant_slug)
    written: Counter[str] = Counter()
    for tenant in tenants.order_by("pk"):
        today = local_today(tenant)
        written[tenant.slug] += rollups_rebuild(
            tenant=tenant, since=today - timedelta(days=1), until=today
        )
        hourly_rollups_purge(tenant=tenant)
    return written
