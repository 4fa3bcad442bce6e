"""Reads of a tenant's knowledge base."""

import csv
import io
from collections.abc import Iterable

from django.db.models import QuerySet

from knowledge.csv_format import CSV_COLUMNS, spreadsheet_safe
from knowledge.models import KnowledgeEntry
from tenants.models import Tenant


def knowledge_entry_list(*, tenant: Tenant, enabled_only: bool = False) -> QuerySet[KnowledgeEntry]:
    entries = KnowledgeEntry.objects.filter(tenant=tenant)
    return entries.filter(enabled=True) if enabled_only else entries


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
                spreadsheet_safe("\n".join(entry.alternate_questions)),
                spreadsheet_safe(entry.answer),
                spreadsheet_safe(", ".join(entry.tags)),
                "true" if entry.enabled else "false",
            ]
        )
    return buffer.getvalue()
