"""Generated history for a tenant: customers, conversations, messages, tickets and the reporting
rows the live path would have written for them, over a range of days (``manage.py
analytics_seed``; the demo's weeks of history; the benchmark's analytics phase).

The history follows the live rules (conversations/lifecycle.py, analytics/services.py): a
conversation starts with the customer's first question; the assistant answers from the FAQ,
documents (rag), a bare LLM, the offline responder or, with every provider failing, the
fallback; a customer may ask for a person, give a 👎, repeat a question or get answers that
found nothing, and is handed over with that reason; an agent takes the conversation and
resolves it (then the customer may rate it), or nobody is there and the customer leaves contact
details (a ticket), or nobody takes it and it is abandoned after an hour; a conversation left
answered from knowledge is resolved by the assistant after 30 idle minutes (confirmed with a 👍)
and is sometimes reopened by the customer writing again. Volumes follow a weekday × hour shape
in the tenant's time zone and a rising trend. Questions come from ``seed_questions.json``: some
hundred subjects in Chinese and English with paraphrases; a fifth of them are questions the
knowledge base cannot answer (low confidence, offline or fallback answers, handoffs, 👎), so
that topics and knowledge gaps have something to find.

Everything happens as events would have left it, up to now: a conversation whose next step lies
in the future stays open. Rows are written with COPY on PostgreSQL and batched INSERTs
elsewhere, one transaction per local day, with ids taken from the tables' sequences so the app
goes on inserting after them. A second run adds more history (new customers); ``replace=True``
first deletes what earlier runs generated for the tenant (customers whose external id starts
with ``seed-``, with their conversations, messages, tickets and reporting rows).
"""

import contextlib
import json
import math
import queue
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, models, transaction
from django.utils import timezone

from analytics.models import ReportRow
from analytics.rollups import local_day_bounds, local_today, rollups_rebuild, tenant_zone
from conversations.models import Channel, Conversation, Customer, Message, Ticket, TicketReply
from knowledge.models import Chunk, KnowledgeEntry
from tenants.models import LLMProvider, Membership, Role, Tenant
from tenants.scoping import tenant_scope

QUESTIONS = Path(__file__).resolve().parent / "seed_questions.json"
SEED_PREFIX = "seed-"

Kind = ReportRow.Kind
Source = Message.Source
Resolution = Conversation.ResolutionKind
Reason = Conversation.HandoffReason
Status = Conversation.Status

# Columns written, in order; tests check they cover every concrete field of each model.
CUSTOMER_FIELDS = (
    "id", "created_at", "updated_at", "tenant_id", "channel", "external_id", "display_name",
    "email", "phone", "identified", "metadata", "last_seen_at", "anonymized_at",
)  # fmt: skip
CONVERSATION_FIELDS = (
    "id", "created_at", "updated_at", "tenant_id", "customer_id", "channel", "status",
    "language", "priority", "tags", "assignee_id", "handoff_reason", "resolution_kind",
    "csat_rating", "csat_comment", "last_message_at", "queued_at", "assigned_at", "resolved_at",
    "closed_at", "cache_key",
)  # fmt: skip
MESSAGE_FIELDS = (
    "id", "created_at", "updated_at", "tenant_id", "conversation_id", "role", "content",
    "source", "client_message_id", "author_id", "internal", "provider", "model", "tokens_in",
    "tokens_out", "cost", "first_token_ms", "latency_ms", "confidence", "knowledge_refs",
    "moderation_flags", "error_code", "feedback",
)  # fmt: skip
TICKET_FIELDS = (
    "id", "created_at", "updated_at", "tenant_id", "customer_id", "conversation_id", "subject",
    "description", "contact_email", "contact_phone", "status", "priority", "assignee_id",
    "sla_due_at", "sla_breached_at", "solved_at", "agents_emailed_at",
)  # fmt: skip
REPORT_FIELDS = (
    "id", "created_at", "updated_at", "tenant_id", "kind", "occurred_at", "channel",
    "conversation_id", "customer_id", "agent_id", "message_id", "ticket_id", "entry_id",
    "reason", "provider", "model", "tokens_in", "tokens_out", "cost", "latency_ms",
    "duration_ms", "value",
)  # fmt: skip
TABLES: tuple[tuple[type[models.Model], tuple[str, ...]], ...] = (
    (Customer, CUSTOMER_FIELDS),
    (Conversation, CONVERSATION_FIELDS),
    (Message, MESSAGE_FIELDS),
    (Ticket, TICKET_FIELDS),
    (ReportRow, REPORT_FIELDS),
)

# Live rules, in seconds (conversations/lifecycle.py's defaults).
AI_RESOLVED_AFTER = 30 * 60
ABANDONED_AFTER = 60 * 60
SWEEP_EVERY = 60

# Local hour of day → relative volume: quiet nights, a morning and an afternoon peak, evenings.
HOUR_SHAPE = (
    0.15, 0.08, 0.05, 0.04, 0.04, 0.06, 0.15, 0.35, 0.7, 1.0, 1.15, 1.1,
    0.9, 0.95, 1.1, 1.15, 1.05, 0.9, 0.75, 0.8, 0.9, 0.85, 0.6, 0.3,
)  # fmt: skip
WEEKDAY_SHAPE = (1.0, 1.05, 1.0, 0.98, 0.95, 0.7, 0.62)  # Monday first
TREND = 0.35  # the last day has this much more traffic than the first
CHANNELS = ((Channel.WIDGET.value, 0.7), (Channel.API.value, 0.12), (Channel.WECHAT.value, 0.18))
DEFAULT_MODELS = (
    ("DeepSeek", "deepseek-chat", Decimal("0.00027"), Decimal("0.0011")),
    ("Qwen", "qwen-plus", Decimal("0.0008"), Decimal("0.002")),
)
RATING_WEIGHTS = (0.05, 0.07, 0.13, 0.3, 0.45)  # scores 1..5
FIRST_NAMES_ZH = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄婷", "周杰", "吴昊")
FIRST_NAMES_EN = ("Emily Chen", "James Wang", "Olivia Li", "Noah Zhang", "Mia Liu", "Lucas Wu")
COPY_ROWS = 20_000  # per COPY/INSERT statement
ID_BLOCK = 20_000  # ids taken from a sequence per round trip
CHUNKS_SAMPLED = 5_000


@dataclass(frozen=True)
class Topic:
    index: int
    key: str
    tag: str
    answerable: bool
    weight: float
    trend: float
    faq: tuple[str, ...]  # FAQ questions (of the demo tenant) this subject is answered by
    phrasings: dict[str, tuple[str, ...]]  # language → paraphrases


@dataclass(frozen=True)
class QuestionBank:
    topics: tuple[Topic, ...]
    texts: dict[str, dict[str, tuple[str, ...]]]  # kind → language → texts

    def text(self, kind: str, language: str, rng: random.Random) -> str:
        return rng.choice(self.texts[kind][language])


@cache
def question_bank() -> QuestionBank:
    data = json.loads(QUESTIONS.read_text(encoding="utf-8"))
    topics = tuple(
        Topic(
            index=index,
            key=item["key"],
            tag=item["tag"],
            answerable=item["answerable"],
            weight=float(item.get("weight", 1)),
            trend=float(item.get("trend", 0)),
            faq=tuple(item.get("faq", ())),
            phrasings={"zh": tuple(item["zh"]), "en": tuple(item["en"])},
        )
        for index, item in enumerate(data["topics"])
    )
    texts = {
        kind: {language: tuple(values) for language, values in by_language.items()}
        for kind, by_language in data["texts"].items()
    }
    return QuestionBank(topics=topics, texts=texts)


@dataclass
class SeedResult:
    conversations: int = 0
    messages: int = 0
    customers: int = 0
    tickets: int = 0
    report_rows: int = 0
    rollup_rows: int = 0
    deleted_conversations: int = 0
    seconds: float = 0.0
    write_seconds: float = 0.0
    rollup_seconds: float = 0.0
    since: date | None = None
    until: date | None = None

    @property
    def rows(self) -> int:
        return self.conversations + self.messages + self.customers + self.tickets + self.report_rows

    @property
    def rows_per_second(self) -> float:
        """Rows generated and written per second (deleting an earlier history and the
        rollups not counted)."""
        return self.rows / self.write_seconds if self.write_seconds > 0 else 0.0


# --- Writing --------------------------------------------------------------------------------


class _Ids:
    """Ids for new rows of one table, from its sequence (PostgreSQL: taken in blocks with
    ``nextval``, so that concurrent inserts never collide), or after the current maximum (SQLite:
    one writer at a time)."""

    def __init__(self, model: type[models.Model]) -> None:
        self.table = model._meta.db_table
        self.postgres = connection.vendor == "postgresql"
        self.pool: list[int] = []
        self.position = 0
        self.next_local = 0

    def take(self) -> int:
        if self.position >= len(self.pool):
            self._refill()
        value = self.pool[self.position]
        self.position += 1
        return value

    def _refill(self) -> None:
        with connection.cursor() as cursor:
            if self.postgres:
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                    [self.table, ID_BLOCK],
                )
                self.pool = [row[0] for row in cursor.fetchall()]
            else:
                if not self.next_local:
                    cursor.execute(f'SELECT COALESCE(MAX(id), 0) FROM "{self.table}"')  # noqa: S608
                    self.next_local = cursor.fetchone()[0] + 1
                self.pool = list(range(self.next_local, self.next_local + ID_BLOCK))
                self.next_local += ID_BLOCK
        self.position = 0


def _columns(model: type[models.Model], fields: Sequence[str]) -> list[str]:
    by_attname = {f.attname: str(f.column) for f in model._meta.concrete_fields}
    return [by_attname[name] for name in fields]


def _rows_write(model: type[models.Model], fields: Sequence[str], rows: list[tuple]) -> None:
    """Writes rows (tuples in ``fields`` order, values as Python objects): COPY on PostgreSQL,
    batched INSERTs elsewhere (raw, so that ``auto_now_add`` keeps the times given)."""
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in _columns(model, fields))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        adapt = connection.ops.adapt_datetimefield_value
        placeholders = ", ".join(["%s"] * len(fields))
        statement = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608
        for start in range(0, len(rows), COPY_ROWS):
            cursor.executemany(
                statement,
                [
                    tuple(adapt(v) if isinstance(v, datetime) else v for v in row)
                    for row in rows[start : start + COPY_ROWS]
                ],
            )


# --- The history ----------------------------------------------------------------------------


@dataclass
class _Agent:
    user_id: int
    skill: float  # slower agents have larger factors


@dataclass
class _Day:
    """The rows of one local day's conversations, written together."""

    customers: list[tuple] = field(default_factory=list)
    conversations: list[tuple] = field(default_factory=list)
    messages: list[tuple] = field(default_factory=list)
    tickets: list[tuple] = field(default_factory=list)
    reports: list[tuple] = field(default_factory=list)

    def tables(self) -> Iterator[tuple[type[models.Model], tuple[str, ...], list[tuple]]]:
        rows = (self.customers, self.conversations, self.messages, self.tickets, self.reports)
        for (model, fields), table_rows in zip(TABLES, rows, strict=True):
            yield model, fields, table_rows


def _is_chinese(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text[:40])


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _lognormal(rng: random.Random, median: float, sigma: float, low: float, high: float) -> float:
    return min(high, max(low, median * math.exp(rng.gauss(0, sigma))))


class _Generator:
    """Makes one tenant's conversations, one at a time, as the live path would have left them."""

    def __init__(
        self, *, tenant: Tenant, rng: random.Random, horizon: float, agents: list[_Agent]
    ) -> None:
        self.tenant = tenant
        self.tenant_id = tenant.pk
        self.rng = rng
        self.horizon = horizon
        self.agents = agents
        self.bank = question_bank()
        self.run = secrets.token_hex(4)
        self.ids = {model: _Ids(model) for model, _fields in TABLES}
        self.topic_weights: list[float] = []
        self.day_progress(0.0)
        self.channel_weights = list(self._cumulative([w for _c, w in CHANNELS]))
        entries = list(
            KnowledgeEntry.objects.filter(tenant=tenant, enabled=True)
            .order_by("pk")
            .values_list("pk", "tags", "answer", "question")
        )
        self.entries_by_tag: dict[str, list[tuple[int, str]]] = {}
        self.entries_by_question: dict[str, tuple[int, str]] = {}
        for pk, tags, answer, question in entries:
            for tag in tags or ["*"]:
                self.entries_by_tag.setdefault(tag, []).append((pk, answer))
            self.entries_by_question[question] = (pk, answer)
        self.all_entries = [(pk, answer) for pk, _tags, answer, _question in entries]
        # Document passages answers may cite (a sample is plenty): chunk id, document id.
        self.chunks = list(
            Chunk.objects.filter(tenant=tenant)
            .order_by("pk")
            .values_list("pk", "document_id")[:CHUNKS_SAMPLED]
        )
        providers = list(
            LLMProvider.objects.filter(tenant=tenant, enabled=True)
            .order_by("priority", "pk")
            .values_list("name", "model", "price_input_per_1k", "price_output_per_1k")
        )
        self.models = providers or list(DEFAULT_MODELS)
        self.sla_seconds = tenant.ticket_sla_hours * 3600
        self.customers: list[tuple[int, str, str]] = []  # id, channel, language
        self.day = _Day()
        self.counts = SeedResult()

    def day_progress(self, progress: float) -> None:
        """Topic weights for a day ``progress`` (0 → 1) through the range: some subjects rise
        or fade (``trend`` in the question bank), so topics change from one period to the next."""
        self.topic_weights = list(
            self._cumulative(
                [max(0.01, t.weight * (1 + t.trend * progress)) for t in self.bank.topics]
            )
        )

    @staticmethod
    def _cumulative(weights: Sequence[float]) -> Iterator[float]:
        total = 0.0
        for weight in weights:
            total += weight
            yield total

    def faq_entry(self, topic: Topic, language: str) -> tuple[int, str]:
        """The FAQ entry that answers the subject: the one named in the question bank (in the
        customer's language when there is one), else one with the subject's tag."""
        named = [self.entries_by_question[q] for q in topic.faq if q in self.entries_by_question]
        if named:
            same = [e for e in named if _is_chinese(e[1]) == (language == "zh")]
            return (same or named)[0]
        pool = self.entries_by_tag.get(topic.tag) or self.all_entries
        return pool[topic.index % len(pool)]

    def rag_refs(self) -> tuple[list[str], list[int]]:
        """What a knowledge + LLM answer cites, as the pipeline writes it (``faq-<id>``,
        ``chunk-<id>``), and the documents of the chunks cited. Nothing without knowledge."""
        rng = self.rng
        refs: list[str] = []
        documents: list[int] = []
        if self.chunks:
            for chunk_id, document_id in rng.sample(self.chunks, min(2, len(self.chunks))):
                refs.append(f"chunk-{chunk_id}")
                if document_id not in documents:
                    documents.append(document_id)
        if self.all_entries and (not refs or rng.random() < 0.4):
            refs.insert(0, f"faq-{self.all_entries[rng.randrange(len(self.all_entries))][0]}")
        return refs, documents

    # Rows ----------------------------------------------------------------------------------

    def _report(self, kind: str, at: float, conv: "_Conversation", **values: Any) -> None:
        when = _dt(at)
        self.day.reports.append(
            (
                self.ids[ReportRow].take(),
                when,
                when,
                self.tenant_id,
                kind,
                when,
                conv.channel,
                conv.id,
                conv.customer_id,
                values.get("agent_id"),
                values.get("message_id"),
                values.get("ticket_id"),
                values.get("entry_id"),
                values.get("reason", ""),
                values.get("provider", ""),
                values.get("model", ""),
                values.get("tokens_in", 0),
                values.get("tokens_out", 0),
                values.get("cost", Decimal("0")),
                values.get("latency_ms"),
                values.get("duration_ms"),
                values.get("value"),
            )
        )
        self.counts.report_rows += 1

    def _message(self, conv: "_Conversation", at: float, role: str, content: str, **v: Any) -> int:
        pk = self.ids[Message].take()
        when = _dt(at)
        self.day.messages.append(
            (
                pk,
                when,
                when,
                self.tenant_id,
                conv.id,
                role,
                content,
                v.get("source", ""),
                "",
                v.get("author_id"),
                False,
                v.get("provider", ""),
                v.get("model", ""),
                v.get("tokens_in", 0),
                v.get("tokens_out", 0),
                v.get("cost", Decimal("0")),
                v.get("first_token_ms"),
                v.get("latency_ms"),
                v.get("confidence"),
                v.get("knowledge_refs", "[]"),
                "[]",
                "",
                v.get("feedback", ""),
            )
        )
        conv.last_message_at = at
        self.counts.messages += 1
        return pk

    # Choices -------------------------------------------------------------------------------

    def _customer(self, at: float) -> tuple[int, str, str]:
        rng = self.rng
        if self.customers and rng.random() < 0.3:
            return rng.choice(self.customers)
        channel = CHANNELS[self._pick(self.channel_weights)][0]
        language = "zh" if rng.random() < 0.62 else "en"
        pk = self.ids[Customer].take()
        named = rng.random() < 0.35
        name = rng.choice(FIRST_NAMES_ZH if language == "zh" else FIRST_NAMES_EN) if named else ""
        when = _dt(at)
        self.day.customers.append(
            (
                pk,
                when,
                when,
                self.tenant_id,
                channel,
                f"{SEED_PREFIX}{self.run}-{pk}",
                name,
                "",
                "",
                False,
                "{}",
                when,
                None,
            )
        )
        self.counts.customers += 1
        customer = (pk, channel, language)
        self.customers.append(customer)
        return customer

    def _pick(self, cumulative: list[float]) -> int:
        point = self.rng.random() * cumulative[-1]
        low, high = 0, len(cumulative) - 1
        while low < high:
            middle = (low + high) // 2
            if cumulative[middle] < point:
                low = middle + 1
            else:
                high = middle
        return low

    def _topic(self) -> Topic:
        return self.bank.topics[self._pick(self.topic_weights)]

    def _question(self, topic: Topic, language: str) -> str:
        rng = self.rng
        text = rng.choice(topic.phrasings[language])
        if rng.random() < 0.35:
            text = self.bank.text("prefix", language, rng) + text
        if rng.random() < 0.2:
            text += self.bank.text("suffix", language, rng)
        return text

    # One conversation ----------------------------------------------------------------------

    def conversation(self, start: float) -> None:
        customer_id, channel, language = self._customer(start)
        conv = _Conversation(
            id=self.ids[Conversation].take(),
            customer_id=customer_id,
            channel=channel,
            language=language,
            start=start,
        )
        self.counts.conversations += 1
        self._report(Kind.CONVERSATION_CREATED, start, conv)
        _Timeline(self, conv).play()
        self._conversation_row(conv)

    def _conversation_row(self, conv: "_Conversation") -> None:
        start = _dt(conv.start)
        opt = lambda ts: None if ts is None else _dt(ts)  # noqa: E731
        self.day.conversations.append(
            (
                conv.id,
                start,
                _dt(conv.last_message_at or conv.start),
                self.tenant_id,
                conv.customer_id,
                conv.channel,
                conv.status,
                "zh-hans" if conv.language == "zh" else "en",
                "normal",
                "[]",
                conv.assignee_id,
                conv.handoff_reason,
                conv.resolution_kind,
                conv.rating,
                conv.comment,
                opt(conv.last_message_at),
                opt(conv.queued_at),
                opt(conv.assigned_at),
                opt(conv.resolved_at),
                opt(conv.closed_at),
                secrets.token_urlsafe(12),
            )
        )

    def take_day(self) -> _Day:
        day, self.day = self.day, _Day()
        return day


def _day_write(day: _Day) -> None:
    """One local day's rows in one transaction."""
    with transaction.atomic():
        for model, fields, rows in day.tables():
            _rows_write(model, fields, rows)


class _BackgroundWriter:
    """Writes days on a thread of its own (its own database connection) while the next day is
    generated: PostgreSQL's work (parsing, index updates) overlaps Python's. At most one day
    waits in the queue. Used on PostgreSQL outside any transaction of the caller's (a thread's
    connection could not see the caller's uncommitted rows)."""

    def __init__(self, tenant_id: int) -> None:
        self.tenant_id = tenant_id
        self.queue: queue.Queue[_Day | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="analytics-seed-writer")
        self.thread.start()

    def _run(self) -> None:
        try:
            with tenant_scope(self.tenant_id):
                while (day := self.queue.get()) is not None:
                    if self.error is None:
                        _day_write(day)
        except BaseException as error:
            self.error = error
            while self.queue.get() is not None:
                pass
        finally:
            connection.close()

    def put(self, day: _Day) -> None:
        self._raise()
        self.queue.put(day)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


@dataclass
class _Conversation:
    id: int
    customer_id: int
    channel: str
    language: str
    start: float
    status: str = Status.BOT
    assignee_id: int | None = None
    handoff_reason: str = ""
    resolution_kind: str = ""
    rating: int | None = None
    comment: str = ""
    last_message_at: float | None = None
    queued_at: float | None = None
    assigned_at: float | None = None
    resolved_at: float | None = None
    closed_at: float | None = None


class _Ended(Exception):
    """The conversation's next step would happen after now: it stays as it is."""


class _Timeline:
    """One conversation played step by step; every step checks it is not in the future."""

    def __init__(self, gen: _Generator, conv: _Conversation) -> None:
        self.gen = gen
        self.rng = gen.rng
        self.conv = conv
        self.t = conv.start
        self.answered = False
        self.knowledge_found = False
        self.thumbs_up = False
        self.last_answer_bad = False  # the last answer was a 👎 or a fallback
        self.topic = gen._topic()
        self.first_question = ""

    def _at(self, seconds: float) -> float:
        self.t += seconds
        if self.t > self.gen.horizon:
            raise _Ended
        return self.t

    def play(self) -> None:
        with contextlib.suppress(_Ended):
            self._play()

    def _play(self) -> None:
        rng, conv, lang = self.rng, self.conv, self.conv.language
        turns = 1 + min(14, int(rng.expovariate(1 / 5.2)))
        handoff: str | None = None
        for turn in range(turns):
            if turn == 0:
                text = self.first_question = self.gen._question(self.topic, lang)
            elif rng.random() < 0.5:
                text = self.gen.bank.text("follow_up", lang, rng)
            else:
                self.topic = self.gen._topic() if rng.random() < 0.3 else self.topic
                text = self.gen._question(self.topic, lang)
            at = conv.start if turn == 0 else self._at(rng.uniform(15, 120))
            self._customer_message(at, text)
            handoff = self._answer()
            if handoff is not None:
                break
        if handoff is None and rng.random() < (0.06 if self.topic.answerable else 0.3):
            self._customer_message(self._at(rng.uniform(10, 90)), self._text("handoff_request"))
            handoff = Reason.CUSTOMER_REQUEST
        if handoff is not None:
            self._handoff(handoff)
        else:
            self._ai_end()

    def _text(self, kind: str) -> str:
        return self.gen.bank.text(kind, self.conv.language, self.rng)

    def _customer_message(self, at: float, text: str) -> None:
        pk = self.gen._message(self.conv, at, Message.Role.CUSTOMER, text)
        self.gen._report(Kind.CUSTOMER_MESSAGE, at, self.conv, message_id=pk)

    def _source(self) -> str:
        r = self.rng.random()
        knowledge = bool(self.gen.all_entries or self.gen.chunks)
        rag = Source.RAG if knowledge else Source.LLM  # an LLM answer citing nothing is "llm"
        if self.topic.answerable:
            if self.gen.all_entries and r < 0.62:
                return Source.FAQ
            return rag if r < 0.92 else (Source.LLM if r < 0.985 else Source.FALLBACK)
        if r < 0.3:
            return Source.OFFLINE
        return Source.LLM if r < 0.65 else (rag if r < 0.9 else Source.FALLBACK)

    def _answer(self) -> str | None:
        """The assistant's answer to the last question; the handoff reason it leads to."""
        gen, rng, conv, _lang = self.gen, self.rng, self.conv, self.conv.language
        source = self._source()
        fields: dict[str, Any] = {"source": source}
        documents: list[int] = []
        report: dict[str, Any] = {"reason": source}
        entry_id = None
        if source == Source.FAQ:
            entry_id, content = gen.faq_entry(self.topic, conv.language)
            latency = int(_lognormal(rng, 25, 0.5, 5, 400))
            fields |= {
                "confidence": round(rng.uniform(0.82, 0.99), 3),
                "knowledge_refs": f'["faq-{entry_id}"]',
                "first_token_ms": latency,
                "latency_ms": latency,
            }
            report["latency_ms"] = latency
        else:
            low = not self.topic.answerable
            confidence = rng.uniform(0.1, 0.45) if low else rng.uniform(0.45, 0.8)
            fields["confidence"] = round(confidence, 3)
            if source == Source.RAG:
                refs, documents = gen.rag_refs()
                fields["knowledge_refs"] = json.dumps(refs)
            if source in (Source.RAG, Source.LLM, Source.FALLBACK):
                provider, model, price_in, price_out = gen.models[
                    0 if rng.random() < 0.8 else rng.randrange(len(gen.models))
                ]
                tokens_in = (
                    rng.randint(350, 1800) if source != Source.LLM else rng.randint(150, 600)
                )
                tokens_out = rng.randint(40, 320) if source != Source.FALLBACK else 0
                cost = (Decimal(tokens_in) * price_in + Decimal(tokens_out) * price_out) / 1000
                cost = cost.quantize(Decimal("0.000001"))
                ttft: int | None = int(_lognormal(rng, 700, 0.45, 150, 15_000))
                latency = (ttft or 0) + tokens_out * rng.randint(15, 35)
                if source == Source.FALLBACK:
                    latency = int(_lognormal(rng, 16_000, 0.3, 5_000, 60_000))
                    ttft = None
                llm = {"provider": provider, "model": model, "tokens_in": tokens_in}
                llm |= {"tokens_out": tokens_out, "cost": cost}
                fields |= llm | {"first_token_ms": ttft, "latency_ms": latency}
                report |= llm | {"latency_ms": latency}
            else:
                latency = int(_lognormal(rng, 40, 0.5, 5, 600))
                fields |= {"first_token_ms": latency, "latency_ms": latency}
                report["latency_ms"] = latency
            content = self._text(source if source != Source.RAG else Source.LLM)
        at = self._at(latency / 1000)
        pk = gen._message(conv, at, Message.Role.ASSISTANT, content, **fields)
        gen._report(Kind.ANSWER, at, conv, message_id=pk, **report)
        if entry_id is not None:
            gen._report(Kind.FAQ_HIT, at, conv, message_id=pk, entry_id=entry_id)
        for document_id in documents:
            gen._report(Kind.DOCUMENT_HIT, at, conv, message_id=pk, entry_id=document_id)
        self._first_answer(at, pk)
        self.knowledge_found |= source in (Source.FAQ, Source.RAG)
        self.last_answer_bad = source == Source.FALLBACK

        # The customer's reaction: a thumb (the 👎 hands over), or nothing.
        good = source == Source.FAQ or (source == Source.RAG and self.topic.answerable)
        r = rng.random()
        up, down = (0.14, 0.03) if good else (0.04, 0.16)
        feedback = "up" if r < up else ("down" if r < up + down else "")
        if feedback:
            at = self._at(rng.uniform(3, 40))
            gen.day.messages[-1] = (*gen.day.messages[-1][:-1], feedback)
            gen._report(Kind.FEEDBACK, at, conv, message_id=pk, reason=feedback)
            self.thumbs_up |= feedback == "up"
            self.last_answer_bad = feedback == "down"
            if feedback == "down":
                return Reason.NEGATIVE_FEEDBACK
        if source == Source.FALLBACK:
            return Reason.PROVIDER_FAILURE
        if not self.topic.answerable and source in (Source.OFFLINE, Source.LLM):
            roll = rng.random()
            if roll < 0.25:
                return Reason.LOW_CONFIDENCE
            if roll < 0.32:
                self._customer_message(self._at(rng.uniform(10, 60)), self.conv_question())
                return Reason.REPEATED_QUESTION
        return None

    def conv_question(self) -> str:
        return self.gen._question(self.topic, self.conv.language)

    def _first_answer(self, at: float, message_id: int) -> None:
        if self.answered:
            return
        self.answered = True
        duration = int((at - self.conv.start) * 1000)
        self.gen._report(
            Kind.FIRST_ANSWER, at, self.conv, message_id=message_id, duration_ms=duration
        )

    def _ai_end(self) -> None:
        """Left answered: resolved by the assistant after the idle time when an answer found
        knowledge and the last one was not a 👎 or a fallback; sometimes reopened."""
        gen, rng, conv = self.gen, self.rng, self.conv
        if not self.knowledge_found or self.last_answer_bad:
            return
        for round_ in range(2):
            at = self._at(AI_RESOLVED_AFTER + rng.uniform(0, SWEEP_EVERY))
            conv.status, conv.resolution_kind, conv.resolved_at = Status.RESOLVED, Resolution.AI, at
            gen._report(
                Kind.RESOLVED,
                at,
                conv,
                reason=Resolution.AI,
                duration_ms=int((at - conv.start) * 1000),
                value=int(self.thumbs_up),
            )
            if round_ or rng.random() > 0.06:
                return
            # The customer writes again in the conversation the sweep ended.
            at = self._at(rng.uniform(600, 36 * 3600))
            conv.status, conv.resolution_kind, conv.resolved_at = Status.BOT, "", None
            gen._report(Kind.REOPENED, at, conv, reason=Resolution.AI)
            # Back with a new question (a new subject, as topics count them), or the same one.
            self.topic = gen._topic() if rng.random() < 0.6 else self.topic
            self._customer_message(at, self.conv_question())
            reason = self._answer()
            if reason is not None:
                self._handoff(reason)
                return
            if self.last_answer_bad:
                return

    def _handoff(self, reason: str) -> None:
        gen, rng, conv = self.gen, self.rng, self.conv
        queued = self._at(rng.uniform(0.2, 2))
        conv.status, conv.handoff_reason, conv.queued_at = Status.QUEUED, reason, queued
        conv.resolution_kind, conv.resolved_at = "", None
        gen._report(Kind.HANDOFF, queued, conv, reason=reason)
        outcome = rng.random()
        if outcome < 0.68 and gen.agents:
            self._with_agent()
        elif outcome < 0.88:
            self._ticket()
        else:
            # Nobody took it: abandoned after the idle time (unless the customer left details).
            at = self._at(ABANDONED_AFTER + rng.uniform(0, SWEEP_EVERY))
            conv.status, conv.resolution_kind, conv.closed_at = (
                Status.CLOSED,
                Resolution.ABANDONED,
                at,
            )
            gen._report(Kind.ABANDONED, at, conv, duration_ms=int((at - conv.start) * 1000))

    def _with_agent(self) -> None:
        gen, rng, conv = self.gen, self.rng, self.conv
        agent = rng.choice(gen.agents)
        wait = _lognormal(rng, 75 * agent.skill, 0.9, 5, 2 * 3600)
        assigned = self._at(wait * 0.7)
        conv.status, conv.assignee_id, conv.assigned_at = Status.HUMAN, agent.user_id, assigned
        first = True
        for _reply in range(rng.randint(1, 4)):
            at = self._at(wait * 0.3 if first else rng.uniform(20, 240) * agent.skill)
            pk = gen._message(
                conv, at, Message.Role.AGENT, self._text("agent_reply"),
                source=Source.AGENT, author_id=agent.user_id,
            )  # fmt: skip
            gen._report(Kind.AGENT_REPLY, at, conv, message_id=pk, agent_id=agent.user_id)
            self._first_answer(at, pk)
            if first:
                gen._report(
                    Kind.FIRST_HUMAN_RESPONSE,
                    at,
                    conv,
                    message_id=pk,
                    agent_id=agent.user_id,
                    duration_ms=int((at - (conv.queued_at or assigned)) * 1000),
                )
                first = False
            if rng.random() < 0.6:
                self._customer_message(self._at(rng.uniform(15, 180)), self._text("follow_up"))
        at = self._at(rng.uniform(30, 600))
        conv.status, conv.resolution_kind, conv.resolved_at = Status.RESOLVED, Resolution.AGENT, at
        gen._report(
            Kind.RESOLVED,
            at,
            conv,
            reason=Resolution.AGENT,
            agent_id=agent.user_id,
            duration_ms=int((at - conv.start) * 1000),
        )
        if rng.random() < 0.45:
            at = self._at(rng.uniform(5, 120))
            score = 1 + gen._pick(list(_Generator._cumulative(RATING_WEIGHTS)))
            conv.rating = score
            if rng.random() < 0.25:
                conv.comment = self._text("comment_good" if score >= 4 else "comment_bad")
            gen._report(Kind.RATING, at, conv, agent_id=agent.user_id, value=score)

    def _ticket(self) -> None:
        """Nobody available: the customer leaves contact details, the conversation becomes a
        ticket, which agents solve later (within the SLA or not)."""
        gen, rng, conv = self.gen, self.rng, self.conv
        at = self._at(rng.uniform(20, 180))
        conv.status, conv.resolution_kind, conv.resolved_at = Status.RESOLVED, Resolution.TICKET, at
        gen._report(
            Kind.RESOLVED,
            at,
            conv,
            reason=Resolution.TICKET,
            duration_ms=int((at - conv.start) * 1000),
        )
        pk = gen.ids[Ticket].take()
        gen.counts.tickets += 1
        gen._report(Kind.TICKET_OPENED, at, conv, ticket_id=pk)
        due = at + gen.sla_seconds
        solve_in = _lognormal(rng, gen.sla_seconds * 0.4, 0.8, 600, gen.sla_seconds * 4)
        solved = at + solve_in if rng.random() < 0.9 else None
        agent = rng.choice(gen.agents).user_id if gen.agents else None
        breached = None
        if (solved is None or solved > due) and due + SWEEP_EVERY <= gen.horizon:
            breached = due + rng.uniform(0, SWEEP_EVERY)
            gen._report(
                Kind.TICKET_SLA_BREACHED,
                breached,
                conv,
                ticket_id=pk,
                agent_id=agent,
                duration_ms=int((due - at) * 1000),
            )
        if solved is not None and solved > gen.horizon:
            solved = None
        if solved is not None:
            gen._report(
                Kind.TICKET_SOLVED,
                solved,
                conv,
                ticket_id=pk,
                agent_id=agent,
                duration_ms=int((solved - at) * 1000),
                value=int(solved <= due),
            )
        created = _dt(at)
        first_question = self.first_question
        gen.day.tickets.append(
            (
                pk,
                created,
                _dt(solved) if solved else created,
                gen.tenant_id,
                conv.customer_id,
                conv.id,
                first_question.splitlines()[0][:200] if first_question else "Conversation",
                self._text("ticket_note"),
                f"customer{conv.customer_id}@example.com",
                "",
                Ticket.Status.SOLVED if solved else Ticket.Status.OPEN,
                "normal",
                agent if solved else None,
                _dt(due),
                _dt(breached) if breached else None,
                _dt(solved) if solved else None,
                created,
            )
        )


# --- Volume over the days -------------------------------------------------------------------


def _day_counts(
    *, days: list[date], total: int, rng: random.Random, today_fraction: float
) -> list[int]:
    """Conversations per day: weekday shape × rising trend × a little noise, summing to
    ``total`` (largest remainders), the last day scaled by how much of it has passed."""
    weights = []
    for index, day in enumerate(days):
        progress = index / max(1, len(days) - 1)
        weight = WEEKDAY_SHAPE[day.weekday()] * (1 + TREND * progress) * rng.uniform(0.9, 1.1)
        if index == len(days) - 1:
            weight *= max(today_fraction, 0.01)
        weights.append(weight)
    scale = total / sum(weights) if sum(weights) else 0
    exact = [w * scale for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(days)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _hour_fraction_elapsed(now_local: datetime) -> float:
    """How much of the day's traffic (by the hour shape) has happened by ``now_local``."""
    done = sum(HOUR_SHAPE[: now_local.hour]) + HOUR_SHAPE[now_local.hour] * now_local.minute / 60
    return done / sum(HOUR_SHAPE)


def _agents(tenant: Tenant) -> list[_Agent]:
    """The tenant's people who answer: agents, or else admins and owners; with nobody, three
    agent members are created (``<slug>-agent-1``…, no usable password)."""
    members = list(
        Membership.objects.filter(tenant=tenant, role=Role.AGENT).values_list("user_id", flat=True)
    )
    members = members or list(
        Membership.objects.filter(tenant=tenant, role__in=[Role.ADMIN, Role.OWNER]).values_list(
            "user_id", flat=True
        )
    )
    if not members:
        user_model = get_user_model()
        for number in range(1, 4):
            user, created = user_model.objects.get_or_create(
                username=f"{tenant.slug}-agent-{number}"[:150]
            )
            if created:
                user.set_unusable_password()
                user.save(update_fields=["password"])
            Membership.objects.get_or_create(
                user=user, tenant=tenant, defaults={"role": Role.AGENT}
            )
            members.append(user.pk)
    return [_Agent(user_id=pk, skill=0.7 + 0.25 * (i % 4)) for i, pk in enumerate(sorted(members))]


def _statistics_refresh() -> None:
    """PostgreSQL: fresh planner statistics for the tables just filled. Without them (and with
    no autovacuum run yet) the planner takes millions of rows for an empty table and plans
    the rollups' and the app's reads as nested loops."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for model, _fields in TABLES:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


def seeded_history_delete(*, tenant: Tenant) -> int:
    """Deletes what earlier runs generated for the tenant: its ``seed-`` customers with their
    conversations, messages, tickets and reporting rows. Returns the conversations deleted.

    Plain DELETE statements (``_raw_delete``): the ORM's cascade would load every row first,
    and nothing else points at these rows."""
    _statistics_refresh()
    with tenant_scope(tenant.pk), transaction.atomic():
        customers = Customer.objects.filter(tenant=tenant, external_id__startswith=SEED_PREFIX)
        conversations = Conversation.objects.filter(tenant=tenant, customer__in=customers)
        count = conversations.count()
        tickets = Ticket.objects.filter(tenant=tenant, customer__in=customers)
        ReportRow.objects.filter(
            tenant=tenant, conversation_id__in=conversations.values("pk")
        )._raw_delete(connection.alias)
        TicketReply.objects.filter(tenant=tenant, ticket__in=tickets)._raw_delete(connection.alias)
        tickets._raw_delete(connection.alias)
        Message.objects.filter(tenant=tenant, conversation__in=conversations)._raw_delete(
            connection.alias
        )
        conversations._raw_delete(connection.alias)
        customers._raw_delete(connection.alias)
    return count


def seeded_history_exists(*, tenant: Tenant) -> bool:
    with tenant_scope(tenant.pk):
        return Customer.objects.filter(tenant=tenant, external_id__startswith=SEED_PREFIX).exists()


def analytics_seed(
    *,
    tenant: Tenant,
    conversations: int,
    days: int = 42,
    seed: int | None = None,
    end: date | None = None,
    replace: bool = False,
    rollups: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SeedResult:
    """Generates ``conversations`` conversations of history for the tenant over the ``days``
    local days ending ``end`` (default: the tenant's today, up to now), with their reporting
    rows, then rebuilds the rollups of those days. See the module's docstring."""
    if conversations < 0 or days < 1:
        raise ValueError("conversations must be >= 0 and days >= 1")
    started = time.perf_counter()
    zone = tenant_zone(tenant)
    now = timezone.now()
    end = end or local_today(tenant)
    first = end - timedelta(days=days - 1)
    day_list = [first + timedelta(days=i) for i in range(days)]
    _start, end_bound = local_day_bounds(end, zone)
    horizon = min(now, end_bound).timestamp()
    rng = random.Random(seed)  # noqa: S311 - generated data, not secrets
    now_local = now.astimezone(zone)
    today_fraction = _hour_fraction_elapsed(now_local) if end >= now_local.date() else 1.0
    counts = _day_counts(days=day_list, total=conversations, rng=rng, today_fraction=today_fraction)
    hour_cumulative = list(_Generator._cumulative(HOUR_SHAPE))
    result = SeedResult(since=first, until=end)
    with tenant_scope(tenant.pk):
        if replace:
            result.deleted_conversations = seeded_history_delete(tenant=tenant)
        agents = _agents(tenant)
        gen = _Generator(tenant=tenant, rng=rng, horizon=horizon, agents=agents)
        gen.counts = result
        written_at = time.perf_counter()
        background = connection.vendor == "postgresql" and not connection.in_atomic_block
        writer = _BackgroundWriter(tenant.pk) if background else None
        write = writer.put if writer is not None else _day_write
        done = 0
        try:
            for index, (day, count) in enumerate(zip(day_list, counts, strict=True)):
                gen.day_progress(index / max(1, days - 1))
                day_start, day_end = (b.timestamp() for b in local_day_bounds(day, zone))
                latest = min(day_end, horizon) - 1
                starts = []
                for _n in range(count):
                    at = day_start + 3600 * (gen._pick(hour_cumulative) + rng.random())
                    starts.append(at if at <= latest else rng.uniform(day_start, latest))
                starts.sort()
                for at in starts:
                    gen.conversation(at)
                write(gen.take_day())
                done += count
                if progress is not None and count:
                    elapsed = time.perf_counter() - written_at
                    progress(
                        f"{day}: {count} conversations ({done}/{conversations}, "
                        f"{result.rows / elapsed if elapsed else 0:,.0f} rows/s)"
                    )
        finally:
            if writer is not None:
                writer.close()
        result.write_seconds = time.perf_counter() - written_at
        _statistics_refresh()
        if rollups:
            rolled_at = time.perf_counter()
            result.rollup_rows = rollups_rebuild(tenant=tenant, since=first, until=end)
            result.rollup_seconds = time.perf_counter() - rolled_at
    result.seconds = time.perf_counter() - started
    return result
