"""The console's analytics pages: periods, figures from a small hand-built history, drill-downs
to the conversation list, CSV exports, roles and tenant isolation."""

import csv
import io
import json
import os
import re
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from html import unescape
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from analytics.exports import csv_cell
from analytics.models import ReportRow
from analytics.rollups import local_today, rollups_rebuild
from analytics.views import PAGES
from conversations.models import Conversation
from tenants.models import Role
from tests.support import factories
from tests.support.browser import console_login

pytestmark = pytest.mark.django_db

Kind = ReportRow.Kind
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
# The period of the history: two local days; the previous period is the two before.
D1, D2 = date(2026, 3, 1), date(2026, 3, 2)
PERIOD = {"since": "2026-03-01", "until": "2026-03-02"}
TENANT_WIDE = ["overview", "ai", "people", "satisfaction", "cost"]
CHANGELIST = reverse("admin:conversations_conversation_changelist")


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI).astimezone(UTC)


def member_client(tenant, role: str, username: str) -> Client:
    user = factories.UserFactory(username=username, first_name="", last_name="")
    factories.MembershipFactory(user=user, tenant=tenant, role=role)
    client = Client()
    client.force_login(user)
    client.user = user
    return client


def conversation(tenant, started: datetime, **fields) -> Conversation:
    made = factories.ConversationFactory(tenant=tenant, **fields)
    Conversation.objects.filter(pk=made.pk).update(created_at=started)
    return Conversation.objects.get(pk=made.pk)


def row(tenant, kind: str, when: datetime, of: Conversation | None = None, **fields) -> None:
    fields.setdefault("channel", of.channel if of else "widget")
    if of is not None:
        fields.update(conversation_id=of.pk, customer_id=of.customer_id)
    ReportRow.objects.create(tenant=tenant, kind=kind, occurred_at=when, **fields)


@pytest.fixture
def shop(tenant_a):
    tenant_a.time_zone = "Asia/Shanghai"
    tenant_a.save(update_fields=["time_zone"])
    return tenant_a


@pytest.fixture
def owner(shop) -> Client:
    return member_client(shop, Role.OWNER, "olivia")


@pytest.fixture
def agent(shop) -> Client:
    return member_client(shop, Role.AGENT, "@agent")


@pytest.fixture
def history(shop, agent, tenant_b) -> dict[str, Any]:
    """Four conversations in the period (one at 23:30 local on its last day), one just after
    it, two in the previous period, and another tenant's; their reporting rows rolled up."""
    me = agent.user
    c1 = conversation(
        shop, local(D1, 10), resolution_kind="ai", status="resolved", resolved_at=local(D1, 11)
    )
    factories.MessageFactory(conversation=c1, role="customer")
    factories.MessageFactory(conversation=c1, role="assistant", source="faq")
    row(shop, Kind.CONVERSATION_CREATED, local(D1, 10), c1)
    row(shop, Kind.CUSTOMER_MESSAGE, local(D1, 10), c1)
    row(shop, Kind.ANSWER, local(D1, 10), c1, reason="faq")
    row(shop, Kind.FIRST_ANSWER, local(D1, 10), c1, duration_ms=1_200)
    row(shop, Kind.RESOLVED, local(D1, 11), c1, reason="ai", value=0, duration_ms=3_600_000)

    c2 = conversation(
        shop,
        local(D1, 11),
        handoff_reason="customer_request",
        resolution_kind="agent",
        status="resolved",
        assignee=me,
        csat_rating=5,
        csat_comment="Quick and kind",
        resolved_at=local(D1, 12),
    )
    factories.MessageFactory(conversation=c2, role="customer")
    factories.MessageFactory(conversation=c2, role="agent", source="agent", author=me)
    factories.MessageFactory(conversation=c2, role="agent", content="note", internal=True)
    row(shop, Kind.CONVERSATION_CREATED, local(D1, 11), c2)
    row(shop, Kind.CUSTOMER_MESSAGE, local(D1, 11), c2)
    row(shop, Kind.HANDOFF, local(D1, 11), c2, reason="customer_request")
    row(shop, Kind.AGENT_REPLY, local(D1, 11, 5), c2, agent_id=me.pk)
    row(shop, Kind.FIRST_ANSWER, local(D1, 11, 5), c2, duration_ms=300_000)
    row(shop, Kind.FIRST_HUMAN_RESPONSE, local(D1, 11, 5), c2, agent_id=me.pk, duration_ms=250)
    row(shop, Kind.RESOLVED, local(D1, 12), c2, reason="agent", agent_id=me.pk, duration_ms=60_000)
    row(shop, Kind.RATING, local(D1, 12), c2, agent_id=me.pk, value=5)

    c3 = conversation(
        shop,
        local(D2, 9),
        channel="api",
        resolution_kind="ai",
        status="resolved",
        resolved_at=local(D2, 10),
    )
    factories.MessageFactory(conversation=c3, role="customer")
    factories.MessageFactory(
        conversation=c3,
        role="assistant",
        source="llm",
        tokens_in=100,
        tokens_out=20,
        cost=Decimal("0.0125"),
    )
    row(shop, Kind.CONVERSATION_CREATED, local(D2, 9), c3)
    row(shop, Kind.CUSTOMER_MESSAGE, local(D2, 9), c3)
    row(
        shop,
        Kind.ANSWER,
        local(D2, 9),
        c3,
        reason="llm",
        provider="DeepSeek",
        model="=HYPERLINK(1)",
        tokens_in=100,
        tokens_out=20,
        cost=Decimal("0.0125"),
        latency_ms=900,
    )
    row(shop, Kind.FEEDBACK, local(D2, 9), c3, reason="up")
    row(shop, Kind.RESOLVED, local(D2, 10), c3, reason="ai", value=1, duration_ms=3_600_000)

    c4 = conversation(
        shop,
        local(D2, 23, 30),
        handoff_reason="low_confidence",
        resolution_kind="abandoned",
        status="closed",
    )
    factories.MessageFactory(conversation=c4, role="customer")
    row(shop, Kind.CONVERSATION_CREATED, local(D2, 23, 30), c4)
    row(shop, Kind.CUSTOMER_MESSAGE, local(D2, 23, 30), c4)
    row(shop, Kind.HANDOFF, local(D2, 23, 30), c4, reason="low_confidence")
    row(shop, Kind.ABANDONED, local(D2, 23, 50), c4)

    after = conversation(shop, local(D2 + timedelta(days=1), 0, 30))
    row(shop, Kind.CONVERSATION_CREATED, local(D2 + timedelta(days=1), 0, 30), after)

    p1 = conversation(shop, local(D1 - timedelta(days=1), 10), resolution_kind="ai")
    row(shop, Kind.CONVERSATION_CREATED, local(D1 - timedelta(days=1), 10), p1)
    row(shop, Kind.RESOLVED, local(D1 - timedelta(days=1), 11), p1, reason="ai", value=0)
    row(shop, Kind.FIRST_ANSWER, local(D1 - timedelta(days=1), 10), p1, duration_ms=2_500)
    p2 = conversation(shop, local(D1 - timedelta(days=2), 10), handoff_reason="customer_request")
    row(shop, Kind.CONVERSATION_CREATED, local(D1 - timedelta(days=2), 10), p2)
    row(shop, Kind.HANDOFF, local(D1 - timedelta(days=2), 10), p2, reason="customer_request")

    tenant_b.time_zone = "Asia/Shanghai"
    tenant_b.save(update_fields=["time_zone"])
    foreign_agent = factories.UserFactory(username="foreign-agent")
    factories.MembershipFactory(user=foreign_agent, tenant=tenant_b, role=Role.AGENT)
    theirs = conversation(
        tenant_b, local(D1, 10), handoff_reason="customer_request", assignee=foreign_agent
    )
    row(tenant_b, Kind.CONVERSATION_CREATED, local(D1, 10), theirs)
    row(tenant_b, Kind.HANDOFF, local(D1, 10), theirs, reason="blocked_content")
    row(tenant_b, Kind.AGENT_REPLY, local(D1, 10), theirs, agent_id=foreign_agent.pk)
    row(
        tenant_b,
        Kind.ANSWER,
        local(D1, 10),
        theirs,
        reason="llm",
        provider="Foreign",
        model="foreign-model",
        cost=Decimal("9"),
    )

    for tenant in (shop, tenant_b):
        rollups_rebuild(tenant=tenant, since=D1 - timedelta(days=2), until=D2 + timedelta(days=1))
    return {
        "c1": c1, "c2": c2, "c3": c3, "c4": c4, "after": after, "theirs": theirs,
        "foreign_agent": foreign_agent,
    }  # fmt: skip


def page(client: Client, name: str, **params: str):
    return client.get(reverse(f"admin:analytics_{name}"), params)


def kpis(response) -> dict[str, object]:
    return {kpi.key: kpi for kpi in response.context["page"].kpis}


def changelist_ids(client: Client, link: str) -> set[int]:
    response = client.get(link)
    assert response.status_code == 200, link
    return {c.pk for c in response.context["cl"].result_list}


def csv_rows(response) -> list[list[str]]:
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


# Roles ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.VIEWER])
@pytest.mark.parametrize("name", [*TENANT_WIDE, "mine"])
def test_every_page_renders_for_those_who_see_the_tenants_reports(shop, role, name) -> None:
    client = member_client(shop, role, f"member-{role}")

    response = page(client, name)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="kefu-tabs"' in html
    assert "kefu-analytics-data" in html
    assert "vendor/echarts/echarts.min.js" in html
    tabs = [tab["url"] for tab in response.context["analytics_tabs"]]
    assert tabs[: len(TENANT_WIDE)] == [reverse(f"admin:analytics_{n}") for n in TENANT_WIDE]
    assert tabs[-1] == reverse("admin:analytics_mine")


@pytest.mark.parametrize("name", TENANT_WIDE)
def test_agents_are_refused_the_tenant_wide_pages(agent, name) -> None:
    assert page(agent, name).status_code == 403
    assert page(agent, name, format="csv", table="kpis").status_code == 403


def test_agents_are_refused_the_conversations_export(agent) -> None:
    assert agent.get(reverse("admin:analytics_conversations_csv")).status_code == 403


def test_an_agent_sees_their_own_numbers(agent, history) -> None:
    response = page(agent, "mine", **PERIOD)

    assert response.status_code == 200
    figures = kpis(response)
    assert {key: figures[key].value for key in figures} == {
        "replies": 1,
        "human_response_p50": 300,  # 250 ms, in the histogram's bucket up to 300 ms
        "human_response_p90": 300,
        "resolved": 1,
        "resolution_time_p50": 60_000,
        "ratings": 1,
        "rating_mean": 5.0,
    }
    assert [tab["url"] for tab in response.context["analytics_tabs"]] == [
        reverse("admin:analytics_mine")
    ]
    me = agent.user
    assert changelist_ids(agent, figures["replies"].link) == {history["c2"].pk}
    assert me.pk == history["c2"].assignee_id


def test_the_agents_tab_bar_does_not_link_tenant_wide_pages(agent) -> None:
    html = page(agent, "mine").content.decode()
    assert reverse("admin:analytics_overview") not in html


def test_every_console_page_links_the_reports(owner, agent) -> None:
    tickets = reverse("admin:conversations_ticket_changelist")
    assert f'href="{reverse("admin:analytics_overview")}" id="kefu-reports-link"' in (
        owner.get(tickets).content.decode()
    )
    assert f'href="{reverse("admin:analytics_mine")}" id="kefu-reports-link"' in (
        agent.get(tickets).content.decode()
    )


def test_the_home_page_links_the_reports(owner, agent) -> None:
    home = owner.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("admin:analytics_overview")}"' in home
    agents_home = agent.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("admin:analytics_mine")}"' in agents_home
    assert "kefu-overview" not in agents_home  # the tenant's figures are not an agent's


# The period -------------------------------------------------------------------------------------


def test_the_default_period_is_the_last_30_days(owner, shop) -> None:
    period = page(owner, "overview").context["period"]
    today = local_today(shop)
    assert (period.since, period.until, period.preset) == (today - timedelta(29), today, "30d")
    assert period.previous == (today - timedelta(59), today - timedelta(30))


@pytest.mark.parametrize(
    ("preset", "days_back"), [("today", 0), ("7d", 6), ("30d", 29), ("90d", 89)]
)
def test_presets_end_today_in_the_tenants_time_zone(owner, shop, preset, days_back) -> None:
    period = page(owner, "overview", preset=preset).context["period"]
    today = local_today(shop)
    assert (period.since, period.until) == (today - timedelta(days_back), today)


def test_this_month_starts_on_the_first(owner, shop) -> None:
    period = page(owner, "overview", preset="month").context["period"]
    today = local_today(shop)
    assert (period.since, period.until) == (today.replace(day=1), today)


def test_a_custom_period_is_its_days(owner) -> None:
    period = page(owner, "overview", **PERIOD).context["period"]
    assert (period.since, period.until, period.preset) == (D1, D2, "custom")
    assert period.previous == (date(2026, 2, 27), date(2026, 2, 28))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"since": "2026-03-05", "until": "2026-03-01"},
            "Until: Give a day on or after the first day.",
        ),
        (
            {"since": "2025-01-01", "until": "2026-03-01"},
            "Since: A period covers at most 366 days.",
        ),
        ({"since": "2026-13-01"}, "Enter a valid date."),
        ({"until": "yesterday"}, "Enter a valid date."),
        ({"since": "1999-12-31", "until": "2000-01-02"}, "Give a day from 2000-01-01"),
        ({"preset": "forever"}, "Select a valid choice."),
    ],
)
def test_a_bad_period_is_refused_with_its_reason(owner, params, message) -> None:
    response = page(owner, "overview", **params)

    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="kefu-period-errors"' in html
    assert message in unescape(html)
    assert "page" not in response.context or response.context.get("page") is None


# Figures ----------------------------------------------------------------------------------------


def test_the_overview_compares_with_the_previous_period(owner, history) -> None:
    response = page(owner, "overview", **PERIOD)

    figures = kpis(response)
    assert {k: (v.value, v.previous) for k, v in figures.items()} == {
        "conversations": (4, 2),
        "automation_rate": (0.5, 0.5),
        "resolution_confirmed": (0.25, 0.0),
        "resolution_assumed": (0.25, 0.5),
        "handoff_rate": (0.5, 0.5),
        "first_response_p50": (1_500, 3_000),  # histogram bounds of 1.2 s and 2.5 s
        "csat": (1.0, None),
        "cost": (0.0125, 0.0),
    }
    conversations = figures["conversations"]
    assert (conversations.text, conversations.trend, conversations.change_text) == (
        "4",
        "up",
        "100.0%",
    )
    assert figures["resolution_assumed"].change_text == "50.0%"
    assert (figures["resolution_assumed"].trend, figures["resolution_assumed"].good) == (
        "down",
        False,
    )
    assert (figures["first_response_p50"].trend, figures["first_response_p50"].good) == (
        "down",
        True,
    )
    assert figures["automation_rate"].trend == "flat"
    assert figures["csat"].change is None  # nothing to compare with
    html = response.content.decode()
    assert "▲ 100.0%" in html
    assert 'title="Conversations started in the period' in html


def test_charts_are_passed_as_json_with_translated_labels(owner, history) -> None:
    response = page(owner, "overview", **PERIOD)

    html = response.content.decode()
    found = re.search(
        r'<script id="kefu-analytics-data" type="application/json">(.*?)</script>', html
    )
    assert found is not None
    data = json.loads(found[1])
    volume, heat = data["charts"]
    assert volume["x"] == ["2026-03-01", "2026-03-02"]
    assert volume["series"] == [{"name": "Conversations", "data": [2.0, 2.0]}]
    assert heat["y"][0] == "Mon"
    assert [10, 6, 1] in heat["cells"]  # c1: Sunday 1 March, 10:00 local
    assert sum(cell[2] for cell in heat["cells"]) == 4
    assert data["strings"]["noData"] == "No data in this period"

    chinese = owner.get(reverse("admin:analytics_overview"), PERIOD, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert chinese.status_code == 200


def test_compare_draws_the_previous_period_and_shows_its_values(owner, history) -> None:
    response = page(owner, "overview", compare="1", **PERIOD)

    volume = response.context["charts"]["charts"][0]
    assert [s["name"] for s in volume["series"]] == ["Conversations", "Conversations (previous)"]
    assert volume["series"][1] == {
        "name": "Conversations (previous)",
        "data": [1.0, 1.0],
        "previous": True,
    }
    assert "previous: 2" in response.content.decode()


def test_the_ai_page(owner, history) -> None:
    response = page(owner, "ai", compare="1", **PERIOD)

    figures = kpis(response)
    assert figures["abandonment_rate"].value == 0.5
    assert figures["thumbs_up_rate"].value == 1.0
    tables = {t.key: t for t in response.context["page"].tables}
    assert [[c.value for c in r] for r in tables["handoffs"].rows] == [
        ["customer_request", 1],
        ["low_confidence", 1],
    ]
    assert [[c.value for c in r] for r in tables["sources"].rows] == [["faq", 1], ["llm", 1]]
    rates = response.context["charts"]["charts"][0]
    assert rates["series"][0] == {"name": "Resolution rate", "data": [0.5, 0.5]}
    assert rates["series"][2] == {"name": "Handoff rate", "data": [0.5, 0.5]}
    assert rates["series"][3]["data"] == [0.0, 1.0]  # the previous period's resolution rate


def test_the_people_page(owner, agent, history) -> None:
    response = page(owner, "people", **PERIOD)

    agents = next(t for t in response.context["page"].tables if t.key == "agents")
    assert [[c.text for c in r] for r in agents.rows] == [
        ["@agent", "1", "300 ms", "300 ms", "300 ms", "1", "1 min", "1", "5.00"]
    ]
    assert kpis(response)["first_response_p90"].value == 300_000


def test_the_satisfaction_page(owner, history) -> None:
    response = page(owner, "satisfaction", **PERIOD)

    figures = kpis(response)
    assert (figures["csat"].value, figures["response_rate"].value, figures["ratings"].value) == (
        1.0,
        1.0,
        1,
    )
    distribution = next(t for t in response.context["page"].tables if t.key == "distribution")
    assert [r[1].value for r in distribution.rows] == [0, 0, 0, 0, 1]
    comments = response.context["page"].notes_link
    assert changelist_ids(owner, comments) == {history["c2"].pk}


def test_the_cost_page(owner, history) -> None:
    response = page(owner, "cost", **PERIOD)

    figures = kpis(response)
    assert (figures["cost"].text, figures["tokens_in"].value, figures["tokens_out"].value) == (
        "0.0125",
        100,
        20,
    )
    assert figures["llm_latency_p95"].value == 1_000
    assert figures["fallback_rate"].value == 0.0


def test_a_dashboard_page_reads_a_fixed_number_of_queries(
    owner, history, django_assert_num_queries
) -> None:
    owner.get(reverse("admin:analytics_overview"), PERIOD)  # the session and caches warmed
    # The console's own (6): the session, the user, the membership, their permissions (2),
    # their tenants.
    # The rollups: 2 × (volume, ai, people and its open tickets, satisfaction, cost) for the
    # figures, the volume again for the channels, the daily series and the heat map (15).
    with django_assert_num_queries(21):
        response = page(owner, "overview", **PERIOD)
    assert response.status_code == 200


# Drill-downs ------------------------------------------------------------------------------------


def test_drill_downs_lead_to_exactly_the_counted_conversations(owner, history) -> None:
    c1, c2, c3, c4 = (history[k].pk for k in ("c1", "c2", "c3", "c4"))
    overview = kpis(page(owner, "overview", **PERIOD))
    assert changelist_ids(owner, overview["conversations"].link) == {c1, c2, c3, c4}
    assert changelist_ids(owner, overview["automation_rate"].link) == {c1, c3}
    assert changelist_ids(owner, overview["handoff_rate"].link) == {c2, c4}
    assert changelist_ids(owner, overview["csat"].link) == {c2}

    ai = page(owner, "ai", **PERIOD).context["page"]
    links = {(t.key, r[0].value): r[1].link for t in ai.tables for r in t.rows}
    assert changelist_ids(owner, links[("handoffs", "low_confidence")]) == {c4}
    assert changelist_ids(owner, links[("sources", "llm")]) == {c3}
    assert changelist_ids(owner, links[("feedback", "abandoned")]) == {c4}

    channels = page(owner, "overview", **PERIOD).context["page"].tables[1]
    api = next(r for r in channels.rows if r[0].value == "api")
    assert changelist_ids(owner, api[1].link) == {c3}


def test_a_drill_down_names_the_period_in_local_days(owner, history) -> None:
    link = kpis(page(owner, "overview", **PERIOD))["conversations"].link
    assert urlsplit(link).path == CHANGELIST
    assert dict(parse_qsl(urlsplit(link).query)) == {
        "started_since": "2026-03-01",
        "started_until": "2026-03-02",
    }


def test_the_conversation_list_refuses_a_malformed_day(owner) -> None:
    response = owner.get(CHANGELIST, {"started_since": "2026-02-30"})
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_another_tenants_ids_in_a_filter_show_nothing(owner, history) -> None:
    foreign = history["foreign_agent"].pk
    link = f"{CHANGELIST}?assignee__id__exact={foreign}&started_since=2026-03-01"
    assert changelist_ids(owner, link) == set()


# CSV exports ------------------------------------------------------------------------------------


def test_a_table_exports_as_csv(owner, history) -> None:
    response = page(owner, "ai", format="csv", table="handoffs", **PERIOD)

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="ai-handoffs-2026-03-01-2026-03-02.csv"'
    )
    assert csv_rows(response) == [
        ["Reason", "Handoffs"],
        ["customer_request", "1"],
        ["low_confidence", "1"],
    ]


def test_every_table_of_every_page_exports(owner, history) -> None:
    for name in [*TENANT_WIDE, "mine"]:
        for table in page(owner, name, **PERIOD).context["page"].tables:
            response = page(owner, name, format="csv", table=table.key, **PERIOD)
            assert response.status_code == 200, (name, table.key)
            assert len(csv_rows(response)) == len(table.rows) + 1


def test_an_unknown_table_is_not_found(owner) -> None:
    assert page(owner, "overview", format="csv", table="nope").status_code == 404


def test_formulas_in_exported_cells_are_neutralised(owner, history) -> None:
    rows = csv_rows(page(owner, "cost", format="csv", table="models", **PERIOD))

    assert rows == [
        ["Provider", "Model", "Answers", "Input tokens", "Output tokens", "Cost"],
        ["DeepSeek", "'=HYPERLINK(1)", "1", "100", "20", "0.012500"],
    ]
    assert [csv_cell(v) for v in ("+1", "-x", "@a", "=b", "ok", -3, None)] == [
        "'+1",
        "'-x",
        "'@a",
        "'=b",
        "ok",
        -3,
        "",
    ]


def test_the_conversations_export_has_one_row_per_conversation(owner, history) -> None:
    response = owner.get(reverse("admin:analytics_conversations_csv"), PERIOD)

    assert response.status_code == 200
    c1, c2, c3, c4 = (history[k] for k in ("c1", "c2", "c3", "c4"))
    header = "id started_at channel customer_id status resolution_kind handoff_reason agent "
    header += "messages first_response_ms csat tokens cost"
    assert csv_rows(response) == [
        header.split(),
        [str(c1.pk), "2026-03-01T02:00:00Z", "widget", str(c1.customer_id), "resolved", "ai", "",
         "", "2", "1200", "", "0", "0.000000"],
        [str(c2.pk), "2026-03-01T03:00:00Z", "widget", str(c2.customer_id), "resolved", "agent",
         "customer_request", "'@agent", "2", "300000", "5", "0", "0.000000"],
        [str(c3.pk), "2026-03-02T01:00:00Z", "api", str(c3.customer_id), "resolved", "ai", "",
         "", "2", "", "", "120", "0.012500"],
        [str(c4.pk), "2026-03-02T15:30:00Z", "widget", str(c4.customer_id), "closed",
         "abandoned", "low_confidence", "", "1", "", "", "0", "0.000000"],
    ]  # fmt: skip


def test_the_conversations_export_refuses_a_bad_period(owner) -> None:
    response = owner.get(
        reverse("admin:analytics_conversations_csv"), {"since": "2026-03-02", "until": "2026-03-01"}
    )
    assert response.status_code == 400


# Tenant isolation -------------------------------------------------------------------------------


def test_no_page_or_export_shows_another_tenants_data(owner, history) -> None:
    foreign = ("Foreign", "foreign-model", "blocked_content", "foreign-agent", "9.0000")
    for name in PAGES:
        response = page(owner, name, compare="1", **PERIOD)
        html = response.content.decode()
        assert not any(text in html for text in foreign), name
        for table in response.context["page"].tables:
            exported = page(owner, name, format="csv", table=table.key, **PERIOD)
            text = b"".join(exported.streaming_content).decode()
            assert not any(value in text for value in foreign), (name, table.key)
    export = owner.get(reverse("admin:analytics_conversations_csv"), PERIOD)
    ids = [row[0] for row in csv_rows(export)[1:]]
    assert str(history["theirs"].pk) not in ids


@pytest.mark.parametrize("on_view", [True, False])
def test_without_beat_the_pages_rebuild_todays_rollups(owner, shop, settings, on_view) -> None:
    # The embedded defaults have no Celery beat: the report pages and the home page rebuild
    # the tenant's yesterday and today before reading them.
    settings.ANALYTICS_ROLLUP_ON_VIEW = on_view
    row(shop, Kind.CONVERSATION_CREATED, timezone.now())

    overview = kpis(page(owner, "overview"))["conversations"].value
    home = {k.key: k for k in owner.get(reverse("admin:index")).context["kefu_overview"]}

    assert (overview, home["conversations"].value) == ((1, 1) if on_view else (0, 0))


# In a browser -----------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_the_pages_draw_their_charts_in_a_browser(
    browser, live_server, owner, history, locale
) -> None:
    context = browser.new_context(locale=locale, viewport={"width": 1360, "height": 900})
    page_ = context.new_page()
    errors: list[str] = []

    def console_error(message: Any) -> None:
        if message.type == "error":
            errors.append(message.text)

    page_.on("console", console_error)
    page_.on("pageerror", lambda error: errors.append(str(error)))
    shots = os.environ.get("KEFU_SCREENSHOTS")
    try:
        console_login(page_, live_server.url, "olivia", "pass-word-123")
        for name in [*TENANT_WIDE, "mine"]:
            page_.goto(f"{live_server.url}{reverse(f'admin:analytics_{name}')}?{urlencode(PERIOD)}")
            # ECharts draws each chart on a <canvas> inside its container.
            drawn = page_.locator(".kefu-chart:has(canvas)")
            expect(drawn).to_have_count(page_.locator(".kefu-chart").count())
            if shots:  # for a person to look at: KEFU_SCREENSHOTS=/some/dir pytest …
                page_.screenshot(path=f"{shots}/{name}-{locale}.png", full_page=True)
        assert errors == []

        page_.goto(f"{live_server.url}{reverse('admin:analytics_overview')}?{urlencode(PERIOD)}")
        page_.click("#kpi-conversations .kefu-kpi-value a")
        page_.wait_for_url(f"{live_server.url}{CHANGELIST}?*")
        expect(page_.locator("#result_list tbody tr")).to_have_count(4)

        compare = {**PERIOD, "compare": "1"}
        page_.goto(f"{live_server.url}{reverse('admin:analytics_ai')}?{urlencode(compare)}")
        expect(page_.locator(".kefu-chart:has(canvas)")).to_have_count(3)
        page_.goto(f"{live_server.url}{reverse('admin:index')}")
        expect(page_.locator("#kefu-overview .kefu-kpi")).to_have_count(8)
        if shots:
            page_.screenshot(path=f"{shots}/home-{locale}.png", full_page=True)
        assert errors == []
    finally:
        context.close()
