"""Knowledge gaps: the signals, clustering and ranking, idempotent runs, and the way from a gap
to a FAQ entry that answers its questions."""

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from analytics.gaps import gap_entry_initial, gaps_refresh
from analytics.models import KnowledgeGap, ReportRow
from analytics.topics import default_period
from conversations.models import Conversation, Message
from knowledge.models import KnowledgeEntry
from knowledge.search import knowledge_hit_test, registry
from tests.support import factories
from tests.support.questions import SUBJECTS, ask, at

GAPS = reverse("admin:analytics_gaps")
FAQ_ADD = reverse("admin:knowledge_knowledgeentry_add")


def _refresh(tenant):
    since, until = default_period(tenant)
    return gaps_refresh(tenant=tenant, since=since, until=until)


def _unanswered(tenant, texts, *, agent_reply: str = "") -> list[Message]:
    """Each text asked by a customer of its own and answered by the offline responder, and the
    agent's reply after the handoff when given."""
    asked = []
    for text in texts:
        message = ask(tenant, text, answer="Sorry, I don't know.", source=Message.Source.OFFLINE)
        if agent_reply:
            reply = factories.MessageFactory(
                conversation_id=message.conversation_id,
                tenant=tenant,
                role=Message.Role.AGENT,
                content=agent_reply,
            )
            at(reply, message.created_at + timedelta(minutes=2))
        asked.append(message)
    return asked


def test_each_signal_makes_a_gap_and_a_good_answer_does_not(tenant_a) -> None:
    tenant_a.faq_threshold = 0.7
    tenant_a.save(update_fields=["faq_threshold"])
    ask(tenant_a, "do you ship to mars", answer="Maybe.", source="rag", confidence=0.2)
    ask(tenant_a, "gift wrapping options", answer="…", source=Message.Source.FALLBACK)
    ask(tenant_a, "warranty length", answer="1 year?", source="llm", feedback="down")
    handed = ask(tenant_a, "bulk order discount", answer="Let me find a person.", source="llm")
    ReportRow.objects.create(
        tenant=tenant_a,
        kind=ReportRow.Kind.HANDOFF,
        occurred_at=handed.created_at + timedelta(seconds=5),
        conversation_id=handed.conversation_id,
        reason=Conversation.HandoffReason.REPEATED_QUESTION,
    )
    ask(tenant_a, "store opening hours", answer="9 to 5.", source="faq", confidence=0.95)

    run = _refresh(tenant_a)

    assert run.signalled == 4
    signals = {g.question: g.signals for g in KnowledgeGap.objects.filter(tenant=tenant_a)}
    assert signals == {
        "do you ship to mars": {"low_confidence": 1},
        "gift wrapping options": {"fallback": 1},
        "warranty length": {"thumbs_down": 1},
        "bulk order discount": {"repeated_question": 1},
    }


def test_gaps_are_clustered_ranked_by_customers_and_kept_across_runs(tenant_a, tenant_b) -> None:
    _unanswered(tenant_a, SUBJECTS["invoice"], agent_reply="订单详情页点击“申请发票”即可。")
    _unanswered(tenant_a, SUBJECTS["refund"][:4])
    _unanswered(tenant_b, SUBJECTS["password"])

    _refresh(tenant_a)

    gaps = list(KnowledgeGap.objects.filter(tenant=tenant_a).order_by("-customers", "id"))
    invoice = gaps[0]
    assert invoice.customers >= 6 and invoice.question in SUBJECTS["invoice"]
    assert set(invoice.questions) <= set(SUBJECTS["invoice"])
    assert invoice.assistant_answer == "Sorry, I don't know."
    assert invoice.agent_answer == "订单详情页点击“申请发票”即可。"
    assert invoice.status == KnowledgeGap.Status.OPEN
    assert len(invoice.sample_conversation_ids) == 5
    assert not any(q in SUBJECTS["password"] for g in gaps for q in g.questions)

    # Dismissed stays dismissed, and a second run duplicates nothing.
    dismissed = gaps[-1]
    dismissed.status = KnowledgeGap.Status.DISMISSED
    dismissed.save()
    _refresh(tenant_a)
    assert KnowledgeGap.objects.filter(tenant=tenant_a).count() == len(gaps)
    dismissed.refresh_from_db()
    assert dismissed.status == KnowledgeGap.Status.DISMISSED


def test_create_faq_entry_covers_the_gap_and_answers_its_questions(
    admin_client_a, tenant_a
) -> None:
    registry.forget()
    _unanswered(tenant_a, SUBJECTS["invoice"], agent_reply="在订单详情页点击“申请发票”。")
    _refresh(tenant_a)
    gap = KnowledgeGap.objects.filter(tenant=tenant_a).order_by("-customers").first()
    initial = gap_entry_initial(gap=gap)

    # The gap's page links to the pre-filled form.
    page = admin_client_a.get(GAPS)
    assert f"{FAQ_ADD}?gap={gap.pk}" in page.content.decode()
    form = admin_client_a.get(FAQ_ADD, {"gap": gap.pk})
    assert form.context["adminform"].form.initial["question"] == gap.question
    assert form.context["adminform"].form.initial["answer"] == "在订单详情页点击“申请发票”。"
    alternates = list(initial["alternate_questions"])  # type: ignore[call-overload]
    assert gap.question not in alternates and len(alternates) == len(set(alternates)) > 0

    saved = admin_client_a.post(
        f"{FAQ_ADD}?gap={gap.pk}",
        {
            "question": initial["question"],
            "alternate_questions": "\n".join(alternates),
            "answer": initial["answer"],
            "tags": "",
            "enabled": "on",
        },
    )

    assert saved.status_code == 302, saved.content
    entry = KnowledgeEntry.objects.get(tenant=tenant_a)
    gap.refresh_from_db()
    assert (gap.status, gap.entry) == (KnowledgeGap.Status.COVERED, entry)
    for question in [gap.question, *alternates]:
        tested = knowledge_hit_test(tenant=tenant_a, query=question)
        assert tested.direct is not None and tested.direct.entry_id == entry.pk, question
    hit_page = admin_client_a.get(reverse("admin:knowledge_hit_test"), {"question": gap.question})
    assert hit_page.context["direct"].entry_id == entry.pk
    registry.forget()


def test_another_tenants_gap_is_ignored_by_the_faq_form(admin_client_a, tenant_a, tenant_b) -> None:
    _unanswered(tenant_b, SUBJECTS["invoice"], agent_reply="Their answer")
    _refresh(tenant_b)
    theirs = KnowledgeGap.objects.filter(tenant=tenant_b).order_by("-customers").first()

    form = admin_client_a.get(FAQ_ADD, {"gap": theirs.pk})
    assert "question" not in form.context["adminform"].form.initial
    admin_client_a.post(
        f"{FAQ_ADD}?gap={theirs.pk}",
        {
            "question": "Mine",
            "alternate_questions": "",
            "answer": "Mine.",
            "tags": "",
            "enabled": "on",
        },
    )

    theirs.refresh_from_db()
    assert theirs.status == KnowledgeGap.Status.OPEN and theirs.entry is None
    assert KnowledgeEntry.objects.get(tenant=tenant_a).question == "Mine"


def test_the_gaps_page_roles_dismiss_csv_and_isolation(
    admin_client_a, viewer_client_a, agent_client_a, tenant_a, tenant_b
) -> None:
    _unanswered(tenant_a, SUBJECTS["invoice"])
    _unanswered(tenant_b, SUBJECTS["refund"])
    _refresh(tenant_a)
    _refresh(tenant_b)
    mine = KnowledgeGap.objects.filter(tenant=tenant_a).order_by("-customers").first()
    theirs = KnowledgeGap.objects.filter(tenant=tenant_b).first()

    assert agent_client_a.get(GAPS).status_code == 403
    viewed = viewer_client_a.get(GAPS)
    assert viewed.status_code == 200
    assert {g.tenant_id for g in viewed.context["gaps"]} == {tenant_a.pk}
    assert "Create FAQ entry" not in viewed.content.decode()  # viewers cannot add entries
    assert viewer_client_a.post(GAPS, {"gap": mine.pk, "action": "dismiss"}).status_code == 403

    admin_client_a.post(GAPS, {"gap": theirs.pk, "action": "dismiss"})
    admin_client_a.post(GAPS, {"gap": mine.pk, "action": "dismiss"})
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert theirs.status == KnowledgeGap.Status.OPEN
    assert mine.status == KnowledgeGap.Status.DISMISSED
    assert mine not in admin_client_a.get(GAPS).context["gaps"]
    assert mine in admin_client_a.get(GAPS, {"status": "dismissed"}).context["gaps"]

    response = admin_client_a.get(GAPS, {"status": "dismissed", "format": "csv"})
    lines = b"".join(response.streaming_content).decode().lstrip("\ufeff").splitlines()
    assert lines[0].startswith("Question,Status,Customers")
    assert len(lines) == 2 and lines[1].startswith(f"{mine.question},Dismissed,")
    assert theirs.question not in "".join(lines)


def test_a_gap_outside_the_period_is_not_found(tenant_a) -> None:
    old = timezone.now() - timedelta(days=20)
    ask(tenant_a, "old question", when=old, answer="?", source=Message.Source.OFFLINE)
    assert _refresh(tenant_a).signalled == 0


def test_the_gaps_page_shows_25_gaps_a_page_most_customers_first(viewer_client_a, tenant_a) -> None:
    for number in range(30):
        KnowledgeGap.objects.create(
            tenant=tenant_a,
            question=f"question {number}",
            questions=[f"question {number}"],
            customers=number + 1,
            occurrences=number + 1,
            since=timezone.localdate(),
            until=timezone.localdate(),
        )

    first = viewer_client_a.get(GAPS)
    second = viewer_client_a.get(GAPS, {"status": "open", "page": 2})

    assert [g.customers for g in first.context["gaps"]] == list(range(30, 5, -1))
    assert [g.customers for g in second.context["gaps"]] == [5, 4, 3, 2, 1]
    assert "Page 1 of 2 (30 gaps)" in first.content.decode()
    assert viewer_client_a.get(GAPS, {"page": "x"}).context["page_obj"].number == 1
