"""Providers and the ``openai`` clients that reach them.

Any OpenAI-compatible provider (OpenAI, DeepSeek, Qwen's compatible mode, Azure OpenAI, vLLM,
Ollama) is reached through the official ``openai`` client with explicit timeouts. Callers pass a
``ProviderConfig`` (a plain value, so no ORM object crosses into async code).
"""

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import openai

from llm.gateway.values import GatewayError
from tenants.models import LLMProvider

EMBEDDING_BATCH = 64


@dataclass(frozen=True)
class ProviderConfig:
    id: int | None
    name: str
    base_url: str
    api_key: str
    model: str
    embedding_model: str
    connect_timeout: float
    first_token_timeout: float
    total_timeout: float
    price_input_per_1k: Decimal
    price_output_per_1k: Decimal

    @classmethod
    def of(cls, provider: LLMProvider) -> "ProviderConfig":
        return cls(
            id=provider.pk,
            name=provider.name,
            base_url=provider.base_url,
            api_key=provider.api_key,
            model=provider.model,
            embedding_model=provider.embedding_model,
            connect_timeout=provider.connect_timeout,
            first_token_timeout=provider.first_token_timeout,
            total_timeout=provider.total_timeout,
            price_input_per_1k=provider.price_input_per_1k,
            price_output_per_1k=provider.price_output_per_1k,
        )


# One client per provider settings and event loop: building one costs ~25 ms (an SSL context
# and a connection pool), and a kept client reuses its connections across answers.
_CLIENTS_PER_LOOP = 256
_clients: dict[
    int, tuple[asyncio.AbstractEventLoop, dict[tuple[Any, ...], openai.AsyncOpenAI]]
] = {}


def _client(provider: ProviderConfig, *, read_timeout: float) -> openai.AsyncOpenAI:
    loop = asyncio.get_running_loop()
    for loop_id, (other, _clients_of_loop) in list(_clients.items()):
        if other.is_closed():  # tests and restarts leave dead loops behind
            del _clients[loop_id]
    _loop, clients = _clients.setdefault(id(loop), (loop, {}))
    key = (
        provider.base_url,
        hashlib.sha256(provider.api_key.encode()).hexdigest(),
        read_timeout,
        provider.connect_timeout,
    )
    client = clients.get(key)
    if client is None:
        if len(clients) >= _CLIENTS_PER_LOOP:
            clients.pop(next(iter(clients)))  # the oldest; its connections close when collected
        client = clients[key] = openai.AsyncOpenAI(
            base_url=provider.base_url,
            # Local servers (vLLM, Ollama) accept any key; the client refuses an empty one.
            api_key=provider.api_key or "unused",
            timeout=openai.Timeout(read_timeout, connect=provider.connect_timeout),
            max_retries=0,
        )
    return client


async def embeddings_create(*, provider: ProviderConfig, texts: Sequence[str]) -> np.ndarray:
    """Embeds ``texts`` with the provider's embedding model: float32 rows of unit length."""
    if not provider.embedding_model:
        raise GatewayError(f"{provider.name} has no embedding model", retryable=False)
    client = _client(provider, read_timeout=provider.total_timeout)
    rows: list[list[float]] = []
    try:
        for start in range(0, len(texts), EMBEDDING_BATCH):
            batch = list(texts[start : start + EMBEDDING_BATCH])
            response = await client.embeddings.create(model=provider.embedding_model, input=batch)
            ordered = sorted(response.data, key=lambda item: item.index)
            rows.extend(item.embedding for item in ordered)
    except (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError) as exc:
        raise GatewayError(f"{provider.name}: {type(exc).__name__}", retryable=True) from exc
    except openai.APIStatusError as exc:
        raise GatewayError(
            f"{provider.name}: HTTP {exc.status_code}", retryable=exc.status_code >= 500
        ) from exc
    vectors = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)
