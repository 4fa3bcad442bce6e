"""The FAQ spreadsheet format shared by import and export.

Columns: ``id, question, alternate_questions, answer, tags, enabled``. ``id`` is empty for new
entries. Alternate phrasings are separated by new lines (or ``|``) inside their cell, tags by
commas; a backslash makes the next character part of the item (``\\|``, ``\\,``, ``\\\\``), ``\\n``
is a line break inside an item, and an escaped space at either end of an item is kept.

A cell is read with the spaces around it removed, except when it starts with an apostrophe:
then the apostrophe is dropped and the rest is read exactly as written. The export puts one in
front of every cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``…),
that starts with an apostrophe, or that has spaces around it, so an export re-imports unchanged.
"""

CSV_COLUMNS = ["id", "question", "alternate_questions", "answer", "tags", "enabled"]
ALTERNATES_SEPARATORS = "\n|"
TAGS_SEPARATORS = ",，"
_VERBATIM = "'"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", _VERBATIM)
_ESCAPE = "\\"
_ESCAPED_CONTROLS = {"\n": "n", "\r": "r"}
_UNESCAPED_CONTROLS = {code: char for char, code in _ESCAPED_CONTROLS.items()}


def spreadsheet_safe(value: str) -> str:
    """A text cell that a spreadsheet shows as text and that imports as ``value`` again."""
    if value.startswith(_FORMULA_STARTS) or value != value.strip():
        return _VERBATIM + value
    return value


def spreadsheet_unescape(value: str) -> str:
    """The text a cell stands for (the inverse of ``spreadsheet_safe``)."""
    return value[1:] if value.startswith(_VERBATIM) else value.strip()


def list_cell(items: list[str], separators: str, joiner: str | None = None) -> str:
    """Items in one cell, joined by ``joiner`` (the first separator by default), each escaped
    so that it splits back."""
    joiner = separators[0] if joiner is None else joiner
    return spreadsheet_safe(joiner.join(_item_escape(item, separators) for item in items))


def list_cell_items(cell: str, separators: str) -> list[str]:
    """The distinct, non-empty items of a cell written by ``list_cell`` or by hand."""
    items: list[list[tuple[str, bool]]] = [[]]  # characters, and whether each was escaped
    text = spreadsheet_unescape(cell)
    position = 0
    while position < len(text):
        char = text[position]
        position += 1
        if char == _ESCAPE and position < len(text):
            following = text[position]
            position += 1
            if following in _UNESCAPED_CONTROLS:
                items[-1].append((_UNESCAPED_CONTROLS[following], True))
            elif following == _ESCAPE or following in separators or following.isspace():
                items[-1].append((following, True))
            else:  # not an escape: "C:\Users" keeps its backslash
                items[-1].extend([(char, False), (following, False)])
        elif char in separators:
            items.append([])
        else:
            items[-1].append((char, False))
    found = (_item_strip(item) for item in items)
    return list(dict.fromkeys(item for item in found if item))


def _item_escape(item: str, separators: str) -> str:
    escaped = [
        _ESCAPE + _ESCAPED_CONTROLS[char]
        if char in _ESCAPED_CONTROLS
        else _ESCAPE + char
        if char == _ESCAPE or char in separators
        else char
        for char in item
    ]
    # Spaces at either end would be stripped: escaped, they are kept.
    for positions in (range(len(item)), range(len(item) - 1, -1, -1)):
        for position in positions:
            if not item[position].isspace():
                break
            if not escaped[position].startswith(_ESCAPE):
                escaped[position] = _ESCAPE + item[position]
    return "".join(escaped)


def _item_strip(item: list[tuple[str, bool]]) -> str:
    start, end = 0, len(item)
    while start < end and item[start][0].isspace() and not item[start][1]:
        start += 1
    while end > start and item[end - 1][0].isspace() and not item[end - 1][1]:
        end -= 1
    return "".join(char for char, _escaped in item[start:end])


TRUE_WORDS = {"1", "true", "yes", "y", "on", "是", "启用"}
FALSE_WORDS = {"0", "false", "no", "n", "off", "否", "停用", "禁用"}
