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
    best_phrasing_similarity: float  # best phrasing's score / the query's highest possible score
    margin: float  # (best entry - runner-up) / best entry, on aggregated scores
    query_coverage: float  # share of the query's tokens found in the best phrasing
    phrasing_coverage: float  # share of the best phrasing's tokens found in the query
    known_share: float  # share of the query's tokens that occur anywhere in the FAQ
    dense_similarity: float | None = None  # cosine to the best phrasing, when embeddings are on

    @classmethod
    def of(cls, index: TenantIndex, scores: FaqScores) -> "MatchFeatures":
        best, runner_up = (
            scores.entry_scores[0],
            (scores.entry_scores[1] if len(scores.entry_scores) > 1 else 0.0),
        )
        query = set(scores.query_tokens)
        phrasing = set(index.phrasing_tokens[int(scores.best_phrasing[0])])
        shared = len(query & phrasing)
        return cls(
            best_phrasing_similarity=float(scores.best_phrasing_score[0] / scores.ceiling)
            if scores.ceiling
            else 0.0,
            margin=float((best - runner_up) / best) if best else 0.0,
            query_coverage=shared / len(query) if query else 0.0,
            phrasing_coverage=shared / len(phrasing) if phrasing else 0.0,
            known_share=len(scores.known_token_ids) / len(scores.query_tokens)
            if scores.query_tokens
            else 0.0,
        )

    def lexical_vector(self) -> list[float]:
        return list(astuple(self)[:5])


# Fitted by bench/faq_calibration.py (lexical features in field order, intercept last).
LEXICAL_WEIGHTS = np.array([-0.2332, 3.3319, 1.7473, 2.7523, 3.5275, -7.0089])


def match_confidence(features: MatchFeatures) -> float:
    values = np.array(features.lexical_vector(), dtype=np.float64)
    z = float(values @ LEXICAL_WEIGHTS[:-1] + LEXICAL_WEIGHTS[-1])
    return 1.0 / (1.0 + math.exp(-z))
