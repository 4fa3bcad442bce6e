"""Storing the answer path's messages: batches of many conversations in one transaction."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import DataError, OperationalError

from conversations import services, writer
from conversations.models import Conversation, Message
from conversations.services import (
    AnswerRecord,
    CustomerText,
    MessageWrite,
    MessageWritten,
    messages_record,
)
from tests.support import factories
from tests.support.writes import question

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop(db):
    tenant = factories.TenantFactory(slug="shop")
    entry = factories.KnowledgeEntryFactory(tenant=tenant, question="Delivery?", answer="3 days.")
    conversations = factories.ConversationFactory.create_batch(3, tenant=tenant)
    return tenant, entry, conversations


def test_a_batch_stores_questions_with_their_faq_answers_in_order(shop) -> None:
    _, entry, conversations = shop
    results = messages_record(writes=[question(c, "m1", entry) for c in conversations])

    for conversation, result in zip(conversations, results, strict=True):
        assert isinstance(result, MessageWritten)
        stored = list(
            Message.objects.filter(conversation=conversation).values_list("id", "role", "content")
        )
        assert stored == [
            (result.customer_message_id, "customer", "Delivery?"),
            (result.answer_id, "assistant", "3 days."),
        ]
        assert result.conversation_status == "bot" and not result.duplicate
        conversation.refresh_from_db()
        assert conversation.last_message_at is not None


def test_a_conversation_with_a_person_stores_the_question_but_not_the_answer(shop) -> None:
    _, entry, (with_bot, with_person, _) = shop
    Conversation.objects.filter(pk=with_person.pk).update(status=Conversation.Status.HUMAN)

    bot_result, person_result = messages_record(
        writes=[question(with_bot, "m1", entry), question(with_person, "m1", entry)]
    )

    assert isinstance(person_result, MessageWritten)
    assert person_result.conversation_status == "human"
    assert person_result.answer_id is None
    assert list(Message.objects.filter(conversation=with_person).values_list("role")) == [
        ("customer",)
    ]
    assert isinstance(bot_result, MessageWritten) and bot_result.answer_id is not None


def test_a_resent_message_is_not_stored_twice_and_the_rest_of_the_batch_is(shop) -> None:
    _, entry, (first, second, _) = shop
    (original,) = messages_record(writes=[question(first, "m1", entry)])
    assert isinstance(original, MessageWritten)

    resent, other, twice = messages_record(
        writes=[question(first, "m1", entry), *[question(second, "m1", entry)] * 2]
    )

    assert resent == MessageWritten("bot", original.customer_message_id, duplicate=True)
    assert isinstance(other, MessageWritten) and not other.duplicate
    assert twice == MessageWritten("bot", other.customer_message_id, duplicate=True)
    assert Message.objects.filter(conversation=first).count() == 2
    assert Message.objects.filter(conversation=second).count() == 2


def test_a_write_for_another_tenants_conversation_fails_alone(shop) -> None:
    _, entry, (mine, _, _) = shop
    other_tenant = factories.TenantFactory(slug="other")
    forged = MessageWrite(
        tenant_id=other_tenant.pk, conversation_id=mine.pk, customer=CustomerText("x", "hi")
    )

    good, bad = messages_record(writes=[question(mine, "m1", entry), forged])

    assert isinstance(good, MessageWritten) and good.answer_id is not None
    assert isinstance(bad, Conversation.DoesNotExist)
    assert not Message.objects.filter(tenant_id=other_tenant.pk).exists()
    assert Message.objects.filter(conversation=mine).count() == 2


def test_answers_without_knowledge_in_a_row_are_reported(shop) -> None:
    tenant, _, (conversation, _, _) = shop
    nothing = AnswerRecord(content="Sorry, no idea.", source="offline")
    write = MessageWrite(
        tenant_id=tenant.pk, conversation_id=conversation.pk, answer=nothing, unanswered_limit=2
    )

    first, second = (messages_record(writes=[write])[0] for _ in range(2))

    assert isinstance(first, MessageWritten) and not first.unanswered_streak
    assert isinstance(second, MessageWritten) and second.unanswered_streak


async def test_writes_that_arrive_during_a_batch_are_stored_together(shop, monkeypatch) -> None:
    tenant, entry, conversations = shop
    batches: list[int] = []

    def recording(*, writes):
        batches.append(len(writes))
        return messages_record(writes=writes)

    monkeypatch.setattr(writer, "messages_record", recording)
    writes = [question(conversations[i % 3], f"m{i}", entry) for i in range(60)]

    first = asyncio.create_task(writer.message_write(writes[0]))
    await asyncio.sleep(0)  # its batch is on its way to the database
    results = await asyncio.gather(first, *(writer.message_write(w) for w in writes[1:]))

    assert batches == [1, 59]  # stored at once, alone; the rest waited for the next batch
    assert all(r.answer_id is not None and not r.duplicate for r in results)
    assert await Message.objects.filter(tenant=tenant).acount() == 120


async def test_a_cancelled_caller_still_has_its_message_stored(shop) -> None:
    _, entry, (conversation, _, _) = shop
    blocker = asyncio.create_task(writer.message_write(question(conversation, "a", entry)))
    waiting = asyncio.create_task(writer.message_write(question(conversation, "b", entry)))
    await asyncio.sleep(0)
    waiting.cancel()

    await blocker
    with pytest.raises(asyncio.CancelledError):
        await waiting
    for _ in range(100):  # the second batch commits after its caller has gone
        stored = await database_sync_to_async(
            lambda: sorted(
                Message.objects.filter(conversation=conversation, role="customer").values_list(
                    "client_message_id", flat=True
                )
            )
        )()
        if stored == ["a", "b"]:
            break
        await asyncio.sleep(0.02)
    assert stored == ["a", "b"]


async def test_a_failing_batch_fails_each_of_its_callers(shop, monkeypatch) -> None:
    _, entry, (conversation, _, _) = shop

    def broken(*, writes):
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(writer, "messages_record", broken)
    results = await asyncio.gather(
        *(writer.message_write(question(conversation, f"m{i}", entry)) for i in range(3)),
        return_exceptions=True,
    )
    assert [str(r) for r in results] == ["database unavailable"] * 3


async def test_faq_hits_are_counted_together_for_the_answers_given(shop, monkeypatch) -> None:
    tenant, entry, (with_bot, with_person, _) = shop
    await Conversation.objects.filter(pk=with_person.pk).aupdate(status="human")
    monkeypatch.setattr(writer, "HITS_FLUSH_SECONDS", 0.05)
    written: list[dict] = []
    real = writer.knowledge_entries_record_hits

    def recording(*, hits):
        real(hits=hits)
        written.append(dict(hits))

    monkeypatch.setattr(writer, "knowledge_entries_record_hits", recording)

    await asyncio.gather(
        *(writer.message_write(question(with_bot, f"m{i}", entry)) for i in range(5)),
        writer.message_write(question(with_person, "m0", entry)),  # not answered: no hit
    )
    for _ in range(100):
        if written:
            break
        await asyncio.sleep(0.02)

    assert written == [{(tenant.pk, entry.pk): 5}]  # one write for the five answers
    await entry.arefresh_from_db()
    assert entry.hit_count == 5 and entry.last_hit_at is not None


async def test_hit_counts_that_could_not_be_written_are_kept(shop, monkeypatch) -> None:
    tenant, entry, (conversation, _, _) = shop
    monkeypatch.setattr(writer, "HITS_FLUSH_SECONDS", 0.05)
    calls: list[dict] = []
    real = writer.knowledge_entries_record_hits

    def failing_once(*, hits):
        if not calls:
            calls.append(dict(hits))
            raise OperationalError("the database restarted")
        real(hits=hits)
        calls.append(dict(hits))

    monkeypatch.setattr(writer, "knowledge_entries_record_hits", failing_once)

    await writer.message_write(question(conversation, "a", entry))
    for _ in range(100):
        if len(calls) == 2:
            break
        await asyncio.sleep(0.02)

    assert calls == [{(tenant.pk, entry.pk): 1}] * 2
    await entry.arefresh_from_db()
    assert entry.hit_count == 1


def _poisoned_batch(text: str) -> tuple[list[MessageWrite], int]:
    """48 good customer messages of tenant A and one of tenant B's that the database refuses,
    in the middle of the same batch."""
    tenant_a, tenant_b = factories.TenantFactory(slug="a"), factories.TenantFactory(slug="b")
    conversations_a = factories.ConversationFactory.create_batch(4, tenant=tenant_a)
    visitor_b = factories.ConversationFactory(tenant=tenant_b)
    good = [
        MessageWrite(
            tenant_id=tenant_a.pk,
            conversation_id=conversations_a[i % 4].pk,
            customer=CustomerText(f"m{i}", f"Question {i}"),
        )
        for i in range(48)
    ]
    poisoned = MessageWrite(
        tenant_id=tenant_b.pk, conversation_id=visitor_b.pk, customer=CustomerText("x", text)
    )
    return [*good[:20], poisoned, *good[20:]], tenant_a.pk


@pytest.mark.parametrize(
    "text", ["lone \ud800 surrogate", "nul \x00 byte"], ids=["surrogate", "nul"]
)
def test_a_message_the_database_refuses_fails_alone(shop, text) -> None:
    writes, tenant_a = _poisoned_batch(text)

    results = messages_record(writes=writes)

    bad = results.pop(20)
    assert all(isinstance(r, MessageWritten) and not r.duplicate for r in results)
    stored = Message.objects.filter(tenant_id=tenant_a).values_list("content", flat=True)
    assert sorted(stored) == sorted(f"Question {i}" for i in range(48))
    if isinstance(bad, MessageWritten):  # SQLite stores a NUL: the message is then kept whole
        assert "\x00" in text
        assert Message.objects.filter(pk=bad.customer_message_id or 0).get().content == text
    else:
        assert isinstance(bad, (DataError, ValueError))


@pytest.mark.parametrize(
    ("text", "refused_by"),
    [("lone \udfff surrogate", "every database"), ("nul \x00 byte", "postgresql")],
    ids=["surrogate", "nul"],
)
async def test_a_message_the_database_refuses_fails_alone_through_the_writer(
    shop, request, text, refused_by
) -> None:
    if refused_by == "postgresql":
        request.getfixturevalue("postgres")
    writes, tenant_a = await database_sync_to_async(_poisoned_batch)(text)

    results = await asyncio.gather(*map(writer.message_write, writes), return_exceptions=True)

    bad = results.pop(20)
    # UnicodeEncodeError (a ValueError) or PostgreSQL's DataError: that write's own error
    assert isinstance(bad, (DataError, ValueError))
    assert all(isinstance(r, MessageWritten) for r in results)
    assert await Message.objects.filter(tenant_id=tenant_a).acount() == 48


def test_an_error_of_the_whole_batch_is_not_retried_row_by_row(shop, monkeypatch) -> None:
    # A lock timeout or a lost connection would meet every smaller batch too, each after its
    # own wait: the batch fails at once (its callers get the error) instead.
    _, entry, conversations = shop
    attempts: list[int] = []

    def locked(writes):
        attempts.append(len(writes))
        raise OperationalError("database is locked")

    monkeypatch.setattr(services, "_messages_insert", locked)

    with pytest.raises(OperationalError):
        messages_record(writes=[question(c, "m1", entry) for c in conversations])
    assert attempts == [3]
