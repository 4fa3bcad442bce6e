"""The REST API's hot topics and knowledge gaps: scope, tenant, period, pagination, shape."""

from datetime import timedelta

from analytics.gaps import gaps_refresh
from analytics.models import KnowledgeGap, TopicPeriod
from analytics.topics import default_period, topic_set_hidden, topics_refresh
from tenants.models import ApiKey
from tests.support.api import api_client
from tests.support.questions import SUBJECTS, ask, plant

TOPICS = "/api/v1/reports/topics"
GAPS = "/api/v1/reports/knowledge-gaps"


def _run(tenant):
    since, until = default_period(tenant)
    topics_refresh(tenant=tenant, since=since, until=until, llm_labels=False)
    gaps_refresh(tenant=tenant, since=since, until=until)


def test_topics_of_the_default_period_paginated(tenant_a, tenant_b) -> None:
    plant(tenant_a)
    plant(tenant_b)
    _run(tenant_a)
    _run(tenant_b)
    client = api_client(tenant_a, ApiKey.Scope.REPORTS_READ)
    periods = TopicPeriod.objects.filter(tenant=tenant_a)
    hidden = periods.order_by("id").first()
    topic_set_hidden(topic=hidden.topic, hidden=True)

    first = client.get(TOPICS, {"limit": 2, "order": "asc"})
    body = first.json()
    second = client.get(TOPICS, {"limit": 100, "cursor": body["next_cursor"]}).json()

    assert first.status_code == 200 and body["has_more"] is True
    ids = [t["id"] for t in body["data"] + second["data"]]
    expected = periods.exclude(pk=hidden.pk).order_by("id")
    assert ids == [p.topic_id for p in expected]
    since, until = default_period(tenant_a)
    period = expected.first()
    assert body["data"][0] == {
        "id": period.topic_id,
        "name": period.topic.name,
        "label": period.topic.label,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "volume": period.volume,
        "previous_volume": 0,
        "change": None,
        "conversations": period.conversations,
        "ai_resolution_rate": 0.0,
        "handoff_rate": 0.0,
        "csat": None,
        "csat_count": 0,
        "sample_conversation_ids": period.sample_conversation_ids,
    }


def test_a_period_never_computed_has_no_topics(tenant_a) -> None:
    plant(tenant_a, noise=False)
    _run(tenant_a)
    since, until = default_period(tenant_a)
    client = api_client(tenant_a, ApiKey.Scope.REPORTS_READ)
    older = {"since": (since - timedelta(days=7)).isoformat(), "until": until.isoformat()}
    assert client.get(TOPICS, older).json()["data"] == []
    assert client.get(TOPICS, {"since": since.isoformat(), "until": until.isoformat()}).json()[
        "data"
    ]
    refused = client.get(TOPICS, {"since": until.isoformat(), "until": since.isoformat()})
    assert refused.status_code == 400
    assert "until" in refused.json()["error"]["fields"]


def test_knowledge_gaps_by_status_and_tenant(tenant_a, tenant_b) -> None:
    for text in SUBJECTS["invoice"]:
        ask(tenant_a, text, answer="?", source="offline")
    ask(tenant_b, "theirs", answer="?", source="offline")
    _run(tenant_a)
    _run(tenant_b)
    gap = KnowledgeGap.objects.filter(tenant=tenant_a).order_by("id").first()
    gap.status = KnowledgeGap.Status.DISMISSED
    gap.save()
    client = api_client(tenant_a, ApiKey.Scope.REPORTS_READ)

    everything = client.get(GAPS, {"limit": 100}).json()["data"]
    dismissed = client.get(GAPS, {"status": "dismissed"}).json()["data"]

    assert {g["id"] for g in everything} == set(
        KnowledgeGap.objects.filter(tenant=tenant_a).values_list("id", flat=True)
    )
    assert [g["id"] for g in dismissed] == [gap.pk]
    assert set(dismissed[0]) == {
        "id",
        "status",
        "question",
        "questions",
        "customers",
        "occurrences",
        "signals",
        "assistant_answer",
        "agent_answer",
        "sample_conversation_ids",
        "since",
        "until",
        "entry",
    }
    assert dismissed[0]["signals"] == {"fallback": gap.occurrences}
    assert client.get(GAPS, {"status": "nope"}).status_code == 400


def test_both_need_reports_read(tenant_a) -> None:
    client = api_client(tenant_a, ApiKey.Scope.CONVERSATIONS_READ)
    assert client.get(TOPICS).status_code == 403
    assert client.get(GAPS).status_code == 403
