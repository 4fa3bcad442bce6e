"""Writes to a tenant's knowledge base."""

import csv
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import Case, F, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from helpdesk_site.redis import redis_failure_log

# knowledge.tasks imports this module: import the module, not its tasks.
from knowledge import ingest, tasks
from knowledge.csv_format import (
    ALTERNATES_SEPARATORS,
    FALSE_WORDS,
    TAGS_SEPARATORS,
    TRUE_WORDS,
    list_cell_items,
    spreadsheet_unescape,
)
from knowledge.dense import embeddable, text_digest
from knowledge.freshness import knowledge_change_announce
from knowledge.index import chunk_text
from knowledge.models import Chunk, Document, EmbeddingVector, KnowledgeEntry
from knowledge.selectors import knowledge_index_records
from llm.embeddings import tenant_embedder
from tenants.models import LLMProvider, Tenant

MAX_IMPORT_BYTES = 10 * 1024 * 1024
MAX_IMPORT_ROWS = 50_000
_IMPORTED_FIELDS = ["question", "alternate_questions", "answer", "tags", "enabled"]


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    line: int
    entry_id: int | None
    question: str
    alternate_questions: list[str]
    answer: str
    tags: list[str]
    enabled: bool


def _parse_rows(text: str, errors: list[str]) -> list[_Row]:
    if "\x00" in text:
        errors.append(_("The file contains a NUL character; it is not a CSV text file."))
        return []
    # strict: an unbalanced quote is an error, not a field that swallows the rest of the file.
    reader = csv.DictReader(io.StringIO(text), strict=True)
    try:
        return _parse_records(reader, errors)
    except csv.Error as exc:
        if "larger" in str(exc):  # "field larger than field limit"
            message = _("Line %(line)d: a cell is longer than %(kb)d KB.")
        else:
            message = _(
                "Line %(line)d: the file is not valid CSV here; check that every quote is closed."
            )
        # The reader counts the lines of the rows it returned; the broken row starts after them.
        line = reader.line_num + 1
        errors.append(message % {"line": line, "kb": csv.field_size_limit() // 1024})
        return []


def _parse_records(reader: csv.DictReader, errors: list[str]) -> list[_Row]:
    headers = {(name or "").strip().lower() for name in reader.fieldnames or []}
    missing = {"question", "answer"} - headers
    if missing:
        errors.append(_("Missing columns: %(columns)s") % {"columns": ", ".join(sorted(missing))})
        return []
    rows: list[_Row] = []
    for line, raw in enumerate(reader, start=2):
        if line - 1 > MAX_IMPORT_ROWS:
            errors.append(_("Too many rows: at most %(n)d per file.") % {"n": MAX_IMPORT_ROWS})
            break
        cells = {
            (key or "").strip().lower(): value or ""
            for key, value in raw.items()
            if isinstance(value, str | type(None))
        }
        values = {key: spreadsheet_unescape(cell) for key, cell in cells.items()}
        if not any(values.values()):
            continue
        question, answer = values.get("question", ""), values.get("answer", "")
        if not question or not answer:
            errors.append(_("Row %(line)d: question and answer are required.") % {"line": line})
            continue
        if len(question) > KnowledgeEntry._meta.get_field("question").max_length:  # type: ignore[operator]
            errors.append(_("Row %(line)d: the question is too long.") % {"line": line})
            continue
        enabled_word = values.get("enabled", "").lower()
        if enabled_word and enabled_word not in TRUE_WORDS | FALSE_WORDS:
            errors.append(
                _("Row %(line)d: “%(value)s” is not a yes/no value.")
                % {"line": line, "value": enabled_word}
            )
            continue
        raw_id = values.get("id", "")
        if raw_id and not raw_id.isdigit():
            errors.append(_("Row %(line)d: id must be a number.") % {"line": line})
            continue
        rows.append(
            _Row(
                line=line,
                entry_id=int(raw_id) if raw_id else None,
                question=question,
                alternate_questions=list_cell_items(
                    cells.get("alternate_questions", ""), ALTERNATES_SEPARATORS
                ),
                answer=answer,
                tags=list_cell_items(cells.get("tags", ""), TAGS_SEPARATORS),
                enabled=enabled_word not in FALSE_WORDS,
            )
        )
    return rows


def knowledge_entries_import_csv(*, tenant: Tenant, data: bytes) -> ImportResult:
    """Creates and updates FAQ entries from CSV; all rows are saved or, on any error, none.

    A row with an ``id`` updates that entry, which must belong to ``tenant``.
    """
    result = ImportResult()
    if len(data) > MAX_IMPORT_BYTES:
        result.errors.append(_("The file is larger than 10 MB."))
        return result
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("gb18030")  # what Excel writes on Chinese Windows
        except UnicodeDecodeError:
            result.errors.append(_("The file is not UTF-8 or GB18030 text."))
            return result
    rows = _parse_rows(text, result.errors)
    ids = {row.entry_id for row in rows if row.entry_id is not None}
    existing = KnowledgeEntry.objects.filter(tenant=tenant, pk__in=ids).in_bulk()
    for row in rows:
        if row.entry_id is not None and row.entry_id not in existing:
            result.errors.append(
                _("Row %(line)d: entry %(id)d does not exist.")
                % {"line": row.line, "id": row.entry_id}
            )
    if result.errors:
        return result

    now = timezone.now()
    to_create: list[KnowledgeEntry] = []
    to_update: list[KnowledgeEntry] = []
    for row in rows:
        values = {
            "question": row.question,
            "alternate_questions": row.alternate_questions,
            "answer": row.answer,
            "tags": row.tags,
            "enabled": row.enabled,
        }
        if row.entry_id is None:
            to_create.append(KnowledgeEntry(tenant=tenant, **values))
        else:
            entry = existing[row.entry_id]
            for name, value in values.items():
                setattr(entry, name, value)
            entry.updated_at = now
            to_update.append(entry)
    with transaction.atomic():
        KnowledgeEntry.objects.bulk_create(to_create, batch_size=500)
        KnowledgeEntry.objects.bulk_update(
            to_update, [*_IMPORTED_FIELDS, "updated_at"], batch_size=500
        )
        knowledge_changed(tenant_id=tenant.pk)
    result.created, result.updated = len(to_create), len(to_update)
    return result


def knowledge_entries_set_enabled(
    *, tenant: Tenant, entries: QuerySet[KnowledgeEntry], enabled: bool
) -> int:
    """Enables or disables entries of ``tenant``; returns how many changed."""
    if entries.exclude(tenant=tenant).exists():
        raise ValidationError(_("Entries of another tenant cannot be changed."))
    with transaction.atomic():
        changed = (
            entries.filter(tenant=tenant)
            .exclude(enabled=enabled)
            .update(enabled=enabled, updated_at=timezone.now())
        )
        if changed:
            knowledge_changed(tenant_id=tenant.pk)
    return changed


# The cached copy of a tenant's knowledge version expires: an edit made while the cache was
# unreachable could not clear it, and no process may trust a stale copy for longer than this
# once the cache is back. Each process then reads the database once per tenant per period.
KNOWLEDGE_VERSION_CACHE_SECONDS = 60


def knowledge_version_cache_key(tenant_id: int) -> str:
    return f"kb:version:{tenant_id}"


def knowledge_changed(*, tenant_id: int) -> None:
    """Records that a tenant's knowledge changed, so every process rebuilds its search index.

    The database holds the version; the cache mirrors it (set after commit) so that the search
    path can check freshness without a query.
    """
    Tenant.objects.filter(pk=tenant_id).update(knowledge_version=F("knowledge_version") + 1)
    # Readers that miss the cache read the database (and ``add`` what they read), so this
    # process sees its own change at once and others see it at commit at the latest. A cache
    # outage must not refuse the edit: readers then read the database.
    try:
        cache.delete(knowledge_version_cache_key(tenant_id))
    except (RedisError, OSError) as exc:
        redis_failure_log(logger=logger, operation="knowledge version publish", error=exc)

    def publish() -> None:
        version = Tenant.objects.filter(pk=tenant_id).values_list("knowledge_version", flat=True)
        try:
            cache.set(
                knowledge_version_cache_key(tenant_id),
                version.first(),
                timeout=KNOWLEDGE_VERSION_CACHE_SECONDS,
            )
        except (RedisError, OSError) as exc:
            redis_failure_log(logger=logger, operation="knowledge version publish", error=exc)
        # After the cache holds the new version: the checks this prompts must find it there.
        knowledge_change_announce(tenant_id=tenant_id)
        if dense_retrieval_possible(tenant_id=tenant_id):
            tasks.knowledge_embed_task.delay(tenant_id)

    # Robust: a cache or broker outage must not turn a saved change into an error page; the
    # database already holds the version, and the next change schedules embedding again.
    transaction.on_commit(publish, robust=True)


@transaction.atomic
def knowledge_entry_save(*, entry: KnowledgeEntry) -> KnowledgeEntry:
    """Saves an entry edited in the console or the API and refreshes the tenant's index."""
    entry.full_clean(exclude=["tenant"])
    # full_clean leaves out the constraints that involve the excluded tenant.
    if entry.external_key and (
        KnowledgeEntry.objects.filter(tenant_id=entry.tenant_id, external_key=entry.external_key)
        .exclude(pk=entry.pk)
        .exists()
    ):
        raise _external_key_taken()
    try:
        with transaction.atomic():  # a savepoint: a concurrent twin is refused, not a 500
            entry.save()
    except IntegrityError as exc:
        raise _external_key_taken() from exc
    knowledge_changed(tenant_id=entry.tenant_id)
    return entry


def _external_key_taken() -> ValidationError:
    return ValidationError({"external_key": _("Another FAQ entry already has this external key.")})


_ENTRY_EDITABLE_FIELDS = ("question", "alternate_questions", "answer", "tags", "enabled")


def knowledge_entry_create(
    *,
    tenant: Tenant,
    question: str,
    answer: str,
    alternate_questions: list[str] | None = None,
    tags: list[str] | None = None,
    enabled: bool = True,
    external_key: str = "",
) -> KnowledgeEntry:
    """A new FAQ entry, searchable by the next question."""
    entry = KnowledgeEntry(
        tenant=tenant,
        question=question,
        answer=answer,
        alternate_questions=alternate_questions or [],
        tags=tags or [],
        enabled=enabled,
        external_key=external_key,
    )
    return knowledge_entry_save(entry=entry)


def knowledge_entry_update(*, entry: KnowledgeEntry, changes: Mapping[str, Any]) -> KnowledgeEntry:
    """Applies ``changes`` (editable fields and ``external_key`` only) to an entry and saves it;
    an entry left as it was is not written and does not move the knowledge version."""
    unknown = set(changes) - {*_ENTRY_EDITABLE_FIELDS, "external_key"}
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    if all(getattr(entry, name) == value for name, value in changes.items()):
        return entry
    for name, value in changes.items():
        setattr(entry, name, value)
    return knowledge_entry_save(entry=entry)


class UpsertResult(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class EntryUpsert:
    """One row of a bulk upsert. ``None`` fields keep an existing entry's value (a new entry gets
    the default: no phrasings, no tags, enabled)."""

    external_key: str
    question: str
    answer: str
    alternate_questions: list[str] | None = None
    tags: list[str] | None = None
    enabled: bool | None = None


@dataclass(frozen=True)
class EntryUpserted:
    external_key: str
    id: int
    result: UpsertResult


def knowledge_entries_upsert(*, tenant: Tenant, rows: Sequence[EntryUpsert]) -> list[EntryUpserted]:
    """Creates or updates entries by ``external_key``, all in one transaction, with one change of
    the knowledge version for the batch. Rows are validated by the caller, keys distinct; an
    entry whose values are already these is not written. Raises ``ValidationError`` (on
    ``external_key``) when a concurrent request created one of the keys meanwhile."""
    keys = [row.external_key for row in rows]
    if len(set(keys)) != len(keys):
        raise ValidationError({"external_key": _("Each external key may appear only once.")})
    now = timezone.now()
    with transaction.atomic():
        existing = {
            entry.external_key: entry
            for entry in KnowledgeEntry.objects.select_for_update().filter(
                tenant=tenant, external_key__in=keys
            )
        }
        to_create: list[KnowledgeEntry] = []
        to_update: list[KnowledgeEntry] = []
        results: list[tuple[KnowledgeEntry, UpsertResult]] = []
        for row in rows:
            values = {
                "question": row.question,
                "answer": row.answer,
                "alternate_questions": row.alternate_questions,
                "tags": row.tags,
                "enabled": row.enabled,
            }
            entry = existing.get(row.external_key)
            if entry is None:
                entry = KnowledgeEntry(
                    tenant=tenant,
                    external_key=row.external_key,
                    question=row.question,
                    answer=row.answer,
                    alternate_questions=row.alternate_questions or [],
                    tags=row.tags or [],
                    enabled=True if row.enabled is None else row.enabled,
                )
                to_create.append(entry)
                results.append((entry, UpsertResult.CREATED))
                continue
            given = {name: value for name, value in values.items() if value is not None}
            if all(getattr(entry, name) == value for name, value in given.items()):
                results.append((entry, UpsertResult.UNCHANGED))
                continue
            for name, value in given.items():
                setattr(entry, name, value)
            entry.updated_at = now
            to_update.append(entry)
            results.append((entry, UpsertResult.UPDATED))
        try:
            with transaction.atomic():
                KnowledgeEntry.objects.bulk_create(to_create, batch_size=500)
        except IntegrityError as exc:
            raise ValidationError(
                {"external_key": _("Another request created some of these entries; send again.")}
            ) from exc
        KnowledgeEntry.objects.bulk_update(
            to_update, [*_IMPORTED_FIELDS, "updated_at"], batch_size=500
        )
        if to_create or to_update:
            knowledge_changed(tenant_id=tenant.pk)
    return [EntryUpserted(entry.external_key, entry.pk, result) for entry, result in results]


@transaction.atomic
def knowledge_entries_delete(*, tenant: Tenant, entries: QuerySet[KnowledgeEntry]) -> int:
    deleted, _per_model = entries.filter(tenant=tenant).delete()
    if deleted:
        knowledge_changed(tenant_id=tenant.pk)
    return deleted


@transaction.atomic
def knowledge_entry_delete(*, entry: KnowledgeEntry) -> None:
    """Deletes one entry; the next question no longer finds it."""
    entry.delete()
    knowledge_changed(tenant_id=entry.tenant_id)


def knowledge_entries_record_hits(*, hits: Mapping[tuple[int, int], int]) -> None:
    """Counts direct answers given from entries, ``{(tenant id, entry id): answers}``, in one
    statement (hit counts are shown in the console)."""
    if not hits:
        return
    scoped, added = Q(), []
    for (tenant_id, entry_id), count in sorted(hits.items()):
        scoped |= Q(tenant_id=tenant_id, pk=entry_id)
        added.append(When(pk=entry_id, then=Value(count)))
    KnowledgeEntry.objects.filter(scoped).update(
        hit_count=F("hit_count") + Case(*added, output_field=IntegerField()),
        last_hit_at=timezone.now(),
    )


# Documents ---------------------------------------------------------------------------------------

MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
CHUNK_WRITE_BATCH = 500
_BUSY = (Document.Status.PENDING, Document.Status.PROCESSING)
_HEADING_MAX_LENGTH = Chunk._meta.get_field("heading").max_length
# Share of the progress bar each stage ends at; writing the chunks takes the rest.
_PROGRESS_EXTRACTED = 60
_PROGRESS_CHUNKED = 70


def document_source_validate(
    *,
    format: str,
    content: str,
    uploaded_file: File | None,
    has_stored_file: bool = False,
) -> None:
    """Checks that a document has exactly one source (a file or pasted text) that Kefu can read.

    ``has_stored_file`` tells that an edited document keeps the file it already has. Errors are
    keyed by model field, so that a form shows each next to its field.
    """
    errors: dict[str, str] = {}
    has_file = uploaded_file is not None or has_stored_file
    has_text = bool(content.strip())
    if format not in Document.Format.values:
        errors["format"] = _("Choose one of the listed formats.")
    elif format == Document.Format.PDF and not has_file:
        errors["format"] = _("A PDF has to be uploaded as a file.")
    if has_file and has_text:
        errors["content"] = _("Upload a file or paste text, not both.")
    elif not has_file and not has_text:
        errors["content"] = _("Upload a file or paste the text of the document.")
    elif len(content.encode()) > MAX_DOCUMENT_BYTES:
        errors["content"] = _("The text is larger than 20 MB.")
    if uploaded_file is not None and (uploaded_file.size or 0) > MAX_DOCUMENT_BYTES:
        errors["source_file"] = _("The file is larger than 20 MB.")
    if errors:
        raise ValidationError(errors)


def _document_processing_schedule(document: Document) -> None:
    document_id, tenant_id = document.pk, document.tenant_id
    if document.source_file:
        size = document.source_file.size or 0
    else:
        size = len(document.content.encode())
    transaction.on_commit(
        lambda: tasks.document_process_enqueue(
            document_id=document_id, tenant_id=tenant_id, source_bytes=size
        )
    )


def _document_file_delete_on_commit(document: Document, name: str) -> None:
    storage = document.source_file.storage
    transaction.on_commit(lambda: storage.delete(name))


def _document_file_store(document: Document, uploaded_file: File) -> None:
    # Only the base name: a File opened from a path carries the whole path as its name.
    name = PurePosixPath((uploaded_file.name or "document").replace("\\", "/")).name
    document.source_file.save(name, uploaded_file, save=False)


def _document_clean_content(content: str) -> str:
    # Browsers send text areas with CRLF line ends; stored the same way every time, an
    # unchanged text compares equal and is not processed again.
    return content.replace("\r\n", "\n").replace("\r", "\n").strip()


def _document_clean_title(title: str) -> str:
    title = title.strip()
    if not title:
        raise ValidationError({"title": _("Give the document a title.")})
    return title


def document_create(
    *,
    tenant: Tenant,
    title: str,
    format: str,
    content: str = "",
    uploaded_file: File | None = None,
) -> Document:
    """Stores a new document from an uploaded file or pasted text and queues its processing.

    The document starts as pending; its chunks appear once ``document_process`` has run.
    """
    title, content = _document_clean_title(title), _document_clean_content(content)
    document_source_validate(format=format, content=content, uploaded_file=uploaded_file)
    document = Document(tenant=tenant, title=title, format=format, content=content)
    document.full_clean(exclude=["tenant", "source_file"])
    with transaction.atomic():
        if uploaded_file is not None:
            _document_file_store(document, uploaded_file)
        document.save()
        _document_processing_schedule(document)
    return document


def document_update(
    *,
    document: Document,
    title: str,
    format: str,
    content: str,
    enabled: bool,
    uploaded_file: File | None = None,
    clear_file: bool = False,
) -> Document:
    """Saves an edited document; a new source (file, text or format) is processed again.

    ``document`` must hold the stored values: they tell what changed. Until the new chunks are
    ready the old ones stay.
    """
    title, content = _document_clean_title(title), _document_clean_content(content)
    old_file = document.source_file.name or ""
    keeps_file = bool(old_file) and not clear_file and uploaded_file is None
    document_source_validate(
        format=format, content=content, uploaded_file=uploaded_file, has_stored_file=keeps_file
    )
    source_changed = (
        format != document.format
        or content != document.content
        or uploaded_file is not None
        or (clear_file and bool(old_file))
    )
    if not source_changed and (title, enabled) == (document.title, document.enabled):
        return document
    document.title, document.format, document.content, document.enabled = (
        title,
        format,
        content,
        enabled,
    )
    document.full_clean(exclude=["tenant", "source_file"])
    fields = ["title", "format", "content", "enabled", "source_file", "updated_at"]
    with transaction.atomic():
        if uploaded_file is not None:
            _document_file_store(document, uploaded_file)
        elif clear_file:
            document.source_file.name = ""
        if source_changed:
            document.status, document.progress, document.error = Document.Status.PENDING, 0, ""
            fields += ["status", "progress", "error"]
        document.save(update_fields=fields)
        # The title and the enabled flag are indexed too, and a pending document leaves search
        # until it is ready again.
        knowledge_changed(tenant_id=document.tenant_id)
        if source_changed:
            _document_processing_schedule(document)
        if old_file and old_file != document.source_file.name:
            _document_file_delete_on_commit(document, old_file)
    return document


def document_reprocess(*, document: Document) -> None:
    """Queues a document to be extracted and chunked again (after a failure, say)."""
    with transaction.atomic():
        Document.objects.filter(pk=document.pk, tenant_id=document.tenant_id).update(
            status=Document.Status.PENDING, progress=0, error="", updated_at=timezone.now()
        )
        knowledge_changed(tenant_id=document.tenant_id)
        _document_processing_schedule(document)


def document_delete(*, document: Document) -> None:
    """Deletes a document with its chunks, and its file once that is committed."""
    tenant_id, file_name = document.tenant_id, document.source_file.name or ""
    with transaction.atomic():
        if file_name:
            _document_file_delete_on_commit(document, file_name)
        document.delete()
        knowledge_changed(tenant_id=tenant_id)


CHUNK_CONTENT_MAX_CHARS = 4000


def chunk_update(*, chunk: Chunk, heading: str, content: str) -> Chunk:
    """Saves an edited passage; it is searchable by the next question. Processing the document
    again (a new source, or re-processing) replaces its chunks, edits included."""
    heading, content = heading.strip(), _document_clean_content(content)
    errors: dict[str, str] = {}
    if not content:
        errors["content"] = _("A passage cannot be empty.")
    elif len(content) > CHUNK_CONTENT_MAX_CHARS:
        errors["content"] = _("A passage holds at most %(n)d characters.") % {
            "n": CHUNK_CONTENT_MAX_CHARS
        }
    if len(heading) > _HEADING_MAX_LENGTH:  # type: ignore[operator]
        errors["heading"] = _("A heading holds at most %(n)d characters.") % {
            "n": _HEADING_MAX_LENGTH
        }
    if errors:
        raise ValidationError(errors)
    if (heading, content) == (chunk.heading, chunk.content):
        return chunk
    chunk.heading, chunk.content = heading, content
    with transaction.atomic():
        chunk.save(update_fields=["heading", "content", "updated_at"])
        knowledge_changed(tenant_id=chunk.tenant_id)
    return chunk


def _document_same_source(document: Document) -> QuerySet[Document]:
    """The document's row, as long as its source is still the one ``document`` was read with.

    Writes go through it, so that a run overtaken by an edit (whose own run is queued) changes
    nothing.
    """
    return Document.objects.filter(
        pk=document.pk,
        tenant_id=document.tenant_id,
        format=document.format,
        content=document.content,
        source_file=document.source_file.name or "",
    )


def _document_source(document: Document) -> bytes | str:
    if not document.source_file:
        return document.content
    try:
        with document.source_file.open("rb") as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise ingest.IngestError(
            _("The uploaded file could not be read. Upload it again.")
        ) from exc
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ingest.IngestError(_("The file is larger than 20 MB."))
    return data


def _progress_reporter(documents: QuerySet[Document]) -> Callable[[int], None]:
    """Records progress on the row with ``update()``, forward only and once per percent."""
    reached = 0

    def report(percent: int) -> None:
        nonlocal reached
        if percent > reached:
            reached = percent
            documents.update(progress=percent)

    return report


def _chunks_replace(
    document: Document, pieces: list[ingest.TextChunk], report: Callable[[int], None]
) -> bool:
    """Replaces a document's chunks; False when they are already exactly these, in which case
    the rows (with their ids and embeddings) are kept. Runs inside the caller's transaction."""
    rows = [(piece.heading[:_HEADING_MAX_LENGTH], piece.content) for piece in pieces]
    stored = Chunk.objects.filter(document_id=document.pk).order_by("ordinal")
    if list(stored.values_list("heading", "content")) == rows:
        return False
    stored.delete()
    span = 99 - _PROGRESS_CHUNKED
    for start in range(0, len(rows), CHUNK_WRITE_BATCH):
        batch = rows[start : start + CHUNK_WRITE_BATCH]
        Chunk.objects.bulk_create(
            Chunk(
                tenant_id=document.tenant_id,
                document_id=document.pk,
                ordinal=start + offset,
                heading=heading,
                content=content,
            )
            for offset, (heading, content) in enumerate(batch)
        )
        report(_PROGRESS_CHUNKED + span * (start + len(batch)) // len(rows))
    return True


def document_process(*, document_id: int, tenant_id: int) -> Document | None:
    """Extracts a document's text, cuts it into chunks and stores them; safe to run again.

    Status goes processing, then ready (progress 100) or failed with a message for the tenant,
    written in the tenant's language. The old chunks are replaced in one transaction, so a
    failure or a crash leaves them as they were; the same source always gives the same chunks.
    Returns the document, or None when it was edited or deleted meanwhile (the edit queued its
    own run). Raises ``Document.DoesNotExist`` when the document is not ``tenant_id``'s.
    """
    document = Document.objects.select_related("tenant").get(pk=document_id, tenant_id=tenant_id)
    same_source = _document_same_source(document)
    started = same_source.update(
        status=Document.Status.PROCESSING, progress=0, error="", updated_at=timezone.now()
    )
    if not started:
        return None
    if document.status == Document.Status.READY:
        knowledge_changed(tenant_id=tenant_id)  # it leaves search until it is ready again
    report = _progress_reporter(same_source)
    try:
        with translation.override(document.tenant.default_language):
            extracted = ingest.extract_text(
                _document_source(document),
                format=document.format,
                on_page=lambda done, total: report(_PROGRESS_EXTRACTED * done // total),
                limits=ingest.ExtractionLimits(
                    max_pages=settings.KNOWLEDGE_DOCUMENT_MAX_PAGES,
                    max_chars=settings.KNOWLEDGE_DOCUMENT_MAX_CHARS,
                ),
            )
            report(_PROGRESS_EXTRACTED)
            pieces = ingest.split_into_chunks(extracted.text)
            if not pieces:
                raise ingest.IngestError(_("No text was found in this document."))
            if len(pieces) > settings.KNOWLEDGE_DOCUMENT_MAX_CHUNKS:
                raise ingest.IngestError(
                    _(
                        "This document would make %(chunks)d passages; at most %(limit)d are "
                        "kept per document. Split it into smaller files and upload them one "
                        "by one."
                    )
                    % {"chunks": len(pieces), "limit": settings.KNOWLEDGE_DOCUMENT_MAX_CHUNKS}
                )
    except ingest.IngestError as exc:
        same_source.update(
            status=Document.Status.FAILED, progress=0, error=exc.message, updated_at=timezone.now()
        )
        document.refresh_from_db()
        return document
    report(_PROGRESS_CHUNKED)
    with transaction.atomic():
        # Locks the row: two runs of one document write their chunks one after the other.
        if same_source.select_for_update().first() is None:
            return None
        _chunks_replace(document, pieces, report)
        same_source.update(
            status=Document.Status.READY, progress=100, error="", updated_at=timezone.now()
        )
        knowledge_changed(tenant_id=tenant_id)
    document.refresh_from_db()
    return document


def document_mark_failed(*, document_id: int, tenant_id: int, error: str | Promise) -> None:
    """Marks a document whose processing broke off as failed, unless another run finished it.

    A lazy ``error`` is rendered in the tenant's language.
    """
    language = (
        Tenant.objects.filter(pk=tenant_id).values_list("default_language", flat=True).first()
    )
    with translation.override(language):
        message = str(error)
    Document.objects.filter(pk=document_id, tenant_id=tenant_id, status__in=_BUSY).update(
        status=Document.Status.FAILED, progress=0, error=message, updated_at=timezone.now()
    )


# Embeddings --------------------------------------------------------------------------------------

EMBEDDING_BATCH = 128
logger = logging.getLogger(__name__)


def dense_retrieval_possible(*, tenant_id: int) -> bool:
    return settings.KNOWLEDGE_EMBEDDINGS != "off" or (
        LLMProvider.objects.filter(tenant_id=tenant_id, enabled=True)
        .exclude(embedding_model="")
        .exists()
    )


def knowledge_embeddings_refresh(*, tenant_id: int) -> int:
    """Embeds the tenant's phrasings and chunks that have no vector yet; drops stale vectors.

    Returns how many texts were embedded. When any were, the knowledge version moves on so that
    search indexes pick the new vectors up. Idempotent: a second run embeds nothing.
    """
    embedder = tenant_embedder(tenant_id=tenant_id)
    if embedder is None:
        return 0
    _version, entries, chunks = knowledge_index_records(tenant_id=tenant_id)
    texts = embeddable(
        [*(p for entry in entries for p in entry.phrasings), *(chunk_text(c) for c in chunks)],
        multilingual=embedder.multilingual,
    )
    wanted = {text_digest(text): text for text in texts}
    stored = EmbeddingVector.objects.filter(tenant_id=tenant_id, model=embedder.name)
    have = set(stored.values_list("text_hash", flat=True))
    missing = [text for digest, text in wanted.items() if digest not in have]
    for start in range(0, len(missing), EMBEDDING_BATCH):
        batch = missing[start : start + EMBEDDING_BATCH]
        vectors = embedder.embed(batch)
        EmbeddingVector.objects.bulk_create(
            [
                EmbeddingVector(
                    tenant_id=tenant_id,
                    model=embedder.name,
                    text_hash=text_digest(text),
                    dimensions=len(vector),
                    vector=np.asarray(vector, dtype="<f4").tobytes(),
                )
                for text, vector in zip(batch, vectors, strict=True)
            ],
            ignore_conflicts=True,  # a concurrent run embedded the same text
        )
    stale = have - set(wanted)
    if stale:
        stored.filter(text_hash__in=stale).delete()
    if missing:
        logger.info("embedded %s texts tenant=%s model=%s", len(missing), tenant_id, embedder.name)
        knowledge_changed(tenant_id=tenant_id)
    return len(missing)
