"""Reads that summarise a tenant's activity for the console and dashboards."""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils import timezone

from analytics.models import Rollup
from analytics.rollups import (
    AGENT_HIST,
    HIST,
    HISTOGRAM_BOUNDS_MS,
    OVERFLOW,
    WEEKDAY_HOUR,
    local_day_bounds,
    tenant_zone,
)
from conversations.models import Conversation, Message, Ticket
from knowledge.models import Document, KnowledgeEntry
from tenants.models import Tenant


@dataclass(frozen=True)
class TenantOverview:
    days: int
    conversations: int
    resolved_by_ai: int
    handed_off: int
    abandoned: int
    open_tickets: int
    answers_by_source: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal("0")

    @property
    def ai_resolution_rate(self) -> float | None:
        """Share of the period's conversations the assistant resolved without a person."""
        return self.resolved_by_ai / self.conversations if self.conversations else None


def tenant_overview(*, tenant: Tenant, days: int = 30) -> TenantOverview:
    """The tenant's last ``days``: conversations started, how they ended (resolved by the
    assistant and abandoned in the queue as ``conversations.lifecycle`` records them), answers,
    tokens and cost."""
    since = timezone.now() - timedelta(days=days)
    # A conversation someone said something in, or that asked for a person: older versions
    # started one for every page view, and those empty rows are not conversations.
    held = Exists(Message.objects.filter(conversation=OuterRef("pk"))) | ~Q(handoff_reason="")
    conversations = Conversation.objects.filter(
        held, tenant=tenant, created_at__gte=since
    ).aggregate(
        total=Count("id"),
        resolved_by_ai=Count("id", filter=Q(resolution_kind=Conversation.ResolutionKind.AI)),
        handed_off=Count("id", filter=~Q(handoff_reason="")),
        abandoned=Count("id", filter=Q(resolution_kind=Conversation.ResolutionKind.ABANDONED)),
    )
    answers = Message.objects.filter(
        tenant=tenant,
        created_at__gte=since,
        role__in=[Message.Role.ASSISTANT, Message.Role.AGENT],
    )
    by_source = dict(
        answers.values_list("source").annotate(n=Count("id")).order_by().values_list("source", "n")
    )
    usage = answers.aggregate(
        tokens_in=Sum("tokens_in"), tokens_out=Sum("tokens_out"), cost=Sum("cost")
    )
    open_tickets = Ticket.objects.filter(
        tenant=tenant, status__in=[Ticket.Status.OPEN, Ticket.Status.PENDING]
    ).count()
    return TenantOverview(
        days=days,
        conversations=conversations["total"],
        resolved_by_ai=conversations["resolved_by_ai"],
        handed_off=conversations["handed_off"],
        abandoned=conversations["abandoned"],
        open_tickets=open_tickets,
        answers_by_source=by_source,
        tokens_in=usage["tokens_in"] or 0,
        tokens_out=usage["tokens_out"] or 0,
        cost=usage["cost"] or Decimal("0"),
    )


# Metrics read from the rollups (analytics/rollups.py; definitions in docs/analytics.md) -----
#
# Every selector below takes a range of the tenant's local days, ``since`` to ``until``
# (both included), and reads only the daily rollups of that range: one indexed query each.
# Counts are of what happened in the range (a conversation created before it and resolved in
# it counts as a resolution, not as a conversation).


@dataclass(frozen=True)
class _Sum:
    count: int = 0
    total: Decimal = Decimal("0")


Sums = dict[tuple[str, str, str], _Sum]


def _range(tenant: Tenant, since: date, until: date) -> tuple[datetime, datetime]:
    zone = tenant_zone(tenant)
    return local_day_bounds(since, zone)[0], local_day_bounds(until, zone)[1]


def _sums(*, tenant: Tenant, since: date, until: date, metrics: Iterable[str]) -> Sums:
    """The daily rollups of ``metrics`` in the range, summed: ``{(metric, dimension, key):
    (count, total)}``."""
    start, end = _range(tenant, since, until)
    rows = (
        Rollup.objects.filter(
            tenant=tenant,
            granularity=Rollup.Granularity.DAY,
            metric__in=list(metrics),
            bucket_start__gte=start,
            bucket_start__lt=end,
        )
        .values_list("metric", "dimension", "key")
        .annotate(n=Sum("count"), t=Sum("total"))
        .order_by()
    )
    return {(m, d, k): _Sum(n or 0, t or Decimal("0")) for m, d, k, n, t in rows}


def _count(sums: Sums, metric: str, dimension: str = "", key: str = "") -> int:
    return sums.get((metric, dimension, key), _Sum()).count


def _by(sums: Sums, metric: str, dimension: str) -> dict[str, int]:
    """The counts of ``metric`` split by ``dimension``: ``{key: count}``."""
    return {k: s.count for (m, d, k), s in sorted(sums.items()) if m == metric and d == dimension}


def _total_by(sums: Sums, metric: str, dimension: str) -> dict[str, Decimal]:
    return {k: s.total for (m, d, k), s in sorted(sums.items()) if m == metric and d == dimension}


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _bound(key: str) -> float:
    return float("inf") if key == OVERFLOW else float(key)


def percentile_ms(histogram: dict[str, int], fraction: float) -> int | None:
    """The ``fraction`` percentile (0.5 for p50) of a duration histogram ``{upper bound:
    count}``: the upper bound of the bucket in which it falls (at most the bucket's width
    above the exact value); None without samples. Durations past the last bound (a week) are
    reported as that bound."""
    samples = sum(histogram.values())
    if not samples:
        return None
    rank = fraction * samples
    seen = 0
    for key in sorted(histogram, key=_bound):
        seen += histogram[key]
        if seen >= rank:
            return HISTOGRAM_BOUNDS_MS[-1] if key == OVERFLOW else int(key)
    return HISTOGRAM_BOUNDS_MS[-1]


@dataclass(frozen=True)
class Durations:
    """A duration's summary in milliseconds: how many, mean, p50, p90 and p95 (from the
    fixed-bucket histogram: upper bounds of their buckets)."""

    count: int
    mean_ms: int | None
    p50_ms: int | None
    p90_ms: int | None
    p95_ms: int | None


def _durations(whole: _Sum, histogram: dict[str, int]) -> Durations:
    return Durations(
        count=whole.count,
        mean_ms=int(whole.total / whole.count) if whole.count else None,
        p50_ms=percentile_ms(histogram, 0.5),
        p90_ms=percentile_ms(histogram, 0.9),
        p95_ms=percentile_ms(histogram, 0.95),
    )


def _metric_durations(sums: Sums, metric: str) -> Durations:
    """A duration metric's summary over the whole tenant."""
    return _durations(sums.get((metric, "", ""), _Sum()), _by(sums, metric, HIST))


# Volume -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeMetrics:
    """How much the customers wrote.

    - ``conversations``: conversations started in the range (the customer's first message,
      handoff request or contact details start one; page views do not), by channel.
    - ``customer_messages``: customer messages the assistant or the people received (those
      refused by the rate limit or blocked by moderation are not counted), by channel.
    - ``active_customer_days``: for each day, the customers who wrote at least one message
      that day, added up over the days (a customer who wrote on three days counts three
      times); for one day it is that day's active customers.
    - ``messages_per_conversation``: customer messages, assistant answers and agents' replies
      (not internal notes) of the range ÷ conversations started in it; None without any.
    """

    conversations: int
    conversations_by_channel: dict[str, int]
    customer_messages: int
    customer_messages_by_channel: dict[str, int]
    active_customer_days: int
    active_customer_days_by_channel: dict[str, int]
    messages_per_conversation: float | None


def volume_metrics(*, tenant: Tenant, since: date, until: date) -> VolumeMetrics:
    """The range's volume (``VolumeMetrics``)."""
    sums = _sums(
        tenant=tenant,
        since=since,
        until=until,
        metrics=[
            "conversations",
            "customer_messages",
            "active_customers",
            "answers",
            "agent_replies",
        ],
    )
    by_channel = _by(sums, "conversations", "channel")
    messages = _by(sums, "customer_messages", "channel")
    active = _by(sums, "active_customers", "channel")
    conversations = sum(by_channel.values())
    said = (
        sum(messages.values())
        + sum(_by(sums, "answers", "source").values())
        + sum(_by(sums, "agent_replies", "agent").values())
    )
    return VolumeMetrics(
        conversations=conversations,
        conversations_by_channel=by_channel,
        customer_messages=sum(messages.values()),
        customer_messages_by_channel=messages,
        active_customer_days=sum(active.values()),
        active_customer_days_by_channel=active,
        messages_per_conversation=_ratio(said, conversations),
    )


def volume_heatmap(*, tenant: Tenant, since: date, until: date) -> dict[tuple[int, int], int]:
    """When customers write: customer messages of the range by local weekday (0 = Monday) and
    hour (0–23), ``{(weekday, hour): messages}``; every cell present, 0 when nothing."""
    sums = _sums(tenant=tenant, since=since, until=until, metrics=["customer_messages"])
    cells = {(day, hour): 0 for day in range(7) for hour in range(24)}
    for key, count in _by(sums, "customer_messages", WEEKDAY_HOUR).items():
        day, hour = key.split(":")
        cells[(int(day), int(hour))] = count
    return cells


# The assistant --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AiMetrics:
    """How well the assistant does.

    - ``resolved_confirmed``: conversations resolved by the assistant in the range in which
      the customer gave a thumbs-up before it was resolved; ``resolved_assumed``: the other
      resolutions by the assistant (the customer left, answered, without asking for a
      person). Resolution by the assistant is recorded by the sweep
      (conversations/lifecycle.py) or by the tenant's integration.
    - ``reopened_after_ai``: conversations resolved by the assistant that the customer
      reopened by writing again, in the range.
    - ``resolution_rate_confirmed`` / ``resolution_rate_assumed``: those ÷ conversations
      started in the range.
    - ``automation_rate``: (resolutions by the assistant − those reopened) ÷ conversations
      started in the range, None without conversations.
    - ``handoffs``: handovers to a person (a conversation handed over twice counts twice),
      by reason; ``handoff_rate``: handoffs ÷ conversations.
    - ``abandoned``: conversations closed after waiting in the queue with nobody taking them
      and no contact details left; ``abandonment_rate``: abandoned ÷ handoffs.
    - ``answers_by_source``: the assistant's answers by source (faq, rag, llm, offline,
      fallback).
    - ``thumbs_up`` / ``thumbs_down``: feedback given on answers (a changed mind counts
      both); ``thumbs_up_rate``: up ÷ (up + down).
    """

    conversations: int
    resolved_confirmed: int
    resolved_assumed: int
    reopened_after_ai: int
    resolution_rate_confirmed: float | None
    resolution_rate_assumed: float | None
    automation_rate: float | None
    handoffs: int
    handoffs_by_reason: dict[str, int]
    handoff_rate: float | None
    abandoned: int
    abandonment_rate: float | None
    answers_by_source: dict[str, int]
    thumbs_up: int
    thumbs_down: int
    thumbs_up_rate: float | None


def ai_metrics(*, tenant: Tenant, since: date, until: date) -> AiMetrics:
    """The range's assistant metrics (``AiMetrics``)."""
    sums = _sums(
        tenant=tenant,
        since=since,
        until=until,
        metrics=[
            "conversations",
            "ai_resolved",
            "reopened",
            "handoffs",
            "abandoned",
            "answers",
            "feedback",
        ],
    )
    conversations = sum(_by(sums, "conversations", "channel").values())
    confirmed = _count(sums, "ai_resolved", "confirmation", "confirmed")
    assumed = _count(sums, "ai_resolved", "confirmation", "assumed")
    reopened = _count(sums, "reopened", "kind", Conversation.ResolutionKind.AI)
    handoffs = _by(sums, "handoffs", "reason")
    abandoned = _count(sums, "abandoned")
    up = _count(sums, "feedback", "value", Message.Feedback.UP)
    down = _count(sums, "feedback", "value", Message.Feedback.DOWN)
    return AiMetrics(
        conversations=conversations,
        resolved_confirmed=confirmed,
        resolved_assumed=assumed,
        reopened_after_ai=reopened,
        resolution_rate_confirmed=_ratio(confirmed, conversations),
        resolution_rate_assumed=_ratio(assumed, conversations),
        automation_rate=_ratio(max(confirmed + assumed - reopened, 0), conversations),
        handoffs=sum(handoffs.values()),
        handoffs_by_reason=handoffs,
        handoff_rate=_ratio(sum(handoffs.values()), conversations),
        abandoned=abandoned,
        abandonment_rate=_ratio(abandoned, sum(handoffs.values())),
        answers_by_source=_by(sums, "answers", "source"),
        thumbs_up=up,
        thumbs_down=down,
        thumbs_up_rate=_ratio(up, up + down),
    )


# People ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentMetrics:
    """One agent's range: replies sent, first responses after a handoff and how long they
    took, conversations resolved and how long from their start, ratings received and their
    mean."""

    agent_id: int
    replies: int
    human_response: Durations
    resolved: int
    resolution_time: Durations
    ratings: int
    rating_mean: float | None
    human_response_business: Durations


@dataclass(frozen=True)
class PeopleMetrics:
    """How fast people answer.

    - ``first_response``: from a conversation's start to its first answer, by the assistant
      or by a person (conversations whose first answer came in the range).
    - ``human_response``: from a handoff (or, for a conversation an agent took from the
      assistant without one, from its taking) to the first reply of a person after it; one
      sample per handoff that got a reply, in the range the reply was sent.
    - ``resolution_time``: from a conversation's start to its resolution, by anybody
      (resolutions in the range; a reopened conversation's later resolution is another
      sample, from the same start).
    - ``tickets_opened`` / ``tickets_solved`` in the range, ``sla_met_rate``: solved within
      their due time ÷ solved with a due time; ``tickets_sla_breached``: tickets that went
      past their due time unsolved in the range (each once); ``tickets_open`` /
      ``tickets_pending``: now.
    - ``agents``: the same per agent (``AgentMetrics``), by agent id.
    - ``first_response_business`` / ``human_response_business``: the same two response
      times counting only the time within the tenant's business hours (a question asked at
      17:55 and answered at 09:05 the next working day, with hours 09:00–18:00, took
      10 minutes of business time). Without business hours set, equal to the plain ones.

    Percentiles come from fixed histogram buckets (their upper bounds).
    """

    first_response: Durations
    human_response: Durations
    resolution_time: Durations
    tickets_opened: int
    tickets_solved: int
    tickets_sla_breached: int
    sla_met_rate: float | None
    tickets_open: int
    tickets_pending: int
    agents: dict[int, AgentMetrics]
    first_response_business: Durations
    human_response_business: Durations


def _agent_histograms(sums: Sums, metric: str) -> dict[str, dict[str, int]]:
    histograms: dict[str, dict[str, int]] = defaultdict(dict)
    for key, count in _by(sums, metric, AGENT_HIST).items():
        agent, bucket = key.split(":", 1)
        histograms[agent][bucket] = count
    return histograms


def _agent_durations(sums: Sums, metric: str, agent: str, histogram: dict[str, int]) -> Durations:
    return _durations(sums.get((metric, "agent", agent), _Sum()), histogram)


def people_metrics(*, tenant: Tenant, since: date, until: date) -> PeopleMetrics:
    """The range's response and resolution times (``PeopleMetrics``)."""
    sums = _sums(
        tenant=tenant,
        since=since,
        until=until,
        metrics=[
            "first_response_ms",
            "first_response_business_ms",
            "human_response_ms",
            "human_response_business_ms",
            "resolution_ms",
            "agent_replies",
            "ratings",
            "tickets_opened",
            "tickets_solved",
            "tickets_sla_breached",
        ],
    )
    human = _agent_histograms(sums, "human_response_ms")
    human_business = _agent_histograms(sums, "human_response_business_ms")
    resolution = _agent_histograms(sums, "resolution_ms")
    replies = _by(sums, "agent_replies", "agent")
    ratings = _total_by(sums, "ratings", "agent")
    rating_counts = _by(sums, "ratings", "agent")
    agent_ids = {k for k in replies if k} | human.keys() | resolution.keys() | ratings.keys()
    agents = {
        int(agent): AgentMetrics(
            agent_id=int(agent),
            replies=replies.get(agent, 0),
            human_response=_agent_durations(sums, "human_response_ms", agent, human.get(agent, {})),
            resolved=_count(sums, "resolution_ms", "agent", agent),
            resolution_time=_agent_durations(
                sums, "resolution_ms", agent, resolution.get(agent, {})
            ),
            ratings=rating_counts.get(agent, 0),
            rating_mean=(
                float(ratings[agent] / rating_counts[agent]) if rating_counts.get(agent) else None
            ),
            human_response_business=_agent_durations(
                sums, "human_response_business_ms", agent, human_business.get(agent, {})
            ),
        )
        for agent in sorted(agent_ids, key=int)
    }
    sla = _by(sums, "tickets_solved", "sla")
    open_now = dict(
        Ticket.objects.filter(tenant=tenant, status__in=[Ticket.Status.OPEN, Ticket.Status.PENDING])
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("status", "n")
    )
    return PeopleMetrics(
        first_response=_metric_durations(sums, "first_response_ms"),
        human_response=_metric_durations(sums, "human_response_ms"),
        resolution_time=_metric_durations(sums, "resolution_ms"),
        tickets_opened=_count(sums, "tickets_opened"),
        tickets_solved=sum(sla.values()),
        tickets_sla_breached=_count(sums, "tickets_sla_breached"),
        sla_met_rate=_ratio(sla.get("met", 0), sla.get("met", 0) + sla.get("breached", 0)),
        tickets_open=open_now.get(Ticket.Status.OPEN, 0),
        tickets_pending=open_now.get(Ticket.Status.PENDING, 0),
        agents=agents,
        first_response_business=_metric_durations(sums, "first_response_business_ms"),
        human_response_business=_metric_durations(sums, "human_response_business_ms"),
    )


# Satisfaction ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SatisfactionMetrics:
    """What customers said of the people's help.

    - ``ratings``: 1–5 ratings given in the range (a customer is asked once a person resolved
      the conversation); ``distribution``: how many of each score (all five present).
    - ``csat``: ratings of 4 or 5 ÷ ratings, None without ratings.
    - ``response_rate``: ratings ÷ conversations a person resolved in the range (the ones
      asked for a rating).
    - ``mean``: the mean score.
    """

    ratings: int
    distribution: dict[int, int]
    csat: float | None
    response_rate: float | None
    mean: float | None


def satisfaction_metrics(*, tenant: Tenant, since: date, until: date) -> SatisfactionMetrics:
    """The range's satisfaction (``SatisfactionMetrics``)."""
    sums = _sums(tenant=tenant, since=since, until=until, metrics=["ratings", "resolved"])
    scores = _by(sums, "ratings", "score")
    distribution = {score: scores.get(str(score), 0) for score in range(1, 6)}
    ratings = sum(distribution.values())
    total = sum(score * n for score, n in distribution.items())
    return SatisfactionMetrics(
        ratings=ratings,
        distribution=distribution,
        csat=_ratio(distribution[4] + distribution[5], ratings),
        response_rate=_ratio(
            ratings, _count(sums, "resolved", "kind", Conversation.ResolutionKind.AGENT)
        ),
        mean=_ratio(total, ratings),
    )


# Cost -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelUsage:
    provider: str
    model: str
    answers: int
    tokens_in: int
    tokens_out: int
    cost: Decimal


@dataclass(frozen=True)
class CostMetrics:
    """What the LLM cost.

    - ``by_model``: answers that called a provider (or were estimated after a cut-off), their
      tokens in and out and their cost, by provider and model; ``tokens_in``,
      ``tokens_out`` and ``cost`` are their sums.
    - ``llm_latency``: the total time of answers written by an LLM (sources rag and llm),
      from the customer's message to the answer's end; ``p95_ms`` is its p95.
    - ``fallback_rate``: fallback answers (every provider failed, the best knowledge was
      given instead) ÷ answers that tried an LLM (rag, llm and fallback).
    """

    by_model: list[ModelUsage]
    tokens_in: int
    tokens_out: int
    cost: Decimal
    llm_latency: Durations
    fallback_rate: float | None


def cost_metrics(*, tenant: Tenant, since: date, until: date) -> CostMetrics:
    """The range's LLM usage and cost (``CostMetrics``)."""
    sums = _sums(
        tenant=tenant,
        since=since,
        until=until,
        metrics=["llm_tokens_in", "llm_tokens_out", "llm_cost", "llm_latency_ms", "answers"],
    )
    tokens_in = _total_by(sums, "llm_tokens_in", "model")
    tokens_out = _total_by(sums, "llm_tokens_out", "model")
    cost = _total_by(sums, "llm_cost", "model")
    calls = _by(sums, "llm_cost", "model")
    by_model = [
        ModelUsage(
            provider=key.split("/", 1)[0],
            model=key.split("/", 1)[1],
            answers=calls[key],
            tokens_in=int(tokens_in.get(key, 0)),
            tokens_out=int(tokens_out.get(key, 0)),
            cost=cost.get(key, Decimal("0")),
        )
        for key in sorted(calls)
    ]
    sources = _by(sums, "answers", "source")
    fallback = sources.get(Message.Source.FALLBACK, 0)
    tried = fallback + sources.get(Message.Source.RAG, 0) + sources.get(Message.Source.LLM, 0)
    return CostMetrics(
        by_model=by_model,
        tokens_in=sum(usage.tokens_in for usage in by_model),
        tokens_out=sum(usage.tokens_out for usage in by_model),
        cost=sum((usage.cost for usage in by_model), Decimal("0")),
        llm_latency=_metric_durations(sums, "llm_latency_ms"),
        fallback_rate=_ratio(fallback, tried),
    )


# Knowledge ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnowledgeMetrics:
    """How the knowledge base is used.

    - ``hits_by_entry``: answers given straight from each FAQ entry in the range (``{entry id:
      answers}``, most first); an entry cited by an LLM answer is not a hit.
    - ``entries_never_hit``: the ids of the tenant's enabled FAQ entries that gave no answer
      in the range (entries created during it included).
    - ``hits_by_document``: answers that used each document in the range: its passages were
      given to the LLM (rag) or shown (offline, fallback); one per answer however many of its
      passages were used (``{document id: answers}``, most first).
    - ``documents_never_hit``: the ids of the tenant's enabled documents no answer used.
    """

    hits_by_entry: dict[int, int]
    entries_never_hit: list[int]
    hits_by_document: dict[int, int]
    documents_never_hit: list[int]


def _hits(sums: Sums, metric: str, dimension: str) -> dict[int, int]:
    hits = {int(k): n for k, n in _by(sums, metric, dimension).items() if k.isdigit()}
    return dict(sorted(hits.items(), key=lambda item: (-item[1], item[0])))


def knowledge_metrics(*, tenant: Tenant, since: date, until: date) -> KnowledgeMetrics:
    """The range's FAQ and document use (``KnowledgeMetrics``)."""
    sums = _sums(tenant=tenant, since=since, until=until, metrics=["faq_hits", "document_hits"])
    hits = _hits(sums, "faq_hits", "entry")
    document_hits = _hits(sums, "document_hits", "document")
    enabled = KnowledgeEntry.objects.filter(tenant=tenant, enabled=True).values_list(
        "pk", flat=True
    )
    documents = Document.objects.filter(tenant=tenant, enabled=True).values_list("pk", flat=True)
    return KnowledgeMetrics(
        hits_by_entry=hits,
        entries_never_hit=sorted(pk for pk in enabled if pk not in hits),
        hits_by_document=document_hits,
        documents_never_hit=sorted(pk for pk in documents if pk not in document_hits),
    )


# A period -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodMetrics:
    since: date
    until: date
    volume: VolumeMetrics
    ai: AiMetrics
    people: PeopleMetrics
    satisfaction: SatisfactionMetrics
    cost: CostMetrics
    knowledge: KnowledgeMetrics


def period_metrics(*, tenant: Tenant, since: date, until: date) -> PeriodMetrics:
    """Every summary metric of the tenant's local days ``since`` to ``until``."""
    return PeriodMetrics(
        since=since,
        until=until,
        volume=volume_metrics(tenant=tenant, since=since, until=until),
        ai=ai_metrics(tenant=tenant, since=since, until=until),
        people=people_metrics(tenant=tenant, since=since, until=until),
        satisfaction=satisfaction_metrics(tenant=tenant, since=since, until=until),
        cost=cost_metrics(tenant=tenant, since=since, until=until),
        knowledge=knowledge_metrics(tenant=tenant, since=since, until=until),
    )


# Time series ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesPoint:
    bucket_start: datetime  # UTC instant of the local hour's or day's start
    count: int
    total: Decimal


def metric_series(
    *,
    tenant: Tenant,
    metric: str,
    since: date,
    until: date,
    granularity: str = Rollup.Granularity.DAY,
    dimension: str = "",
    key: str | None = None,
) -> list[SeriesPoint]:
    """One rollup metric per hour or day of the range (buckets with nothing are left out),
    summed over the keys of ``dimension`` (or for ``key`` alone); hourly buckets exist for
    the last ``ANALYTICS_HOURLY_DAYS`` days only."""
    start, end = _range(tenant, since, until)
    rows = Rollup.objects.filter(
        tenant=tenant,
        granularity=granularity,
        metric=metric,
        dimension=dimension,
        bucket_start__gte=start,
        bucket_start__lt=end,
    )
    if key is not None:
        rows = rows.filter(key=key)
    points = (
        rows.values_list("bucket_start")
        .annotate(n=Sum("count"), t=Sum("total"))
        .order_by("bucket_start")
    )
    return [SeriesPoint(at, n or 0, t or Decimal("0")) for at, n, t in points]
