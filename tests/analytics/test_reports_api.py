"""The reports of the REST API: the selectors' metrics over a period, and time series."""

import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from analytics import selectors
from analytics.models import ReportRow
from analytics.rollups import local_today, rollups_rebuild
from tenants.models import ApiKey
from tests.support import factories
from tests.support.api import api_client

pytestmark = pytest.mark.django_db

Kind = ReportRow.Kind
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
SUMMARY = "/api/v1/reports/summary"
TIMESERIES = "/api/v1/reports/timeseries"


@pytest.fixture
def shop(db):
    return factories.TenantFactory(time_zone="Asia/Shanghai")


def local(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=SHANGHAI).astimezone(UTC)


def row(tenant, kind: str, when: datetime, **fields) -> ReportRow:
    fields.setdefault("channel", "widget")
    return ReportRow.objects.create(tenant=tenant, kind=kind, occurred_at=when, **fields)


@pytest.fixture
def history(shop) -> dict[str, date]:
    """Two days of the last 30 (local), one of the 30 before, one a year ago; rolled up."""
    today = local_today(shop)
    recent, earlier, previous, old = (today - timedelta(days=n) for n in (2, 5, 40, 400))
    entry = factories.KnowledgeEntryFactory(tenant=shop)
    for when in (local(recent, 9), local(recent, 9), local(recent, 15)):
        row(shop, Kind.CONVERSATION_CREATED, when)
        row(shop, Kind.CUSTOMER_MESSAGE, when, customer_id=1)
    row(shop, Kind.CONVERSATION_CREATED, local(earlier, 10), channel="api")
    row(shop, Kind.FIRST_ANSWER, local(recent, 9), duration_ms=1_200)
    row(shop, Kind.FAQ_HIT, local(recent, 9), entry_id=entry.pk)
    row(shop, Kind.ANSWER, local(recent, 9), reason="faq")
    row(
        shop,
        Kind.ANSWER,
        local(recent, 15),
        reason="llm",
        provider="DeepSeek",
        model="deepseek-chat",
        tokens_in=100,
        tokens_out=20,
        cost=Decimal("0.0125"),
        latency_ms=900,
    )
    row(shop, Kind.HANDOFF, local(earlier, 11), reason="customer_request")
    row(shop, Kind.RESOLVED, local(earlier, 12), reason="agent", agent_id=7, duration_ms=60_000)
    row(shop, Kind.RATING, local(earlier, 12), agent_id=7, value=5)
    row(shop, Kind.CONVERSATION_CREATED, local(previous, 10))
    row(shop, Kind.CONVERSATION_CREATED, local(old, 10))
    for day in (recent, earlier, previous, old):
        rollups_rebuild(tenant=shop, since=day, until=day)
    return {"today": today, "recent": recent, "previous": previous}


def test_the_summary_is_the_selectors_metrics_of_the_period(shop, history) -> None:
    since, until = history["today"] - timedelta(days=10), history["today"]
    client = api_client(shop, ApiKey.Scope.REPORTS_READ)

    response = client.get(SUMMARY, {"since": since.isoformat(), "until": until.isoformat()})

    assert response.status_code == 200, response.content
    body = response.json()
    period = {"tenant": shop, "since": since, "until": until}
    volume = selectors.volume_metrics(**period)
    ai = selectors.ai_metrics(**period)
    people = selectors.people_metrics(**period)
    cost = selectors.cost_metrics(**period)
    assert (body["since"], body["until"], body["time_zone"]) == (
        since.isoformat(),
        until.isoformat(),
        "Asia/Shanghai",
    )
    assert body["volume"]["conversations"] == volume.conversations == 4
    assert body["volume"]["conversations_by_channel"] == {"api": 1, "widget": 3}
    assert body["volume"]["messages_per_conversation"] == volume.messages_per_conversation
    assert body["ai"]["handoffs"] == ai.handoffs == 1
    assert body["ai"]["handoff_rate"] == ai.handoff_rate == 0.25
    assert body["ai"]["answers_by_source"] == {"faq": 1, "llm": 1}
    assert body["ai"]["automation_rate"] == 0.0
    assert body["ai"]["thumbs_up_rate"] is None
    assert body["people"]["first_response"] == {
        "count": 1,
        "mean_ms": 1_200,
        "p50_ms": people.first_response.p50_ms,
        "p90_ms": 1_500,
        "p95_ms": 1_500,
    }
    assert body["people"]["agents"][0]["agent_id"] == 7
    assert body["people"]["agents"][0]["rating_mean"] == 5.0
    assert body["people"]["agents"][0]["resolution_time"]["mean_ms"] == 60_000
    assert body["satisfaction"]["csat"] == 1.0
    assert body["satisfaction"]["distribution"] == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1}
    assert body["cost"]["cost"] == "0.012500"
    assert Decimal(body["cost"]["cost"]) == cost.cost
    assert body["cost"]["by_model"] == [
        {
            "provider": "DeepSeek",
            "model": "deepseek-chat",
            "answers": 1,
            "tokens_in": 100,
            "tokens_out": 20,
            "cost": "0.012500",
        }
    ]
    assert body["cost"]["llm_latency"]["mean_ms"] == 900
    assert len(body["knowledge"]["hits"]) == 1
    assert body["knowledge"]["hits"][0]["answers"] == 1
    assert body["knowledge"]["entries_never_hit"] == []
    assert body["previous"] is None


def test_the_default_period_is_the_last_30_days_and_compare_adds_the_one_before(
    shop, history
) -> None:
    client = api_client(shop, ApiKey.Scope.REPORTS_READ)

    body = client.get(SUMMARY, {"compare": "previous"}).json()

    today = history["today"]
    assert (body["since"], body["until"]) == (
        (today - timedelta(days=29)).isoformat(),
        today.isoformat(),
    )
    assert body["volume"]["conversations"] == 4
    previous = body["previous"]
    assert (previous["since"], previous["until"]) == (
        (today - timedelta(days=59)).isoformat(),
        (today - timedelta(days=30)).isoformat(),
    )
    assert previous["volume"]["conversations"] == 1
    assert previous["cost"]["cost"] == "0.000000"
    assert previous["ai"]["handoff_rate"] == 0.0
    # Only until: the 30 days ending then.
    until = history["previous"]
    body = client.get(SUMMARY, {"until": until.isoformat()}).json()
    assert body["since"] == (until - timedelta(days=29)).isoformat()
    assert body["volume"]["conversations"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "2026-13-01"}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"since": "2026-03-02", "until": "2026-03-01"}, "until"),
        ({"since": "2025-01-01", "until": "2026-01-02"}, "since"),
        ({"since": "0001-01-01"}, "since"),
        ({"until": "9999-12-31"}, "until"),
        ({"compare": "last_year"}, "compare"),
    ],
)
def test_a_refused_summary_query_names_the_parameter(shop, query, field) -> None:
    response = api_client(shop, ApiKey.Scope.REPORTS_READ).get(SUMMARY, query)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == [field]


def test_a_year_of_366_days_is_allowed(shop) -> None:
    response = api_client(shop, ApiKey.Scope.REPORTS_READ).get(
        SUMMARY, {"since": "2024-01-01", "until": "2024-12-31"}
    )

    assert response.status_code == 200, response.content
    assert response.json()["volume"]["conversations"] == 0


def test_a_daily_series(shop, history) -> None:
    client = api_client(shop, ApiKey.Scope.REPORTS_READ)
    recent = history["recent"]
    query = {"since": (recent - timedelta(days=5)).isoformat(), "until": recent.isoformat()}

    conversations = client.get(TIMESERIES, {**query, "metric": "conversations"}).json()
    cost = client.get(TIMESERIES, {**query, "metric": "llm_cost", "granularity": "day"}).json()
    first = client.get(TIMESERIES, {**query, "metric": "first_response_ms"}).json()

    assert (conversations["metric"], conversations["granularity"]) == ("conversations", "day")
    assert conversations["points"] == [
        {"start": f"{recent - timedelta(days=4)}T16:00:00Z", "value": 1},
        {"start": f"{recent - timedelta(days=1)}T16:00:00Z", "value": 3},
    ]
    assert cost["points"] == [
        {"start": f"{recent - timedelta(days=1)}T16:00:00Z", "value": "0.012500"}
    ]
    assert [point["value"] for point in first["points"]] == [1_200]


def test_an_hourly_series_within_the_hours_kept(shop, history, settings) -> None:
    client = api_client(shop, ApiKey.Scope.REPORTS_READ)
    recent = history["recent"]
    day = {"since": recent.isoformat(), "until": recent.isoformat(), "metric": "conversations"}

    body = client.get(TIMESERIES, {**day, "granularity": "hour"}).json()

    assert body["points"] == [
        {"start": f"{recent}T01:00:00Z", "value": 2},  # 09:00 local
        {"start": f"{recent}T07:00:00Z", "value": 1},  # 15:00 local
    ]
    settings.ANALYTICS_HOURLY_DAYS = 1
    refused = client.get(TIMESERIES, {**day, "granularity": "hour"})
    assert refused.status_code == 400
    assert list(refused.json()["error"]["fields"]) == ["granularity"]
    assert client.get(TIMESERIES, day).status_code == 200  # days are kept for ever


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "metric"),
        ({"metric": "hist"}, "metric"),
        ({"metric": "answers", "granularity": "week"}, "granularity"),
        ({"metric": "answers", "since": "2026-02-30"}, "since"),
    ],
)
def test_a_refused_series_query_names_the_parameter(shop, query, field) -> None:
    response = api_client(shop, ApiKey.Scope.REPORTS_READ).get(TIMESERIES, query)

    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == [field]


def test_another_tenants_key_sees_only_its_own_numbers(shop, history, tenant_b) -> None:
    client = api_client(tenant_b, ApiKey.Scope.REPORTS_READ)

    summary = client.get(SUMMARY).json()
    series = client.get(TIMESERIES, {"metric": "conversations"}).json()

    assert summary["volume"]["conversations"] == 0
    assert summary["cost"]["by_model"] == []
    assert summary["people"]["agents"] == []
    assert summary["knowledge"] == {
        "hits": [],
        "entries_never_hit": [],
        "document_hits": [],
        "documents_never_hit": [],
    }
    assert summary["time_zone"] == tenant_b.time_zone
    assert series["points"] == []


def test_a_key_without_reports_read_is_refused(shop) -> None:
    client = api_client(shop, ApiKey.Scope.CONVERSATIONS_READ, ApiKey.Scope.TICKETS_READ)

    for path in (SUMMARY, f"{TIMESERIES}?metric=conversations"):
        response = client.get(path)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "missing_scope"
        assert "reports:read" in response.json()["error"]["message"]
