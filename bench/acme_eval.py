"""Builds the Acme FAQ evaluation set from the demo shop's knowledge base.

Writes `bench/data/acme_kb.csv` (columns `key,question,answer`) from
`devtools/demo_data.json`: one row per phrasing of each FAQ entry, that is the
question and every alternate question, all sharing the entry's answer. The key is
`acme-NN`, NN being the entry's 0-based index in the JSON, zero-padded to 2 digits.

`bench/data/acme_queries.csv` (columns `question,expected_key`) is hand-written:
customer messages worded differently from every KB phrasing, each with one correct
entry. If it exists, it is checked against the freshly written KB: every
expected_key must be a KB key and no query may equal a KB phrasing once case,
punctuation and whitespace are ignored. Counts per language are printed.

Run from the repository root:
    python bench/acme_eval.py
"""

from __future__ import annotations

import csv
import json
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path
from typing import TypedDict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llm.text import HAN  # noqa: E402

SOURCE = ROOT / "devtools/demo_data.json"
DATA_DIR = Path(__file__).resolve().parent / "data"
KB_CSV = DATA_DIR / "acme_kb.csv"
QUERIES_CSV = DATA_DIR / "acme_queries.csv"


class FaqEntry(TypedDict):
    question: str
    alternate_questions: list[str]
    answer: str
    tags: list[str]
    language: str


KbRow = tuple[str, str, str]  # (key, question, answer)


def entry_key(index: int) -> str:
    """The KB key of the FAQ entry at `index` in the JSON."""
    return f"acme-{index:02d}"


def load_faq(path: Path = SOURCE) -> list[FaqEntry]:
    """The `faq` list of the demo data file."""
    with path.open(encoding="utf-8") as f:
        faq: list[FaqEntry] = json.load(f)["faq"]
    return faq


def kb_rows(faq: list[FaqEntry]) -> list[KbRow]:
    """One row per phrasing: the question first, then each alternate, in JSON order."""
    rows: list[KbRow] = []
    for index, entry in enumerate(faq):
        key = entry_key(index)
        for phrasing in [entry["question"], *entry["alternate_questions"]]:
            rows.append((key, phrasing, entry["answer"]))
    return rows


def write_kb(rows: list[KbRow], path: Path = KB_CSV) -> None:
    """Writes the KB rows as a UTF-8 CSV with a `key,question,answer` header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "question", "answer"])
        writer.writerows(rows)


def normalise(text: str) -> str:
    """Casefolded text with punctuation, symbols and whitespace removed (NFKC first)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in text if c.isalnum())


def read_queries(path: Path = QUERIES_CSV) -> list[tuple[str, str]]:
    """The (question, expected_key) rows of the queries CSV."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["question", "expected_key"]:
            raise ValueError(f"{path}: unexpected header {reader.fieldnames}")
        return [(row["question"], row["expected_key"]) for row in reader]


def validate(faq: list[FaqEntry], rows: list[KbRow], queries: list[tuple[str, str]]) -> list[str]:
    """Problems with the queries; prints per-language and per-entry counts."""
    problems: list[str] = []
    keys = {key for key, _, _ in rows}
    language = {entry_key(i): entry["language"] for i, entry in enumerate(faq)}
    phrasings = {normalise(question): key for key, question, _ in rows}
    seen: dict[str, int] = {}
    for line, (question, expected) in enumerate(queries, start=2):
        norm = normalise(question)
        if expected not in keys:
            problems.append(f"line {line}: unknown key {expected!r}")
        if not norm:
            problems.append(f"line {line}: empty question")
        if norm in phrasings:
            problems.append(f"line {line}: {question!r} copies a KB phrasing of {phrasings[norm]}")
        if norm in seen:
            problems.append(f"line {line}: duplicate of line {seen[norm]}")
        seen.setdefault(norm, line)
        is_zh = re.search(f"[{HAN}]", question) is not None
        if expected in language and is_zh != (language[expected] == "zh-hans"):
            problems.append(f"line {line}: language differs from {expected}")

    per_key = Counter(expected for _, expected in queries)
    per_language = Counter(language.get(expected, "?") for _, expected in queries)
    entries_per_language = Counter(entry["language"] for entry in faq)
    missing = sorted(keys - per_key.keys())
    print(f"queries: {len(queries)}")
    for lang in sorted(per_language):
        print(
            f"  {lang}: {per_language[lang]} queries over "
            f"{entries_per_language.get(lang, 0)} entries"
        )
    print(f"  per entry: min {min(per_key.values())}, max {max(per_key.values())}")
    if missing:
        problems.append(f"entries without queries: {', '.join(missing)}")
    return problems


def main() -> int:
    faq = load_faq()
    rows = kb_rows(faq)
    write_kb(rows)
    per_language = Counter(entry["language"] for entry in faq)
    print(f"wrote {KB_CSV.relative_to(ROOT)}: {len(rows)} phrasings of {len(faq)} entries")
    for lang, count in sorted(per_language.items()):
        phrasing_count = sum(1 for key, _, _ in rows if faq[int(key[5:])]["language"] == lang)
        print(f"  {lang}: {count} entries, {phrasing_count} phrasings")
    if not QUERIES_CSV.exists():
        return 0
    problems = validate(faq, rows, read_queries())
    for problem in problems:
        print(f"PROBLEM {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
