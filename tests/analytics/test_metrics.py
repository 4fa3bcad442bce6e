"""Metric definitions and rollups, on small hand-built histories with known answers."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from analytics import selectors
from analytics.models import ReportRow, Rollup
from analytics.rollups import histogram_key, local_today, rollups_rebuild
from analytics.tasks import analytics_rollup_task
from tests.support import factories

pytestmark = pytest.mark.django_db

Kind = ReportRow.Kind
DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)


@pytest.fixture(autouse=True)
def _hourly_kept(settings):
    settings.ANALYTICS_HOURLY_DAYS = 100_000  # the fixed dates below keep their hourly rollups


@pytest.fixture
def shanghai(db):
    return factories.TenantFactory(time_zone="Asia/Shanghai")


def at(text: str) -> datetime:
    """A UTC instant, ``"2026-03-01 15:30"``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def row(tenant, kind: str, when: datetime, **fields) -> ReportRow:
    fields.setdefault("channel", "widget")
    return ReportRow.objects.create(tenant=tenant, kind=kind, occurred_at=when, **fields)


def rebuild(tenant, since: date = DAY1, until: date = DAY2) -> None:
    rollups_rebuild(tenant=tenant, since=since, until=until)


def rollup_rows(tenant) -> list[tuple]:
    return list(
        Rollup.objects.filter(tenant=tenant)
        .order_by("granularity", "bucket_start", "metric", "dimension", "key")
        .values_list("granularity", "bucket_start", "metric", "dimension", "key", "count", "total")
    )


def test_an_event_at_23_30_local_time_counts_on_its_local_day(shanghai) -> None:
    utc = factories.TenantFactory(time_zone="UTC")
    for tenant in (shanghai, utc):
        row(tenant, Kind.CONVERSATION_CREATED, at("2026-03-01 15:30"))  # 23:30 in Shanghai
        row(tenant, Kind.CONVERSATION_CREATED, at("2026-03-01 16:30"))  # 00:30 the next day
        rebuild(tenant)

    assert selectors.volume_metrics(tenant=shanghai, since=DAY1, until=DAY1).conversations == 1
    assert selectors.volume_metrics(tenant=shanghai, since=DAY2, until=DAY2).conversations == 1
    assert selectors.volume_metrics(tenant=utc, since=DAY1, until=DAY1).conversations == 2
    hours = selectors.metric_series(
        tenant=shanghai,
        metric="conversations",
        dimension="channel",
        since=DAY1,
        until=DAY2,
        granularity=Rollup.Granularity.HOUR,
    )
    assert [(p.bucket_start, p.count) for p in hours] == [
        (at("2026-03-01 15:00"), 1),  # 23:00 local
        (at("2026-03-01 16:00"), 1),  # 00:00 local
    ]
    days = selectors.metric_series(
        tenant=shanghai, metric="conversations", dimension="channel", since=DAY1, until=DAY2
    )
    assert [p.bucket_start for p in days] == [at("2026-02-28 16:00"), at("2026-03-01 16:00")]


def test_the_heat_map_counts_messages_by_local_weekday_and_hour(shanghai) -> None:
    row(shanghai, Kind.CUSTOMER_MESSAGE, at("2026-03-01 15:30"))  # Sunday 23:30 in Shanghai
    row(shanghai, Kind.CUSTOMER_MESSAGE, at("2026-03-01 15:59"))
    row(shanghai, Kind.CUSTOMER_MESSAGE, at("2026-03-01 16:30"))  # Monday 00:30
    rebuild(shanghai)

    cells = selectors.volume_heatmap(tenant=shanghai, since=DAY1, until=DAY2)

    assert (cells[(6, 23)], cells[(0, 0)]) == (2, 1)
    assert (len(cells), sum(cells.values())) == (168, 3)
    assert selectors.volume_metrics(tenant=shanghai, since=DAY1, until=DAY2).customer_messages == 3


def test_a_conversation_spanning_midnight(shanghai) -> None:
    conversation = {"conversation_id": 1, "customer_id": 9}
    row(shanghai, Kind.CONVERSATION_CREATED, at("2026-03-01 15:50"), **conversation)
    row(shanghai, Kind.CUSTOMER_MESSAGE, at("2026-03-01 15:50"), **conversation)
    row(shanghai, Kind.CUSTOMER_MESSAGE, at("2026-03-01 16:10"), **conversation)
    row(shanghai, Kind.ANSWER, at("2026-03-01 16:05"), reason="rag", **conversation)
    row(
        shanghai,
        Kind.FIRST_ANSWER,
        at("2026-03-01 16:05"),
        duration_ms=15 * 60_000,
        **conversation,
    )
    row(
        shanghai,
        Kind.RESOLVED,
        at("2026-03-01 16:50"),
        reason="ai",
        value=0,
        duration_ms=60 * 60_000,
        **conversation,
    )
    rebuild(shanghai)

    first_day = selectors.volume_metrics(tenant=shanghai, since=DAY1, until=DAY1)
    second_day = selectors.volume_metrics(tenant=shanghai, since=DAY2, until=DAY2)
    both = selectors.volume_metrics(tenant=shanghai, since=DAY1, until=DAY2)
    people = selectors.people_metrics(tenant=shanghai, since=DAY2, until=DAY2)

    assert (first_day.conversations, first_day.customer_messages) == (1, 1)
    assert (second_day.conversations, second_day.customer_messages) == (0, 1)
    assert second_day.messages_per_conversation is None  # no conversation started that day
    # The customer was active on both days: one customer-day each.
    assert (first_day.active_customer_days, both.active_customer_days) == (1, 2)
    assert both.messages_per_conversation == 3.0
    assert (people.first_response.count, people.first_response.p50_ms) == (1, 900_000)
    assert people.resolution_time.p50_ms == 3_600_000
    assert selectors.ai_metrics(tenant=shanghai, since=DAY1, until=DAY1).resolved_assumed == 0
    assert selectors.ai_metrics(tenant=shanghai, since=DAY2, until=DAY2).resolved_assumed == 1


def test_a_reopened_conversation_no_longer_counts_as_automated(shanghai) -> None:
    day = at("2026-03-01 02:00")
    for conversation_id in (1, 2, 3, 4):
        row(shanghai, Kind.CONVERSATION_CREATED, day, conversation_id=conversation_id)
    row(shanghai, Kind.FEEDBACK, day, conversation_id=1, reason="up")
    row(shanghai, Kind.RESOLVED, day, conversation_id=1, reason="ai", value=1)
    row(shanghai, Kind.RESOLVED, day, conversation_id=2, reason="ai", value=0)
    row(shanghai, Kind.REOPENED, day, conversation_id=2, reason="ai")
    row(shanghai, Kind.HANDOFF, day, conversation_id=3, reason="customer_request")
    row(shanghai, Kind.HANDOFF, day, conversation_id=4, reason="low_confidence")
    row(shanghai, Kind.ABANDONED, day, conversation_id=4)
    row(shanghai, Kind.FEEDBACK, day, conversation_id=3, reason="down")
    for source in ("faq", "faq", "rag", "fallback"):
        row(shanghai, Kind.ANSWER, day, reason=source)
    rebuild(shanghai)

    ai = selectors.ai_metrics(tenant=shanghai, since=DAY1, until=DAY1)

    assert (ai.conversations, ai.resolved_confirmed, ai.resolved_assumed) == (4, 1, 1)
    assert ai.reopened_after_ai == 1
    assert ai.resolution_rate_confirmed == ai.resolution_rate_assumed == 0.25
    assert ai.automation_rate == 0.25  # (2 resolved − 1 reopened) ÷ 4
    assert ai.handoffs_by_reason == {"customer_request": 1, "low_confidence": 1}
    assert (ai.handoff_rate, ai.abandoned, ai.abandonment_rate) == (0.5, 1, 0.5)
    assert ai.answers_by_source == {"faq": 2, "fallback": 1, "rag": 1}
    assert (ai.thumbs_up, ai.thumbs_down, ai.thumbs_up_rate) == (1, 1, 0.5)


def test_response_times_are_percentiles_of_the_histogram_per_agent(shanghai) -> None:
    day = at("2026-03-01 02:00")
    for agent, seconds in ((7, 30), (7, 60), (8, 600)):
        row(
            shanghai,
            Kind.FIRST_HUMAN_RESPONSE,
            day,
            agent_id=agent,
            duration_ms=seconds * 1000,
        )
    row(shanghai, Kind.AGENT_REPLY, day, agent_id=7)
    row(shanghai, Kind.AGENT_REPLY, day, agent_id=7)
    row(shanghai, Kind.AGENT_REPLY, day, agent_id=8)
    row(shanghai, Kind.RESOLVED, day, reason="agent", agent_id=8, duration_ms=3_000_000)
    row(shanghai, Kind.RATING, day, agent_id=8, value=5)
    rebuild(shanghai)

    people = selectors.people_metrics(tenant=shanghai, since=DAY1, until=DAY1)

    assert people.human_response.count == 3
    assert people.human_response.mean_ms == 230_000
    assert (people.human_response.p50_ms, people.human_response.p90_ms) == (60_000, 600_000)
    assert set(people.agents) == {7, 8}
    li, wu = people.agents[7], people.agents[8]
    assert (li.replies, li.human_response.count, li.human_response.p90_ms) == (2, 2, 60_000)
    assert (wu.resolved, wu.resolution_time.p50_ms) == (1, 3_600_000)
    assert (wu.ratings, wu.rating_mean) == (1, 5.0)
    assert histogram_key(60_000) == "60000" and histogram_key(60_001) == "90000"
    assert histogram_key(10**12) == "inf"


def test_response_times_within_business_hours(shanghai) -> None:
    shanghai.business_hours = {
        "timezone": "Asia/Shanghai",
        "days": [0, 1, 2, 3, 4],
        "open": "09:00",
        "close": "18:00",
    }
    shanghai.save(update_fields=["business_hours"])
    # Handed over on Friday 2026-02-27 at 17:50 Shanghai time, answered on Monday 03-02 at
    # 09:10: 20 minutes of business time, 2 days 15 h 20 min in all.
    answered = at("2026-03-02 01:10")
    waited = answered - at("2026-02-27 09:50")
    row(
        shanghai,
        Kind.FIRST_HUMAN_RESPONSE,
        answered,
        agent_id=7,
        duration_ms=int(waited.total_seconds() * 1000),
    )
    # A first answer within the hours counts the same both ways.
    row(shanghai, Kind.FIRST_ANSWER, at("2026-03-02 02:00"), duration_ms=1_500)
    rebuild(shanghai, since=DAY2, until=DAY2)

    people = selectors.people_metrics(tenant=shanghai, since=DAY2, until=DAY2)

    assert people.human_response.mean_ms == 228_000_000
    assert people.human_response_business.mean_ms == 20 * 60_000
    assert people.human_response_business.p50_ms == 20 * 60_000
    assert people.agents[7].human_response_business.mean_ms == 20 * 60_000
    assert people.first_response.mean_ms == people.first_response_business.mean_ms == 1_500


def test_without_business_hours_both_response_times_are_equal(shanghai) -> None:
    row(shanghai, Kind.FIRST_HUMAN_RESPONSE, at("2026-03-01 20:00"), duration_ms=7_200_000)
    rebuild(shanghai)

    people = selectors.people_metrics(tenant=shanghai, since=DAY2, until=DAY2)

    assert people.human_response.mean_ms == people.human_response_business.mean_ms == 7_200_000


def test_satisfaction(shanghai) -> None:
    day = at("2026-03-01 02:00")
    for score in (5, 4, 2):
        row(shanghai, Kind.RATING, day, value=score)
    for _ in range(4):
        row(shanghai, Kind.RESOLVED, day, reason="agent")
    rebuild(shanghai)

    csat = selectors.satisfaction_metrics(tenant=shanghai, since=DAY1, until=DAY1)

    assert csat.ratings == 3
    assert csat.distribution == {1: 0, 2: 1, 3: 0, 4: 1, 5: 1}
    assert csat.csat == pytest.approx(2 / 3)
    assert csat.response_rate == 0.75
    assert csat.mean == pytest.approx(11 / 3)


def test_cost_by_provider_and_model(shanghai) -> None:
    day = at("2026-03-01 02:00")
    usage = {"provider": "DeepSeek", "model": "deepseek-chat"}
    for source, tokens_in, tokens_out, cost, latency_ms in [
        ("rag", 100, 20, Decimal("0.01"), 900),
        ("llm", 50, 10, Decimal("0.005"), 4000),
    ]:
        row(
            shanghai,
            Kind.ANSWER,
            day,
            reason=source,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost=cost,
            latency_ms=latency_ms,
            **usage,
        )
    row(shanghai, Kind.ANSWER, day, reason="fallback", latency_ms=100)
    row(shanghai, Kind.ANSWER, day, reason="faq", latency_ms=5)
    rebuild(shanghai)

    metrics = selectors.cost_metrics(tenant=shanghai, since=DAY1, until=DAY1)

    assert metrics.by_model == [
        selectors.ModelUsage("DeepSeek", "deepseek-chat", 2, 150, 30, Decimal("0.015"))
    ]
    assert (metrics.tokens_in, metrics.tokens_out, metrics.cost) == (150, 30, Decimal("0.015"))
    assert (metrics.llm_latency.count, metrics.llm_latency.p95_ms) == (2, 5_000)
    assert metrics.fallback_rate == pytest.approx(1 / 3)


def test_faq_entries_hit_and_never_hit(shanghai) -> None:
    popular, rare, unused = factories.KnowledgeEntryFactory.create_batch(3, tenant=shanghai)
    factories.KnowledgeEntryFactory(tenant=shanghai, enabled=False)
    day = at("2026-03-01 02:00")
    for entry in (popular, popular, rare):
        row(shanghai, Kind.FAQ_HIT, day, entry_id=entry.pk)
    row(shanghai, Kind.FAQ_HIT, at("2026-03-03 02:00"), entry_id=unused.pk)  # outside the range
    rebuild(shanghai, until=date(2026, 3, 3))

    knowledge = selectors.knowledge_metrics(tenant=shanghai, since=DAY1, until=DAY2)

    assert knowledge.hits_by_entry == {popular.pk: 2, rare.pk: 1}
    assert knowledge.entries_never_hit == [unused.pk]


def test_documents_used_and_never_used(shanghai) -> None:
    guide, manual, unused = factories.DocumentFactory.create_batch(3, tenant=shanghai)
    factories.DocumentFactory(tenant=shanghai, enabled=False)
    day = at("2026-03-01 02:00")
    for document in (manual, guide, manual):
        row(shanghai, Kind.DOCUMENT_HIT, day, entry_id=document.pk)
    rebuild(shanghai)

    knowledge = selectors.knowledge_metrics(tenant=shanghai, since=DAY1, until=DAY2)

    assert knowledge.hits_by_document == {manual.pk: 2, guide.pk: 1}
    assert list(knowledge.hits_by_document) == [manual.pk, guide.pk]
    assert knowledge.documents_never_hit == [unused.pk]
    assert knowledge.hits_by_entry == {}


def test_open_and_solved_tickets_and_the_sla(shanghai) -> None:
    day = at("2026-03-01 02:00")
    row(shanghai, Kind.TICKET_OPENED, day)
    row(shanghai, Kind.TICKET_SOLVED, day, value=1, duration_ms=3_600_000)
    row(shanghai, Kind.TICKET_SOLVED, day, value=0, duration_ms=90_000_000)
    row(shanghai, Kind.TICKET_SLA_BREACHED, day)
    factories.TicketFactory(tenant=shanghai, status="open")
    factories.TicketFactory(tenant=shanghai, status="pending")
    factories.TicketFactory(tenant=shanghai, status="solved")
    rebuild(shanghai)

    people = selectors.people_metrics(tenant=shanghai, since=DAY1, until=DAY1)

    assert (people.tickets_opened, people.tickets_solved, people.sla_met_rate) == (1, 2, 0.5)
    assert people.tickets_sla_breached == 1
    assert (people.tickets_open, people.tickets_pending) == (1, 1)


def _history(tenant) -> None:
    row(tenant, Kind.CONVERSATION_CREATED, at("2026-03-01 15:30"), conversation_id=1)
    row(tenant, Kind.CUSTOMER_MESSAGE, at("2026-03-01 15:30"), customer_id=5)
    row(tenant, Kind.FIRST_ANSWER, at("2026-03-01 15:31"), duration_ms=2_000)
    row(tenant, Kind.HANDOFF, at("2026-03-02 01:00"), reason="customer_request")


def test_a_rebuild_is_idempotent_and_recovers_deleted_rollups(shanghai) -> None:
    _history(shanghai)
    rebuild(shanghai)
    first = rollup_rows(shanghai)

    rebuild(shanghai)
    assert rollup_rows(shanghai) == first
    Rollup.objects.filter(tenant=shanghai).delete()
    rebuild(shanghai)
    assert rollup_rows(shanghai) == first
    assert selectors.ai_metrics(tenant=shanghai, since=DAY1, until=DAY2).handoffs == 1

    # A rebuild of one day leaves the others' rollups alone.
    row(shanghai, Kind.HANDOFF, at("2026-03-02 02:00"), reason="low_confidence")
    rebuild(shanghai, since=DAY2, until=DAY2)
    assert selectors.ai_metrics(tenant=shanghai, since=DAY1, until=DAY2).handoffs == 2
    assert selectors.volume_metrics(tenant=shanghai, since=DAY1, until=DAY1).conversations == 1


def test_hourly_rollups_are_kept_for_the_recent_days_only(shanghai, settings) -> None:
    settings.ANALYTICS_HOURLY_DAYS = 3
    now = timezone.now()
    row(shanghai, Kind.CONVERSATION_CREATED, now)
    row(shanghai, Kind.CONVERSATION_CREATED, now - timedelta(days=10))
    today = local_today(shanghai)

    rollups_rebuild(tenant=shanghai, since=today - timedelta(days=11), until=today)

    granularities = sorted(Rollup.objects.filter(tenant=shanghai).values_list("granularity"))
    assert granularities == [("day",), ("day",), ("hour",)]


def test_the_command_and_the_beat_task_rebuild(shanghai, tenant_b) -> None:
    other = tenant_b
    for tenant in (shanghai, other):
        _history(tenant)
        row(tenant, Kind.CONVERSATION_CREATED, timezone.now())

    call_command("analytics_rollup", "--tenant", shanghai.slug, "--since", "2026-03-01")
    assert selectors.volume_metrics(tenant=shanghai, since=DAY1, until=DAY1).conversations == 1
    assert not Rollup.objects.filter(tenant=other).exists()

    written = analytics_rollup_task()
    today = local_today(other)
    assert written[other.slug] > 0
    assert selectors.volume_metrics(tenant=other, since=today, until=today).conversations == 1
    assert selectors.volume_metrics(tenant=other, since=DAY1, until=DAY1).conversations == 0


METRIC_SELECTORS = [
    selectors.volume_metrics,
    selectors.volume_heatmap,
    selectors.ai_metrics,
    selectors.people_metrics,
    selectors.satisfaction_metrics,
    selectors.cost_metrics,
    selectors.knowledge_metrics,
]


@pytest.mark.parametrize("selector", METRIC_SELECTORS, ids=lambda s: s.__name__)
def test_every_metric_sees_its_own_tenant_only(selector, tenant_a, tenant_b) -> None:
    day = at("2026-03-01 02:00")
    empty = selector(tenant=tenant_b, since=DAY1, until=DAY1)
    entry = factories.KnowledgeEntryFactory(tenant=tenant_a)
    for kind, fields in [
        (Kind.CONVERSATION_CREATED, {"customer_id": 1}),
        (Kind.CUSTOMER_MESSAGE, {"customer_id": 1}),
        (Kind.RESOLVED, {"reason": "ai", "value": 1}),
        (Kind.HANDOFF, {"reason": "customer_request"}),
        (Kind.FIRST_HUMAN_RESPONSE, {"agent_id": 3, "duration_ms": 5000}),
        (Kind.RATING, {"value": 5}),
        (Kind.ANSWER, {"reason": "rag", "provider": "p", "model": "m", "tokens_in": 9}),
        (Kind.FAQ_HIT, {"entry_id": entry.pk}),
    ]:
        row(tenant_a, kind, day, **fields)
    rebuild(tenant_a)
    rebuild(tenant_b)

    assert selector(tenant=tenant_b, since=DAY1, until=DAY1) == empty
    assert selector(tenant=tenant_a, since=DAY1, until=DAY1) != empty


def test_a_tenants_time_zone_must_be_known() -> None:
    tenant = factories.TenantFactory.build(time_zone="Mars/Olympus_Mons")
    with pytest.raises(ValidationError) as refused:
        tenant.full_clean(exclude=["public_key", "slug"])
    assert "time_zone" in refused.value.message_dict
