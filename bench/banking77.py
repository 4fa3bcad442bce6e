"""The BANKING77 development split for FAQ matching, and its CSV files for ``kb_eval``.

Per intent, 10 phrasings form the knowledge base (one entry per intent) and the other phrasings
are the queries. The repository carries a subset (20 phrasings for each of the 77 intents,
``bench/data/banking77/``); the published figures come from the full training split, given with
``--csv``. Write the files and score them:

    python bench/banking77.py --out /tmp/b77 [--csv PATH/TO/banking77/train.csv]
    python manage.py kb_eval --kb /tmp/b77/kb.csv --queries /tmp/b77/queries.csv
    python manage.py kb_eval --kb /tmp/b77/kb.csv --queries /tmp/b77/queries.csv --embeddings local
"""

import argparse
import csv
import random
from collections import defaultdict
from pathlib import Path

# The subset in the repository, so that a fresh clone runs the benchmark and its tests.
DEFAULT_CSV = Path(__file__).resolve().parent / "data/banking77/train_subset.csv"
CSV_HELP = "BANKING77 `text,category` CSV (default: the subset in bench/data/banking77/)"

Pair = tuple[str, str]  # (text, intent)


def banking77_split(
    path: str | Path, shots: int = 10, seed: int = 77
) -> tuple[list[Pair], list[Pair]]:
    """Splits BANKING77 (`text,category` CSV) into knowledge-base and query pairs.

    Intents are visited in sorted order; each one's phrasings are sorted, then shuffled by one
    `random.Random(seed)` shared across intents, so the split depends only on the file and the
    arguments. The first `shots` phrasings of an intent go to the knowledge base, the rest are
    queries. Both lists come grouped by intent, in that order.
    """
    if shots < 1:
        raise ValueError("shots must be at least 1")
    by_intent: dict[str, list[str]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            by_intent[row["category"]].append(row["text"])
    rng = random.Random(seed)  # noqa: S311 - a reproducible split, not a secret
    knowledge_base: list[Pair] = []
    queries: list[Pair] = []
    for intent in sorted(by_intent):
        phrasings = sorted(by_intent[intent])
        rng.shuffle(phrasings)
        knowledge_base += [(text, intent) for text in phrasings[:shots]]
        queries += [(text, intent) for text in phrasings[shots:]]
    return knowledge_base, queries


def write_kb_eval_files(knowledge_base: list[Pair], queries: list[Pair], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "kb.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["key", "question", "answer"])
        writer.writerows(
            (intent, text, f"Answer about {intent}") for text, intent in knowledge_base
        )
    with (out / "queries.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "expected_key"])
        writer.writerows(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help=CSV_HELP)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--seed", type=int, default=77)
    args = parser.parse_args()
    knowledge_base, queries = banking77_split(args.csv, shots=args.shots, seed=args.seed)
    write_kb_eval_files(knowledge_base, queries, args.out)
    print(f"{len(knowledge_base)} phrasings, {len(queries)} queries -> {args.out}")


if __name__ == "__main__":
    main()
