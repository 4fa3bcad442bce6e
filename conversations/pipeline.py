"""The answer pipeline: what happens to a customer's message, from arrival to answer.

1. Moderate and mask it (sensitive words, personal data) — pure CPU, microseconds.
2. Decide its route from what is at hand: rate limits per visitor and per tenant, a blocked
   message, a request for a person, a question repeated from the conversation's memory, and a
   confident FAQ match, answered with no LLM call.
3. Store it (masked), together with its FAQ answer if there is one, in the writer's next batch
   (conversations/writer.py): from here on it is never lost, whatever fails later. A repeated
   client message id is acknowledged and not answered again; a conversation that a person owns
   gets no AI answer (the FAQ answer is then not stored either).
4. Send the acknowledgement, then the error, the handoff or the FAQ answer.
5. Otherwise retrieve passages, build the prompt and stream the LLM's answer through output
   moderation; with no provider configured the offline responder streams the best knowledge;
   when every provider fails the customer gets the best knowledge answer or an offer of a
   person, honestly labelled.
6. Store the answer with its source, provider, model, tokens, cost and timings.

Replies go to a ``ReplySink`` (conversations/replies.py), which knows the channel: the widget
socket's sink sends each frame straight to the customer's socket, so no token ever crosses the
channel layer; another channel (an HTTP stream, WeChat) plugs in with a sink of its own.
"""

import asyncio
import enum
import hashlib
import itertools
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils import translation
from django.utils.translation import gettext as _

from conversations import events, services
from conversations.handoff import (
    HandoffOutcome,
    aconversation_handoff,
    asks_for_person,
    handoff_text,
    repeated_question,
)
from conversations.lifecycle import AUTO_ENDED_STATUSES, aconversation_reopen
from conversations.memory import Turn, memory_append, memory_recent
from conversations.models import ANSWER_CUT_OFF, Channel, Conversation, Message
from conversations.moderation import (
    StreamModerator,
    aword_filter_for_tenant,
    moderate_with,
)
from conversations.prompt import HistoryTurn, prompt_build, system_prompt
from conversations.protocol import (
    MAX_MESSAGE_CHARS,
    Delta,
    Done,
    Error,
    HandoffStatus,
    MessageAck,
    Status,
    WidgetErrorCode,
)
from conversations.ratelimit import rate_limits_check
from conversations.replies import ReplySink
from conversations.selectors import agents_reachable
from conversations.writer import message_write
from knowledge.search import SearchHit, afaq_match, aknowledge_search, registry
from knowledge.text import normalize
from llm.gateway import (
    AllProvidersFailed,
    ChatMessage,
    ChatUsage,
    StreamDone,
    StreamInterrupted,
    TextDelta,
    chat_stream,
)
from llm.selectors import allm_providers_for_tenant
from llm.text import estimate_tokens, mostly_chinese
from tenants.models import Tenant

logger = logging.getLogger(__name__)

PASSAGES = 4
# Why a conversation goes to the people (for callers that do not touch the models).
HandoffReason = Conversation.HandoffReason
OFFLINE_CHUNK_CHARS = 24


@dataclass(frozen=True)
class ChatContext:
    """Who is talking: fixed for the life of one widget socket."""

    tenant: Tenant
    visitor_id: str
    customer_id: int
    conversation_id: int
    conversation_key: str  # Conversation.cache_key: what its memory is named by, with its id
    language: str  # "zh-hans" or "en": the widget's language until a message says otherwise
    channel: str = Channel.WIDGET
    # The conversation has no earlier messages (this is its first): nothing to repeat, no
    # history to read.
    new_conversation: bool = False


async def hand_off(
    ctx: "ChatContext",
    reason: str,
    replies: ReplySink,
    language: str,
    *,
    by_customer: bool = False,
) -> HandoffOutcome:
    """Hands the conversation to the people and tells the customer: never silently."""
    outcome = await aconversation_handoff(
        tenant=ctx.tenant,
        conversation_id=ctx.conversation_id,
        reason=reason,
        by_customer=by_customer,
        agents_reachable=agents_reachable(tenant_id=ctx.tenant.pk),
    )
    await replies.status(status_frame(outcome, language))
    return outcome


def status_frame(outcome: HandoffOutcome, language: str) -> HandoffStatus:
    return HandoffStatus(
        status=outcome.status,
        position=outcome.position,
        agents_available=outcome.agents_available,
        collect_contact=not outcome.agents_available,
        text=handoff_text(outcome, language),
    )


def message_language(text: str, fallback: str) -> str:
    if mostly_chinese(text):
        return "zh-hans"
    if any(c.isascii() and c.isalpha() for c in text):
        return "en"
    return fallback


async def answer_customer_message(
    *, ctx: ChatContext, text: str, client_message_id: str, replies: ReplySink
) -> None:
    """Answers ``text``, the customer's message ``client_message_id``, through ``replies``
    (see conversations/replies.py for what it is told, in which order)."""
    started = time.perf_counter()
    language = message_language(text, ctx.language)
    tenant = ctx.tenant
    word_filter = await aword_filter_for_tenant(tenant_id=tenant.pk)
    moderation = moderate_with(word_filter, text[:MAX_MESSAGE_CHARS])
    question = moderation.text
    decision = await rate_limits_check(tenant_id=tenant.pk, visitor_id=ctx.visitor_id)
    # Everything that decides the answer is worked out before the message is stored, so that a
    # FAQ answer is stored with it: one write, and the answer follows the acknowledgement.
    earlier: list[Turn] | None = [] if ctx.new_conversation else None
    route = _Route.ANSWER
    if not decision.allowed:
        route = _Route.RATE_LIMITED
    elif moderation.blocked:
        route = _Route.BLOCKED
    elif asks_for_person(tenant=tenant, text=question):
        route = _Route.PERSON_ASKED
    elif tenant.handoff_on_repeated_question and earlier is None:
        earlier = await memory_recent(
            tenant_id=tenant.pk,
            conversation_id=ctx.conversation_id,
            conversation_key=ctx.conversation_key,
        )
        if repeated_question(text=question, earlier=_answered_questions(earlier)):
            route = _Route.REPEATED
    match = await afaq_match(tenant=tenant, query=question) if route is _Route.ANSWER else None
    faq_answer, faq_entry_id = None, None
    if match is not None and match.answers_directly:
        faq_entry_id = match.entry_id
        elapsed = _ms(started)
        faq_answer = services.AnswerRecord(
            content=match.answer,
            source=Message.Source.FAQ,
            confidence=match.confidence,
            knowledge_refs=(f"faq-{match.entry_id}",),
            first_token_ms=elapsed,
            latency_ms=elapsed,
        )

    written = await message_write(
        services.MessageWrite(
            tenant_id=tenant.pk,
            conversation_id=ctx.conversation_id,
            customer=services.CustomerText(client_message_id, question, moderation.flags),
            answer=faq_answer,
            faq_entry_id=faq_entry_id,
        )
    )
    await replies.ack(
        MessageAck(
            id=client_message_id,
            message_id=written.customer_message_id,
            conversation_id=ctx.conversation_id,
            duplicate=True if written.duplicate else None,
        )
    )
    if written.duplicate:
        return
    if written.conversation_status in AUTO_ENDED_STATUSES:
        reopened = await aconversation_reopen(
            tenant_id=tenant.pk, conversation_id=ctx.conversation_id
        )
        if reopened == Conversation.Status.CLOSED:  # the widget showed it closed
            await replies.status(Status(status=Conversation.Status.BOT))

    with translation.override(language):
        if route is _Route.RATE_LIMITED:
            await replies.error(
                Error(
                    code=WidgetErrorCode.RATE_LIMITED,
                    reply_to=client_message_id,
                    retry_after=round(decision.retry_after_seconds, 1),
                    text=_("You are sending messages too fast. Please wait a moment."),
                )
            )
            return
        if route is _Route.BLOCKED:
            await replies.error(
                Error(
                    code=WidgetErrorCode.BLOCKED,
                    reply_to=client_message_id,
                    text=_("This message cannot be answered. Please rephrase it."),
                )
            )
            return
    if written.customer_message_id is not None:
        await events.apublish_stored(
            events.Event.MESSAGE_CREATED,
            events.message_created(
                conversation_id=ctx.conversation_id,
                message_id=written.customer_message_id,
                role=Message.Role.CUSTOMER,
                internal=False,
                text=question,
                conversation_status=written.conversation_status,
                customer_id=ctx.customer_id,
                channel=ctx.channel,
            ),
            tenant_id=tenant.pk,
        )
    if written.conversation_status in events.PEOPLE_OWN:
        return  # a person owns the conversation: the assistant stays silent, the agents hear it
    if route is _Route.PERSON_ASKED:
        await hand_off(
            ctx, Conversation.HandoffReason.CUSTOMER_REQUEST, replies, language, by_customer=True
        )
        return
    if route is _Route.REPEATED:
        await hand_off(ctx, Conversation.HandoffReason.REPEATED_QUESTION, replies, language)
        return
    answer = Answerer(ctx=ctx, language=language, reply_to=client_message_id, replies=replies)
    asked = Turn(role="customer", content=question)
    if faq_answer is not None and written.answer_id is not None:
        await answer.stored(faq_answer, answer_id=written.answer_id, question=asked)
        return
    await memory_append(
        tenant_id=tenant.pk,
        conversation_id=ctx.conversation_id,
        conversation_key=ctx.conversation_key,
        turns=[asked],
    )

    hits = await aknowledge_search(tenant=tenant, query=question, k=PASSAGES)
    providers = await allm_providers_for_tenant(tenant_id=tenant.pk)
    if not providers:
        await answer.offline(hits, started=started)
        return
    if earlier is None:
        # Read after the question joined the memory: everything but the question.
        earlier = (
            await memory_recent(
                tenant_id=tenant.pk,
                conversation_id=ctx.conversation_id,
                conversation_key=ctx.conversation_key,
            )
        )[:-1]
    await answer.generate(
        question=question,
        hits=hits,
        history=[HistoryTurn(t.role, t.content) for t in earlier],
        providers=providers,
        word_filter=word_filter,
        confidence=match.confidence if match is not None else None,
        started=started,
    )


def _answered_questions(turns: list[Turn]) -> list[str]:
    """The customer's questions in ``turns`` that got an answer: the turn after them is the
    assistant's or an agent's. A question asked again after an answer that never came (cut off,
    or lost with a server that stopped) is not a repeated question: the memory holds no answer
    that was cut off."""
    return [
        turn.content
        for turn, following in itertools.pairwise(turns)
        if turn.role == Message.Role.CUSTOMER and following.role != Message.Role.CUSTOMER
    ]


class _Route(enum.Enum):
    """What happens to a stored customer message, unless a person owns the conversation."""

    ANSWER = "answer"
    RATE_LIMITED = "rate_limited"
    BLOCKED = "blocked"
    PERSON_ASKED = "person_asked"
    REPEATED = "repeated"


@dataclass
class Answerer:
    """Streams one answer to the customer and records it."""

    ctx: ChatContext
    language: str
    reply_to: str
    replies: ReplySink

    async def _delta(self, text: str) -> None:
        if text:
            await self.replies.delta(Delta(reply_to=self.reply_to, text=text))

    async def _finish(
        self,
        record: services.AnswerRecord,
        *,
        interrupted: bool | None = None,
        offer_handoff: bool | None = None,
    ) -> None:
        written = await message_write(
            services.MessageWrite(
                tenant_id=self.ctx.tenant.pk,
                conversation_id=self.ctx.conversation_id,
                answer=record,
                unanswered_limit=self.ctx.tenant.handoff_after_unanswered,
            )
        )
        await self._done(
            record,
            written.answer_id or 0,
            interrupted=interrupted,
            offer_handoff=offer_handoff,
        )
        tenant = self.ctx.tenant
        if record.error_code == "provider_failure" and tenant.handoff_on_provider_failure:
            await hand_off(
                self.ctx, Conversation.HandoffReason.PROVIDER_FAILURE, self.replies, self.language
            )
        elif written.unanswered_streak:
            await hand_off(
                self.ctx, Conversation.HandoffReason.LOW_CONFIDENCE, self.replies, self.language
            )

    async def _done(
        self,
        record: services.AnswerRecord,
        message_id: int,
        *,
        question: Turn | None = None,
        interrupted: bool | None = None,
        offer_handoff: bool | None = None,
    ) -> None:
        turns = [question] if question is not None else []
        if record.error_code != ANSWER_CUT_OFF:  # a cut-off answer answered nothing
            turns.append(Turn(role="assistant", content=record.content))
        await memory_append(
            tenant_id=self.ctx.tenant.pk,
            conversation_id=self.ctx.conversation_id,
            conversation_key=self.ctx.conversation_key,
            turns=turns,
        )
        if message_id:
            await events.apublish_stored_batch(self._stored_events(record, message_id))
        await self.replies.answer_stored(record, message_id)
        await self.replies.done(
            Done(
                reply_to=self.reply_to,
                message_id=message_id,
                source=record.source,
                latency_ms=record.latency_ms,
                first_token_ms=record.first_token_ms,
                interrupted=interrupted,
                offer_handoff=offer_handoff,
            )
        )

    def _stored_events(
        self, record: services.AnswerRecord, message_id: int
    ) -> list[events.Published]:
        """The answer's message, and its source and usage (for the reporting rows)."""
        conversation_id, tenant_id = self.ctx.conversation_id, self.ctx.tenant.pk
        faq_entry_id = None
        if record.source == Message.Source.FAQ and record.knowledge_refs:
            faq_entry_id = int(record.knowledge_refs[0].removeprefix("faq-"))
        chunk_ids = tuple(
            int(ref.removeprefix("chunk-"))
            for ref in record.knowledge_refs
            if ref.startswith("chunk-") and ref[len("chunk-") :].isdigit()
        )
        return [
            events.Published(
                events.Event.MESSAGE_CREATED,
                events.message_created(
                    conversation_id=conversation_id,
                    message_id=message_id,
                    role=Message.Role.ASSISTANT,
                    internal=False,
                    text=record.content,
                ),
                tenant_id,
            ),
            events.Published(
                events.Event.ANSWER_RECORDED,
                events.answer_recorded(
                    conversation_id=conversation_id,
                    message_id=message_id,
                    source=record.source,
                    provider=record.provider,
                    model=record.model,
                    tokens_in=record.tokens_in,
                    tokens_out=record.tokens_out,
                    cost=record.cost,
                    latency_ms=record.latency_ms,
                    faq_entry_id=faq_entry_id,
                    chunk_ids=chunk_ids,
                ),
                tenant_id,
            ),
        ]

    async def stored(
        self, record: services.AnswerRecord, *, answer_id: int, question: Turn
    ) -> None:
        """An answer stored along with its question (a FAQ answer): sent whole, and both join
        the memory."""
        await self._delta(record.content)
        await self._done(record, answer_id, question=question)

    def _knowledge_text(self, hits: list[SearchHit]) -> tuple[str, tuple[str, ...]]:
        with translation.override(self.language):
            # Below the relevance floor the best passage is about something else: saying so
            # (and offering a person) beats an unrelated answer.
            if not hits or not hits[0].relevant:
                return (
                    _(
                        "Sorry, I could not find an answer to that. Would you like to talk to "
                        "a person?"
                    ),
                    (),
                )
            best = hits[0]
            return (
                _("Here is what our help center says:") + "\n\n" + best.text,
                (f"{best.kind}-{best.id}",),
            )

    async def offline(self, hits: list[SearchHit], *, started: float) -> None:
        """No LLM configured: stream the best knowledge, labelled as such."""
        text, refs = self._knowledge_text(hits)
        first_token_ms = _ms(started)
        for start in range(0, len(text), OFFLINE_CHUNK_CHARS):
            await self._delta(text[start : start + OFFLINE_CHUNK_CHARS])
        await self._finish(
            services.AnswerRecord(
                content=text,
                source=Message.Source.OFFLINE,
                knowledge_refs=refs,
                first_token_ms=first_token_ms,
                latency_ms=_ms(started),
            )
        )

    async def generate(
        self,
        *,
        question: str,
        hits: list[SearchHit],
        history: list[HistoryTurn],
        providers: list[Any],
        word_filter: Any,
        confidence: float | None,
        started: float,
    ) -> None:
        tenant = self.ctx.tenant
        messages = prompt_build(
            persona=tenant.persona,
            language=self.language,
            hits=hits,
            history=history,
            question=question,
        )
        guard = StreamModerator(
            word_filter, system_prompt=system_prompt(persona=tenant.persona, language=self.language)
        )
        refs = tuple(f"{hit.kind}-{hit.id}" for hit in hits)
        shown: list[str] = []
        first_token_ms: int | None = None
        usage: ChatUsage | None = None
        withheld = False
        cache_key = None if history else await _answer_cache_key(tenant, self.language, question)
        events = chat_stream(
            tenant_id=tenant.pk, providers=providers, messages=messages, cache_key=cache_key
        )
        try:
            # aclosing: leaving early (withheld output) closes the provider's stream at once.
            async with aclosing(events):
                async for event in events:
                    if isinstance(event, TextDelta):
                        verdict = guard.feed(event.text)
                        if verdict.emit and first_token_ms is None:
                            first_token_ms = _ms(started)
                        shown.append(verdict.emit)
                        await self._delta(verdict.emit)
                        if verdict.blocked:
                            withheld = True
                            break
                    elif isinstance(event, StreamDone):
                        usage = event.usage
            if not withheld:
                verdict = guard.finish()
                shown.append(verdict.emit)
                await self._delta(verdict.emit)
                withheld = verdict.blocked
        except StreamInterrupted as interrupted:
            with translation.override(self.language):
                note = "\n\n" + _("(The answer was cut off. Please ask again.)")
            await self._delta(note)
            await self._finish(
                _llm_record(
                    "".join(shown) + note,
                    interrupted.usage,
                    refs,
                    confidence,
                    first_token_ms,
                    started,
                    error_code=ANSWER_CUT_OFF,
                ),
                interrupted=True,
            )
            return
        except asyncio.CancelledError:
            # The customer went away or stopped the answer (an HTTP stream): what was shown is
            # stored, cut off, before the cancellation goes on.
            await self._cut_off("".join(shown), messages, refs, confidence, first_token_ms, started)
            raise
        except AllProvidersFailed as failed:
            logger.warning(
                "all providers failed tenant=%s attempts=%s",
                tenant.pk,
                [(a.provider, a.kind) for a in failed.attempts],
            )
            await self._fallback(hits, started=started)
            return

        if withheld:
            with translation.override(self.language):
                note = _("[The rest of this answer was withheld.]")
            await self._delta("\n\n" + note)
            shown.append("\n\n" + note)
        if usage is None:
            # Cut short by output moderation before the provider's usage record arrived: the
            # tokens are estimated (the provider still bills them).
            usage = _estimated_usage(messages, "".join(shown), first_token_ms, started)
        await self._finish(
            _llm_record(
                "".join(shown),
                usage,
                refs,
                confidence,
                first_token_ms,
                started,
                moderation_flags=("output_withheld",) if withheld else (),
            )
        )

    async def _cut_off(
        self,
        shown: str,
        messages: list[ChatMessage],
        refs: tuple[str, ...],
        confidence: float | None,
        first_token_ms: int | None,
        started: float,
    ) -> None:
        """Stores the part of an answer shown before its stream was cancelled and says it is
        done (a sink still listening, such as a stopped HTTP stream, gets its message id).
        Nothing is stored when nothing was shown."""
        if not shown:
            return
        record = _llm_record(
            shown,
            _estimated_usage(messages, shown, first_token_ms, started),
            refs,
            confidence,
            first_token_ms,
            started,
            error_code=ANSWER_CUT_OFF,
        )
        written = await message_write(
            services.MessageWrite(
                tenant_id=self.ctx.tenant.pk,
                conversation_id=self.ctx.conversation_id,
                answer=record,
            )
        )
        try:
            await self._done(record, written.answer_id or 0, interrupted=True)
        except Exception as error:  # the sink's channel may be gone (a closed widget socket)
            logger.info(
                "cut-off answer stored, not delivered tenant=%s: %s",
                self.ctx.tenant.pk,
                type(error).__name__,
            )

    async def _fallback(self, hits: list[SearchHit], *, started: float) -> None:
        """Every provider failed before the first token: the best knowledge, honestly."""
        with translation.override(self.language):
            notice = _("Our AI assistant is unavailable right now.")
        text, refs = self._knowledge_text(hits)
        content = f"{notice} {text}"
        await self._delta(content)
        elapsed = _ms(started)
        await self._finish(
            services.AnswerRecord(
                content=content,
                source=Message.Source.FALLBACK,
                knowledge_refs=refs,
                first_token_ms=elapsed,
                latency_ms=elapsed,
                error_code="provider_failure",
            ),
            offer_handoff=True,
        )


def _llm_record(
    content: str,
    usage: ChatUsage,
    refs: tuple[str, ...],
    confidence: float | None,
    first_token_ms: int | None,
    started: float,
    *,
    error_code: str = "",
    moderation_flags: tuple[str, ...] = (),
) -> services.AnswerRecord:
    return services.AnswerRecord(
        content=content,
        source=Message.Source.RAG if refs else Message.Source.LLM,
        provider=usage.provider,
        model=usage.model,
        tokens_in=usage.tokens_in,
        tokens_out=usage.tokens_out,
        cost=usage.cost,
        first_token_ms=first_token_ms,
        latency_ms=_ms(started),
        confidence=confidence,
        knowledge_refs=refs,
        moderation_flags=moderation_flags,
        error_code=error_code,
    )


def _estimated_usage(
    messages: list[ChatMessage], shown: str, first_token_ms: int | None, started: float
) -> ChatUsage:
    """The usage of a stream that ended before the provider's usage record arrived: estimated
    (the provider still bills the tokens)."""
    return ChatUsage(
        provider_id=None,
        provider="",
        model="",
        tokens_in=sum(estimate_tokens(m.content) for m in messages),
        tokens_out=estimate_tokens(shown),
        cost=Decimal("0"),
        first_token_ms=first_token_ms,
        total_ms=_ms(started),
        attempts=(),
    )


async def _answer_cache_key(tenant: Tenant, language: str, question: str) -> str:
    """Identical first questions get the cached answer until the knowledge or persona changes."""
    index = await registry.aget(tenant.pk)
    version = index.version if index is not None else 0
    digest = hashlib.sha256(
        "\x1f".join([language, tenant.persona, normalize(question)]).encode()
    ).hexdigest()
    return f"llm:answer:{tenant.pk}:{version}:{digest}"


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


async def draft_reply(*, tenant: Tenant, question: str) -> str:
    """An AI-suggested reply for an agent to edit: the LLM with the knowledge when a provider
    is configured, else the best knowledge answer. Never sent to the customer by itself."""
    if not question.strip():
        return ""
    language = message_language(question, tenant.default_language)
    hits = await aknowledge_search(tenant=tenant, query=question, k=PASSAGES)
    providers = await allm_providers_for_tenant(tenant_id=tenant.pk)
    if providers:
        messages = prompt_build(
            persona=tenant.persona, language=language, hits=hits, history=[], question=question
        )
        parts: list[str] = []
        events = chat_stream(tenant_id=tenant.pk, providers=providers, messages=messages)
        try:
            async with aclosing(events):
                async for event in events:
                    if isinstance(event, TextDelta):
                        parts.append(event.text)
            return "".join(parts)
        except (AllProvidersFailed, StreamInterrupted):
            logger.warning("draft reply: providers failed tenant=%s", tenant.pk)
    # Nothing relevant found: an empty draft, never an unrelated passage.
    return hits[0].text if hits and hits[0].relevant else ""
