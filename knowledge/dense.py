"""Dense retrieval: which embedder a tenant uses, and its cached vectors for an index.

A tenant's embedder is its enabled LLM provider that names an embedding model (an
OpenAI-compatible ``/embeddings`` endpoint, through the LLM gateway), else the local model when
``KNOWLEDGE_EMBEDDINGS=local`` and the ``local-embeddings`` extra is installed, else none:
retrieval is then lexical only. Vectors are computed off the request path (``knowledge_embed``,
a Celery task after every knowledge change) and read from ``EmbeddingVector`` when an index is
built; a text without a vector yet simply has no dense score.
"""

import hashlib
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from asgiref.sync import async_to_sync
from django.conf import settings

from conversations.gateway import ProviderConfig, embeddings_create
from knowledge.embeddings import EmbeddingMatrix, LocalEmbedder, local_embeddings_available
from knowledge.models import EmbeddingVector
from knowledge.text import normalize
from tenants.selectors import llm_provider_chain

_CJK = frozenset(range(0x4E00, 0xA000))


def text_digest(text: str) -> str:
    return hashlib.sha256(normalize(text).encode()).hexdigest()


def mostly_chinese(text: str) -> bool:
    letters = [c for c in text if not c.isspace()]
    return bool(letters) and sum(ord(c) in _CJK for c in letters) / len(letters) > 0.3


class ProviderEmbedder:
    """A tenant provider's embedding model, called through the gateway (blocking)."""

    multilingual = True

    def __init__(self, provider: ProviderConfig) -> None:
        self.provider = provider
        self.name = f"{provider.base_url}#{provider.embedding_model}"[:150]
        self.dimensions = 0  # whatever the provider returns

    def embed(self, texts: Sequence[str]) -> EmbeddingMatrix:
        return async_to_sync(embeddings_create)(provider=self.provider, texts=texts)


class EnglishLocalEmbedder(LocalEmbedder):
    # all-MiniLM-L6-v2 reads Chinese as unknown tokens; its Chinese similarities are noise.
    multilingual = False


_local: EnglishLocalEmbedder | None = None
_local_lock = threading.Lock()


def local_embedder() -> EnglishLocalEmbedder:
    global _local
    with _local_lock:
        if _local is None:
            _local = EnglishLocalEmbedder()
        return _local


def tenant_embedder(*, tenant_id: int) -> ProviderEmbedder | EnglishLocalEmbedder | None:
    provider = llm_provider_chain(tenant_id=tenant_id).exclude(embedding_model="").first()
    if provider is not None:
        return ProviderEmbedder(ProviderConfig.of(provider))
    if settings.KNOWLEDGE_EMBEDDINGS == "local" and local_embeddings_available():
        return local_embedder()
    return None


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
