"""How sure a FAQ match is: a probability that the best entry is the right answer.

A logistic model over a few scale-free features of the match. Its weights are fitted by
``bench/faq_calibration.py`` on simulated tenants built from the BANKING77 development split,
asked questions both inside and outside their FAQ, so that a confidence of 0.8 means that
about four in five such answers were right, counting the questions the FAQ could not answer.
"""

import math
from dataclasses import astuple, dataclass

import numpy as np

from knowledge.index import FaqScores, TenantIndex


@dataclass(frozen=True)
class MatchFeatures:
    best_phrasing_similarity: float  # best phrasing's BM25 score / the query's highest possible
    margin: float  # (best entry - runner-up) / best entry, on the ranking scores
    query_coverage: float  # share of the query's tokens found in the best phrasing
    phrasing_coverage: float  # share of the best phrasing's tokens found in the query
    known_share: float  # share of the query's tokens that occur anywhere in the FAQ
    dense_similarity: float | None = None  # the best entry's dense similarity, when embedded
    dense_margin: float | None = None  # ... minus the runner-up's

    @classmethod
    def of(cls, index: TenantIndex, scores: FaqScores) -> "MatchFeatures":
        ranking = scores.entry_scores
        best, runner_up = float(ranking[0]), float(ranking[1]) if len(ranking) > 1 else 0.0
        query = set(scores.query_tokens)
        phrasing = set(index.phrasing_tokens[int(scores.best_phrasing[0])])
        shared = len(query & phrasing)
        dense = scores.dense_scores
        return cls(
            best_phrasing_similarity=float(scores.best_phrasing_score[0]) / scores.ceiling
            if scores.ceiling
            else 0.0,
            margin=(best - runner_up) / best if best > 0 else 0.0,
            query_coverage=shared / len(query) if query else 0.0,
            phrasing_coverage=shared / len(phrasing) if phrasing else 0.0,
            known_share=len(scores.known_token_ids) / len(scores.query_tokens)
            if scores.query_tokens
            else 0.0,
            dense_similarity=None if dense is None else float(dense[0]),
            dense_margin=None
            if dense is None
            else float(dense[0] - (dense[1:].max() if len(dense) > 1 else 0.0)),
        )

    def lexical_vector(self) -> list[float]:
        return list(astuple(self)[:5])

    def dense_vector(self) -> list[float]:
        return [*self.lexical_vector(), self.dense_similarity or 0.0, self.dense_margin or 0.0]


# Fitted by bench/faq_calibration.py (features in field order, intercept last).
LEXICAL_WEIGHTS = np.array([-0.2332, 3.3319, 1.7473, 2.7523, 3.5275, -7.0089])
DENSE_WEIGHTS: np.ndarray | None = np.array(
    [0.7972, -3.8594, -0.6582, -0.0169, 2.1139, 10.0983, 11.1579, -9.5251]
)


def match_confidence(features: MatchFeatures) -> float:
    if features.dense_similarity is not None and DENSE_WEIGHTS is not None:
        values, weights = np.array(features.dense_vector()), DENSE_WEIGHTS
    else:
        values, weights = np.array(features.lexical_vector()), LEXICAL_WEIGHTS
    z = float(values @ weights[:-1] + weights[-1])
    return 1.0 / (1.0 + math.exp(-z))
