"""faq_match and knowledge_search: the right entry, an honest confidence, fresh and scoped."""

import pytest
from django.urls import reverse

from knowledge import services
from knowledge.models import Document
from knowledge.search import faq_candidates, faq_match, knowledge_search, registry
from tests.support import factories


@pytest.fixture(autouse=True)
def _fresh_registry():
    registry.forget()
    yield
    registry.forget()


@pytest.fixture
def shop_faq(tenant_a):
    entries = {
        "arrival": factories.KnowledgeEntryFactory(
            tenant=tenant_a,
            question="快递什么时候到？",
            alternate_questions=["我的包裹几天能到", "发货后多久送达"],
            answer="下单后 48 小时内发货，一般 3–5 天送达。",
        ),
        "returns": factories.KnowledgeEntryFactory(
            tenant=tenant_a,
            question="怎么申请退货？",
            alternate_questions=["退货流程是什么", "我想退掉这个商品"],
            answer="在“我的订单”里点击“申请退货”。",
        ),
        "password": factories.KnowledgeEntryFactory(
            tenant=tenant_a,
            question="How do I reset my password?",
            alternate_questions=["I forgot my password", "can't log in to my account"],
            answer="Use “Forgot password” on the sign-in page.",
        ),
        "refund": factories.KnowledgeEntryFactory(
            tenant=tenant_a,
            question="When will I get my refund?",
            alternate_questions=["how long does a refund take", "refund not received yet"],
            answer="Refunds reach your card within 5–7 working days.",
        ),
    }
    services.knowledge_changed(tenant_id=tenant_a.pk)
    return entries


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("快递什么时候到？", "arrival"),
        ("包裹大概几天能送到啊", "arrival"),
        ("怎么退货", "returns"),
        ("I forgot my password", "password"),
        ("How long until my refund arrives?", "refund"),
        ("ＨＯＷ ＤＯ Ｉ ＲＥＳＥＴ ＭＹ ＰＡＳＳＷＯＲＤ", "password"),  # full-width, upper case
        ("password重置怎么弄 forgot my password", "password"),  # mixed languages
    ],
)
def test_faq_match_finds_the_entry(tenant_a, shop_faq, query: str, expected: str) -> None:
    match = faq_match(tenant=tenant_a, query=query)
    assert match is not None
    assert match.entry_id == shop_faq[expected].pk
    assert 0.0 <= match.confidence <= 1.0


def test_an_exact_phrasing_is_answered_directly(tenant_a, shop_faq) -> None:
    match = faq_match(tenant=tenant_a, query="  我的包裹几天能到 ")
    assert match is not None
    assert match.confidence == 1.0
    assert match.answers_directly
    assert match.answer == shop_faq["arrival"].answer


def test_unrelated_questions_are_not_answered_directly(tenant_a, shop_faq) -> None:
    assert faq_match(tenant=tenant_a, query="Do you sell garden furniture?") is None
    weak = faq_match(tenant=tenant_a, query="my account shows a strange password prompt on TV")
    assert weak is None or not weak.answers_directly
    assert faq_match(tenant=tenant_a, query="   ") is None


def test_confidence_orders_good_matches_above_weak_ones(tenant_a, shop_faq) -> None:
    strong = faq_match(tenant=tenant_a, query="I forgot my password, how do I reset it")
    weak = faq_match(tenant=tenant_a, query="password")
    assert strong is not None and weak is not None
    assert strong.confidence > weak.confidence


def test_the_threshold_is_the_tenants(tenant_a, shop_faq) -> None:
    query = "包裹大概几天能送到啊"
    match = faq_match(tenant=tenant_a, query=query)
    assert match is not None
    tenant_a.faq_threshold = max(0.0, match.confidence - 0.01)
    assert faq_match(tenant=tenant_a, query=query).answers_directly
    tenant_a.faq_threshold = min(1.0, match.confidence + 0.01)
    assert not faq_match(tenant=tenant_a, query=query).answers_directly


def test_other_tenants_and_disabled_entries_never_match(tenant_a, tenant_b, shop_faq) -> None:
    factories.KnowledgeEntryFactory(tenant=tenant_b, question="Do you sell garden furniture?")
    services.knowledge_changed(tenant_id=tenant_b.pk)
    assert faq_match(tenant=tenant_a, query="Do you sell garden furniture?") is None
    assert faq_match(tenant=tenant_b, query="Do you sell garden furniture?").confidence == 1.0

    services.knowledge_entries_set_enabled(
        tenant=tenant_a,
        entries=type(shop_faq["password"]).objects.filter(pk=shop_faq["password"].pk),
        enabled=False,
    )
    match = faq_match(tenant=tenant_a, query="How do I reset my password?")
    assert match is None or match.entry_id != shop_faq["password"].pk


def test_console_edits_are_visible_to_the_next_query(admin_client_a, tenant_a, shop_faq) -> None:
    entry = shop_faq["refund"]
    assert faq_match(tenant=tenant_a, query="Can I pay with PayPal?") is None
    response = admin_client_a.post(
        reverse("admin:knowledge_knowledgeentry_change", args=[entry.pk]),
        {
            "question": "Can I pay with PayPal?",
            "alternate_questions": "",
            "answer": "Yes, PayPal is accepted.",
            "tags": "",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    match = faq_match(tenant=tenant_a, query="Can I pay with PayPal?")
    assert match is not None and match.entry_id == entry.pk and match.answers_directly

    admin_client_a.post(
        reverse("admin:knowledge_knowledgeentry_delete", args=[entry.pk]), {"post": "yes"}
    )
    assert faq_match(tenant=tenant_a, query="Can I pay with PayPal?") is None


def test_candidates_rank_entries_best_first(tenant_a, shop_faq) -> None:
    candidates = faq_candidates(tenant=tenant_a, query="refund password", k=3)
    assert {c.entry_id for c in candidates} == {shop_faq["refund"].pk, shop_faq["password"].pk}
    assert candidates[0].score >= candidates[1].score
    assert candidates[1].confidence == 0.0


def test_knowledge_search_ranks_entries_and_chunks(tenant_a, shop_faq) -> None:
    document = factories.DocumentFactory(
        tenant=tenant_a, title="Shipping policy", status=Document.Status.READY
    )
    factories.ChunkFactory(
        document=document,
        heading="Remote areas",
        content="Parcels to Xinjiang and Tibet take 7–10 days and cost ¥10 extra.",
    )
    factories.ChunkFactory(document=document, heading="Other", content="Unrelated text.")
    services.knowledge_changed(tenant_id=tenant_a.pk)

    hits = knowledge_search(tenant=tenant_a, query="How many days to Tibet?", k=3)
    assert hits[0].kind == "chunk"
    assert hits[0].title == "Shipping policy · Remote areas"
    assert "Tibet" in hits[0].text
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    refund_hits = knowledge_search(tenant=tenant_a, query="refund card working days", k=2)
    assert refund_hits[0].kind == "faq" and refund_hits[0].id == shop_faq["refund"].pk
    assert knowledge_search(tenant=tenant_a, query="refund", k=0) == []


def test_disabled_documents_are_not_searched_but_reprocessed_ones_are(tenant_a) -> None:
    disabled = factories.DocumentFactory(tenant=tenant_a, enabled=False)
    factories.ChunkFactory(document=disabled, content="Tibet delivery takes ten days.")
    services.knowledge_changed(tenant_id=tenant_a.pk)
    assert knowledge_search(tenant=tenant_a, query="Tibet delivery", k=3) == []

    # Being processed again: its current chunks stay searchable until replaced.
    reprocessing = factories.DocumentFactory(tenant=tenant_a, status=Document.Status.PROCESSING)
    chunk = factories.ChunkFactory(document=reprocessing, content="Tibet delivery takes ten days.")
    services.knowledge_changed(tenant_id=tenant_a.pk)
    assert [hit.id for hit in knowledge_search(tenant=tenant_a, query="Tibet delivery", k=3)] == [
        chunk.pk
    ]
