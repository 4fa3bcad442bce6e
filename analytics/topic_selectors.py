"""Reads of hot topics and knowledge gaps for the console pages, CSV exports and the API.
Everything takes the tenant and reads only its rows."""

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from analytics.models import KnowledgeGap, Topic, TopicPeriod
from knowledge.csv_format import spreadsheet_safe
from tenants.models import Tenant


@dataclass(frozen=True)
class TopicRow:
    topic_id: int
    name: str
    label: str
    custom_name: str
    hidden: bool
    volume: int
    previous_volume: int
    conversations: int
    ai_resolved: int
    handoffs: int
    csat_count: int
    csat_total: int
    sample_conversation_ids: list[int]

    @property
    def change(self) -> float | None:
        """Change of the volume against the period before (0.5: +50 %); None when new."""
        if not self.previous_volume:
            return None
        return (self.volume - self.previous_volume) / self.previous_volume

    @property
    def ai_resolution_rate(self) -> float | None:
        return self.ai_resolved / self.conversations if self.conversations else None

    @property
    def handoff_rate(self) -> float | None:
        return self.handoffs / self.conversations if self.conversations else None

    @property
    def csat(self) -> float | None:
        return self.csat_total / self.csat_count if self.csat_count else None


def topic_periods(
    *, tenant: Tenant, since: date, until: date, hidden: bool | None = False
) -> QuerySet[TopicPeriod]:
    """The tenant's topics' rows of the period ``since``–``until`` as a run stored it (merged
    topics left out; ``hidden`` None: hidden ones too)."""
    periods = TopicPeriod.objects.filter(
        tenant=tenant, since=since, until=until, topic__merged_into__isnull=True
    ).select_related("topic")
    if hidden is not None:
        periods = periods.filter(topic__hidden=hidden)
    return periods


def topic_row(period: TopicPeriod) -> TopicRow:
    topic = period.topic
    return TopicRow(
        topic_id=topic.pk,
        name=topic.name,
        label=topic.label,
        custom_name=topic.custom_name,
        hidden=topic.hidden,
        volume=period.volume,
        previous_volume=period.previous_volume,
        conversations=period.conversations,
        ai_resolved=period.ai_resolved,
        handoffs=period.handoffs,
        csat_count=period.csat_count,
        csat_total=period.csat_total,
        sample_conversation_ids=list(period.sample_conversation_ids),
    )


def topic_rows(
    *, tenant: Tenant, since: date, until: date, hidden: bool | None = False
) -> list[TopicRow]:
    """The period's topics, the most asked first."""
    periods = topic_periods(tenant=tenant, since=since, until=until, hidden=hidden)
    return [topic_row(p) for p in periods.order_by("-volume", "topic_id")]


def topic_get(*, tenant: Tenant, topic_id: object) -> Topic | None:
    """The tenant's topic ``topic_id`` (any value from a form), or None."""
    try:
        pk = int(str(topic_id))
    except ValueError:
        return None
    return Topic.objects.filter(tenant=tenant, pk=pk).first()


def topic_last_period(*, tenant: Tenant) -> tuple[date, date] | None:
    """The period of the tenant's latest run, if any."""
    latest = TopicPeriod.objects.filter(tenant=tenant).order_by("-created_at", "-id").first()
    return (latest.since, latest.until) if latest else None


def knowledge_gaps(*, tenant: Tenant, status: str | None = None) -> QuerySet[KnowledgeGap]:
    """The tenant's gaps, the most customers first (``status``: only those)."""
    gaps = KnowledgeGap.objects.filter(tenant=tenant)
    if status:
        gaps = gaps.filter(status=status)
    return gaps.order_by("-customers", "-occurrences", "id")


# CSV --------------------------------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}"


def _csv(header: list[str], rows: Iterable[list[object]]) -> Iterator[str]:
    """A UTF-8 CSV (with a BOM for spreadsheets) whose text cells cannot run as formulas."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    yield "\ufeff"
    for row in [list[object](header), *rows]:
        writer.writerow(spreadsheet_safe(cell) if isinstance(cell, str) else cell for cell in row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def topics_csv(rows: Iterable[TopicRow]) -> Iterator[str]:
    header = [
        _("Topic"),
        _("Questions"),
        _("Questions in the period before"),
        _("Change (%)"),
        _("Conversations"),
        _("AI resolution (%)"),
        _("Handoff (%)"),
        _("CSAT"),
        _("Sample conversations"),
    ]
    return _csv(
        header,
        (
            [
                r.name,
                r.volume,
                r.previous_volume,
                _percent(r.change),
                r.conversations,
                _percent(r.ai_resolution_rate),
                _percent(r.handoff_rate),
                "" if r.csat is None else f"{r.csat:.2f}",
                " ".join(str(c) for c in r.sample_conversation_ids),
            ]
            for r in rows
        ),
    )


def gaps_csv(gaps: Iterable[KnowledgeGap]) -> Iterator[str]:
    header = [
        _("Question"),
        _("Status"),
        _("Customers"),
        _("Times asked"),
        _("Other phrasings"),
        _("The assistant said"),
        _("The agent answered"),
        _("Since"),
        _("Until"),
    ]
    return _csv(
        header,
        (
            [
                g.question,
                g.get_status_display(),
                g.customers,
                g.occurrences,
                " | ".join(q for q in g.questions if q != g.question),
                g.assistant_answer,
                g.agent_answer,
                g.since.isoformat(),
                g.until.isoformat(),
            ]
            for g in gaps
        ),
    )
