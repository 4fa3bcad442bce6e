"""Text out of uploaded documents, and that text cut into overlapping chunks for retrieval.

Pure functions: no database, no file storage. Every extractor returns Markdown-flavoured text
(headings as ``#`` lines, paragraphs separated by blank lines) so that one chunker serves every
format. A line of any format that starts with ``# `` therefore reads as a heading.
"""

import codecs
import io
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

import rjieba
from bs4 import BeautifulSoup
from bs4.dammit import EncodingDetector
from bs4.element import NavigableString, PageElement, PreformattedString, Tag
from django.utils.translation import gettext as _
from pypdf import PageObject, PdfReader
from pypdf.errors import PyPdfError
from pypdf.generic import ArrayObject, IndirectObject

from knowledge.models import Document
from llm.text import UNSPACED

Format = Document.Format

FORMAT_BY_EXTENSION: dict[str, str] = {
    ".md": Format.MARKDOWN,
    ".markdown": Format.MARKDOWN,
    ".txt": Format.TEXT,
    ".html": Format.HTML,
    ".htm": Format.HTML,
    ".pdf": Format.PDF,
}

_CLOSERS = "”’\"')）\\]」』》】"
_SENTENCE_END = re.compile(
    # ASCII terminators only count before a space, a closing quote, the end or Chinese text, so
    # that "3.14", "example.com" and "?a=1" stay whole.
    rf"(?:[。！？…]+|[.!?]+(?=[\s{_CLOSERS}{UNSPACED}]|$))[{_CLOSERS}]*(?P<sep>\s*)"
)
_LINE_BREAK = re.compile(r"(?P<sep>[ \t]*\n\s*)")
_CLAUSE_END = re.compile(r"(?:[，；：、]|[,;:](?=\s))(?P<sep>\s*)")
_SPACE = re.compile(r"(?P<sep>\s+)")
# Coarsest first: a piece that is too long is cut at sentence ends, then line breaks, then
# clause punctuation, then spaces, and only then between words found by jieba.
_BOUNDARIES = (_SENTENCE_END, _LINE_BREAK, _CLAUSE_END, _SPACE)

_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_NOT_PARAGRAPH_START = re.compile(r"^ {0,3}(?:[-*+>]|\d+[.)]|#|`{3}|~{3})")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Text in these scripts has no spaces between words, so lines and runs are joined without one.
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{UNSPACED}]) (?=[{UNSPACED}])")

_HTML_DROPPED = ["script", "style", "nav", "noscript", "template", "head", "iframe", "svg"]
_HTML_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_HTML_BLOCKS = frozenset(
    """address article aside blockquote body caption dd details dialog div dl dt fieldset
    figcaption figure footer form header hr li main ol p section summary ul""".split()
)
_HTML_BREAK = "\u2028"  # stands for <br> until whitespace is collapsed

# pypdf is lenient with damaged files and reports the damage as whatever exception the broken
# structure happens to trigger, not only as its own PyPdfError.
_PDF_ERRORS = (
    PyPdfError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    AssertionError,
    ArithmeticError,
    RecursionError,
    zlib.error,
    struct.error,
)


# Pages whose resources are written out in full are compared by them up to this size.
_PDF_RESOURCES_COMPARED_CHARS = 10_000


class IngestError(Exception):
    """A document whose text cannot be read. The message is shown to the tenant as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ExtractedText:
    """A document's text in Markdown form, and the headings found in it, in order."""

    text: str
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExtractionLimits:
    """How much of a document is read at most; past a limit the document is refused."""

    max_pages: int | None = None
    max_chars: int | None = None


@dataclass(frozen=True)
class TextChunk:
    ordinal: int
    heading: str  # the nearest heading above the chunk; empty before the first heading
    content: str


@dataclass(frozen=True)
class _Piece:
    text: str
    sep: str  # what separated it from the previous piece in the source: "", " ", "\n" or "\n\n"


@dataclass
class _Section:
    heading: str
    paragraphs: list[str] = field(default_factory=list)


# Extraction ------------------------------------------------------------------------------------


def format_for_filename(name: str) -> str | None:
    """The document format a file name's extension stands for, if it is one we read."""
    return FORMAT_BY_EXTENSION.get(PurePosixPath(name.replace("\\", "/")).suffix.lower())


def decode_text(data: bytes) -> str:
    """Text from bytes in UTF-8 (with or without a BOM), UTF-16 with a BOM, or GB18030."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings: tuple[str, ...] = ("utf-16",)
    else:
        # GB18030 is what Chinese Windows editors save; it decodes almost any bytes, so binary
        # files are caught by the NUL check below rather than by a decoding error.
        encodings = ("utf-8-sig", "gb18030")
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            break
        return text
    raise IngestError(
        _("The file is not readable text. Check that the chosen format matches the file.")
    )


def extract_text(
    source: bytes | str,
    *,
    format: str,
    on_page: Callable[[int, int], None] | None = None,
    limits: ExtractionLimits = ExtractionLimits(),
) -> ExtractedText:
    """The text of a document in ``format``, from the uploaded bytes or from pasted text.

    ``on_page(done, total)`` is called after each page of a PDF. Raises ``IngestError`` with a
    message for the tenant when the document cannot be read, holds no text, or exceeds
    ``limits`` (a PDF stops being read as soon as it does).
    """
    extracted = _extract(source, format=format, on_page=on_page, limits=limits)
    _check_chars(len(extracted.text), limits)
    return extracted


def _check_chars(count: int, limits: ExtractionLimits) -> None:
    if limits.max_chars is not None and count > limits.max_chars:
        raise IngestError(
            _(
                "This document holds more than %(limit)d characters of text. Split it into "
                "smaller files and upload them one by one."
            )
            % {"limit": limits.max_chars}
        )


def _extract(
    source: bytes | str,
    *,
    format: str,
    on_page: Callable[[int, int], None] | None,
    limits: ExtractionLimits,
) -> ExtractedText:
    if format == Format.PDF:
        if isinstance(source, str):
            raise IngestError(_("A PDF has to be uploaded as a file."))
        extracted = extract_pdf(source, on_page=on_page, limits=limits)
        if not extracted.text.strip():
            raise IngestError(
                _(
                    "No text was found in this PDF. If it is a scanned document, run it "
                    "through text recognition (OCR) first."
                )
            )
        return extracted
    if format == Format.HTML:
        extracted = extract_html(source)
    elif format in (Format.MARKDOWN, Format.TEXT):
        text = source if isinstance(source, str) else decode_text(source)
        extracted = extract_markdown(text) if format == Format.MARKDOWN else extract_plain(text)
    else:
        raise IngestError(
            _("“%(format)s” is not a document format Kefu reads.") % {"format": format}
        )
    if not extracted.text.strip():
        raise IngestError(_("No text was found in this document."))
    return extracted


def _normalize(text: str) -> str:
    """Unix line ends, no control characters, no trailing spaces, at most one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    text = _CONTROL_CHARS.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def _heading_text(raw: str) -> str:
    return " ".join(raw.strip().strip("*_`").split())


def _closes_fence(line: str, fence: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]}


def extract_plain(text: str) -> ExtractedText:
    return ExtractedText(text=_normalize(text))


def extract_markdown(text: str) -> ExtractedText:
    """Markdown kept as it is, with "Title / =====" headings rewritten as "# Title"."""
    lines: list[str] = []
    headings: list[str] = []
    fence: str | None = None
    for line in _normalize(text).split("\n"):
        if fence is not None:
            lines.append(line)
            if _closes_fence(line, fence):
                fence = None
            continue
        if match := _FENCE.match(line):
            fence = match.group(1)
            lines.append(line)
            continue
        match = _ATX_HEADING.match(line)
        if match and _heading_text(match.group(2)):
            title = _heading_text(match.group(2))
            headings.append(title)
            lines.append(f"{match.group(1)} {title}")
            continue
        underline = _SETEXT_UNDERLINE.match(line)
        previous = lines[-1] if lines else ""
        single_line_paragraph = len(lines) < 2 or not lines[-2].strip()
        if (
            underline
            and previous.strip()
            and single_line_paragraph
            and not _NOT_PARAGRAPH_START.match(previous)
        ):
            title = _heading_text(previous)
            headings.append(title)
            lines[-1] = ("# " if underline.group(1)[0] == "=" else "## ") + title
            continue
        lines.append(line)
    return ExtractedText(text="\n".join(lines), headings=tuple(headings))


def _collapse_html_text(text: str) -> str:
    text = re.sub(r"[ \t\n\r\f\xa0]+", " ", text)
    text = re.sub(rf" ?{_HTML_BREAK} ?", "\n", text)
    # Source line breaks inside Chinese text are layout, not spaces between words.
    return _SPACE_BETWEEN_CJK.sub("", text).strip()


def extract_html(markup: str | bytes) -> ExtractedText:
    """Visible text of an HTML page: headings as Markdown headings, blocks as paragraphs,
    table rows as lines with cells separated by "|". Scripts, styles and navigation are dropped.
    """
    if isinstance(markup, bytes) and not EncodingDetector.find_declared_encoding(
        markup, is_html=True
    ):
        markup = decode_text(markup)
    soup = BeautifulSoup(markup, "html.parser")
    for tag in soup.find_all(_HTML_DROPPED):
        tag.decompose()

    blocks: list[str] = []
    headings: list[str] = []
    inline: list[str] = []

    def flush() -> None:
        text = _collapse_html_text("".join(inline))
        inline.clear()
        if text and text != "-":
            blocks.append(text)

    # Walked with a stack rather than recursion: real pages nest deeper than Python recurses.
    stack: list[tuple[PageElement, bool]] = [(child, False) for child in reversed(soup.contents)]
    while stack:
        node, leaving = stack.pop()
        if leaving:
            flush()
            continue
        if isinstance(node, PreformattedString):  # comments, CDATA, doctype
            continue
        if isinstance(node, NavigableString):
            inline.append(str(node))
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name
        if name in _HTML_HEADINGS:
            flush()
            title = _collapse_html_text(node.get_text(" "))
            if title:
                headings.append(title)
                blocks.append("#" * _HTML_HEADINGS[name] + " " + title)
            continue
        if name == "br":
            inline.append(_HTML_BREAK)
            continue
        if name == "pre":
            flush()
            text = _normalize(node.get_text())
            if text.strip():
                blocks.append(text)
            continue
        if name == "table":
            flush()
            rows = []
            for row in node.find_all("tr"):
                cells = (
                    _collapse_html_text(cell.get_text(" ")) for cell in row.find_all(["td", "th"])
                )
                line = " | ".join(cell for cell in cells if cell)
                if line:
                    rows.append(line)
            if rows:
                blocks.append("\n".join(rows))
            continue
        if name in _HTML_BLOCKS:
            flush()
            if name == "li":
                inline.append("- ")
            stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))
    flush()
    return ExtractedText(text="\n\n".join(blocks), headings=tuple(headings))


def extract_pdf(
    data: bytes,
    *,
    on_page: Callable[[int, int], None] | None = None,
    limits: ExtractionLimits = ExtractionLimits(),
) -> ExtractedText:
    """Text of a PDF, page by page, with wrapped lines joined back into paragraphs.

    Lines that match an entry of the PDF's outline (its bookmarks) on that page become headings.
    A page drawn by the very same content as an earlier page adds nothing and is not read again.
    """
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError(
                _("This PDF is protected by a password. Remove the password and upload it again.")
            )
        total = len(reader.pages)
        if limits.max_pages is not None and total > limits.max_pages:
            raise IngestError(
                _(
                    "This PDF has %(pages)d pages; at most %(limit)d can be read. Split it into "
                    "smaller files and upload them one by one."
                )
                % {"pages": total, "limit": limits.max_pages}
            )
        outline = _pdf_outline(reader)
        pages: list[str] = []
        headings: list[str] = []
        read: set[tuple[object, ...]] = set()
        chars = 0
        for number, page in enumerate(reader.pages, start=1):
            drawn_by = _pdf_page_content_key(page)
            if drawn_by is None or drawn_by not in read:
                if drawn_by is not None:
                    read.add(drawn_by)
                text = _pdf_page_text(
                    page.extract_text() or "", outline.get(number - 1, []), headings
                )
                chars += len(text)
                _check_chars(chars, limits)
                pages.append(text)
            if on_page is not None:
                on_page(number, total)
    except _PDF_ERRORS as exc:
        raise IngestError(
            _(
                "This file could not be read as a PDF; it may be damaged. Try saving it again "
                "as PDF from the program that made it."
            )
        ) from exc
    return ExtractedText(text="\n\n".join(page for page in pages if page), headings=tuple(headings))


def _pdf_page_content_key(page: PageObject) -> tuple[object, ...] | None:
    """What a page's text comes from, when that is shared objects: their references. Two pages
    with the same key give the same text."""
    contents = page.raw_get("/Contents") if "/Contents" in page else None
    items = contents if isinstance(contents, ArrayObject) else [contents]
    references = [item for item in items if isinstance(item, IndirectObject)]
    if not references or len(references) != len(items):
        return None
    resources = page.raw_get("/Resources") if "/Resources" in page else None
    if isinstance(resources, IndirectObject):
        drawn_with: object = (resources.idnum, resources.generation)
    else:
        drawn_with = repr(resources)  # a small dictionary of references, as a rule
        if len(drawn_with) > _PDF_RESOURCES_COMPARED_CHARS:
            return None
    return (*((item.idnum, item.generation) for item in references), drawn_with)


def _pdf_outline(reader: PdfReader) -> dict[int, list[tuple[int, str]]]:
    """Outline titles with their level, by page index."""
    found: dict[int, list[tuple[int, str]]] = {}

    def visit(items: list, level: int) -> None:
        for item in items:
            if isinstance(item, list):
                visit(item, level + 1)
                continue
            page = reader.get_destination_page_number(item)
            title = " ".join(str(item.title or "").split())
            if page is not None and page >= 0 and title:
                found.setdefault(page, []).append((min(level, 6), title))

    try:
        visit(reader.outline, 1)
    except _PDF_ERRORS:
        return {}  # a broken outline costs the headings, not the document
    return found


def _soft_join(left: str, right: str) -> str:
    """Joins two pieces of one paragraph: without a space when either side is Chinese."""
    if re.match(f"[{UNSPACED}]", left[-1:]) or re.match(f"[{UNSPACED}]", right[:1]):
        return left + right
    if left.endswith("-") and left[-2:-1].isalpha():  # a word hyphenated at the line end
        return left + right
    return f"{left} {right}"


def _pdf_page_text(raw: str, outline: list[tuple[int, str]], headings: list[str]) -> str:
    """Paragraphs of one page. PDF text comes as visual lines: a line is joined to the next
    unless it ends a sentence well short of the page's longest line."""
    titles = {" ".join(title.split()).casefold(): (level, title) for level, title in outline}
    lines = [" ".join(line.split()) for line in _normalize(raw).split("\n")]
    width = max((len(line) for line in lines), default=0)
    paragraphs: list[str] = []
    current = ""
    for line in lines:
        heading = titles.get(line.casefold())
        if not line or heading:
            if current:
                paragraphs.append(current)
            current = ""
            if heading:
                level, title = heading
                headings.append(title)
                paragraphs.append("#" * level + " " + title)
            continue
        current = _soft_join(current, line) if current else line
        if len(line) < 0.8 * width and re.search(f"[。！？.!?…][{_CLOSERS}]*$", line):
            paragraphs.append(current)
            current = ""
    if current:
        paragraphs.append(current)
    return "\n\n".join(paragraphs)


# Chunking --------------------------------------------------------------------------------------


def split_into_chunks(
    text: str, *, max_chars: int = 800, overlap_chars: int = 120
) -> list[TextChunk]:
    """Cuts Markdown-flavoured text into chunks of at most ``max_chars`` characters.

    Chunks never span a heading; within a section they are filled with whole paragraphs, a
    paragraph that does not fit is cut at sentence ends (Chinese and English), then at line
    breaks, clause punctuation and spaces, and only as a last resort between words found by
    jieba. Each chunk after the first of its section starts with roughly the last
    ``overlap_chars`` characters of the previous one, from a sentence or word start, so that a
    fact cut at a chunk boundary is whole in at least one chunk.
    """
    if max_chars < 40:
        raise ValueError("max_chars must be at least 40")
    if not 0 <= overlap_chars <= max_chars // 2:
        raise ValueError("overlap_chars must be between 0 and half of max_chars")
    piece_limit = max_chars - overlap_chars - 2  # room for the overlap and a paragraph break
    chunks: list[TextChunk] = []
    for section in _sections(text):
        pieces: list[_Piece] = []
        for index, paragraph in enumerate(section.paragraphs):
            split = _split_to_fit(paragraph, piece_limit)
            pieces.append(replace(split[0], sep="\n\n" if index else ""))
            pieces.extend(split[1:])
        for content in _pack(pieces, max_chars=max_chars, overlap_chars=overlap_chars):
            chunks.append(TextChunk(ordinal=len(chunks), heading=section.heading, content=content))
    return chunks


def _sections(text: str) -> Iterator[_Section]:
    """Headed runs of paragraphs. Fenced code is one paragraph and never holds a heading."""
    section = _Section(heading="")
    lines: list[str] = []
    fence: str | None = None

    def paragraph() -> None:
        body = "\n".join(lines).strip()
        lines.clear()
        if body:
            section.paragraphs.append(body)

    for line in _normalize(text).split("\n"):
        if fence is not None:
            lines.append(line)
            if _closes_fence(line, fence):
                fence = None
            continue
        if match := _FENCE.match(line):
            fence = match.group(1)
            lines.append(line)
            continue
        match = _ATX_HEADING.match(line)
        if match and _heading_text(match.group(2)):
            paragraph()
            if section.paragraphs:
                yield section
            section = _Section(heading=_heading_text(match.group(2)))
            continue
        if not line.strip():
            paragraph()
            continue
        lines.append(line)
    paragraph()
    if section.paragraphs:
        yield section


def _separator(whitespace: str) -> str:
    if not whitespace:
        return ""
    return "\n" if "\n" in whitespace else " "


def _cut(text: str, boundary: re.Pattern[str]) -> list[_Piece]:
    pieces: list[_Piece] = []
    start, sep = 0, ""
    for match in boundary.finditer(text):
        cut, resume = match.start("sep"), match.end("sep")
        if cut <= start or resume >= len(text):
            continue
        pieces.append(_Piece(text[start:cut], sep))
        start, sep = resume, _separator(match.group("sep"))
    pieces.append(_Piece(text[start:], sep))
    return pieces


def _split_to_fit(text: str, limit: int, level: int = 0) -> list[_Piece]:
    """``text`` as pieces of at most ``limit`` characters, cut at the coarsest boundaries."""
    if len(text) <= limit:
        return [_Piece(text, "")]
    for depth in range(level, len(_BOUNDARIES)):
        parts = _cut(text, _BOUNDARIES[depth])
        if len(parts) > 1:
            pieces: list[_Piece] = []
            for part in parts:
                split = _split_to_fit(part.text, limit, depth + 1)
                pieces.append(replace(split[0], sep=part.sep))
                pieces.extend(split[1:])
            return pieces
    return _split_between_words(text, limit)


def _split_between_words(text: str, limit: int) -> list[_Piece]:
    """Cuts a run without spaces or punctuation (Chinese, mostly) between jieba's words; a single
    word longer than ``limit`` (a long URL, say) is cut where it must be."""
    pieces: list[_Piece] = []
    sep = ""
    while len(text) > limit:
        cut = 0
        # A margin past the limit so that jieba sees the word that straddles it whole.
        for token in rjieba.cut(text[: limit + 20]):
            if cut + len(token) > limit:
                break
            cut += len(token)
        cut = cut or limit
        pieces.append(_Piece(text[:cut].rstrip(), sep))
        rest = text[cut:]
        text = rest.lstrip()
        sep = " " if len(text) != len(rest) else ""
    pieces.append(_Piece(text, sep))
    return pieces


def _overlap_tail(text: str, size: int) -> str:
    """About the last ``size`` characters of ``text``, starting at a sentence start if one is
    near enough (keeping at least a third of ``size``), otherwise at a word start."""
    if size <= 0:
        return ""
    if len(text) <= size:
        return text
    start = len(text) - size
    latest = len(text) - size // 3
    for match in _SENTENCE_END.finditer(text, max(0, start - 4)):
        begin = match.end()
        if begin > latest:
            break
        if begin >= start:
            return text[begin:]
    position = max(0, start - 20)
    for token in rjieba.cut(text[position:]):
        if position >= start and token[:1].isalnum():
            return text[position:]
        position += len(token)
    return text[start:].lstrip()


def _pack(pieces: list[_Piece], *, max_chars: int, overlap_chars: int) -> list[str]:
    """Fills chunks greedily with pieces; each new chunk starts with the previous one's tail."""
    contents: list[str] = []
    current = ""
    for piece in pieces:
        if not current:
            current = piece.text
            continue
        joined = current + piece.sep + piece.text
        if len(joined) <= max_chars:
            current = joined
            continue
        contents.append(current)
        room = max_chars - len(piece.sep) - len(piece.text)
        tail = _overlap_tail(current, min(overlap_chars, room))
        current = tail + piece.sep + piece.text if tail else piece.text
    if current:
        contents.append(current)
    return contents
