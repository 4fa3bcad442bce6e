"""Reporting rows: written by the services' events after commit, never after a rollback, never
for test traffic, and never at the cost of the change they report."""

import logging
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from analytics.models import ReportRow
from analytics.services import report_rows_record
from conversations import agents, events, handoff, selectors, services, tickets
from conversations.lifecycle import conversation_reopen, conversations_sweep, tickets_sla_sweep
from conversations.models import Conversation, Message, Ticket
from conversations.pipeline import draft_reply
from knowledge.models import Document, KnowledgeEntry
from knowledge.search import knowledge_hit_test, registry
from knowledge.services import document_create
from tenants.models import Role
from tests.support import factories
from tests.support.lifecycle import idle
from tests.support.widget import ORIGIN, Widget

pytestmark = pytest.mark.django_db(transaction=True)

Kind = ReportRow.Kind


@pytest.fixture
def shop(db):
    registry.forget()
    tenant = factories.TenantFactory(slug="shop", allowed_origins=[ORIGIN], default_language="en")
    factories.KnowledgeEntryFactory(
        tenant=tenant, question="How long does delivery take?", answer="3–5 working days."
    )
    yield tenant
    registry.forget()


def _rows(tenant, **filters) -> list[tuple]:
    return list(
        ReportRow.objects.filter(tenant=tenant, **filters)
        .order_by("id")
        .values_list("kind", "conversation_id", "channel", "reason")
    )


def _agent(tenant, name: str = "li"):
    user = factories.UserFactory(username=name)
    factories.MembershipFactory(tenant=tenant, user=user, role=Role.AGENT)
    agent = selectors.agent_for_user(user=user, tenant_id=tenant.pk)
    assert agent is not None
    return agent


async def test_a_widget_faq_answer_writes_its_rows(shop) -> None:
    widget = Widget(shop)
    try:
        welcome = await widget.open()
        frames = await widget.ask("How long does delivery take?", "m1")
    finally:
        await widget.close()
    conversation_id = welcome["conversation_id"]
    entry_id = (await KnowledgeEntry.objects.aget(tenant=shop)).pk

    rows = await database_sync_to_async(_rows)(shop)

    assert rows == [
        (Kind.CONVERSATION_CREATED, conversation_id, "widget", ""),
        (Kind.CUSTOMER_MESSAGE, conversation_id, "widget", ""),
        (Kind.ANSWER, conversation_id, "widget", "faq"),
        (Kind.FAQ_HIT, conversation_id, "widget", ""),
        (Kind.FIRST_ANSWER, conversation_id, "widget", ""),
    ]
    hit = await ReportRow.objects.aget(tenant=shop, kind=Kind.FAQ_HIT)
    assert (hit.entry_id, hit.message_id) == (entry_id, frames[-1]["message_id"])
    first = await ReportRow.objects.aget(tenant=shop, kind=Kind.FIRST_ANSWER)
    assert first.duration_ms is not None and first.duration_ms < 60_000


async def test_an_answer_from_a_document_counts_a_hit_of_that_document(shop) -> None:
    document = await database_sync_to_async(document_create)(
        tenant=shop,
        title="Returns",
        format=Document.Format.MARKDOWN,
        content="# Returns\n\nUnworn shoes can be returned within 30 days for a full refund.",
    )
    widget = Widget(shop)
    try:
        await widget.open()
        frames = await widget.ask("Can I return unworn shoes for a refund?", "m1")
    finally:
        await widget.close()

    answer = await Message.objects.aget(tenant=shop, pk=frames[-1]["message_id"])
    assert answer.source == Message.Source.OFFLINE
    assert any(ref.startswith("chunk-") for ref in answer.knowledge_refs)
    hits = [
        (row.entry_id, row.message_id)
        async for row in ReportRow.objects.filter(tenant=shop, kind=Kind.DOCUMENT_HIT)
    ]
    assert hits == [(document.pk, answer.pk)]


def test_a_document_counts_once_per_answer_and_only_the_tenants_own(shop) -> None:
    document = factories.DocumentFactory(tenant=shop)
    first, second = factories.ChunkFactory.create_batch(2, tenant=shop, document=document)
    foreign = factories.ChunkFactory(tenant=factories.TenantFactory())

    report_rows_record(
        [
            events.Published(
                events.Event.ANSWER_RECORDED,
                events.answer_recorded(
                    conversation_id=5,
                    message_id=51,
                    source=Message.Source.RAG,
                    chunk_ids=(first.pk, second.pk, foreign.pk),
                ),
                shop.pk,
            ),
        ]
    )

    hits = ReportRow.objects.filter(tenant=shop, kind=Kind.DOCUMENT_HIT)
    assert list(hits.values_list("entry_id", "message_id")) == [(document.pk, 51)]


def test_rows_are_written_on_commit_and_not_after_a_rollback(shop) -> None:
    conversation = factories.ConversationFactory(tenant=shop)
    answer = factories.MessageFactory(conversation=conversation, role=Message.Role.ASSISTANT)

    with pytest.raises(RuntimeError), transaction.atomic():
        services.message_feedback_record(
            tenant_id=shop.pk, conversation_id=conversation.pk, message_id=answer.pk, value="up"
        )
        raise RuntimeError("rolled back")
    assert _rows(shop) == []

    with transaction.atomic():
        services.message_feedback_record(
            tenant_id=shop.pk, conversation_id=conversation.pk, message_id=answer.pk, value="down"
        )
        assert _rows(shop) == []  # not before the commit
    assert _rows(shop) == [(Kind.FEEDBACK, conversation.pk, "widget", "down")]


async def test_hit_testing_and_draft_replies_are_not_counted(shop) -> None:
    await database_sync_to_async(knowledge_hit_test)(
        tenant=shop, query="How long does delivery take?"
    )
    draft = await draft_reply(tenant=shop, question="How long does delivery take?")

    assert draft == "3–5 working days."
    assert await ReportRow.objects.filter(tenant=shop).acount() == 0


def test_a_handoff_a_human_reply_a_resolution_and_a_rating(shop) -> None:
    agent = _agent(shop)
    started = services.widget_conversation_start(tenant=shop, external_id="v1", language="en")
    conversation_id = started.conversation_id
    handoff.conversation_handoff(
        tenant=shop,
        conversation_id=conversation_id,
        reason=Conversation.HandoffReason.CUSTOMER_REQUEST,
        by_customer=True,
    )
    Conversation.objects.filter(pk=conversation_id).update(
        queued_at=timezone.now() - timedelta(minutes=2)
    )
    agents.conversation_accept(agent=agent, conversation_id=conversation_id)
    agents.agent_reply(agent=agent, conversation_id=conversation_id, text="Hi", internal=False)
    agents.agent_reply(agent=agent, conversation_id=conversation_id, text="Note", internal=True)
    agents.agent_reply(agent=agent, conversation_id=conversation_id, text="Done?", internal=False)
    agents.conversation_resolve(agent=agent, conversation_id=conversation_id)
    services.conversation_rate(
        tenant_id=shop.pk, conversation_id=conversation_id, rating=4, comment="ok"
    )

    assert [kind for kind, *_rest in _rows(shop)] == [
        Kind.CONVERSATION_CREATED,
        Kind.HANDOFF,
        Kind.AGENT_REPLY,
        Kind.FIRST_ANSWER,
        Kind.FIRST_HUMAN_RESPONSE,
        Kind.AGENT_REPLY,  # the internal note is no reply; the second reply is not a first
        Kind.RESOLVED,
        Kind.RATING,
    ]
    handed = ReportRow.objects.get(tenant=shop, kind=Kind.HANDOFF)
    assert (handed.reason, handed.customer_id) == ("customer_request", started.customer_id)
    first = ReportRow.objects.get(tenant=shop, kind=Kind.FIRST_HUMAN_RESPONSE)
    assert first.agent_id == agent.user_id
    assert first.duration_ms is not None and 120_000 <= first.duration_ms < 180_000
    resolved = ReportRow.objects.get(tenant=shop, kind=Kind.RESOLVED)
    assert (resolved.reason, resolved.agent_id) == ("agent", agent.user_id)
    rating = ReportRow.objects.get(tenant=shop, kind=Kind.RATING)
    assert (rating.value, rating.agent_id) == (4, agent.user_id)


def test_the_sweeps_resolution_and_a_reopening(shop) -> None:
    conversation = factories.ConversationFactory(tenant=shop)
    factories.MessageFactory(conversation=conversation, role=Message.Role.CUSTOMER)
    answer = factories.MessageFactory(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        knowledge_refs=["faq-1"],
        feedback=Message.Feedback.UP,
    )
    services.message_feedback_record(
        tenant_id=shop.pk, conversation_id=conversation.pk, message_id=answer.pk, value="up"
    )
    idle(conversation, minutes=45)

    conversations_sweep(tenant_id=shop.pk)
    conversation_reopen(tenant_id=shop.pk, conversation_id=conversation.pk)

    assert _rows(shop) == [
        (Kind.FEEDBACK, conversation.pk, "widget", "up"),
        (Kind.RESOLVED, conversation.pk, "widget", "ai"),
        (Kind.REOPENED, conversation.pk, "widget", "ai"),
    ]
    assert ReportRow.objects.get(tenant=shop, kind=Kind.RESOLVED).value == 1  # confirmed


def test_a_ticket_opened_and_solved_within_its_sla(shop) -> None:
    customer = factories.CustomerFactory(tenant=shop)
    ticket = tickets.ticket_create(tenant=shop, customer_id=customer.pk, subject="Broken")
    tickets.ticket_update(ticket=ticket, status=Ticket.Status.SOLVED)

    solved = ReportRow.objects.get(tenant=shop, kind=Kind.TICKET_SOLVED)
    assert [kind for kind, *_rest in _rows(shop)] == [Kind.TICKET_OPENED, Kind.TICKET_SOLVED]
    assert (solved.ticket_id, solved.customer_id, solved.value) == (ticket.pk, customer.pk, 1)


def test_a_ticket_past_its_sla_is_recorded_once(shop) -> None:
    customer = factories.CustomerFactory(tenant=shop)
    late = tickets.ticket_create(
        tenant=shop,
        customer_id=customer.pk,
        subject="Late",
        sla_due_at=timezone.now() - timedelta(minutes=1),
    )
    tickets.ticket_create(tenant=shop, customer_id=customer.pk, subject="In time")
    solved_late = tickets.ticket_create(
        tenant=shop,
        customer_id=customer.pk,
        subject="Solved",
        sla_due_at=timezone.now() - timedelta(minutes=1),
    )
    tickets.ticket_update(ticket=solved_late, status=Ticket.Status.SOLVED)

    assert tickets_sla_sweep() == {shop.pk: 1}
    assert tickets_sla_sweep() == {}  # each ticket once

    breached = ReportRow.objects.get(tenant=shop, kind=Kind.TICKET_SLA_BREACHED)
    assert (breached.ticket_id, breached.customer_id) == (late.pk, customer.pk)
    assert ReportRow.objects.get(tenant=shop, kind=Kind.TICKET_SOLVED).value == 0  # past due
    assert Ticket.objects.get(pk=late.pk).sla_breached_at is not None


def test_a_failing_reporting_row_never_breaks_the_change(shop, monkeypatch, caplog) -> None:
    def refused(*args, **kwargs):
        raise RuntimeError("database refused")

    monkeypatch.setattr(ReportRow, "save", refused)
    caplog.set_level(logging.ERROR, logger="conversations.events")

    started = services.widget_conversation_start(tenant=shop, external_id="v1", language="en")

    assert Conversation.objects.filter(pk=started.conversation_id).exists()
    assert ReportRow.objects.filter(tenant=shop).count() == 0
    assert "event subscriber report_rows_record failed" in caplog.text


def test_an_answers_rows_cost_one_read_and_one_insert(shop, django_assert_max_num_queries) -> None:
    started = services.widget_conversation_start(tenant=shop, external_id="v1", language="en")
    answer = [
        events.Published(
            events.Event.MESSAGE_CREATED,
            events.message_created(
                conversation_id=started.conversation_id,
                message_id=41,
                role=Message.Role.ASSISTANT,
                internal=False,
                text="3–5 working days.",
            ),
            shop.pk,
        ),
        events.Published(
            events.Event.ANSWER_RECORDED,
            events.answer_recorded(
                conversation_id=started.conversation_id,
                message_id=41,
                source=Message.Source.FAQ,
                faq_entry_id=7,
            ),
            shop.pk,
        ),
    ]

    # The conversation's start and first answer, read; the rows, inserted at once (with the
    # BEGIN and COMMIT of bulk_create).
    with django_assert_max_num_queries(4):
        report_rows_record(answer)

    assert [kind for kind, *_rest in _rows(shop)] == [
        Kind.CONVERSATION_CREATED,
        Kind.ANSWER,
        Kind.FAQ_HIT,
        Kind.FIRST_ANSWER,
    ]
