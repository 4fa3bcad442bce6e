"""How conversations end when nobody ends them: resolved by the assistant, abandoned in the queue,
and reopened when the customer writes again."""

import threading
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.utils import timezone

from conversations.lifecycle import SweepCounts, conversations_sweep
from conversations.models import Conversation, Message
from conversations.tasks import conversations_sweep_task
from conversations.tickets import ticket_from_conversation
from helpdesk_site.celery import app as celery_app
from knowledge import services as knowledge_services
from tenants.scoping import all_tenants
from tests.support import factories
from tests.support.lifecycle import idle, queued
from tests.support.widget import ORIGIN, Widget

pytestmark = pytest.mark.django_db(transaction=True)

AI = Conversation.ResolutionKind.AI
ABANDONED = Conversation.ResolutionKind.ABANDONED


@pytest.fixture
def shop(db):
    tenant = factories.TenantFactory(slug="shop", allowed_origins=[ORIGIN], default_language="en")
    factories.KnowledgeEntryFactory(
        tenant=tenant, question="How long does delivery take?", answer="3–5 working days."
    )
    factories.KnowledgeEntryFactory(
        tenant=tenant,
        question="快递多久能到？",
        alternate_questions=["包裹几天到"],
        answer="3–5 天。",
    )
    knowledge_services.knowledge_changed(tenant_id=tenant.pk)
    return tenant


def answered(tenant, *, refs: list[str], **answer: Any) -> Conversation:
    """A conversation with the assistant: a question and an answer that used ``refs``."""
    conversation = factories.ConversationFactory.create(
        tenant=tenant, status=Conversation.Status.BOT
    )
    factories.MessageFactory(conversation=conversation, role=Message.Role.CUSTOMER)
    factories.MessageFactory(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        source=answer.pop("source", Message.Source.FAQ),
        content="Delivery takes 3–5 working days.",
        knowledge_refs=refs,
        **answer,
    )
    return conversation


def refreshed(conversation: Conversation) -> Conversation:
    conversation.refresh_from_db()
    return conversation


# Resolved by the assistant ------------------------------------------------------------------


async def test_a_faq_answer_left_alone_for_30_minutes_is_resolved_by_the_assistant(shop) -> None:
    widget = Widget(shop)
    try:
        await widget.open()
        frames = await widget.ask("How long does delivery take?", "m1")
    finally:
        await widget.close()
    assert frames[-1]["source"] == "faq"
    conversation = await Conversation.objects.aget(tenant=shop)

    await database_sync_to_async(idle)(conversation, 29)
    assert await database_sync_to_async(conversations_sweep)() == {}
    await database_sync_to_async(idle)(conversation, 31)
    counts = await database_sync_to_async(conversations_sweep)()

    assert counts == {shop.pk: SweepCounts(resolved_by_ai=1, abandoned=0)}
    await conversation.arefresh_from_db()
    assert (conversation.status, conversation.resolution_kind) == ("resolved", "ai")
    assert conversation.resolved_at is not None


@pytest.mark.parametrize(
    "case",
    [
        "no_knowledge",
        "thumbs_down",
        "fallback",
        "unanswered_question",
        "handed_off_before",
        "with_a_person",
        "no_messages",
    ],
)
def test_conversations_the_assistant_did_not_resolve_stay_open(tenant_a, case: str) -> None:
    if case == "no_knowledge":
        conversation = answered(tenant_a, refs=[], source=Message.Source.OFFLINE)
    elif case == "thumbs_down":
        conversation = answered(tenant_a, refs=["faq-1"], feedback=Message.Feedback.DOWN)
    elif case == "fallback":
        conversation = answered(tenant_a, refs=["faq-1"], source=Message.Source.FALLBACK)
    elif case == "unanswered_question":
        conversation = answered(tenant_a, refs=["faq-1"])
        factories.MessageFactory(conversation=conversation, role=Message.Role.CUSTOMER)
    elif case == "handed_off_before":  # an agent handed it back to the assistant
        conversation = answered(tenant_a, refs=["faq-1"])
        Conversation.objects.filter(pk=conversation.pk).update(
            handoff_reason=Conversation.HandoffReason.CUSTOMER_REQUEST
        )
    elif case == "with_a_person":
        conversation = answered(tenant_a, refs=["faq-1"])
        Conversation.objects.filter(pk=conversation.pk).update(status=Conversation.Status.HUMAN)
    else:
        conversation = factories.ConversationFactory.create(tenant=tenant_a)
    idle(refreshed(conversation), 120)

    assert conversations_sweep() == {}
    conversation = refreshed(conversation)
    assert conversation.resolution_kind == "" and conversation.resolved_at is None


def test_an_earlier_answer_with_knowledge_counts_when_the_last_one_had_none(tenant_a) -> None:
    conversation = answered(tenant_a, refs=["faq-1"])
    factories.MessageFactory(conversation=conversation, role=Message.Role.CUSTOMER, content="ok")
    factories.MessageFactory(
        conversation=conversation, role=Message.Role.ASSISTANT, source=Message.Source.OFFLINE
    )
    idle(conversation, 31)
    assert conversations_sweep() == {tenant_a.pk: SweepCounts(resolved_by_ai=1)}


def test_the_idle_time_is_a_setting(tenant_a, settings) -> None:
    settings.CONVERSATION_AI_RESOLVED_AFTER_MINUTES = 5
    conversation = answered(tenant_a, refs=["doc-3-1"], source=Message.Source.RAG)
    idle(conversation, 6)
    assert conversations_sweep() == {tenant_a.pk: SweepCounts(resolved_by_ai=1)}


async def test_a_customer_who_comes_back_continues_with_the_assistant(shop) -> None:
    widget = Widget(shop)
    try:
        first = await widget.open()
        await widget.ask("How long does delivery take?", "m1")
    finally:
        await widget.close()
    conversation = await Conversation.objects.aget(tenant=shop)
    await database_sync_to_async(idle)(conversation, 31)
    await database_sync_to_async(conversations_sweep)()

    again = Widget(shop)
    try:
        welcome = await again.open(visitor_token=first["visitor_token"])
        assert welcome["status"] == "resolved" and len(welcome["history"]) == 2
        frames = await again.ask("包裹几天到", "m2")
    finally:
        await again.close()
    assert frames[-1]["type"] == "done"  # answered, and no status frame: it never looked closed
    assert [f["type"] for f in frames].count("status") == 0
    await conversation.arefresh_from_db()
    assert (conversation.status, conversation.resolution_kind) == ("bot", "")
    assert conversation.resolved_at is None
    # Left alone again, it is resolved again: still one conversation, counted once.
    await database_sync_to_async(idle)(conversation, 31)
    assert await database_sync_to_async(conversations_sweep)() == {
        shop.pk: SweepCounts(resolved_by_ai=1)
    }


async def test_a_thumbs_down_after_the_assistant_resolved_it_brings_a_person(shop) -> None:
    widget = Widget(shop)
    try:
        await widget.open()
        frames = await widget.ask("How long does delivery take?", "m1")
        conversation = await Conversation.objects.aget(tenant=shop)
        await database_sync_to_async(idle)(conversation, 31)
        await database_sync_to_async(conversations_sweep)()
        await widget.send(
            {"type": "feedback", "message_id": frames[-1]["message_id"], "value": "down"}
        )
        assert (await widget.receive())["type"] == "ack"
        status = await widget.receive()
    finally:
        await widget.close()
    assert (status["type"], status["status"]) == ("status", "queued")
    await conversation.arefresh_from_db()
    assert (conversation.status, conversation.resolution_kind) == ("queued", "")


# Abandoned in the queue ---------------------------------------------------------------------


def test_a_queued_conversation_left_for_an_hour_is_closed_as_abandoned(tenant_a) -> None:
    waiting, recent = queued(tenant_a), queued(tenant_a)
    idle(waiting, 61)
    idle(recent, 59)

    assert conversations_sweep() == {tenant_a.pk: SweepCounts(abandoned=1)}
    waiting, recent = refreshed(waiting), refreshed(recent)
    assert (waiting.status, waiting.resolution_kind) == ("closed", "abandoned")
    assert waiting.closed_at is not None
    assert (recent.status, recent.resolution_kind) == ("queued", "")
    # Idempotent: nothing more to record.
    assert conversations_sweep() == {}


def test_a_recent_message_keeps_a_queued_conversation_waiting(tenant_a, settings) -> None:
    settings.CONVERSATION_ABANDONED_AFTER_MINUTES = 10
    conversation = queued(tenant_a)
    idle(conversation, 30)
    Conversation.objects.filter(pk=conversation.pk).update(last_message_at=timezone.now())
    assert conversations_sweep() == {}
    assert refreshed(conversation).status == "queued"


def test_leaving_contact_details_closes_the_queue_entry_and_is_not_abandonment(tenant_a) -> None:
    conversation = queued(tenant_a)
    ticket_from_conversation(
        tenant=tenant_a,
        conversation_id=conversation.pk,
        name="Li",
        email="li@example.com",
        phone="",
        note="Call me",
    )
    idle(refreshed(conversation), 120)
    assert conversations_sweep() == {}
    conversation = refreshed(conversation)
    assert (conversation.status, conversation.resolution_kind) == ("resolved", "ticket")


async def abandon_while_open(widget: Widget, tenant) -> Conversation:
    """The customer asks for a person, waits past the limit with the widget open, and is told
    the request was closed."""
    await widget.open()
    await widget.send({"type": "handoff"})
    assert (await widget.receive())["status"] == "queued"
    conversation = await Conversation.objects.aget(tenant=tenant)
    await database_sync_to_async(idle)(conversation, 61)
    assert await database_sync_to_async(conversations_sweep)() == {
        tenant.pk: SweepCounts(abandoned=1)
    }
    told = await widget.receive()
    assert (told["type"], told["status"]) == ("status", "closed")
    return conversation


async def test_an_open_widget_is_told_and_a_new_message_reopens_it(shop) -> None:
    widget = Widget(shop)
    try:
        conversation = await abandon_while_open(widget, shop)
        frames = await widget.ask("How long does delivery take?", "m1")
        assert [(f["type"], f.get("status")) for f in frames] == [("ack", None), ("status", "bot")]
        frames = []
        while not frames or frames[-1]["type"] != "done":
            frames.append(await widget.receive())
    finally:
        await widget.close()
    assert frames[-1]["source"] == "faq"
    await conversation.arefresh_from_db()
    assert (conversation.status, conversation.resolution_kind) == ("bot", "")
    assert conversation.closed_at is None


async def test_asking_for_a_person_again_after_abandonment_queues_it_again(shop) -> None:
    widget = Widget(shop)
    try:
        conversation = await abandon_while_open(widget, shop)
        await widget.send({"type": "handoff"})
        status = await widget.receive()
    finally:
        await widget.close()
    assert status["status"] == "queued"
    await conversation.arefresh_from_db()
    assert (conversation.status, conversation.resolution_kind) == ("queued", "")


# Scope, batches, concurrency, scheduling ----------------------------------------------------


def test_a_tenant_sweep_touches_only_that_tenant(tenant_a, tenant_b) -> None:
    mine, theirs = queued(tenant_a), queued(tenant_b)
    resolved_theirs = answered(tenant_b, refs=["faq-1"])
    for conversation in (mine, theirs, resolved_theirs):
        idle(conversation, 90)

    assert conversations_sweep(tenant_id=tenant_a.pk) == {tenant_a.pk: SweepCounts(abandoned=1)}
    assert refreshed(theirs).status == "queued"
    assert refreshed(resolved_theirs).status == "bot"
    assert conversations_sweep() == {tenant_b.pk: SweepCounts(resolved_by_ai=1, abandoned=1)}


def test_batches_are_bounded_and_the_rest_waits_for_the_next_run(tenant_a) -> None:
    waiting = [queued(tenant_a) for _ in range(5)]
    for conversation in waiting:
        idle(conversation, 61)
    assert conversations_sweep(batch_size=2, max_batches=2) == {
        tenant_a.pk: SweepCounts(abandoned=4)
    }
    assert conversations_sweep(batch_size=2) == {tenant_a.pk: SweepCounts(abandoned=1)}


def test_two_sweeps_at_once_count_each_conversation_once(postgres, tenant_a) -> None:
    for _ in range(30):
        idle(queued(tenant_a), 61)
        idle(answered(tenant_a, refs=["faq-1"]), 31)
    start = threading.Barrier(2)
    results: list[dict[int, SweepCounts]] = []

    def sweep() -> None:
        from django.db import connection

        try:
            start.wait(timeout=10)
            # A thread starts with no scope; beat's sweep covers every tenant.
            with all_tenants("two workers sweep every tenant at once"):
                results.append(conversations_sweep(batch_size=4))
        finally:
            connection.close()

    workers = [threading.Thread(target=sweep) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert len(results) == 2
    resolved = sum(r.get(tenant_a.pk, SweepCounts()).resolved_by_ai for r in results)
    abandoned = sum(r.get(tenant_a.pk, SweepCounts()).abandoned for r in results)
    assert (resolved, abandoned) == (30, 30)
    ended = Conversation.objects.filter(tenant=tenant_a).values_list("resolution_kind", flat=True)
    assert sorted(set(ended)) == [ABANDONED, AI] and len(ended) == 60


def test_the_task_and_the_command_run_the_sweep(tenant_a, capsys) -> None:
    idle(queued(tenant_a), 61)
    assert conversations_sweep_task.delay().get() == {
        tenant_a.pk: {"resolved_by_ai": 0, "abandoned": 1}
    }
    idle(answered(tenant_a, refs=["faq-1"]), 31)
    call_command("conversations_sweep", "--tenant", str(tenant_a.pk))
    assert (
        f"tenant {tenant_a.pk}: 1 resolved by the assistant, 0 abandoned" in capsys.readouterr().out
    )


def test_celery_beat_runs_the_sweep_every_minute(settings) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["conversations-sweep"]
    assert entry["schedule"] == 60
    celery_app.loader.import_default_modules()
    assert entry["task"] in celery_app.tasks
