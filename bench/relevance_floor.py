"""Chooses the relevance floor (``KNOWLEDGE_RELEVANCE_FLOOR``) on CLINC150's in- and out-of-scope
questions.

Without an LLM, Kefu shows the best passage it found. That is right when the passage answers the
question and wrong when the question is about something the knowledge base does not cover. The
floor on ``SearchHit.relevance`` (the IDF-weighted share of the question's words the passage
contains) tells the two apart. It is measured on simulated tenants: random subsets of the 150
intents, each intent an entry (its first training phrasing the question, the other nine its
alternate phrasings; CLINC150 has no answers, so the answers are left empty).
They are asked the validation questions of every intent and the out-of-scope ones:

- *answerable*: the intent is in the tenant's knowledge base and the top passage is its entry;
- *off-topic*: the intent is not in the knowledge base, or the question is out of scope.

For each floor it prints the share of answerable questions still answered and the share of
off-topic questions that would still get a passage, and picks the floor with the best balance
(the largest difference of the two, Youden's J); the default is the lowest floor within 0.01 of
that balance, since among near-equals declining fewer answerable questions is better.

    python bench/relevance_floor.py [--csv bench/data/clinc150/subset.csv]
"""

import argparse
import csv
import os
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk_site.settings.base")

import django  # noqa: E402

django.setup()

from knowledge.index import EntryRecord, TenantIndex  # noqa: E402
from knowledge.search import _search  # noqa: E402

DEFAULT_CSV = ROOT / "bench" / "data" / "clinc150" / "subset.csv"
TENANT_SIZES = (10, 20, 30, 50, 80, 150)
FLOORS = np.round(np.arange(0.05, 0.96, 0.05), 2)
# Among floors that balance the two errors about equally well, the lowest: it declines fewer
# answerable questions.
NEAR_TIE = 0.01


def load(path: Path) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    phrasings: dict[str, list[str]] = defaultdict(list)
    questions: list[tuple[str, str]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["split"] == "train" and row["intent"]:
                phrasings[row["intent"]].append(row["text"])
            elif row["split"] == "val":
                questions.append((row["text"], row["intent"]))
    return phrasings, questions


def measure(path: Path, seeds: int) -> tuple[list[float], list[float], list[float]]:
    """Relevance of the top passage for answerable, off-topic and (among those) out-of-scope
    questions."""
    phrasings, questions = load(path)
    intents = sorted(phrasings)
    answerable: list[float] = []
    off_topic: list[float] = []
    out_of_scope: list[float] = []
    for seed in range(seeds):
        for size in TENANT_SIZES:
            rng = random.Random(seed * 1000 + size)  # noqa: S311 - a reproducible simulation
            chosen = rng.sample(intents, size)
            entries = [
                EntryRecord(
                    id=n,
                    question=phrasings[intent][0],
                    answer="",
                    phrasings=tuple(phrasings[intent]),
                )
                for n, intent in enumerate(chosen)
            ]
            index = TenantIndex.build(tenant_id=0, version=0, entries=entries, chunks=[])
            for text, intent in questions:
                hits = _search(index, text, None, 1)
                relevance = hits[0].relevance if hits else 0.0
                if intent in chosen:
                    if hits and hits[0].id == chosen.index(intent):
                        answerable.append(relevance)
                else:
                    off_topic.append(relevance)
                    if not intent:
                        out_of_scope.append(relevance)
    return answerable, off_topic, out_of_scope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    answerable, off_topic, out_of_scope = (np.array(v) for v in measure(args.csv, args.seeds))
    print(
        f"answerable questions: {len(answerable)}, off-topic questions: {len(off_topic)} "
        f"(of which out of scope: {len(out_of_scope)})"
    )
    print("floor  answerable kept  off-topic shown  out-of-scope shown")
    balance = {}
    for floor in FLOORS:
        kept = float((answerable >= floor).mean())
        shown = float((off_topic >= floor).mean())
        oos_shown = float((out_of_scope >= floor).mean())
        print(f"{floor:5.2f}  {kept:15.3f}  {shown:15.3f}  {oos_shown:18.3f}")
        balance[float(floor)] = kept - shown
    best = max(balance, key=lambda floor: balance[floor])
    chosen = min(floor for floor, j in balance.items() if j >= balance[best] - NEAR_TIE)
    print(f"best balance (Youden's J {balance[best]:.3f}) at floor {best:.2f}")
    print(f"chosen floor (lowest within {NEAR_TIE} of the best J): {chosen:.2f}")


if __name__ == "__main__":
    main()
