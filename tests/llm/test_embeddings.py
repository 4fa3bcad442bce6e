import os
import socket

import numpy as np
import pytest

from llm import embeddings
from llm.embeddings import (
    INSTALL_HINT,
    Embedder,
    LocalEmbedder,
    LocalEmbeddingsUnavailable,
    local_embeddings_available,
)

# The extra is optional even in CI: its absence is a skip, never a failure.
needs_local_embeddings = pytest.mark.skipif(
    not local_embeddings_available(), reason="local-embeddings extra not installed"
)


def test_local_embedder_without_the_extra_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("llm.embeddings._missing_requirement", lambda: "torch is missing")

    assert local_embeddings_available() is False
    with pytest.raises(LocalEmbeddingsUnavailable) as error:
        LocalEmbedder()
    assert INSTALL_HINT in str(error.value)


@pytest.fixture(scope="module")
def local_embedder() -> LocalEmbedder:
    return LocalEmbedder()


@needs_local_embeddings
def test_local_embedder_loads_and_runs_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access while embedding: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # Drop the process-wide model so this test covers the load, whatever ran before it; the
    # reloaded model stays cached for the tests after it.
    embeddings._model = None

    vectors = LocalEmbedder().embed(["Where is my card?"])

    assert vectors.shape == (1, 384)
    assert (os.environ["HF_HUB_OFFLINE"], os.environ["TRANSFORMERS_OFFLINE"]) == ("1", "1")


@needs_local_embeddings
def test_local_embedder_returns_unit_float32_rows(local_embedder: LocalEmbedder) -> None:
    texts = [f"question number {i}" for i in range(70)]  # more than one batch

    vectors = local_embedder.embed(texts)

    assert isinstance(local_embedder, Embedder)
    assert vectors.shape == (70, local_embedder.dimensions) == (70, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@needs_local_embeddings
def test_local_embedder_is_deterministic_and_order_preserving(
    local_embedder: LocalEmbedder,
) -> None:
    texts = ["Where is my card?", "How do I reset my PIN?"]

    forward = local_embedder.embed(texts)
    backward = local_embedder.embed(texts[::-1])

    np.testing.assert_allclose(forward, local_embedder.embed(texts), atol=1e-6)
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-5)


@needs_local_embeddings
def test_local_embedder_puts_a_paraphrase_closer_than_an_unrelated_question(
    local_embedder: LocalEmbedder,
) -> None:
    query, paraphrase, unrelated = local_embedder.embed(
        [
            "My card still hasn't arrived",
            "I haven't received my card yet",
            "What is the exchange rate for euros?",
        ]
    )

    assert float(query @ paraphrase) > float(query @ unrelated) + 0.2


@needs_local_embeddings
def test_local_embedder_handles_empty_input_and_rejects_a_bare_string(
    local_embedder: LocalEmbedder,
) -> None:
    assert local_embedder.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        local_embedder.embed("one string")
