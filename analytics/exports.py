"""CSV exports of the reports: streamed a few hundred rows at a time, never held in memory
whole, with the cells a spreadsheet would run as a formula neutralised."""

import csv
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from itertools import islice

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse

from tenants.scoping import tenant_scope

# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
# (CSV injection): such text cells get a leading apostrophe, which shows it as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
LINES_PER_CHUNK = 500


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


def csv_lines(*, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """The CSV text, line by line."""
    writer = csv.writer(_Echo())
    yield writer.writerow([csv_cell(name) for name in header])
    for row in rows:
        yield writer.writerow([csv_cell(value) for value in row])


def _chunk(lines: Iterator[str], tenant_id: int) -> str:
    # The rows are read while the response streams, after the request's scope has ended.
    with tenant_scope(tenant_id):
        return "".join(islice(lines, LINES_PER_CHUNK))


def _chunks(lines: Iterator[str], tenant_id: int) -> Iterator[str]:
    while chunk := _chunk(lines, tenant_id):
        yield chunk


async def _async_chunks(lines: Iterator[str], tenant_id: int) -> AsyncIterator[str]:
    # Under ASGI a sync iterator would be read to its end before the first byte is sent;
    # each chunk is read in the thread that holds the database cursor instead.
    read = sync_to_async(_chunk, thread_sensitive=True)
    while chunk := await read(lines, tenant_id):
        yield chunk


def csv_response(
    *,
    request: HttpRequest,
    filename: str,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    tenant_id: int,
) -> StreamingHttpResponse:
    """A streamed CSV attachment of ``rows`` (read in the tenant's scope as it streams)."""
    lines = csv_lines(header=header, rows=rows)
    content = (
        _async_chunks(lines, tenant_id)
        if isinstance(request, ASGIRequest)
        else _chunks(lines, tenant_id)
    )
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
