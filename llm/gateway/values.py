"""What the gateway's callers see: the messages they send, the events and usage they get back,
and the errors they may have to handle."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

FailureKind = Literal[
    "rate_limited",
    "server_error",
    "timeout_connect",
    "timeout_first_token",
    "timeout_total",
    "connection",
    "bad_request",
    "circuit_open",
    "interrupted",
]


class GatewayError(Exception):
    """A provider could not serve the request; ``retryable`` tells whether to try again."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class AttemptFailure:
    """One provider request that did not produce a complete answer.

    ``detail`` names the HTTP status, the provider's error code or the exception type: never the
    provider's error message (OpenAI's 401 message quotes part of the key), the prompt or the
    answer.
    """

    provider: str
    kind: FailureKind
    detail: str


@dataclass(frozen=True)
class ChatUsage:
    """What one answer used. Times are in milliseconds since :func:`chat_stream` was called,
    so they include retries and fallback: what the customer waited."""

    provider_id: int | None
    provider: str
    model: str
    tokens_in: int
    tokens_out: int
    cost: Decimal
    first_token_ms: int | None
    total_ms: int
    attempts: tuple[AttemptFailure, ...]
    cached: bool = False


@dataclass
class TextDelta:
    text: str


@dataclass
class StreamDone:
    usage: ChatUsage


class StreamInterrupted(GatewayError):
    """The answer broke off after text had reached the caller; it is not retried, since the
    customer already saw ``partial_text``. ``usage`` is what the partial answer cost."""

    def __init__(self, *, usage: ChatUsage, partial_text: str) -> None:
        super().__init__(f"{usage.provider} stopped mid-answer", retryable=False)
        self.usage = usage
        self.partial_text = partial_text


class AllProvidersFailed(GatewayError):
    """No provider in the chain produced a first token; ``attempts`` says what each one did."""

    def __init__(self, attempts: tuple[AttemptFailure, ...]) -> None:
        summary = ", ".join(f"{a.provider}: {a.kind}" for a in attempts) or "no providers"
        super().__init__(f"every LLM provider failed ({summary})", retryable=False)
        self.attempts = attempts
