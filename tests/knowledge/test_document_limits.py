"""A small file that expands into a huge text costs seconds, not minutes, and fails clearly."""

import io
import threading
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from knowledge import ingest, services
from knowledge.models import Chunk, Document

LINE = "Line {n} of a page that a tiny file expands into, again and again."


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path) -> None:
    settings.MEDIA_ROOT = tmp_path


def expanding_pdf(*, pages: int, lines: int, shared: bool) -> bytes:
    """A PDF whose compressed content streams expand a hundredfold; with ``shared`` every page
    draws the one same stream."""
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    resources = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    operators = " ".join(f"({LINE.format(n=n)}) Tj T*" for n in range(lines))
    first = None
    for _ in range(pages):
        if shared and first is not None:
            writer.add_page(first)
            continue
        page = writer.add_blank_page(width=612, height=792)
        page[NameObject("/Resources")] = resources
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 10 Tf 12 TL 20 780 Td {operators} ET".encode())
        page.replace_contents(stream)
        page.compress_content_streams()
        first = page
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_pages_sharing_one_content_stream_are_read_once() -> None:
    data = expanding_pdf(pages=200, lines=2000, shared=True)
    assert len(data) < 10_000

    started = time.monotonic()
    extracted = ingest.extract_pdf(data)

    assert time.monotonic() - started < 5  # every page read: over a minute
    assert extracted.text.count(LINE.format(n=1999)) == 1


def test_extraction_stops_at_the_character_limit() -> None:
    data = expanding_pdf(pages=40, lines=1000, shared=False)
    limits = ingest.ExtractionLimits(max_chars=200_000)

    with pytest.raises(ingest.IngestError, match="more than 200000 characters"):
        ingest.extract_pdf(data, limits=limits)
    ingest.extract_pdf(expanding_pdf(pages=2, lines=1000, shared=False), limits=limits)


def test_a_pdf_with_too_many_pages_is_refused_before_it_is_read() -> None:
    data = expanding_pdf(pages=6, lines=1, shared=False)
    with pytest.raises(ingest.IngestError, match=r"This PDF has 6 pages; at most 5 can be read\."):
        ingest.extract_pdf(data, limits=ingest.ExtractionLimits(max_pages=5))


def test_text_over_the_character_limit_is_refused() -> None:
    with pytest.raises(ingest.IngestError, match="more than 100 characters"):
        ingest.extract_text("word " * 30, format="text", limits=ingest.ExtractionLimits(100, 100))


def test_a_document_over_a_limit_fails_with_the_reason_in_the_console(
    settings, english_tenant, admin_client_a, on_commit
) -> None:
    settings.KNOWLEDGE_DOCUMENT_MAX_CHUNKS = 3
    text = "\n\n".join(f"# Part {n}\n\nSome text of part {n}." for n in range(5))
    with on_commit():
        document = services.document_create(
            tenant=english_tenant, title="Long", format="markdown", content=text
        )

    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    message = (
        "This document would make 5 passages; at most 3 are kept per document. Split it into "
        "smaller files and upload them one by one."
    )
    assert document.error == message
    assert not Chunk.objects.filter(document=document).exists()
    page = admin_client_a.get(reverse("admin:knowledge_document_change", args=[document.pk]))
    assert message in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_on_eager_celery_a_large_upload_returns_before_it_is_processed(
    settings, admin_client_a, tenant_a, monkeypatch
) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.KNOWLEDGE_DOCUMENT_INLINE_MAX_BYTES = 1024
    release = threading.Event()
    real_process = services.document_process

    def held_process(**kwargs):
        release.wait(30)  # processing holds until the test has seen the response
        return real_process(**kwargs)

    monkeypatch.setattr(services, "document_process", held_process)
    data = b"# Shipping\n\n" + b"We ship worldwide within two days. " * 100
    upload = SimpleUploadedFile("shipping.md", data, "text/markdown")

    response = admin_client_a.post(
        reverse("admin:knowledge_document_add"),
        {"title": "Shipping", "format": "", "source_file": upload, "content": "", "enabled": "on"},
    )

    assert response.status_code == 302
    document = Document.objects.get(tenant=tenant_a)
    assert document.status == Document.Status.PENDING
    release.set()
    deadline = time.monotonic() + 30
    while document.status != Document.Status.READY:
        assert time.monotonic() < deadline, f"still {document.status}: {document.error}"
        time.sleep(0.05)
        document.refresh_from_db()
    assert Chunk.objects.filter(document=document).exists()
