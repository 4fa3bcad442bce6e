"""The FAQ spreadsheet format shared by import and export.

Columns: ``id, question, alternate_questions, answer, tags, enabled``. Alternate phrasings are
separated by new lines inside their cell, tags by commas. ``id`` is empty for new entries.
Cells that a spreadsheet would run as a formula are written with a leading apostrophe, which the
import removes again, so an export re-imports unchanged.
"""

CSV_COLUMNS = ["id", "question", "alternate_questions", "answer", "tags", "enabled"]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def spreadsheet_unescape(value: str) -> str:
    if value.startswith("'") and value[1:].startswith(_FORMULA_STARTS):
        return value[1:]
    return value


TRUE_WORDS = {"1", "true", "yes", "y", "on", "是", "启用"}
FALSE_WORDS = {"0", "false", "no", "n", "off", "否", "停用", "禁用"}
