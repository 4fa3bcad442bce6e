"""Reads of a tenant's knowledge base."""

import csv
import io
from collections.abc import Iterable

from django.db.models import Count, Q, QuerySet

from knowledge.csv_format import (
    ALTERNATES_SEPARATORS,
    CSV_COLUMNS,
    TAGS_SEPARATORS,
    list_cell,
    spreadsheet_safe,
)
from knowledge.index import ChunkRecord, EntryRecord
from knowledge.models import Chunk, Document, KnowledgeEntry
from tenants.models import Tenant


def knowledge_entries_csv(*, entries: Iterable[KnowledgeEntry]) -> str:
    """The entries as CSV text (UTF-8 with a BOM so that spreadsheet programs read Chinese)."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow(
            [
                entry.pk,
                spreadsheet_safe(entry.question),
                list_cell(entry.alternate_questions, ALTERNATES_SEPARATORS),
                spreadsheet_safe(entry.answer),
                list_cell(entry.tags, TAGS_SEPARATORS, joiner=", "),
                "true" if entry.enabled else "false",
            ]
        )
    return buffer.getvalue()


def knowledge_index_records(*, tenant_id: int) -> tuple[int, list[EntryRecord], list[ChunkRecord]]:
    """What a tenant's search index is built from, with the knowledge version it reflects.

    The version is read first: a change that lands while the rows are read bumps the version
    again, so the index is rebuilt once more rather than kept stale.
    """
    version = (
        Tenant.objects.filter(pk=tenant_id).values_list("knowledge_version", flat=True).first()
    )
    entries = [
        EntryRecord(
            id=entry_id,
            question=question,
            answer=answer,
            phrasings=tuple(dict.fromkeys([question, *(alternates or [])])),
        )
        for entry_id, question, answer, alternates in KnowledgeEntry.objects.filter(
            tenant_id=tenant_id, enabled=True
        )
        .order_by("id")
        .values_list("id", "question", "answer", "alternate_questions")
        .iterator(chunk_size=2000)
    ]
    chunks = [
        ChunkRecord(
            id=chunk_id,
            document_id=document_id,
            document_title=title,
            heading=heading,
            content=content,
        )
        # Any status: a document being re-processed keeps its previous chunks until the new
        # ones replace them in one transaction.
        for chunk_id, document_id, title, heading, content in Chunk.objects.filter(
            tenant_id=tenant_id, document__enabled=True
        )
        .order_by("document_id", "ordinal")
        .values_list("id", "document_id", "document__title", "heading", "content")
        .iterator(chunk_size=2000)
    ]
    return version or 0, entries, chunks


def knowledge_entry_count(*, tenant_id: int) -> int:
    return KnowledgeEntry.objects.filter(tenant_id=tenant_id, enabled=True).count() + (
        Chunk.objects.filter(tenant_id=tenant_id).count()
    )


def knowledge_entry_list(
    *,
    tenant: Tenant,
    q: str = "",
    tag: str = "",
    enabled: bool | None = None,
    external_key: str = "",
) -> QuerySet[KnowledgeEntry]:
    """A tenant's FAQ entries, filtered: ``q`` in the question, phrasings or answer; ``tag``
    among the tags."""
    entries = KnowledgeEntry.objects.filter(tenant=tenant)
    if q:
        entries = entries.filter(
            Q(question__icontains=q) | Q(answer__icontains=q) | Q(alternate_questions__icontains=q)
        )
    if tag:
        # JSON containment is not portable to SQLite; match the tag's JSON text instead.
        entries = entries.filter(tags__icontains=f'"{tag}"')
    if enabled is not None:
        entries = entries.filter(enabled=enabled)
    if external_key:
        entries = entries.filter(external_key=external_key)
    return entries


def knowledge_entry_get(*, tenant: Tenant, entry_id: int) -> KnowledgeEntry:
    """Raises ``KnowledgeEntry.DoesNotExist`` for another tenant's entry."""
    return KnowledgeEntry.objects.get(tenant=tenant, pk=entry_id)


def document_list(*, tenant: Tenant, status: str = "") -> QuerySet[Document]:
    """A tenant's documents with their chunk counts (``chunk_total``)."""
    documents = Document.objects.filter(tenant=tenant).annotate(chunk_total=Count("chunks"))
    return documents.filter(status=status) if status else documents


def document_get(*, tenant: Tenant, document_id: int) -> Document:
    """Raises ``Document.DoesNotExist`` for another tenant's document."""
    return document_list(tenant=tenant).get(pk=document_id)


def chunk_list(*, document: Document) -> QuerySet[Chunk]:
    return Chunk.objects.filter(tenant_id=document.tenant_id, document=document).order_by("ordinal")


def chunk_get(*, document: Document, chunk_id: int) -> Chunk:
    """Raises ``Chunk.DoesNotExist`` unless the chunk is one of ``document``'s."""
    return chunk_list(document=document).get(pk=chunk_id)
