"""How well local embeddings alone match BANKING77 questions to a 10-shot knowledge base.

Each intent keeps `shots` phrasings as its knowledge-base entry; every other phrasing is a query.
Three ways to score an intent against a query are compared, top-1 and top-3:
  max       the best cosine over the intent's phrasings (nearest neighbour)
  centroid  the cosine with the renormalised mean of the intent's phrasing vectors
  mix       mix_weight * max + (1 - mix_weight) * centroid

Run from the repository root, with the local-embeddings extra installed:
    python bench/banking77_embeddings.py [--csv PATH] [--shots 10] [--seed 77] [--mix 0.5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.banking77 import DEFAULT_CSV, banking77_split
from llm.embeddings import LocalEmbedder


def _top_k_accuracy(scores: npt.NDArray[np.float32], truth: npt.NDArray[np.int64], k: int) -> float:
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float((top == truth[:, None]).any(axis=1).mean())


def _intent_scores(
    query_vectors: npt.NDArray[np.float32],
    kb_vectors: npt.NDArray[np.float32],
    kb_intent: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Per (query, intent): the max phrasing cosine and the centroid cosine."""
    similarities = query_vectors @ kb_vectors.T
    starts = np.flatnonzero(np.r_[True, kb_intent[1:] != kb_intent[:-1]])  # kb is grouped
    nearest = np.maximum.reduceat(similarities, starts, axis=1)
    centroids = np.add.reduceat(kb_vectors, starts, axis=0)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return nearest, query_vectors @ centroids.T


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--seed", type=int, default=77)
    parser.add_argument("--mix", type=float, default=0.5, help="weight of max in the mix")
    args = parser.parse_args(argv)

    knowledge_base, queries = banking77_split(args.csv, shots=args.shots, seed=args.seed)
    intents = sorted({intent for _, intent in knowledge_base})
    intent_id = {intent: position for position, intent in enumerate(intents)}
    kb_intent = np.array([intent_id[intent] for _, intent in knowledge_base], dtype=np.int64)
    truth = np.array([intent_id[intent] for _, intent in queries], dtype=np.int64)
    print(f"{len(intents)} intents, {len(knowledge_base)} kb phrasings, {len(queries)} queries")

    embedder = LocalEmbedder()
    started = time.perf_counter()
    embedder.embed(["warm up"])
    print(f"model load: {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    kb_vectors = embedder.embed([text for text, _ in knowledge_base])
    query_vectors = embedder.embed([text for text, _ in queries])
    elapsed = time.perf_counter() - started
    embedded = len(knowledge_base) + len(queries)
    print(f"embedding: {embedded} texts in {elapsed:.1f} s ({embedded / elapsed:.0f} texts/s)")

    nearest, centroid = _intent_scores(query_vectors, kb_vectors, kb_intent)
    mixed = args.mix * nearest + (1 - args.mix) * centroid
    print(f"{'scoring':<22}{'top-1':>8}{'top-3':>8}")
    for label, scores in (
        ("(a) max phrasing", nearest),
        ("(b) centroid", centroid),
        (f"(c) mix {args.mix:g}/{1 - args.mix:g}", mixed),
    ):
        top1, top3 = (_top_k_accuracy(scores, truth, k) for k in (1, 3))
        print(f"{label:<22}{top1:>8.4f}{top3:>8.4f}")


if __name__ == "__main__":
    main()
