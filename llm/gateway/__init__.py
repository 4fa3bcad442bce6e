"""The LLM gateway: the one package that talks to LLM providers (nothing else imports openai).

Any OpenAI-compatible provider is reached through the official ``openai`` client with explicit
timeouts. Chat answers stream through :func:`chat_stream`: an ordered fallback chain of
providers, retries with backoff before the first token, a per-tenant, per-provider circuit
breaker and an answer cache. Timeouts, retries, fallback, usage and cost live here; callers get
text deltas and a final usage record. Callers import from this package only; its modules are:

- ``values``: what callers send and get back (messages, deltas, usage, errors);
- ``providers``: ``ProviderConfig``, one ``openai`` client per provider and event loop,
  embeddings;
- ``stream``: :func:`chat_stream`, with its retries, fallback, usage and cost;
- ``attempt``: one streamed request to one provider, and how its failures are classified;
- ``sse``: the response body read as raw server-sent events, what has arrived taken at once;
- ``state``: the circuit breakers and cached answers, in Redis or (without it) in the process.
"""

from llm.gateway.providers import EMBEDDING_BATCH, ProviderConfig, embeddings_create
from llm.gateway.state import gateway_local_reset
from llm.gateway.stream import chat_stream
from llm.gateway.values import (
    AllProvidersFailed,
    AttemptFailure,
    ChatMessage,
    ChatUsage,
    FailureKind,
    GatewayError,
    StreamDone,
    StreamInterrupted,
    TextDelta,
)

__all__ = [
    "EMBEDDING_BATCH",
    "AllProvidersFailed",
    "AttemptFailure",
    "ChatMessage",
    "ChatUsage",
    "FailureKind",
    "GatewayError",
    "ProviderConfig",
    "StreamDone",
    "StreamInterrupted",
    "TextDelta",
    "chat_stream",
    "embeddings_create",
    "gateway_local_reset",
]
