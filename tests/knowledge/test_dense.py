"""Dense retrieval: vectors from the tenant's embedding endpoint, cached, fused with BM25."""

import pytest

from knowledge import services
from knowledge.dense import text_digest
from knowledge.models import Document, EmbeddingVector
from knowledge.search import faq_match, knowledge_search, registry
from llm.embeddings import local_embeddings_available
from llm.gateway import GatewayError
from tests.support import factories


@pytest.fixture(autouse=True)
def _fresh_registry():
    registry.forget()
    yield
    registry.forget()


@pytest.fixture
def embedding_tenant(tenant_a, mock_llm):
    factories.LLMProviderFactory(
        tenant=tenant_a, base_url=mock_llm.base_url, embedding_model="mock-embed"
    )
    return tenant_a


def _embedding_requests(mock_llm) -> list[list[str]]:
    return [r["body"]["input"] for r in mock_llm.requests() if r["path"] == "/v1/embeddings"]


def test_vectors_are_computed_once_per_text_and_follow_edits(embedding_tenant, mock_llm) -> None:
    entry = factories.KnowledgeEntryFactory(
        tenant=embedding_tenant,
        question="How do I reset my password?",
        alternate_questions=["I forgot my password"],
    )
    assert services.knowledge_embeddings_refresh(tenant_id=embedding_tenant.pk) == 2
    stored = EmbeddingVector.objects.filter(tenant=embedding_tenant)
    assert set(stored.values_list("text_hash", flat=True)) == {
        text_digest("How do I reset my password?"),
        text_digest("I forgot my password"),
    }
    assert stored.first().dimensions == 64
    assert _embedding_requests(mock_llm) == [
        ["How do I reset my password?", "I forgot my password"]
    ]

    assert services.knowledge_embeddings_refresh(tenant_id=embedding_tenant.pk) == 0

    entry.alternate_questions = ["I can't remember my password"]
    services.knowledge_entry_save(entry=entry)
    assert services.knowledge_embeddings_refresh(tenant_id=embedding_tenant.pk) == 1
    assert stored.count() == 2  # the replaced phrasing's vector is gone
    assert not stored.filter(text_hash=text_digest("I forgot my password")).exists()


def test_a_change_schedules_embedding_after_commit(
    embedding_tenant, mock_llm, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        services.knowledge_entry_save(
            entry=factories.KnowledgeEntryFactory.build(
                tenant=embedding_tenant, question="Do you ship to Canada?", answer="Yes."
            )
        )
    assert EmbeddingVector.objects.filter(tenant=embedding_tenant).count() == 1


def test_search_uses_the_vectors_and_embeds_the_query(embedding_tenant, mock_llm) -> None:
    entry = factories.KnowledgeEntryFactory(
        tenant=embedding_tenant, question="How do I reset my password?", answer="Use the link."
    )
    document = factories.DocumentFactory(tenant=embedding_tenant, status=Document.Status.READY)
    chunk = factories.ChunkFactory(document=document, content="Parcels to Tibet take ten days.")
    services.knowledge_embeddings_refresh(tenant_id=embedding_tenant.pk)
    mock_llm.clear_requests()

    match = faq_match(tenant=embedding_tenant, query="reset password please")
    assert match is not None and match.entry_id == entry.pk
    index = registry.get(embedding_tenant.pk)
    assert index is not None and index.dense is not None
    assert _embedding_requests(mock_llm) == [["reset password please"]]
    assert 0 < match.confidence < 1

    hits = knowledge_search(tenant=embedding_tenant, query="Tibet parcels", k=2)
    assert hits[0].id == chunk.pk
    # Two rankings (BM25 and dense) agree on the chunk: its fused score is the sum of both.
    assert hits[0].score == pytest.approx(2 / 61)


def test_an_embedding_outage_degrades_to_lexical_search(embedding_tenant, mock_llm) -> None:
    entry = factories.KnowledgeEntryFactory(
        tenant=embedding_tenant, question="How do I reset my password?", answer="Use the link."
    )
    services.knowledge_embeddings_refresh(tenant_id=embedding_tenant.pk)
    mock_llm.configure(fault="500")
    match = faq_match(tenant=embedding_tenant, query="reset password please")
    assert match is not None and match.entry_id == entry.pk

    factories.KnowledgeEntryFactory(tenant=embedding_tenant, question="New question")
    with pytest.raises(GatewayError) as failure:
        services.knowledge_embeddings_refresh(tenant_id=embedding_tenant.pk)
    assert failure.value.retryable


def test_without_an_embedder_nothing_is_embedded(tenant_a, settings) -> None:
    settings.KNOWLEDGE_EMBEDDINGS = "off"
    factories.KnowledgeEntryFactory(tenant=tenant_a, question="Anything?")
    assert services.knowledge_embeddings_refresh(tenant_id=tenant_a.pk) == 0
    assert not services.dense_retrieval_possible(tenant_id=tenant_a.pk)
    assert faq_match(tenant=tenant_a, query="Anything?") is not None
    assert registry.get(tenant_a.pk).dense is None


@pytest.mark.skipif(not local_embeddings_available(), reason="local-embeddings extra not installed")
def test_the_local_model_finds_paraphrases_without_shared_words(tenant_a, settings) -> None:
    settings.KNOWLEDGE_EMBEDDINGS = "local"
    entry = factories.KnowledgeEntryFactory(
        tenant=tenant_a, question="How do I reset my password?", answer="Use the link."
    )
    factories.KnowledgeEntryFactory(
        tenant=tenant_a, question="When will my parcel arrive?", answer="In 3 days."
    )
    factories.KnowledgeEntryFactory(tenant=tenant_a, question="退货怎么办？", answer="申请退货。")
    # Chinese phrasings are not embedded by the English-only local model.
    assert services.knowledge_embeddings_refresh(tenant_id=tenant_a.pk) == 2
    match = faq_match(tenant=tenant_a, query="I can't remember my login credentials")
    assert match is not None and match.entry_id == entry.pk
    assert faq_match(tenant=tenant_a, query="退货") is not None  # Chinese stays lexical
