"""Fits the FAQ confidence model (``knowledge.confidence``) on the BANKING77 development split.

A confidence must mean "probability that answering with this entry is right" for the questions
customers really ask, and many of those are *not* in the FAQ. So the model is fitted on
simulated tenants: random subsets of the 77 intents (5 to 77 of them) with 1 to 10 phrasings
each, asked questions from every intent, in scope or not. One half of the simulated tenants
fits, the other half checks; the weights printed at the end (fitted on both) are what
``knowledge/confidence.py`` ships.

    python bench/faq_calibration.py [--dense] [--csv PATH/TO/banking77/train.csv]

The shipped weights were fitted on the full training split (``--csv``).
"""

import argparse
import os
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk_site.settings.base")

from bench.banking77 import CSV_HELP, DEFAULT_CSV, Pair, banking77_split  # noqa: E402
from knowledge.confidence import MatchFeatures  # noqa: E402
from knowledge.index import EntryRecord, TenantIndex  # noqa: E402

TENANT_SIZES = (5, 10, 15, 20, 30, 40, 60, 77, 77, 77)
PHRASING_COUNTS = (1, 2, 3, 4, 5, 10)
QUERIES_PER_TENANT = 1500


def embed_all(texts: list[str]) -> dict[str, np.ndarray]:
    from llm.embeddings import LocalEmbedder

    unique = list(dict.fromkeys(texts))
    return dict(zip(unique, LocalEmbedder().embed(unique), strict=True))


def simulate(
    seed: int, split: tuple[list[Pair], list[Pair]], vectors: dict[str, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    knowledge_base, queries = split
    phrasings: dict[str, list[str]] = defaultdict(list)
    for text, intent in knowledge_base:
        phrasings[intent].append(text)
    intents = sorted(phrasings)
    rows, labels = [], []
    for trial, size in enumerate(TENANT_SIZES):
        rng = random.Random(seed * 1000 + trial)  # noqa: S311 - a reproducible simulation
        chosen = rng.sample(intents, size)
        entries = [
            EntryRecord(
                id=n,
                question=phrasings[intent][0],
                answer="",
                phrasings=tuple(phrasings[intent][: rng.choice(PHRASING_COUNTS)]),
            )
            for n, intent in enumerate(chosen)
        ]
        index = TenantIndex.build(
            tenant_id=0,
            version=0,
            entries=entries,
            chunks=[],
            vectors=None
            if vectors is None
            else lambda texts, _chunks: (
                "local",
                np.stack([vectors[t] for t in texts]),
                np.zeros((0, 384), dtype=np.float32),
            ),
        )
        for text, intent in rng.sample(queries, min(QUERIES_PER_TENANT, len(queries))):
            scores = index.faq_scores(text, None if vectors is None else vectors[text])
            if scores is None:
                continue
            features = MatchFeatures.of(index, scores)
            rows.append(features.lexical_vector() if vectors is None else features.dense_vector())
            labels.append(chosen[int(scores.entry_positions[0])] == intent)
    return np.array(rows), np.array(labels, dtype=np.float64)


def fit(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    design = np.c_[features, np.ones(len(features))]

    def loss(weights: np.ndarray) -> float:
        z = design @ weights
        return float(np.sum(np.logaddexp(0, z) - labels * z) + 0.01 * np.sum(weights[:-1] ** 2))

    return minimize(loss, np.zeros(design.shape[1]), method="L-BFGS-B").x


def predict(weights: np.ndarray, features: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(np.c_[features, np.ones(len(features))] @ weights)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", action="store_true", help="Refit DENSE_WEIGHTS.")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help=CSV_HELP)
    args = parser.parse_args()
    split = banking77_split(args.csv)
    vectors = None
    if args.dense:
        knowledge_base, queries = split
        vectors = embed_all([text for text, _intent in knowledge_base + queries])
    fit_x, fit_y = simulate(seed=1, split=split, vectors=vectors)
    check_x, check_y = simulate(seed=2, split=split, vectors=vectors)
    weights = fit(fit_x, fit_y)
    confidence = predict(weights, check_x)
    print(f"held-out simulated tenants: {len(check_y)} questions, top-1 right {check_y.mean():.3f}")
    print("threshold  precision  coverage")
    for threshold in (0.5, 0.6, 0.7, 0.8, 0.9):
        chosen = confidence >= threshold
        precision = check_y[chosen].mean() if chosen.any() else float("nan")
        print(f"{threshold:9.2f}  {precision:9.3f}  {chosen.mean():8.3f}")
    final = fit(np.r_[fit_x, check_x], np.r_[fit_y, check_y])
    name = "LEXICAL_WEIGHTS" if vectors is None else "DENSE_WEIGHTS"
    print(f"{name} =", np.round(final, 4).tolist())


if __name__ == "__main__":
    main()
