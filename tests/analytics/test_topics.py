"""Hot topics: what counts as a question, the clustering of paraphrases in both languages,
names that survive the next run, the console page, the command and the benchmark."""

from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from analytics.clustering import has_subject
from analytics.models import ReportRow, Topic, TopicMember, TopicPeriod
from analytics.questions import questions
from analytics.tasks import analytics_topics_task
from analytics.topics import (
    cluster_questions,
    default_period,
    previous_period,
    topic_labels,
    topic_merge,
    topic_rename,
    topic_set_hidden,
    topics_benchmark,
    topics_refresh,
)
from conversations.models import Conversation, Message
from tests.support import factories
from tests.support.questions import NOISE, SUBJECTS, ask, plant

TOPICS = reverse("admin:analytics_topics")


def _refresh(tenant):
    since, until = default_period(tenant)
    return topics_refresh(tenant=tenant, since=since, until=until, llm_labels=False)


def _topic_of(message: Message) -> Topic | None:
    member = TopicMember.objects.filter(message_id=message.pk).select_related("period__topic")
    found = member.first()
    return found.period.topic if found else None


def _subject_topic(messages: list[Message]) -> tuple[Topic, int]:
    """The topic most of ``messages`` landed in, and how many did."""
    counts = Counter(topic for m in messages if (topic := _topic_of(m)) is not None)
    topic, count = counts.most_common(1)[0]
    return topic, count


# What a question is -----------------------------------------------------------------------------


def test_a_question_starts_a_subject(tenant_a) -> None:
    now = timezone.now() - timedelta(hours=3)
    first = ask(tenant_a, "hello", when=now)  # no retrieval tokens: the next message starts it
    conversation = Conversation.objects.get(pk=first.conversation_id)
    real = ask(
        tenant_a, "where is my package", when=now + timedelta(minutes=1), conversation=conversation
    )
    ask(tenant_a, "and the invoice?", when=now + timedelta(minutes=5), conversation=conversation)
    after_silence = ask(
        tenant_a,
        "how do I get a refund",
        when=now + timedelta(minutes=40),
        conversation=conversation,
    )
    reopened_at = now + timedelta(minutes=41)
    ReportRow.objects.create(
        tenant=tenant_a,
        kind=ReportRow.Kind.REOPENED,
        occurred_at=reopened_at,
        conversation_id=conversation.pk,
    )
    after_reopening = ask(
        tenant_a, "发票怎么开", when=now + timedelta(minutes=42), conversation=conversation
    )
    # Internal notes are no part of the exchange, other tenants' messages no part of this one.
    factories.MessageFactory(conversation=conversation, role=Message.Role.AGENT, internal=True)
    ask(factories.TenantFactory(), "where is my package")

    found = questions(tenant=tenant_a, start=now - timedelta(hours=1), end=timezone.now())

    assert [q.message_id for q in found] == [real.pk, after_silence.pk, after_reopening.pk]
    assert found[0].text == "where is my package"
    assert found[0].customer_id == conversation.customer_id


def test_an_acknowledgement_after_silence_asks_nothing(tenant_a) -> None:
    now = timezone.now() - timedelta(hours=3)
    first = ask(tenant_a, "收到，谢谢", when=now)
    conversation = Conversation.objects.get(pk=first.conversation_id)
    real = ask(
        tenant_a, "发票抬头写错了", when=now + timedelta(minutes=1), conversation=conversation
    )
    ask(tenant_a, "OK, thanks", when=now + timedelta(minutes=50), conversation=conversation)

    found = questions(tenant=tenant_a, start=now - timedelta(hours=1), end=timezone.now())

    assert [q.message_id for q in found] == [real.pk]


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("收到", False),
        ("好的，谢谢", False),
        ("嗯嗯", False),
        ("OK, thanks", False),
        ("Hi there!", False),
        ("好评返现怎么领", True),  # "好" of "好的" is no filler inside another word
        ("可以退货吗", True),
        ("Got my parcel, it is broken", True),
    ],
)
def test_a_message_of_greetings_thanks_or_acknowledgements_has_no_subject(
    text: str, asks: bool
) -> None:
    assert has_subject(text) is asks


# Clustering -------------------------------------------------------------------------------------


def test_paraphrases_in_both_languages_make_one_topic_each(tenant_a) -> None:
    planted = plant(tenant_a)

    run = _refresh(tenant_a)

    assert run.questions == sum(len(p) for p in SUBJECTS.values()) + len(NOISE)
    topics = {}
    for subject in SUBJECTS:
        topic, count = _subject_topic(planted[subject])
        assert count >= len(SUBJECTS[subject]) - 2, subject
        topics[subject] = topic
    assert len(set(topics.values())) == 4  # four subjects, four topics
    assert all(_topic_of(m) not in topics.values() for m in planted["noise"])
    for subject, topic in topics.items():
        # Named by a member phrasing (the one nearest the centroid).
        assert topic.label in SUBJECTS[subject]
        period = TopicPeriod.objects.get(topic=topic)
        assert period.volume == TopicMember.objects.filter(period=period).count()
        assert period.previous_volume == 0
        assert len(period.sample_conversation_ids) == 5
    assert run.topics == TopicPeriod.objects.filter(tenant=tenant_a).count() >= 4


def test_figures_count_the_member_conversations_and_the_period_before(tenant_a) -> None:
    since, until = default_period(tenant_a)
    before = timezone.now() - timedelta(days=8)
    for text in SUBJECTS["refund"][:5]:
        ask(tenant_a, text, when=before)
    planted = plant(tenant_a, noise=False)
    refunds = planted["refund"]
    Conversation.objects.filter(pk=refunds[0].conversation_id).update(
        resolution_kind=Conversation.ResolutionKind.AI, csat_rating=5
    )
    Conversation.objects.filter(pk=refunds[1].conversation_id).update(
        handoff_reason=Conversation.HandoffReason.CUSTOMER_REQUEST, csat_rating=2
    )

    _refresh(tenant_a)

    topic, count = _subject_topic(refunds)
    period = TopicPeriod.objects.get(topic=topic, since=since, until=until)
    assert period.volume == TopicMember.objects.filter(period=period).count() >= count
    assert period.previous_volume == 5
    assert period.conversations == period.volume  # one question a conversation here
    assert (period.ai_resolved, period.handoffs) == (1, 1)
    assert (period.csat_count, period.csat_total) == (2, 7)
    assert previous_period(since, until) == (since - timedelta(days=7), since - timedelta(days=1))


def test_a_rerun_replaces_the_period_and_duplicates_nothing(tenant_a) -> None:
    plant(tenant_a)
    _refresh(tenant_a)
    topics, periods, members = (
        Topic.objects.count(),
        TopicPeriod.objects.count(),
        TopicMember.objects.count(),
    )

    _refresh(tenant_a)

    assert (Topic.objects.count(), TopicPeriod.objects.count(), TopicMember.objects.count()) == (
        topics,
        periods,
        members,
    )


def test_renamed_hidden_and_merged_topics_stay_so_in_the_next_run(tenant_a) -> None:
    planted = plant(tenant_a)
    _refresh(tenant_a)
    refund, _n = _subject_topic(planted["refund"])
    package, _n = _subject_topic(planted["package"])
    password, _n = _subject_topic(planted["password"])
    invoice, _n = _subject_topic(planted["invoice"])
    topic_rename(topic=refund, name="Refunds")
    topic_set_hidden(topic=password, hidden=True)
    topic_merge(topic=package, into=invoice)
    merged = TopicPeriod.objects.get(topic=invoice)
    assert merged.volume == TopicMember.objects.filter(period=merged).count()
    assert not TopicPeriod.objects.filter(topic=package).exists()

    # More of the same questions, a day later, and the job again.
    for subject in SUBJECTS:
        for text in SUBJECTS[subject][:3]:
            ask(tenant_a, text)
    _refresh(tenant_a)

    refund.refresh_from_db()
    password.refresh_from_db()
    package.refresh_from_db()
    assert refund.name == "Refunds"
    assert _subject_topic(planted["refund"])[0] == refund
    assert password.hidden and _subject_topic(planted["password"])[0] == password
    assert package.merged_into == invoice
    # The merged topic's questions count for the topic it went into.
    assert _subject_topic(planted["package"])[0] == invoice
    assert _subject_topic(planted["invoice"])[0] == invoice
    assert not TopicPeriod.objects.filter(topic=package).exists()
    assert Topic.objects.filter(tenant=tenant_a).count() == Topic.objects.count()


def test_a_topic_is_not_merged_into_itself_or_another_tenants(tenant_a, tenant_b) -> None:
    mine = Topic.objects.create(tenant=tenant_a, label="a")
    theirs = Topic.objects.create(tenant=tenant_b, label="b")
    with pytest.raises(ValueError, match="another tenant"):
        topic_merge(topic=mine, into=theirs)
    with pytest.raises(ValueError, match="itself"):
        topic_merge(topic=mine, into=mine)


def test_a_tenant_with_an_embedding_model_is_clustered_on_its_vectors(tenant_a, mock_llm) -> None:
    factories.LLMProviderFactory(
        tenant=tenant_a, base_url=mock_llm.base_url, embedding_model="mock-embed"
    )
    texts = [t for phrasings in SUBJECTS.values() for t in phrasings]

    clustering = cluster_questions(tenant=tenant_a, texts=texts)

    assert clustering.space.dense
    assert any(r["path"].endswith("/embeddings") for r in mock_llm.requests())
    assert clustering.vectors.shape[0] == len(set(texts))

    # A failing embedding model: TF-IDF instead.
    mock_llm.configure(fault="500", fault_count=None)
    assert not cluster_questions(tenant=tenant_a, texts=texts).space.dense


# LLM labels -------------------------------------------------------------------------------------


def test_new_topics_get_an_llm_label_when_the_tenant_has_a_provider(tenant_a, mock_llm) -> None:
    factories.LLMProviderFactory(tenant=tenant_a, base_url=mock_llm.base_url)
    mock_llm.configure(text="Refund requests")

    labels = topic_labels(tenant=tenant_a, groups=[SUBJECTS["refund"]])

    assert labels == ["Refund requests"]
    sent = mock_llm.requests()[-1]["body"]
    assert "refund please" in sent["messages"][-1]["content"]


def test_a_failing_provider_leaves_the_representative_question(tenant_a, mock_llm) -> None:
    factories.LLMProviderFactory(tenant=tenant_a, base_url=mock_llm.base_url)
    mock_llm.configure(fault="500", fault_count=None)
    planted = plant(tenant_a, noise=False)
    since, until = default_period(tenant_a)

    topics_refresh(tenant=tenant_a, since=since, until=until)

    topic, _n = _subject_topic(planted["refund"])
    assert topic.label in SUBJECTS["refund"]


# The console page -------------------------------------------------------------------------------


def test_the_page_shows_the_periods_topics_to_viewers(viewer_client_a, tenant_a, tenant_b) -> None:
    planted = plant(tenant_a)
    plant(tenant_b)
    _refresh(tenant_a)
    _refresh(tenant_b)
    refund, _n = _subject_topic(planted["refund"])

    page = viewer_client_a.get(TOPICS)

    assert page.status_code == 200
    rows = page.context["rows"]
    assert {r.topic_id for r in rows} == set(
        TopicPeriod.objects.filter(tenant=tenant_a).values_list("topic_id", flat=True)
    )
    html = page.content.decode()
    assert refund.label in html
    sample = rows[0].sample_conversation_ids[0]
    assert reverse("admin:conversations_conversation_change", args=[sample]) in html
    assert 'name="action" value="rename"' not in html  # viewers read only
    assert viewer_client_a.post(TOPICS, {"action": "hide", "topic": refund.pk}).status_code == 403


def test_agents_may_not_see_topics(agent_client_a) -> None:
    assert agent_client_a.get(TOPICS).status_code == 403


def test_admins_rename_merge_hide_and_refresh(
    admin_client_a, tenant_a, tenant_b, django_capture_on_commit_callbacks
) -> None:
    planted = plant(tenant_a)
    _refresh(tenant_a)
    refund, _n = _subject_topic(planted["refund"])
    package, _n = _subject_topic(planted["package"])
    invoice, _n = _subject_topic(planted["invoice"])
    foreign = Topic.objects.create(tenant=tenant_b, label="Theirs")

    renamed = admin_client_a.post(
        TOPICS, {"action": "rename", "topic": refund.pk, "name": "Refunds <b>"}
    )
    admin_client_a.post(TOPICS, {"action": "merge", "topic": package.pk, "into": invoice.pk})
    admin_client_a.post(TOPICS, {"action": "hide", "topic": invoice.pk})
    refused = admin_client_a.post(TOPICS, {"action": "hide", "topic": foreign.pk}, follow=True)

    assert renamed.status_code == 302 and renamed["Location"] == TOPICS
    for topic in (refund, package, invoice, foreign):
        topic.refresh_from_db()
    assert refund.custom_name == "Refunds <b>"
    assert package.merged_into == invoice and invoice.hidden
    assert not foreign.hidden
    assert "That topic does not exist." in refused.content.decode()
    page = admin_client_a.get(TOPICS).content.decode()
    assert "Refunds &lt;b&gt;" in page and "Refunds <b>" not in page
    assert [r.topic_id for r in admin_client_a.get(TOPICS).context["hidden_rows"]] == [invoice.pk]

    # Refresh now: the job runs (eagerly here) after the request's commit.
    TopicPeriod.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True) as queued:
        admin_client_a.post(TOPICS, {"action": "refresh"})
    assert len(queued) == 1
    assert TopicPeriod.objects.filter(tenant=tenant_a).exists()


def test_the_csv_lists_the_visible_topics_of_the_tenant(admin_client_a, tenant_a, tenant_b) -> None:
    planted = plant(tenant_a)
    plant(tenant_b)
    _refresh(tenant_a)
    _refresh(tenant_b)
    refund, _n = _subject_topic(planted["refund"])
    topic_rename(topic=refund, name="=HYPERLINK(1)")
    hidden, _n = _subject_topic(planted["password"])
    topic_set_hidden(topic=hidden, hidden=True)

    response = admin_client_a.get(TOPICS, {"format": "csv"})

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    lines = b"".join(response.streaming_content).decode().lstrip("\ufeff").splitlines()
    assert lines[0].startswith("Topic,Questions,")
    names = [line.split(",")[0] for line in lines[1:]]
    assert "'=HYPERLINK(1)" in names
    assert hidden.name not in names
    assert (
        len(lines) - 1 == TopicPeriod.objects.filter(tenant=tenant_a, topic__hidden=False).count()
    )


def test_a_bad_period_falls_back_to_the_last_seven_days(admin_client_a, tenant_a) -> None:
    page = admin_client_a.get(TOPICS, {"since": "2026-13-01"})
    assert (page.context["since"], page.context["until"]) == default_period(tenant_a)
    page = admin_client_a.get(TOPICS, {"since": "2026-01-05", "until": "2026-01-01"})
    assert (page.context["since"], page.context["until"]) == default_period(tenant_a)


# The command, the schedule and the benchmark ----------------------------------------------------


def test_the_command_refreshes_a_tenant(tenant_a, capsys) -> None:
    plant(tenant_a)
    since, until = default_period(tenant_a)

    call_command("analytics_topics", "--tenant", tenant_a.slug, "--no-llm-labels")

    assert TopicPeriod.objects.filter(tenant=tenant_a, since=since, until=until).count() >= 4
    out = capsys.readouterr().out
    assert out.startswith(f"{tenant_a.slug} {since} to {until}: 40 questions")


def test_the_job_runs_daily() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["analytics-topics"]
    assert entry["task"] == "analytics.tasks.analytics_topics_task"
    assert entry["schedule"] == 86400


def test_the_benchmark_clusters_synthetic_questions() -> None:
    result = topics_benchmark(3000)
    assert result["questions"] == 3000
    assert result["distinct"] > 2000
    assert result["clusters"] >= 6
    assert result["clustered"] > 1500


def test_the_daily_task_refreshes_every_active_tenant(tenant_a, tenant_b) -> None:
    plant(tenant_a, noise=False)
    plant(tenant_b, noise=False)
    tenant_b.is_active = False
    tenant_b.save(update_fields=["is_active"])

    assert analytics_topics_task() == 1  # eager in tests: each tenant's job runs at once

    since, until = default_period(tenant_a)
    assert TopicPeriod.objects.filter(tenant=tenant_a, since=since, until=until).count() >= 4
    assert not TopicPeriod.objects.filter(tenant=tenant_b).exists()
