"""Groups short customer questions by subject: vectors, density clustering, naming.

Pure computation (no database): ``analytics.topics`` and ``analytics.gaps`` read the questions,
call :func:`questions_cluster` and store what it found.

- Identical questions (after ``knowledge.text.normalize``) are clustered once, with their count
  as weight: a question asked a thousand times costs as much as one asked once.
- Vectors: the tenant's dense embeddings when it has an embedding model (an ``Embedder``),
  otherwise TF-IDF over the retrieval tokens (``knowledge.text.tokenize``: the same Chinese
  segmentation and English stemming as the FAQ search), reduced with TruncatedSVD; always
  L2-normalised, so that Euclidean distance orders pairs as cosine similarity does. Greetings,
  thanks and "urgent" (``FILLER_WORDS``) carry no subject and are left out of TF-IDF.
- Clusters: ``sklearn.cluster.HDBSCAN`` (density based: no number of clusters chosen by hand,
  questions in no dense region stay unclustered), with ``min_cluster_size`` growing with the
  square root of the data; a cluster whose members are not close around its centroid
  (``COHESION``) is dropped. Past ``SAMPLE_SIZE`` distinct questions, HDBSCAN runs on a sample
  (the most frequent questions first). Every question HDBSCAN left out (or did not see) joins
  the cluster whose centroid is nearest, when it is as close as the cluster's own members
  typically are.
"""

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import HDBSCAN
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize as l2_normalize

from knowledge.text import normalize, tokenize

# HDBSCAN is quadratic-ish in the points it sees: beyond this many distinct questions it sees
# a sample and the rest are assigned to the nearest centroid (100k questions: see
# topics_benchmark in analytics/topics.py).
SAMPLE_SIZE = 6000
SVD_COMPONENTS = 128
SVD_MIN_QUESTIONS = 3000
# A frequent question is repeated (up to this many times) among HDBSCAN's points, so that a
# question many customers ask in the same words makes a dense region of its own.
MAX_REPEATS = 8
# An unclustered question joins the nearest cluster when its cosine similarity to the centroid
# reaches the cluster's 10th-percentile member similarity, never below this floor.
ASSIGN_FLOOR = 0.55
ASSIGN_PERCENTILE = 10

Embed = Callable[[Sequence[str]], np.ndarray]


@dataclass
class Cluster:
    """Indices into the distinct questions (``QuestionSet.texts``), the centroid (unit length),
    and the representative: the member nearest the centroid."""

    members: list[int]
    centroid: np.ndarray
    representative: int
    weight: int = 0


@dataclass
class QuestionSpace:
    """The vectors of one run, able to place further texts (a stored topic's signature) in the
    same space, so that this run's clusters can be matched with earlier runs' topics."""

    transform: Callable[[Sequence[str]], np.ndarray]
    dense: bool = False

    def centroid(self, texts: Sequence[str]) -> np.ndarray | None:
        if not texts:
            return None
        vectors = self.transform(list(texts))
        mean = vectors.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        return mean / norm if norm > 0 else None


@dataclass
class Clustering:
    texts: list[str]  # distinct normalised questions
    weights: np.ndarray  # how many times each was asked
    vectors: np.ndarray
    clusters: list[Cluster]
    space: QuestionSpace

    def cluster_of(self) -> dict[str, int]:
        """Each clustered question's (normalised) cluster index in ``clusters``."""
        return {
            self.texts[m]: i for i, cluster in enumerate(self.clusters) for m in cluster.members
        }


def min_cluster_size(distinct: int) -> int:
    """Grows with the square root of the data: 3 for up to 200 questions, 19 for 6,000. A
    subject a week's few hundred questions ask about five times is still a topic."""
    return max(3, min(40, round(math.sqrt(distinct) / 4)))


# Words that greet, thank, hurry or acknowledge: customers wrap every subject in them, so they
# would make questions on unrelated subjects look alike, and a message of nothing else ("收到",
# "OK, thanks") asks nothing (tokenised as ``tokenize`` does, in _filler).
FILLER_WORDS = (
    "你好 您好 请问 在吗 亲 麻烦 问下 麻烦了 谢谢 谢了 多谢 急 在线等 哈喽 嗯 嗯嗯 好的 好 "
    "收到 明白 明白了 了解 知道了 行 "
    "hi hello hey there good morning afternoon evening please help thanks thank you advance "
    "quick question ok okay got it sure great"
)
# A cluster whose members lie, at the median, less close than this to its centroid is a
# region of loosely related questions (often just one language), not a subject: it is
# dropped and its questions stay unclustered.
COHESION = 0.5


@functools.cache
def _filler() -> list[str]:
    """The filler words' tokens: whole words only, not the single characters ``tokenize``
    adds for Chinese words ("好" of "你好" still counts in "好评")."""
    return sorted(
        {t for word in FILLER_WORDS.split() for t in tokenize(word) if t.isascii() or t == word}
    )


def _content_tokens(text: str) -> list[str]:
    """``tokenize``'s tokens without the filler words'."""
    filler = _filler_set()
    return [t for t in tokenize(text) if t not in filler]


@functools.cache
def _filler_set() -> frozenset[str]:
    return frozenset(_filler())


def has_subject(text: str) -> bool:
    """Whether ``text`` says what it is about: a word beyond greetings, thanks and
    acknowledgements (the single characters of such words do not count either)."""
    chars = _filler_chars()
    return any(t not in chars for t in _content_tokens(text))


@functools.cache
def _filler_chars() -> frozenset[str]:
    return frozenset(c for word in _filler_set() for c in word if not word.isascii())


def _tfidf_space(
    texts: Sequence[str], background: Sequence[str] = ()
) -> tuple[np.ndarray, QuestionSpace]:
    """TF-IDF, reduced; the weights and the reduction are fitted on ``texts`` and
    ``background`` together, so that a word all of ``texts`` share still weighs what it weighs
    among all the tenant's questions."""
    vectorizer = TfidfVectorizer(
        tokenizer=_content_tokens,
        lowercase=False,
        token_pattern=None,
        sublinear_tf=True,
        min_df=1,
        dtype=np.float32,
    )
    corpus = list(dict.fromkeys([*texts, *background]))
    fitted = vectorizer.fit_transform(corpus)
    matrix = fitted[: len(texts)]
    # A small corpus is clustered on its full TF-IDF: a reduction to a few dimensions would
    # make unrelated questions look alike.
    components = min(SVD_COMPONENTS, fitted.shape[1] - 1)
    if fitted.shape[0] > SVD_MIN_QUESTIONS and components >= 2:
        svd = TruncatedSVD(n_components=components, algorithm="randomized", random_state=0)
        reduced = svd.fit_transform(fitted)[: len(texts)]

        def transform(more: Sequence[str]) -> np.ndarray:
            return l2_normalize(svd.transform(vectorizer.transform(more))).astype(np.float32)

        return l2_normalize(reduced).astype(np.float32), QuestionSpace(transform=transform)

    def transform_sparse(more: Sequence[str]) -> np.ndarray:
        return l2_normalize(vectorizer.transform(more).toarray()).astype(np.float32)

    return l2_normalize(matrix.toarray()).astype(np.float32), QuestionSpace(
        transform=transform_sparse
    )


def question_space(
    texts: Sequence[str], embed: Embed | None, background: Sequence[str] = ()
) -> tuple[np.ndarray, QuestionSpace]:
    """Unit vectors of ``texts``: ``embed``'s (dense) when given, else reduced TF-IDF (fitted
    with ``background`` too)."""
    if embed is not None:

        def transform(more: Sequence[str]) -> np.ndarray:
            return l2_normalize(np.asarray(embed(more), dtype=np.float32))

        return transform(texts), QuestionSpace(transform=transform, dense=True)
    return _tfidf_space(texts, background)


def _centroid(vectors: np.ndarray) -> np.ndarray:
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean


def _hdbscan_labels(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One label per row (-1: noise). Frequent rows are repeated so that they weigh more."""
    repeats = np.minimum(weights, MAX_REPEATS).astype(np.int64)
    points = np.repeat(vectors, repeats, axis=0)
    owner = np.repeat(np.arange(len(vectors)), repeats)
    if len(points) < 4:
        return np.full(len(vectors), -1, dtype=np.int64)
    size = min_cluster_size(len(vectors))
    model = HDBSCAN(
        min_cluster_size=size,
        min_samples=max(2, size // 4),
        metric="euclidean",
        copy=True,
    )
    point_labels = model.fit_predict(points)
    labels = np.full(len(vectors), -1, dtype=np.int64)
    # A repeated row takes the label most of its copies got (they are identical: the same one).
    for row_owner, label in zip(owner, point_labels, strict=True):
        if label >= 0:
            labels[row_owner] = label
    for label in set(labels.tolist()) - {-1}:
        members = labels == label
        if float(np.median(vectors[members] @ _centroid(vectors[members]))) < COHESION:
            labels[members] = -1
    if (labels < 0).all():
        # HDBSCAN never calls the whole data one cluster; a few questions all on one subject
        # (a small tenant's knowledge gaps) are one when they lie close around their centroid.
        close = vectors @ _centroid(vectors) >= ASSIGN_FLOOR
        if close.sum() >= size:
            labels[close] = 0
    return labels


def questions_cluster(
    questions: Sequence[str], *, embed: Embed | None = None, background: Sequence[str] = ()
) -> Clustering:
    """Clusters ``questions`` (raw customer texts; repeats welcome). See the module docstring.
    ``background``: other questions of the tenant that weigh the words (TF-IDF only), for a
    subset such as the knowledge gaps' questions."""
    counts: dict[str, int] = {}
    for question in questions:
        text = normalize(question)
        if text:
            counts[text] = counts.get(text, 0) + 1
    texts = list(counts)
    weights = np.array([counts[t] for t in texts], dtype=np.int64)
    if not texts:
        empty = np.zeros((0, 1), dtype=np.float32)
        return Clustering(texts, weights, empty, [], QuestionSpace(transform=lambda _t: empty))
    if len(texts) < 3:
        vectors = np.eye(len(texts), dtype=np.float32)
        return Clustering(texts, weights, vectors, [], QuestionSpace(transform=lambda _t: vectors))
    vectors, space = question_space(
        texts, embed, [t for t in dict.fromkeys(normalize(b) for b in background) if t]
    )

    if len(texts) > SAMPLE_SIZE:
        # The most frequent questions, then a random draw of the rest: a stable sample.
        order = np.lexsort((np.random.default_rng(0).random(len(texts)), -weights))
        sample = np.sort(order[:SAMPLE_SIZE])
    else:
        sample = np.arange(len(texts))
    sample_labels = _hdbscan_labels(vectors[sample], weights[sample])
    labels = np.full(len(texts), -1, dtype=np.int64)
    labels[sample] = sample_labels

    cluster_ids = sorted(set(sample_labels.tolist()) - {-1})
    centroids = np.array(
        [_centroid(vectors[labels == c]) for c in cluster_ids], dtype=np.float32
    ).reshape(len(cluster_ids), vectors.shape[1])
    if cluster_ids:
        thresholds = np.array(
            [
                max(
                    ASSIGN_FLOOR,
                    float(np.percentile(vectors[labels == c] @ centroids[i], ASSIGN_PERCENTILE)),
                )
                for i, c in enumerate(cluster_ids)
            ],
            dtype=np.float32,
        )
        unassigned = np.flatnonzero(labels == -1)
        for start in range(0, len(unassigned), 20000):
            rows = unassigned[start : start + 20000]
            similarity = vectors[rows] @ centroids.T
            best = similarity.argmax(axis=1)
            close = similarity[np.arange(len(rows)), best] >= thresholds[best]
            labels[rows[close]] = np.array(cluster_ids)[best[close]]

    clusters: list[Cluster] = []
    for c in cluster_ids:
        members = np.flatnonzero(labels == c)
        centroid = _centroid(vectors[members])
        similarity = vectors[members] @ centroid
        # Nearest the centroid; among near-ties (within 0.02) the most asked.
        near = similarity >= similarity.max() - 0.02
        representative = int(members[near][np.argmax(weights[members][near])])
        clusters.append(
            Cluster(
                members=members.tolist(),
                centroid=centroid,
                representative=representative,
                weight=int(weights[members].sum()),
            )
        )
    clusters.sort(key=lambda cluster: -cluster.weight)
    return Clustering(texts, weights, vectors, clusters, space)
