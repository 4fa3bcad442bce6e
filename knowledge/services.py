"""Writes to a tenant's knowledge base."""

import csv
import io
from dataclasses import dataclass, field

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from knowledge.csv_format import FALSE_WORDS, TRUE_WORDS, spreadsheet_unescape
from knowledge.models import KnowledgeEntry
from tenants.models import Tenant

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


def _split(text: str, separators: str) -> list[str]:
    for separator in separators[1:]:
        text = text.replace(separator, separators[0])
    return list(dict.fromkeys(part.strip() for part in text.split(separators[0]) if part.strip()))


def _parse_rows(text: str, errors: list[str]) -> list[_Row]:
    reader = csv.DictReader(io.StringIO(text))
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
        values = {
            (key or "").strip().lower(): spreadsheet_unescape((value or "").strip())
            for key, value in raw.items()
            if isinstance(value, str | type(None))
        }
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
                alternate_questions=_split(values.get("alternate_questions", ""), "\n|"),
                answer=answer,
                tags=_split(values.get("tags", ""), ",，"),
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


def knowledge_version_cache_key(tenant_id: int) -> str:
    return f"kb:version:{tenant_id}"


def knowledge_changed(*, tenant_id: int) -> None:
    """Records that a tenant's knowledge changed, so every process rebuilds its search index.

    The database holds the version; the cache mirrors it (set after commit) so that the search
    path can check freshness without a query.
    """
    Tenant.objects.filter(pk=tenant_id).update(knowledge_version=F("knowledge_version") + 1)

    def publish() -> None:
        version = Tenant.objects.filter(pk=tenant_id).values_list("knowledge_version", flat=True)
        cache.set(knowledge_version_cache_key(tenant_id), version.first(), timeout=None)

    transaction.on_commit(publish)
