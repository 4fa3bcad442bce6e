"""Documents: text out of each format, overlapping chunks, processing in Celery, the console."""

import io
import re
import time
from itertools import pairwise

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation
from pypdf import PdfWriter

from knowledge import ingest, services, tasks
from knowledge.ingest import IngestError, split_into_chunks
from knowledge.models import Chunk, Document
from tests.support import factories
from tests.support.documents import make_pdf

ADD_URL = reverse("admin:knowledge_document_add")
CHANGELIST_URL = reverse("admin:knowledge_document_changelist")

RETURNS_MD = """# Returns

You can return any unused item within 30 days of delivery. Start a return from the order page.

## Refunds

Refunds go back to the original payment method within 5 business days.

## 退款

退款将在三个工作日内原路返回。如有疑问，请联系客服。
"""


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path) -> None:
    settings.MEDIA_ROOT = tmp_path


def overlap(previous: str, following: str) -> str:
    """The longest end of ``previous`` that ``following`` starts with."""
    for size in range(min(len(previous), len(following)), 0, -1):
        if previous.endswith(following[:size]):
            return following[:size]
    return ""


# Extraction ------------------------------------------------------------------------------------


def test_markdown_is_kept_as_text_with_its_headings() -> None:
    text = (
        "Intro line\r\n\r\n# Returns #\n\nBody.\n\nShipping\n========\n\n```sh\n# a comment\n```\n"
    )

    extracted = ingest.extract_markdown(text)

    assert extracted.headings == ("Returns", "Shipping")
    assert extracted.text == (
        "Intro line\n\n# Returns\n\nBody.\n\n# Shipping\n\n```sh\n# a comment\n```"
    )


def test_plain_text_is_decoded_from_utf8_and_gb18030_and_binary_is_refused() -> None:
    assert ingest.extract_text("退货政策\r\n".encode("gb18030"), format="text").text == "退货政策"
    assert ingest.extract_text(b"\xef\xbb\xbfHello\n", format="text").text == "Hello"
    with pytest.raises(IngestError, match="not readable text"):
        ingest.extract_text(b"\x00\x01binary\x00", format="text")


def test_html_keeps_headings_and_paragraphs_and_drops_scripts_styles_and_navigation() -> None:
    html = """<!doctype html><html><head><title>Help</title><style>p {color: red}</style></head>
    <body><nav><a href="/">Home</a> <a href="/about">About</a></nav>
    <h1>Returns &amp; refunds</h1>
    <p>You can return items
       within 30 days.<br>Use the form.</p>
    <!-- drafted by marketing -->
    <script>track("page")</script>
    <ul><li>Unused</li><li>In the <b>original</b> box</li></ul>
    <h2>退货</h2><div><p>七天
    无理由退货。</p></div>
    <table><tr><th>Item</th><th>Days</th></tr><tr><td>Shoes</td><td>30</td></tr></table>
    </body></html>"""

    extracted = ingest.extract_text(html.encode(), format="html")

    assert extracted.headings == ("Returns & refunds", "退货")
    assert extracted.text == (
        "# Returns & refunds\n\n"
        "You can return items within 30 days.\nUse the form.\n\n"
        "- Unused\n\n- In the original box\n\n"
        "## 退货\n\n七天无理由退货。\n\n"
        "Item | Days\nShoes | 30"
    )


def test_html_in_a_declared_charset_is_decoded_with_it() -> None:
    page = '<html><head><meta charset="gbk"></head><body><p>退货政策</p></body></html>'

    assert ingest.extract_text(page.encode("gbk"), format="html").text == "退货政策"


def test_pdf_text_is_read_page_by_page_with_outline_entries_as_headings() -> None:
    data = make_pdf(
        [
            ["You can return any unused item within thirty days of", "delivery.", "No receipt?"],
            ["Shipping", "We ship worldwide."],
        ],
        outline={"Shipping": 1},
    )
    pages_done: list[tuple[int, int]] = []

    extracted = ingest.extract_text(
        data, format="pdf", on_page=lambda done, total: pages_done.append((done, total))
    )

    assert pages_done == [(1, 2), (2, 2)]
    assert extracted.headings == ("Shipping",)
    assert extracted.text == (
        "You can return any unused item within thirty days of delivery.\n\n"
        "No receipt?\n\n# Shipping\n\nWe ship worldwide."
    )


def test_damaged_and_password_protected_pdfs_are_refused_with_a_plain_message() -> None:
    data = make_pdf([["Hello."]])
    with pytest.raises(IngestError, match="could not be read as a PDF") as damaged:
        ingest.extract_text(data[: len(data) // 2], format="pdf")
    assert "Traceback" not in damaged.value.message

    writer = PdfWriter(clone_from=io.BytesIO(data))
    writer.encrypt("secret", algorithm="AES-128")
    locked = io.BytesIO()
    writer.write(locked)
    with pytest.raises(IngestError, match="protected by a password"):
        ingest.extract_text(locked.getvalue(), format="pdf")


def test_a_pdf_without_text_asks_for_ocr() -> None:
    with pytest.raises(IngestError, match="OCR"):
        ingest.extract_text(make_pdf([[]]), format="pdf")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("guide.md", "markdown"),
        ("Guide.MARKDOWN", "markdown"),
        ("notes.txt", "text"),
        ("page.htm", "html"),
        ("C:\\docs\\page.html", "html"),
        ("manual.pdf", "pdf"),
        ("slides.pptx", None),
        ("README", None),
    ],
)
def test_the_format_is_guessed_from_the_file_extension(name: str, expected: str | None) -> None:
    assert ingest.format_for_filename(name) == expected


# Chunking --------------------------------------------------------------------------------------


ENGLISH_SENTENCES = [
    f"Sentence {n} explains how order number {n} is packed, shipped and tracked." for n in range(60)
]


def test_chunks_are_bounded_and_overlap_from_a_sentence_or_word_start() -> None:
    text = "# Shipping\n\n" + " ".join(ENGLISH_SENTENCES)

    chunks = split_into_chunks(text, max_chars=400, overlap_chars=100)

    assert len(chunks) > 5
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    assert all(len(chunk.content) <= 400 for chunk in chunks)
    for previous, following in pairwise(chunks):
        assert 33 <= len(overlap(previous.content, following.content)) <= 100
        assert following.content.startswith("Sentence")  # the overlap starts a sentence

    # Sentences longer than the overlap: it starts at a word instead, and no word is cut.
    chunks = split_into_chunks(text, max_chars=300, overlap_chars=60)
    words = set(text.replace(".", " ").replace(",", " ").split())
    for previous, following in pairwise(chunks):
        assert 20 <= len(overlap(previous.content, following.content)) <= 60
    for chunk in chunks:
        assert len(chunk.content) <= 300
        assert set(chunk.content.replace(".", " ").replace(",", " ").split()) <= words


def test_chunks_never_span_a_heading_and_carry_the_nearest_one() -> None:
    text = "Preface.\n\n# Returns\n\nReturn within 30 days.\n\n## Refunds\n\nRefunds take 5 days."

    chunks = split_into_chunks(text)

    assert [(chunk.heading, chunk.content) for chunk in chunks] == [
        ("", "Preface."),
        ("Returns", "Return within 30 days."),
        ("Refunds", "Refunds take 5 days."),
    ]


def test_paragraphs_are_kept_whole_when_they_fit() -> None:
    paragraphs = [f"Paragraph {n}. " + "Some words here. " * 8 for n in range(12)]

    chunks = split_into_chunks("\n\n".join(paragraphs), max_chars=400, overlap_chars=0)

    for chunk in chunks:
        for part in chunk.content.split("\n\n"):
            assert part.strip() in [paragraph.strip() for paragraph in paragraphs]


def test_chinese_is_cut_at_sentence_ends() -> None:
    sentences = [
        f"第{n}条：退货需在签收后七天内申请，商品须保持完好并附带发票。" for n in range(80)
    ]

    chunks = split_into_chunks(
        "## 退货政策\n\n" + "".join(sentences), max_chars=200, overlap_chars=60
    )

    assert len(chunks) > 5
    assert {chunk.heading for chunk in chunks} == {"退货政策"}
    for chunk in chunks:
        assert len(chunk.content) <= 200
        assert chunk.content.endswith("。")
        assert chunk.content.startswith("第")
    for previous, following in pairwise(chunks):
        assert len(overlap(previous.content, following.content)) >= 30


def test_a_run_without_spaces_or_punctuation_is_cut_between_words() -> None:
    run = "我们的客服团队会尽快处理您的退货申请" * 40

    chunks = split_into_chunks(run, max_chars=100, overlap_chars=20)

    assert all(len(chunk.content) <= 100 for chunk in chunks)
    # jieba keeps 客服, 团队, 处理 and 申请 whole, so no chunk starts or ends inside one.
    for chunk in chunks:
        assert not chunk.content.startswith(("服", "队", "理", "请"))
        assert not chunk.content.endswith(("客", "团", "处", "申"))


def test_a_word_longer_than_a_chunk_is_cut_where_it_must_be() -> None:
    url = "https://example.com/" + "a" * 250

    chunks = split_into_chunks(f"See {url} for details.", max_chars=100, overlap_chars=10)

    assert all(len(chunk.content) <= 100 for chunk in chunks)
    assert "".join(chunk.content for chunk in chunks).count("a") >= 250


def test_a_200_kb_document_is_chunked_quickly_and_completely() -> None:
    english = " ".join(ENGLISH_SENTENCES)
    chinese = "".join(f"第{n}条：订单发货后可在“我的订单”中查看物流信息。" for n in range(60))
    sections = [
        f"# Section {n}\n\n{english}\n\n{chinese}\n\n- item one\n- item two" for n in range(40)
    ]
    text = "\n\n".join(sections)
    assert len(text.encode()) > 200_000

    started = time.monotonic()
    chunks = split_into_chunks(text)
    elapsed = time.monotonic() - started

    assert elapsed < 5
    assert all(0 < len(chunk.content) <= 800 for chunk in chunks)
    assert sum(len(chunk.content) for chunk in chunks) / len(chunks) > 500
    assert {chunk.heading for chunk in chunks} == {f"Section {n}" for n in range(40)}
    joined = "\n".join(chunk.content for chunk in chunks)
    for sentence in [*ENGLISH_SENTENCES, "第59条：订单发货后可在“我的订单”中查看物流信息。"]:
        assert sentence in joined


def test_chunk_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="overlap_chars"):
        split_into_chunks("text", max_chars=100, overlap_chars=80)
    with pytest.raises(ValueError, match="max_chars"):
        split_into_chunks("text", max_chars=10, overlap_chars=0)


# Processing ------------------------------------------------------------------------------------


def chunk_rows(document: Document) -> list[tuple[int, int, str, str]]:
    return list(
        Chunk.objects.filter(document=document)
        .order_by("ordinal")
        .values_list("id", "ordinal", "heading", "content")
    )


def test_a_created_document_is_processed_by_the_task_with_progress_to_100(
    tenant_a, on_commit
) -> None:
    version = tenant_a.knowledge_version
    with CaptureQueriesContext(connection) as queries, on_commit():
        document = services.document_create(
            tenant=tenant_a, title="Returns", format="markdown", content=RETURNS_MD
        )
        assert Document.objects.get(pk=document.pk).status == Document.Status.PENDING

    document.refresh_from_db()
    assert (document.status, document.progress, document.error) == ("ready", 100, "")
    assert [(heading, content) for _id, _n, heading, content in chunk_rows(document)] == [
        (
            "Returns",
            "You can return any unused item within 30 days of delivery. "
            "Start a return from the order page.",
        ),
        ("Refunds", "Refunds go back to the original payment method within 5 business days."),
        ("退款", "退款将在三个工作日内原路返回。如有疑问，请联系客服。"),
    ]
    assert set(Chunk.objects.filter(document=document).values_list("tenant", flat=True)) == {
        tenant_a.pk
    }
    tenant_a.refresh_from_db()
    assert tenant_a.knowledge_version > version
    progress = [
        int(value)
        for query in queries.captured_queries
        for value in re.findall(r'"progress" = (\d+)', query["sql"])
    ]
    assert progress == sorted(progress)
    assert progress[-1] == 100


def test_an_uploaded_pdf_is_processed(tenant_a, on_commit) -> None:
    data = make_pdf([["Intro."], ["Shipping", "We ship worldwide."]], outline={"Shipping": 1})
    upload = SimpleUploadedFile("guide.pdf", data, content_type="application/pdf")

    with on_commit():
        document = services.document_create(
            tenant=tenant_a, title="Guide", format="pdf", uploaded_file=upload
        )

    document.refresh_from_db()
    assert document.status == Document.Status.READY
    assert document.source_file.name.endswith(".pdf")
    assert [(heading, content) for _id, _n, heading, content in chunk_rows(document)] == [
        ("", "Intro."),
        ("Shipping", "We ship worldwide."),
    ]


def test_a_damaged_pdf_fails_with_a_clear_error_and_keeps_the_old_chunks(
    english_tenant, on_commit
) -> None:
    with on_commit():
        document = services.document_create(
            tenant=english_tenant, title="Returns", format="markdown", content=RETURNS_MD
        )
    document.refresh_from_db()
    old_chunks = chunk_rows(document)

    damaged = make_pdf([["Hello."]])[:300]
    with on_commit():
        services.document_update(
            document=document,
            title="Returns",
            format="pdf",
            content="",
            enabled=True,
            uploaded_file=SimpleUploadedFile("returns.pdf", damaged),
        )

    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert document.error.startswith("This file could not be read as a PDF")
    assert "Traceback" not in document.error
    assert chunk_rows(document) == old_chunks


def test_errors_are_written_in_the_tenants_language(tenant_a, monkeypatch) -> None:
    tenant_a.default_language = "zh-hans"
    tenant_a.save(update_fields=["default_language"])
    document = factories.DocumentFactory(tenant=tenant_a)
    languages: list[str | None] = []

    def unreadable(source: bytes | str, **kwargs: object) -> ingest.ExtractedText:
        languages.append(translation.get_language())
        raise IngestError("无法读取")

    monkeypatch.setattr(ingest, "extract_text", unreadable)
    with translation.override("en"):
        services.document_process(document_id=document.pk, tenant_id=tenant_a.pk)

    assert languages == ["zh-hans"]
    document.refresh_from_db()
    assert (document.status, document.error) == (Document.Status.FAILED, "无法读取")


def test_reprocessing_gives_the_same_chunks_and_keeps_their_rows(tenant_a, on_commit) -> None:
    with on_commit():
        document = services.document_create(
            tenant=tenant_a, title="Returns", format="markdown", content=RETURNS_MD
        )
    first = chunk_rows(document)

    with on_commit():
        services.document_reprocess(document=document)
    tasks.document_process_task.delay(document.pk, tenant_a.pk)

    document.refresh_from_db()
    assert document.status == Document.Status.READY
    assert chunk_rows(document) == first

    with on_commit():
        services.document_update(
            document=document,
            title="Returns",
            format="markdown",
            content="# Exchanges\n\nExchanges are free.",
            enabled=True,
        )
    assert [row[1:] for row in chunk_rows(document)] == [(0, "Exchanges", "Exchanges are free.")]


def test_a_document_is_only_processed_for_its_own_tenant(tenant_a, tenant_b) -> None:
    document = factories.DocumentFactory(tenant=tenant_a)

    with pytest.raises(Document.DoesNotExist):
        services.document_process(document_id=document.pk, tenant_id=tenant_b.pk)
    tasks.document_process_task.delay(document.pk, tenant_b.pk)  # logged and dropped

    document.refresh_from_db()
    assert document.status == Document.Status.PENDING
    assert not Chunk.objects.filter(document_id=document.pk).exists()


def test_a_run_overtaken_by_an_edit_writes_nothing(tenant_a, monkeypatch) -> None:
    document = factories.DocumentFactory(tenant=tenant_a, content="# Old\n\nOld text.")
    real_split = ingest.split_into_chunks

    def split_while_edited(text: str, **kwargs: int) -> list[ingest.TextChunk]:
        Document.objects.filter(pk=document.pk).update(
            content="# New\n\nNew text.", status=Document.Status.PENDING
        )
        return real_split(text, **kwargs)

    monkeypatch.setattr(ingest, "split_into_chunks", split_while_edited)

    assert services.document_process(document_id=document.pk, tenant_id=tenant_a.pk) is None
    document.refresh_from_db()
    assert document.status == Document.Status.PENDING  # left for the edit's own run
    assert not Chunk.objects.filter(document_id=document.pk).exists()


def test_an_unexpected_error_fails_the_document_without_a_traceback(
    english_tenant, monkeypatch, caplog
) -> None:
    document = factories.DocumentFactory(tenant=english_tenant)

    def broken(text: str, **kwargs: int) -> list[ingest.TextChunk]:
        raise RuntimeError("bug in the chunker")

    monkeypatch.setattr(ingest, "split_into_chunks", broken)
    tasks.document_process_task.delay(document.pk, english_tenant.pk)

    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert document.error == (
        "Processing failed unexpectedly. Try again; if it fails again, contact us."
    )
    assert "bug in the chunker" in caplog.text  # the traceback is in the logs


def test_a_database_hiccup_is_retried(tenant_a, monkeypatch) -> None:
    document = factories.DocumentFactory(tenant=tenant_a)
    real_process = services.document_process
    calls: list[int] = []

    def flaky(**kwargs: int) -> Document | None:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("database is locked")
        return real_process(**kwargs)

    monkeypatch.setattr(services, "document_process", flaky)
    # Without propagation, as in a worker: an eager retry is then run again at once.
    tasks.document_process_task.apply(args=(document.pk, tenant_a.pk), throw=False)

    assert len(calls) == 2
    document.refresh_from_db()
    assert document.status == Document.Status.READY


def test_deleting_a_document_deletes_its_chunks_and_refreshes_search(tenant_a, on_commit) -> None:
    with on_commit():
        document = services.document_create(
            tenant=tenant_a, title="Returns", format="markdown", content=RETURNS_MD
        )
    tenant_a.refresh_from_db()
    version = tenant_a.knowledge_version

    services.document_delete(document=document)

    assert not Chunk.objects.filter(tenant=tenant_a).exists()
    tenant_a.refresh_from_db()
    assert tenant_a.knowledge_version == version + 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"format": "docx", "content": "text"}, "format"),
        ({"format": "pdf", "content": "pasted"}, "format"),
        ({"format": "markdown", "content": "  "}, "content"),
        (
            {
                "format": "text",
                "content": "both",
                "uploaded_file": SimpleUploadedFile("a.txt", b"x"),
            },
            "content",
        ),
        ({"format": "text", "content": "x", "title": " "}, "title"),
    ],
)
def test_document_create_refuses_bad_input(tenant_a, kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        services.document_create(tenant=tenant_a, **{"title": "Doc", **kwargs})
    assert field in error.value.message_dict
    assert not Document.objects.exists()


def test_files_over_20_mb_are_refused(tenant_a) -> None:
    upload = SimpleUploadedFile("big.txt", b"x")
    upload.size = services.MAX_DOCUMENT_BYTES + 1

    with pytest.raises(ValidationError, match="larger than 20 MB"):
        services.document_create(tenant=tenant_a, title="Big", format="text", uploaded_file=upload)


# Console ---------------------------------------------------------------------------------------


def test_an_admin_uploads_a_markdown_file_and_sees_its_chunks(
    admin_client_a, tenant_a, tenant_b, on_commit
) -> None:
    upload = SimpleUploadedFile("returns-policy.md", RETURNS_MD.encode(), "text/markdown")

    with on_commit():
        response = admin_client_a.post(
            ADD_URL,
            {"title": "", "format": "", "source_file": upload, "content": "", "enabled": "on"},
        )

    assert response.status_code == 302
    document = Document.objects.get()
    assert (document.tenant, document.title, document.format) == (
        tenant_a,
        "returns-policy",
        "markdown",
    )
    assert document.status == Document.Status.READY
    page = admin_client_a.get(reverse("admin:knowledge_document_change", args=[document.pk]))
    assert page.status_code == 200
    assert "Refunds go back to the original payment method" in page.content.decode()
    assert "window.location.reload" not in page.content.decode()
    listing = admin_client_a.get(CHANGELIST_URL).content.decode()
    assert '<progress max="100" value="100">' in listing


def test_pasted_text_is_stored_as_markdown(admin_client_a, tenant_a, on_commit) -> None:
    with on_commit():
        response = admin_client_a.post(
            ADD_URL, {"title": "FAQ", "format": "", "content": RETURNS_MD, "enabled": "on"}
        )

    assert response.status_code == 302
    document = Document.objects.get(tenant=tenant_a)
    assert (document.format, document.status) == ("markdown", "ready")
    assert Chunk.objects.filter(document=document).count() == 3


def test_the_add_form_explains_what_is_missing(admin_client_a) -> None:
    unknown = admin_client_a.post(
        ADD_URL, {"title": "", "source_file": SimpleUploadedFile("deck.pptx", b"PK\x03\x04")}
    )
    both = admin_client_a.post(
        ADD_URL,
        {"title": "X", "source_file": SimpleUploadedFile("a.md", b"# A"), "content": "text"},
    )
    nothing = admin_client_a.post(ADD_URL, {"title": "X", "content": ""})

    assert unknown.context["adminform"].form.errors["format"] == [
        "The format cannot be told from the file name; choose it."
    ]
    assert both.context["adminform"].form.errors["content"] == [
        "Upload a file or paste text, not both."
    ]
    assert nothing.context["adminform"].form.errors["content"] == [
        "Upload a file or paste the text of the document."
    ]
    assert not Document.objects.exists()


def test_agents_cannot_add_documents(agent_client_a, tenant_a, on_commit) -> None:
    assert agent_client_a.get(ADD_URL).status_code == 403
    with on_commit():
        response = agent_client_a.post(ADD_URL, {"title": "Mine", "content": "Text."})
    assert response.status_code == 403
    assert not Document.objects.exists()


def test_the_change_page_of_a_busy_document_shows_progress_and_refreshes(
    admin_client_a, tenant_a
) -> None:
    document = factories.DocumentFactory(
        tenant=tenant_a, status=Document.Status.PROCESSING, progress=40
    )

    page = admin_client_a.get(reverse("admin:knowledge_document_change", args=[document.pk]))

    content = page.content.decode()
    assert '<progress max="100" value="40">' in content
    assert "window.location.reload" in content


def test_editing_the_text_processes_the_document_again(admin_client_a, tenant_a, on_commit) -> None:
    with on_commit():
        document = services.document_create(
            tenant=tenant_a, title="Returns", format="markdown", content=RETURNS_MD
        )
    url = reverse("admin:knowledge_document_change", args=[document.pk])
    inline_management = {"chunks-TOTAL_FORMS": "0", "chunks-INITIAL_FORMS": "0"}

    with on_commit():
        response = admin_client_a.post(
            url,
            {
                "title": "Returns",
                "format": "markdown",
                "content": "# Exchanges\n\nExchanges are free.",
                "enabled": "on",
                **inline_management,
            },
        )

    assert response.status_code == 302
    document.refresh_from_db()
    assert document.status == Document.Status.READY
    assert list(Chunk.objects.filter(document=document).values_list("heading", "content")) == [
        ("Exchanges", "Exchanges are free.")
    ]


def test_the_reprocess_action_retries_a_failed_document(
    admin_client_a, tenant_a, on_commit
) -> None:
    document = factories.DocumentFactory(
        tenant=tenant_a, status=Document.Status.FAILED, error="Earlier failure."
    )

    with on_commit():
        response = admin_client_a.post(
            CHANGELIST_URL,
            {"action": "reprocess_documents", "_selected_action": [document.pk]},
        )

    assert response.status_code == 302
    document.refresh_from_db()
    assert (document.status, document.error) == (Document.Status.READY, "")
    assert Chunk.objects.filter(document_id=document.pk).count() == 1


def test_a_title_change_keeps_the_chunks_and_refreshes_search(
    admin_client_a, tenant_a, on_commit
) -> None:
    with on_commit():
        document = services.document_create(
            tenant=tenant_a, title="Returns", format="markdown", content=RETURNS_MD
        )
    chunks = chunk_rows(document)
    tenant_a.refresh_from_db()
    version = tenant_a.knowledge_version
    # What the browser sends back for the read-only chunk rows.
    inline = {"chunks-TOTAL_FORMS": str(len(chunks)), "chunks-INITIAL_FORMS": str(len(chunks))}
    for index, (chunk_id, *_rest) in enumerate(chunks):
        inline[f"chunks-{index}-id"] = str(chunk_id)
        inline[f"chunks-{index}-document"] = str(document.pk)

    with on_commit():
        response = admin_client_a.post(
            reverse("admin:knowledge_document_change", args=[document.pk]),
            {
                "title": "Returns and refunds",
                "format": "markdown",
                "content": RETURNS_MD,
                "enabled": "on",
                **inline,
            },
        )

    assert response.status_code == 302
    document.refresh_from_db()
    assert (document.title, document.status) == ("Returns and refunds", Document.Status.READY)
    assert chunk_rows(document) == chunks
    tenant_a.refresh_from_db()
    assert tenant_a.knowledge_version == version + 1  # titles are part of the index


def test_a_long_document_shows_its_first_chunks_only(
    admin_client_a, tenant_a, django_assert_max_num_queries
) -> None:
    document = factories.DocumentFactory(tenant=tenant_a, status=Document.Status.READY)
    Chunk.objects.bulk_create(
        Chunk(tenant=tenant_a, document_id=document.pk, ordinal=n, content=f"Chunk number {n}.")
        for n in range(250)
    )

    with django_assert_max_num_queries(30):
        page = admin_client_a.get(reverse("admin:knowledge_document_change", args=[document.pk]))

    content = page.content.decode()
    assert "The first 200 of 250 chunks are shown." in content
    assert "Chunk number 199." in content
    assert "Chunk number 200." not in content


def test_a_superuser_adds_a_document_to_the_chosen_tenant(
    superuser_client, tenant_b, on_commit
) -> None:
    with on_commit():
        response = superuser_client.post(
            ADD_URL,
            {"tenant": str(tenant_b.pk), "title": "Notes", "format": "text", "content": "Hi."},
        )

    assert response.status_code == 302
    document = Document.objects.get()
    assert (document.tenant, document.status) == (tenant_b, Document.Status.READY)
    assert Chunk.objects.get(document=document).tenant == tenant_b


def test_deleting_in_the_console_removes_the_chunks(admin_client_a, tenant_a, on_commit) -> None:
    with on_commit():
        document = services.document_create(
            tenant=tenant_a, title="Returns", format="markdown", content=RETURNS_MD
        )

    response = admin_client_a.post(
        reverse("admin:knowledge_document_delete", args=[document.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert not Document.objects.exists()
    assert not Chunk.objects.exists()


def test_replacing_a_file_with_pasted_text_deletes_the_file(tenant_a, on_commit) -> None:
    upload = SimpleUploadedFile("notes.txt", b"Old notes from a file.")
    with on_commit():
        document = services.document_create(
            tenant=tenant_a, title="Notes", format="text", uploaded_file=upload
        )
    document.refresh_from_db()
    storage, old_name = document.source_file.storage, document.source_file.name
    assert storage.exists(old_name)

    with on_commit():
        services.document_update(
            document=document,
            title="Notes",
            format="text",
            content="New notes, pasted.",
            enabled=True,
            clear_file=True,
        )

    document.refresh_from_db()
    assert (document.source_file.name, document.status) == ("", Document.Status.READY)
    assert not storage.exists(old_name)
    assert list(
        Chunk.objects.filter(document_id=document.pk).values_list("content", flat=True)
    ) == ["New notes, pasted."]
