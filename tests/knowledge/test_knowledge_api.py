"""The knowledge base over the REST API: FAQ entries, bulk upsert, documents and chunks, hit
testing. Every write is searchable by the next question, as from the console."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from knowledge import services
from knowledge.models import Chunk, Document, KnowledgeEntry
from knowledge.search import IndexRegistry, faq_match, knowledge_search
from tenants.models import ApiKey, Tenant
from tests.support import factories
from tests.support.api import api_client
from tests.support.documents import make_pdf

pytestmark = pytest.mark.usefixtures("fresh_registry")

FAQS = "/api/v1/knowledge/faqs"
BULK = "/api/v1/knowledge/faqs/bulk-upsert"
DOCUMENTS = "/api/v1/knowledge/documents"
RETRIEVE = "/api/v1/knowledge/retrieve"

RETURNS_MD = """# Returns

You can return any unused item within 30 days of delivery.

## Refunds

Refunds go back to the original payment method within 5 business days.
"""


@pytest.fixture
def api(tenant_a) -> APIClient:
    return api_client(tenant_a, ApiKey.Scope.KNOWLEDGE_READ, ApiKey.Scope.KNOWLEDGE_WRITE)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path) -> None:
    settings.MEDIA_ROOT = tmp_path


def _version(tenant: Tenant) -> int:
    tenant.refresh_from_db(fields=["knowledge_version"])
    return tenant.knowledge_version


def _answer(tenant: Tenant, question: str) -> str | None:
    match = faq_match(tenant=tenant, query=question)
    return match.answer if match is not None and match.answers_directly else None


# FAQ entries -------------------------------------------------------------------------------------


def test_a_faq_created_edited_and_deleted_through_the_api_answers_the_next_question(
    api, tenant_a
) -> None:
    another_process = IndexRegistry()
    assert another_process.get(tenant_a.pk) is not None  # its index predates the entry

    created = api.post(
        FAQS,
        {
            "question": "Can I pay with a gift card?",
            "alternate_questions": ["Do you take gift cards?"],
            "answer": "Yes, at checkout.",
            "tags": ["payment", "payment"],
            "external_key": "faq-7",
        },
        format="json",
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["question"] == "Can I pay with a gift card?"
    assert body["alternate_questions"] == ["Do you take gift cards?"]
    assert body["tags"] == ["payment"]
    assert body["enabled"] is True
    assert body["external_key"] == "faq-7"
    assert body["hit_count"] == 0 and body["last_hit_at"] is None
    assert body["created_at"].endswith("Z")
    assert "tenant" not in body
    assert _answer(tenant_a, "Do you take gift cards?") == "Yes, at checkout."
    entry_ids = {entry.id for entry in another_process.get(tenant_a.pk).entries}
    assert body["id"] in entry_ids

    url = f"{FAQS}/{body['id']}"
    edited = api.patch(url, {"answer": "Yes, online and in stores."}, format="json")
    assert edited.status_code == 200
    assert edited.json()["answer"] == "Yes, online and in stores."
    assert edited.json()["question"] == "Can I pay with a gift card?"
    assert _answer(tenant_a, "Do you take gift cards?") == "Yes, online and in stores."

    assert api.get(url).json()["answer"] == "Yes, online and in stores."
    assert api.delete(url).status_code == 204
    assert faq_match(tenant=tenant_a, query="Do you take gift cards?") is None
    assert api.get(url).status_code == 404


def test_faq_validation_names_each_field(api, tenant_a) -> None:
    response = api.post(
        FAQS,
        {"question": "", "alternate_questions": ["fine", "also fine", ""], "tags": "billing"},
        format="json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {"question", "alternate_questions.2", "answer", "tags"}
    assert not KnowledgeEntry.objects.filter(tenant=tenant_a).exists()


def test_a_taken_external_key_is_refused_on_its_field(api, tenant_a, tenant_b) -> None:
    factories.KnowledgeEntryFactory(tenant=tenant_a, external_key="faq-1")
    factories.KnowledgeEntryFactory(tenant=tenant_b, external_key="faq-2")
    entry = factories.KnowledgeEntryFactory(tenant=tenant_a)

    taken = api.post(FAQS, {"question": "Q?", "answer": "A.", "external_key": "faq-1"})
    renamed = api.patch(f"{FAQS}/{entry.pk}", {"external_key": "faq-1"}, format="json")
    other_tenants_key = api.post(FAQS, {"question": "Q?", "answer": "A.", "external_key": "faq-2"})

    assert taken.status_code == renamed.status_code == 400
    assert list(taken.json()["error"]["fields"]) == ["external_key"]
    assert list(renamed.json()["error"]["fields"]) == ["external_key"]
    assert other_tenants_key.status_code == 201  # keys are unique per tenant


def test_faq_list_filters_and_pages(api, tenant_a, tenant_b) -> None:
    invoice = factories.KnowledgeEntryFactory(
        tenant=tenant_a, question="How do I get an invoice?", tags=["billing"]
    )
    disabled = factories.KnowledgeEntryFactory(
        tenant=tenant_a, question="Old shipping rates", enabled=False, external_key="ship-1"
    )
    plain = factories.KnowledgeEntryFactory(tenant=tenant_a, question="Opening hours")
    factories.KnowledgeEntryFactory(tenant=tenant_b, question="Tenant B's invoice question")

    def ids(**params) -> list[int]:
        response = api.get(FAQS, params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["data"]]

    assert ids() == [plain.pk, disabled.pk, invoice.pk]
    assert ids(q="invoice") == [invoice.pk]
    assert ids(tag="billing") == [invoice.pk]
    assert ids(enabled="false") == [disabled.pk]
    assert ids(enabled="true") == [plain.pk, invoice.pk]
    assert ids(external_key="ship-1") == [disabled.pk]

    first = api.get(FAQS, {"limit": 2}).json()
    assert first["has_more"] is True
    rest = api.get(FAQS, {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [row["id"] for row in rest["data"]] == [invoice.pk]
    assert rest["has_more"] is False and rest["next_cursor"] is None

    refused = api.get(FAQS, {"enabled": "maybe"})
    assert refused.status_code == 400
    assert list(refused.json()["error"]["fields"]) == ["enabled"]


# Bulk upsert -------------------------------------------------------------------------------------


def test_bulk_upsert_creates_updates_and_leaves_unchanged_with_one_version_change(
    api, tenant_a
) -> None:
    kept = factories.KnowledgeEntryFactory(
        tenant=tenant_a,
        external_key="k-1",
        question="How long is delivery?",
        answer="3 days.",
        tags=["shipping"],
    )
    changed = factories.KnowledgeEntryFactory(
        tenant=tenant_a, external_key="k-2", question="Returns?", answer="30 days."
    )
    before = _version(tenant_a)

    response = api.post(
        BULK,
        {
            "items": [
                {"external_key": "k-1", "question": "How long is delivery?", "answer": "3 days."},
                {"external_key": "k-2", "question": "Returns?", "answer": "Within 60 days."},
                {
                    "external_key": "k-3",
                    "question": "Do you ship abroad?",
                    "answer": "Yes, worldwide.",
                    "alternate_questions": ["International shipping?"],
                    "enabled": False,
                },
            ]
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["updated"], body["unchanged"]) == (1, 1, 1)
    new = KnowledgeEntry.objects.get(tenant=tenant_a, external_key="k-3")
    assert body["items"] == [
        {"external_key": "k-1", "id": kept.pk, "result": "unchanged"},
        {"external_key": "k-2", "id": changed.pk, "result": "updated"},
        {"external_key": "k-3", "id": new.pk, "result": "created"},
    ]
    assert (new.alternate_questions, new.enabled) == (["International shipping?"], False)
    kept.refresh_from_db()
    assert kept.tags == ["shipping"]  # fields an item leaves out keep their values
    assert _version(tenant_a) == before + 1
    assert _answer(tenant_a, "Returns?") == "Within 60 days."


def test_a_bulk_upsert_with_one_bad_item_writes_nothing_and_names_the_item(api, tenant_a) -> None:
    entry = factories.KnowledgeEntryFactory(tenant=tenant_a, external_key="k-1", answer="Old.")
    before = _version(tenant_a)

    response = api.post(
        BULK,
        {
            "items": [
                {"external_key": "k-1", "question": "Q1?", "answer": "New."},
                {"external_key": "k-2", "question": "Q2?", "answer": "A2."},
                {"external_key": "k-3", "question": "Q3?", "answer": ""},
                {"external_key": "k-2", "question": "Q4?", "answer": "A4."},
                {"question": "Q5?", "answer": "A5.", "tags": ["ok", 7, ["no"]]},
            ]
        },
        format="json",
    )

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"items.2.answer", "items.4.external_key", "items.4.tags.2"}
    entry.refresh_from_db()
    assert entry.answer == "Old."
    assert KnowledgeEntry.objects.filter(tenant=tenant_a).count() == 1
    assert _version(tenant_a) == before

    duplicate = api.post(
        BULK,
        {
            "items": [
                {"external_key": "k-2", "question": "Q2?", "answer": "A2."},
                {"external_key": "k-2", "question": "Q4?", "answer": "A4."},
            ]
        },
        format="json",
    )
    assert duplicate.status_code == 400
    assert list(duplicate.json()["error"]["fields"]) == ["items.1.external_key"]
    assert KnowledgeEntry.objects.filter(tenant=tenant_a).count() == 1


def test_a_bulk_upsert_has_at_least_one_and_at_most_1000_items(api) -> None:
    empty = api.post(BULK, {"items": []}, format="json")
    item = {"question": "Q?", "answer": "A."}
    too_many = api.post(
        BULK,
        {"items": [{**item, "external_key": f"k-{n}"} for n in range(1001)]},
        format="json",
    )

    assert empty.status_code == too_many.status_code == 400
    assert list(empty.json()["error"]["fields"]) == ["items"]
    assert list(too_many.json()["error"]["fields"]) == ["items"]


def test_bulk_upsert_only_touches_the_keys_own_tenant(api, tenant_a, tenant_b) -> None:
    theirs = factories.KnowledgeEntryFactory(tenant=tenant_b, external_key="k-1", answer="B's.")

    response = api.post(
        BULK, {"items": [{"external_key": "k-1", "question": "Q?", "answer": "A's."}]}, "json"
    )

    assert response.json()["items"][0]["result"] == "created"
    theirs.refresh_from_db()
    assert theirs.answer == "B's."


# Documents and chunks ----------------------------------------------------------------------------


def test_a_document_from_text_is_processed_into_chunks_with_its_progress_shown(
    api, tenant_a, on_commit
) -> None:
    with on_commit():
        created = api.post(
            DOCUMENTS,
            {"title": "Returns policy", "format": "markdown", "content": RETURNS_MD},
            format="json",
        )
        assert created.status_code == 202, created.content
        assert (created.json()["status"], created.json()["progress"]) == ("pending", 0)

    document_url = f"{DOCUMENTS}/{created.json()['id']}"
    document = api.get(document_url).json()
    assert (document["status"], document["progress"], document["error"]) == ("ready", 100, "")
    assert document["file_name"] is None
    assert document["format"] == "markdown"
    chunks = api.get(f"{document_url}/chunks").json()
    assert [(c["ordinal"], c["heading"]) for c in chunks["data"]] == [
        (0, "Returns"),
        (1, "Refunds"),
    ]
    assert document["chunk_count"] == 2
    assert chunks["data"][0]["document_id"] == document["id"]
    hits = knowledge_search(tenant=tenant_a, query="original payment method", k=1)
    assert hits[0].id == chunks["data"][1]["id"]


@pytest.mark.parametrize(
    ("name", "data", "content_type", "chunk"),
    [
        ("returns.md", RETURNS_MD.encode(), "text/markdown", (0, "Returns")),
        (
            "guide.pdf",
            make_pdf([["Intro."], ["Shipping", "We ship worldwide."]], outline={"Shipping": 1}),
            "application/pdf",
            (1, "Shipping"),
        ),
    ],
)
def test_an_uploaded_file_is_processed(
    api, tenant_a, on_commit, name, data, content_type, chunk
) -> None:
    upload = SimpleUploadedFile(name, data, content_type=content_type)

    with on_commit():
        created = api.post(DOCUMENTS, {"file": upload}, format="multipart")

    assert created.status_code == 202, created.content
    assert created.json()["file_name"] == name
    assert created.json()["title"] == name.rsplit(".", 1)[0]
    document = Document.objects.get(pk=created.json()["id"])
    assert document.tenant_id == tenant_a.pk
    assert document.status == Document.Status.READY
    assert document.format == ("pdf" if name.endswith(".pdf") else "markdown")
    chunks = api.get(f"{DOCUMENTS}/{document.pk}/chunks").json()["data"]
    assert chunk in [(c["ordinal"], c["heading"]) for c in chunks]


def test_uploads_are_checked_for_type_and_size(api, tenant_a, monkeypatch) -> None:
    wrong_type = api.post(
        DOCUMENTS, {"file": SimpleUploadedFile("sheet.xlsx", b"PK\x03\x04")}, format="multipart"
    )
    not_a_pdf = api.post(
        DOCUMENTS, {"file": SimpleUploadedFile("fake.pdf", b"hello")}, format="multipart"
    )
    monkeypatch.setattr(services, "MAX_DOCUMENT_BYTES", 10)
    too_large = api.post(
        DOCUMENTS, {"file": SimpleUploadedFile("big.md", b"# Big\n\n" + b"x" * 20)}, "multipart"
    )
    no_text = api.post(DOCUMENTS, {"title": "Empty", "content": "  "}, format="json")
    pdf_as_text = api.post(
        DOCUMENTS, {"title": "T", "format": "pdf", "content": "x"}, format="json"
    )

    for response in (wrong_type, not_a_pdf, too_large):
        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == ["file"]
    assert "PDF, Markdown" in wrong_type.json()["error"]["fields"]["file"][0]
    assert "not a PDF" in not_a_pdf.json()["error"]["fields"]["file"][0]
    assert "20 MB" in too_large.json()["error"]["fields"]["file"][0]
    assert list(no_text.json()["error"]["fields"]) == ["content"]
    assert list(pdf_as_text.json()["error"]["fields"]) == ["format"]
    assert not Document.objects.filter(tenant=tenant_a).exists()


def test_a_document_is_renamed_disabled_and_deleted_out_of_search(api, tenant_a, on_commit) -> None:
    with on_commit():
        created = api.post(DOCUMENTS, {"title": "Returns", "content": RETURNS_MD}, format="json")
    url = f"{DOCUMENTS}/{created.json()['id']}"
    assert knowledge_search(tenant=tenant_a, query="unused item", k=3)

    with on_commit():
        renamed = api.patch(url, {"title": "Returns and refunds"}, format="json")
    assert renamed.status_code == 200
    assert renamed.json()["title"] == "Returns and refunds"
    assert renamed.json()["status"] == "ready"  # a new title is not a new source
    assert knowledge_search(tenant=tenant_a, query="unused item", k=1)[0].title.startswith(
        "Returns and refunds"
    )

    with on_commit():
        assert api.patch(url, {"enabled": False}, format="json").json()["enabled"] is False
    assert knowledge_search(tenant=tenant_a, query="unused item", k=3) == []

    with on_commit():
        assert api.patch(url, {"enabled": True}, format="json").status_code == 200
        assert api.delete(url).status_code == 204
    assert knowledge_search(tenant=tenant_a, query="unused item", k=3) == []
    assert not Chunk.objects.filter(tenant=tenant_a).exists()
    assert api.get(url).status_code == 404


def test_document_list_filters_by_status(api, tenant_a) -> None:
    ready = factories.DocumentFactory(tenant=tenant_a, status=Document.Status.READY)
    failed = factories.DocumentFactory(tenant=tenant_a, status=Document.Status.FAILED)

    def ids(**params) -> list[int]:
        return [row["id"] for row in api.get(DOCUMENTS, params).json()["data"]]

    assert ids() == [failed.pk, ready.pk]
    assert ids(status="ready") == [ready.pk]
    assert api.get(DOCUMENTS, {"status": "lost"}).status_code == 400


def test_an_edited_chunk_is_searchable_by_the_next_question(api, tenant_a) -> None:
    document = factories.DocumentFactory(tenant=tenant_a, status=Document.Status.READY)
    first = factories.ChunkFactory(document=document, ordinal=0, content="Parcels ship daily.")
    second = factories.ChunkFactory(document=document, ordinal=1, content="Returns: 30 days.")
    assert knowledge_search(tenant=tenant_a, query="gift wrapping", k=3) == []

    url = f"{DOCUMENTS}/{document.pk}/chunks/{second.pk}"
    edited = api.patch(
        url, {"heading": "Extras", "content": "Gift wrapping costs 2 euros."}, format="json"
    )

    assert edited.status_code == 200, edited.content
    assert (edited.json()["heading"], edited.json()["content"]) == (
        "Extras",
        "Gift wrapping costs 2 euros.",
    )
    hits = knowledge_search(tenant=tenant_a, query="gift wrapping", k=3)
    assert [hit.id for hit in hits] == [second.pk]
    assert api.get(url).json()["content"] == "Gift wrapping costs 2 euros."
    listed = api.get(f"{DOCUMENTS}/{document.pk}/chunks").json()["data"]
    assert [row["id"] for row in listed] == [first.pk, second.pk]  # document order

    empty = api.patch(url, {"content": "   "}, format="json")
    assert empty.status_code == 400
    assert list(empty.json()["error"]["fields"]) == ["content"]


# Hit testing -------------------------------------------------------------------------------------


def test_retrieve_returns_the_faq_decision_and_scored_hits(api, tenant_a) -> None:
    entry = factories.KnowledgeEntryFactory(
        tenant=tenant_a,
        question="How do I get an invoice?",
        alternate_questions=["Can I get a VAT invoice?"],
        answer="Open the order and click Request invoice.",
    )
    document = factories.DocumentFactory(tenant=tenant_a, title="Billing guide")
    chunk = factories.ChunkFactory(
        document=document,
        heading="Invoices",
        content="A VAT invoice is issued for every order on request.",
    )

    response = api.post(RETRIEVE, {"query": "Can I get a VAT invoice?", "k": 5}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["faq"] == {
        "entry_id": entry.pk,
        "question": "How do I get an invoice?",
        "matched_phrasing": "Can I get a VAT invoice?",
        "confidence": 1.0,
        "answers_directly": True,
        "threshold": tenant_a.faq_threshold,
    }
    assert body["faq_candidates"][0]["entry_id"] == entry.pk
    kinds = {(hit["kind"], hit["id"]): hit for hit in body["hits"]}
    assert set(kinds) == {("faq", entry.pk), ("chunk", chunk.pk)}
    assert kinds[("chunk", chunk.pk)]["document_id"] == document.pk
    assert kinds[("chunk", chunk.pk)]["title"] == "Billing guide · Invoices"
    assert kinds[("faq", entry.pk)]["document_id"] is None
    assert all(hit["score"] > 0 for hit in body["hits"])

    nothing = api.post(RETRIEVE, {"query": "Moon landing schedule"}, format="json").json()
    assert nothing["faq"]["entry_id"] is None
    assert nothing["faq"]["answers_directly"] is False
    assert nothing["hits"] == []

    refused = api.post(RETRIEVE, {"query": "", "k": 21}, format="json")
    assert set(refused.json()["error"]["fields"]) == {"query", "k"}


# Tenants and scopes ------------------------------------------------------------------------------


def test_another_tenants_knowledge_is_not_found(api, tenant_a, tenant_b) -> None:
    entry = factories.KnowledgeEntryFactory(tenant=tenant_b, question="Tenant B's secret?")
    document = factories.DocumentFactory(tenant=tenant_b)
    chunk = factories.ChunkFactory(document=document)
    own = factories.DocumentFactory(tenant=tenant_a)

    requests = [
        *((method, f"{FAQS}/{entry.pk}") for method in ("get", "patch", "delete")),
        *((method, f"{DOCUMENTS}/{document.pk}") for method in ("get", "patch", "delete")),
        ("get", f"{DOCUMENTS}/{document.pk}/chunks"),
        *((method, f"{DOCUMENTS}/{document.pk}/chunks/{chunk.pk}") for method in ("get", "patch")),
        *((method, f"{DOCUMENTS}/{own.pk}/chunks/{chunk.pk}") for method in ("get", "patch")),
    ]
    for method, url in requests:
        response = getattr(api, method)(url, {"title": "Mine now", "content": "Mine now."})
        assert response.status_code == 404, (method, url)
        assert response.json()["error"]["code"] == "not_found"
    assert api.get(FAQS).json()["data"] == []
    assert api.get(DOCUMENTS).json()["data"][0]["id"] == own.pk
    retrieved = api.post(RETRIEVE, {"query": "Tenant B's secret?"}, format="json").json()
    assert retrieved["faq"]["entry_id"] is None
    assert KnowledgeEntry.objects.filter(pk=entry.pk).exists()
    document.refresh_from_db()
    chunk.refresh_from_db()
    assert (document.title, chunk.content) != ("Mine now", "Mine now.")


def test_a_read_key_cannot_write(tenant_a) -> None:
    reader = api_client(tenant_a, ApiKey.Scope.KNOWLEDGE_READ)
    entry = factories.KnowledgeEntryFactory(tenant=tenant_a)
    document = factories.DocumentFactory(tenant=tenant_a)
    chunk = factories.ChunkFactory(document=document)

    writes = [
        reader.post(FAQS, {"question": "Q?", "answer": "A."}, format="json"),
        reader.patch(f"{FAQS}/{entry.pk}", {"answer": "B."}, format="json"),
        reader.delete(f"{FAQS}/{entry.pk}"),
        reader.post(BULK, {"items": []}, format="json"),
        reader.post(DOCUMENTS, {"title": "T", "content": "x"}, format="json"),
        reader.patch(f"{DOCUMENTS}/{document.pk}", {"title": "U"}, format="json"),
        reader.delete(f"{DOCUMENTS}/{document.pk}"),
        reader.patch(f"{DOCUMENTS}/{document.pk}/chunks/{chunk.pk}", {"content": "y"}, "json"),
    ]

    for response in writes:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "missing_scope"
    assert reader.get(f"{FAQS}/{entry.pk}").status_code == 200
    assert reader.post(RETRIEVE, {"query": "Q?"}, format="json").status_code == 200
    no_knowledge = api_client(tenant_a, ApiKey.Scope.CONVERSATIONS_READ)
    assert no_knowledge.get(FAQS).json()["error"]["code"] == "missing_scope"
    entry.refresh_from_db()
    assert entry.answer != "B."
