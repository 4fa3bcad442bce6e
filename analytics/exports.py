"""CSV exports of the reports: streamed a row at a time, never held in memory whole, with the
cells a spreadsheet would run as a formula neutralised."""

import csv
from collections.abc import Iterable, Iterator, Sequence

from django.http import StreamingHttpResponse

from tenants.scoping import tenant_scope

# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
# (CSV injection): such text cells get a leading apostrophe, which shows it as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    """A file whose write() returns what it is given: csv.writer then yields lines."""

    def write(self, value: str) -> str:
        return value


def csv_cell(value: object) -> object:
    """A cell as written: None is empty; text that would start a formula gets an apostrophe
    (numbers are left alone: -3 is a number, not a formula)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(
    *, header: Sequence[str], rows: Iterable[Sequence[object]], tenant_id: int
) -> Iterator[str]:
    """The CSV text, line by line. The rows are read while the response streams, after the
    request's scope has ended: they are read in the tenant's scope again."""
    writer = csv.writer(_Echo())
    yield writer.writerow([csv_cell(name) for name in header])
    with tenant_scope(tenant_id):
        for row in rows:
            yield writer.writerow([csv_cell(value) for value in row])


def csv_response(
    *, filename: str, header: Sequence[str], rows: Iterable[Sequence[object]], tenant_id: int
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        csv_lines(header=header, rows=rows, tenant_id=tenant_id),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
