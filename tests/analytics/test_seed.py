"""Generated history (analytics/seed.py, ``manage.py analytics_seed``): consistent with the live
tables, with the reporting rows the live path writes, and with the rollups read back."""

import re
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count
from django.utils import timezone

from analytics.models import ReportRow, Rollup
from analytics.rollups import local_day_bounds, local_today, tenant_zone
from analytics.seed import (
    SEED_PREFIX,
    TABLES,
    SeedResult,
    analytics_seed,
    question_bank,
    seeded_history_delete,
)
from analytics.selectors import ai_metrics, metric_series, satisfaction_metrics, volume_metrics
from conversations.models import Conversation, Customer, Message, Ticket
from knowledge.models import Chunk
from tenants.models import Membership, Role, Tenant
from tests.support.factories import (
    ChunkFactory,
    ConversationFactory,
    DocumentFactory,
    KnowledgeEntryFactory,
    MembershipFactory,
    MessageFactory,
)

Kind = ReportRow.Kind
HAN = re.compile(r"[\u4e00-\u9fff]")
DAYS = 14


def _seed(tenant: Tenant, conversations: int = 300, **options) -> SeedResult:
    return analytics_seed(tenant=tenant, conversations=conversations, days=DAYS, seed=5, **options)


@pytest.fixture
def faq_tenant(tenant_a: Tenant) -> Tenant:
    for tag in ("shipping", "returns", "payment", "orders", "account", "invoices"):
        KnowledgeEntryFactory(tenant=tenant_a, tags=[tag], question=f"About {tag}?")
    for _document in range(2):
        document = DocumentFactory(tenant=tenant_a)
        ChunkFactory.create_batch(3, document=document)
    MembershipFactory(tenant=tenant_a, role=Role.AGENT)
    MembershipFactory(tenant=tenant_a, role=Role.AGENT)
    return tenant_a


def test_column_lists_cover_every_field() -> None:
    for model, fields in TABLES:
        assert sorted(fields) == sorted(f.attname for f in model._meta.concrete_fields), model


def test_question_bank_has_a_hundred_subjects_in_both_languages() -> None:
    bank = question_bank()
    assert len(bank.topics) >= 100
    assert len({t.key for t in bank.topics}) == len(bank.topics)
    assert 20 <= sum(not t.answerable for t in bank.topics) <= 50
    for topic in bank.topics:
        assert len(topic.phrasings["zh"]) >= 2 and len(topic.phrasings["en"]) >= 2, topic.key
        assert all(HAN.search(p) for p in topic.phrasings["zh"]), topic.key
        assert not any(HAN.search(p) for p in topic.phrasings["en"]), topic.key


def _assert_consistent(tenant: Tenant, result: SeedResult) -> None:
    conversations = Conversation.objects.filter(tenant=tenant)
    messages = Message.objects.filter(tenant=tenant)
    rows = ReportRow.objects.filter(tenant=tenant)
    kinds = Counter(rows.values_list("kind", flat=True))

    assert conversations.count() == result.conversations == kinds[Kind.CONVERSATION_CREATED]
    assert messages.count() == result.messages
    assert rows.count() == result.report_rows
    assert (
        Ticket.objects.filter(tenant=tenant).count() == result.tickets == kinds[Kind.TICKET_OPENED]
    )
    assert Customer.objects.filter(tenant=tenant).count() == result.customers

    # Rows of messages match the messages, one for one.
    by_role = Counter(messages.values_list("role", flat=True))
    assert kinds[Kind.CUSTOMER_MESSAGE] == by_role[Message.Role.CUSTOMER]
    assert kinds[Kind.ANSWER] == by_role[Message.Role.ASSISTANT]
    assert kinds[Kind.AGENT_REPLY] == by_role[Message.Role.AGENT]
    assert kinds[Kind.FAQ_HIT] == messages.filter(source=Message.Source.FAQ).count()
    assert kinds[Kind.FEEDBACK] == messages.exclude(feedback="").count()
    assert kinds[Kind.RATING] == conversations.filter(csat_rating__isnull=False).count()
    # Answers citing document passages: one document row per document and answer, and only
    # passages that exist.
    chunk_documents = dict(Chunk.objects.filter(tenant=tenant).values_list("pk", "document_id"))
    documents_cited = 0
    for refs in messages.filter(source=Message.Source.RAG).values_list("knowledge_refs", flat=True):
        assert refs
        chunk_ids = [int(ref.removeprefix("chunk-")) for ref in refs if ref.startswith("chunk-")]
        assert all(chunk_id in chunk_documents for chunk_id in chunk_ids)
        documents_cited += len({chunk_documents[chunk_id] for chunk_id in chunk_ids})
    assert kinds[Kind.DOCUMENT_HIT] == documents_cited
    answer_sources = Counter(rows.filter(kind=Kind.ANSWER).values_list("reason", flat=True))
    assert answer_sources == Counter(
        messages.filter(role=Message.Role.ASSISTANT).values_list("source", flat=True)
    )
    # Every conversation that got an answer has exactly one first answer.
    answered = messages.exclude(role=Message.Role.CUSTOMER).values("conversation").distinct()
    assert kinds[Kind.FIRST_ANSWER] == answered.count()

    # Every handoff row is of a conversation handed over for that reason.
    reasons = dict(conversations.values_list("pk", "handoff_reason"))
    handoffs = list(rows.filter(kind=Kind.HANDOFF).values_list("conversation_id", "reason"))
    assert handoffs
    assert all(c is not None and reasons[c] == reason for c, reason in handoffs)
    assert set(conversations.exclude(handoff_reason="").values_list("pk", flat=True)) == {
        c for c, _reason in handoffs
    }
    # Resolutions as the conversations record them.
    resolved = dict(
        rows.filter(kind=Kind.RESOLVED)
        .order_by("occurred_at", "id")
        .values_list("conversation_id", "reason")
    )
    for pk, kind in conversations.filter(status=Conversation.Status.RESOLVED).values_list(
        "pk", "resolution_kind"
    ):
        assert resolved[pk] == kind
    assert (
        kinds[Kind.ABANDONED]
        == conversations.filter(resolution_kind=Conversation.ResolutionKind.ABANDONED).count()
    )

    # Messages per conversation within the generator's bounds, about nine on average.
    per_conversation = list(conversations.annotate(n=Count("messages")).values_list("n", flat=True))
    assert min(per_conversation) >= 1
    assert max(per_conversation) <= 50
    assert 5 <= sum(per_conversation) / len(per_conversation) <= 14

    # Questions in Chinese and in English.
    questions = list(messages.filter(role=Message.Role.CUSTOMER).values_list("content", flat=True))
    assert sum(bool(HAN.search(q)) for q in questions) > len(questions) * 0.3
    assert sum(not HAN.search(q) for q in questions) > len(questions) * 0.2

    # Every row's time within the range, none in the future.
    zone = tenant_zone(tenant)
    start, _end = local_day_bounds(result.since, zone)
    times = rows.order_by("occurred_at").values_list("occurred_at", flat=True)
    first, last = times.first(), times.last()
    assert first is not None and last is not None
    assert start <= first
    assert last <= timezone.now()


@pytest.mark.django_db
def test_seeding_writes_consistent_history_for_the_tenant_only(faq_tenant, tenant_b) -> None:
    # Given another tenant with a conversation of its own
    other = ConversationFactory(tenant=tenant_b)
    MessageFactory(tenant=tenant_b, conversation=other)

    # When a small history is generated for the first tenant
    result = _seed(faq_tenant)

    # Then its rows are consistent with each other, and the other tenant is untouched
    assert result.conversations == 300
    assert result.since == local_today(faq_tenant) - timedelta(days=DAYS - 1)
    _assert_consistent(faq_tenant, result)
    assert Conversation.objects.filter(tenant=tenant_b).count() == 1
    assert Message.objects.filter(tenant=tenant_b).count() == 1
    assert not ReportRow.objects.filter(tenant=tenant_b).exists()
    assert not Rollup.objects.filter(tenant=tenant_b).exists()
    # The tenant's agents answered (no members were added).
    agents = set(Membership.objects.filter(tenant=faq_tenant).values_list("user_id", flat=True))
    replied = set(
        Message.objects.filter(tenant=faq_tenant, role=Message.Role.AGENT).values_list(
            "author_id", flat=True
        )
    )
    assert replied and replied <= agents
    assert Membership.objects.filter(tenant=faq_tenant).count() == 2


@pytest.mark.django_db
def test_rollups_after_seeding_match_the_live_tables(faq_tenant) -> None:
    # Given generated history (the rollups are rebuilt by the seeding)
    result = _seed(faq_tenant)
    since, until = result.since, result.until
    assert since is not None and until is not None
    zone = tenant_zone(faq_tenant)

    # Conversations per local day, from the rollups and counted directly
    series = {
        p.bucket_start.astimezone(zone).date(): p.count
        for p in metric_series(
            tenant=faq_tenant, metric="conversations", dimension="channel", since=since, until=until
        )
    }
    counted = Counter(
        created.astimezone(zone).date()
        for created in Conversation.objects.filter(tenant=faq_tenant).values_list(
            "created_at", flat=True
        )
    )
    assert series == dict(counted)
    assert len(series) == DAYS

    # Answers by source, and handoffs by reason
    ai = ai_metrics(tenant=faq_tenant, since=since, until=until)
    sources = Counter(
        Message.objects.filter(tenant=faq_tenant, role=Message.Role.ASSISTANT).values_list(
            "source", flat=True
        )
    )
    assert ai.answers_by_source == dict(sources)
    assert set(sources) >= {"faq", "rag", "llm", "offline", "fallback"}
    reasons = Counter(
        Conversation.objects.filter(tenant=faq_tenant)
        .exclude(handoff_reason="")
        .values_list("handoff_reason", flat=True)
    )
    assert ai.handoffs_by_reason == dict(reasons)
    assert ai.resolved_confirmed + ai.resolved_assumed > 0

    # CSAT
    ratings = list(
        Conversation.objects.filter(tenant=faq_tenant, csat_rating__isnull=False).values_list(
            "csat_rating", flat=True
        )
    )
    satisfaction = satisfaction_metrics(tenant=faq_tenant, since=since, until=until)
    assert satisfaction.ratings == len(ratings) > 0
    assert satisfaction.csat == sum(r is not None and r >= 4 for r in ratings) / len(ratings)
    volume = volume_metrics(tenant=faq_tenant, since=since, until=until)
    assert volume.conversations == result.conversations
    assert (
        volume.customer_messages
        == Message.objects.filter(tenant=faq_tenant, role=Message.Role.CUSTOMER).count()
    )


@pytest.mark.django_db
def test_seeding_on_postgresql_uses_copy_and_the_sequences(postgres, faq_tenant) -> None:
    from django.db import connection

    # Given generated history written with COPY
    result = _seed(faq_tenant, conversations=200)
    _assert_consistent(faq_tenant, result)

    # Then the app's own inserts continue after the seeded ids
    highest = Message.objects.order_by("-pk").values_list("pk", flat=True)[0]
    conversation = Conversation.objects.filter(tenant=faq_tenant).first()
    message = MessageFactory(tenant=faq_tenant, conversation=conversation)
    assert message.pk > highest
    assert connection.vendor == "postgresql"


@pytest.mark.django_db
def test_a_second_run_adds_history_and_replace_starts_again(faq_tenant) -> None:
    first = _seed(faq_tenant, conversations=60)
    second = _seed(faq_tenant, conversations=40)
    assert Conversation.objects.filter(tenant=faq_tenant).count() == 100
    assert second.customers > 0

    # A conversation of real traffic stays when the generated history is replaced
    real = ConversationFactory(tenant=faq_tenant)
    replaced = _seed(faq_tenant, conversations=50, replace=True)
    assert replaced.deleted_conversations == first.conversations + second.conversations
    assert set(Conversation.objects.filter(tenant=faq_tenant).values_list("pk", flat=True)) >= {
        real.pk
    }
    assert Conversation.objects.filter(tenant=faq_tenant).count() == 51
    _rows = ReportRow.objects.filter(tenant=faq_tenant, kind=Kind.CONVERSATION_CREATED).count()
    assert _rows == 50
    assert seeded_history_delete(tenant=faq_tenant) == 50
    assert not Customer.objects.filter(
        tenant=faq_tenant, external_id__startswith=SEED_PREFIX
    ).exists()


@pytest.mark.django_db
def test_a_tenant_without_people_gets_agent_members(tenant_a) -> None:
    _seed(tenant_a, conversations=120)
    roles = set(Membership.objects.filter(tenant=tenant_a).values_list("role", flat=True))
    assert roles == {Role.AGENT}
    assert Membership.objects.filter(tenant=tenant_a).count() == 3
    # Without knowledge, no answer claims to come from it.
    sources = set(Message.objects.filter(tenant=tenant_a).values_list("source", flat=True))
    assert not sources & {Message.Source.FAQ, Message.Source.RAG}


@pytest.mark.django_db
def test_history_ending_on_a_past_day(faq_tenant) -> None:
    end = local_today(faq_tenant) - timedelta(days=30)
    result = _seed(faq_tenant, conversations=80, end=end)
    _start, end_bound = local_day_bounds(end, tenant_zone(faq_tenant))
    latest = ReportRow.objects.filter(tenant=faq_tenant).order_by("-occurred_at").first()
    assert latest is not None and latest.occurred_at < end_bound
    assert result.until == end


@pytest.mark.django_db
def test_command_seeds_and_reports(faq_tenant, capsys) -> None:
    call_command(
        "analytics_seed", "--tenant", faq_tenant.slug, "--conversations", "50", "--days", "3"
    )
    out = capsys.readouterr().out
    assert "50 conversations" in out
    assert "rows/s" in out
    assert len([line for line in out.splitlines() if " conversations (" in line]) == 3
    assert Conversation.objects.filter(tenant=faq_tenant).count() == 50


@pytest.mark.django_db
def test_command_refuses_an_unknown_tenant() -> None:
    with pytest.raises(CommandError, match="no tenant 'nope'"):
        call_command("analytics_seed", "--tenant", "nope", "--conversations", "5")


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_postgresql_writes_on_a_second_connection(
    postgres, faq_tenant, monkeypatch
) -> None:
    """The production path: days are written by a thread of their own while the next one is
    generated, each day committed on its own."""
    from analytics import seed

    writers: list[seed._BackgroundWriter] = []
    original = seed._BackgroundWriter

    def spied(tenant_id: int) -> seed._BackgroundWriter:
        writer = original(tenant_id)
        writers.append(writer)
        return writer

    monkeypatch.setattr(seed, "_BackgroundWriter", spied)
    result = _seed(faq_tenant, conversations=150)
    assert len(writers) == 1
    assert not writers[0].thread.is_alive()
    _assert_consistent(faq_tenant, result)
