"""Dense retrieval: a tenant's stored vectors for an index.

The tenant's embedder comes from :func:`llm.embeddings.tenant_embedder`; without one,
retrieval is lexical only. Vectors are computed off the request path (``knowledge_embed``,
a Celery task after every knowledge change) and read from ``EmbeddingVector`` when an index is
built; a text without a vector yet simply has no dense score.
"""

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from knowledge.models import EmbeddingVector
from knowledge.text import normalize
from llm.embeddings import tenant_embedder
from llm.text import mostly_chinese


def text_digest(text: str) -> str:
    return hashlib.sha256(normalize(text).encode()).hexdigest()


def embeddable(texts: Iterable[str], *, multilingual: bool) -> list[str]:
    return [
        t for t in dict.fromkeys(texts) if t.strip() and (multilingual or not mostly_chinese(t))
    ]


def vectors_load(*, tenant_id: int, model: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Stored vectors for ``texts`` by digest (texts without one are absent)."""
    digests = {text_digest(t) for t in texts}
    found: dict[str, np.ndarray] = {}
    rows = EmbeddingVector.objects.filter(tenant_id=tenant_id, model=model).values_list(
        "text_hash", "vector"
    )
    for digest, blob in rows.iterator(chunk_size=2000):
        if digest in digests:
            found[digest] = np.frombuffer(bytes(blob), dtype="<f4")
    return found


def vector_matrix(texts: Sequence[str], vectors: dict[str, np.ndarray]) -> np.ndarray | None:
    """One row per text (zeros where a text has no vector), or None when no text has one."""
    if not vectors:
        return None
    width = len(next(iter(vectors.values())))
    matrix = np.zeros((len(texts), width), dtype=np.float32)
    for row, text in enumerate(texts):
        vector = vectors.get(text_digest(text))
        if vector is not None and len(vector) == width:
            matrix[row] = vector
    return matrix


def stored_vectors(
    tenant_id: int, phrasings: list[str], chunk_texts: list[str]
) -> tuple[Any, np.ndarray, np.ndarray] | None:
    """The tenant's embedder with the stored vectors of an index's texts (see TenantIndex)."""
    embedder = tenant_embedder(tenant_id=tenant_id)
    if embedder is None:
        return None
    texts = [*phrasings, *chunk_texts]
    matrix = vector_matrix(
        texts, vectors_load(tenant_id=tenant_id, model=embedder.name, texts=texts)
    )
    if matrix is None:
        return None
    return embedder, matrix[: len(phrasings)], matrix[len(phrasings) :]
