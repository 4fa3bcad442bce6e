"""The analytics pages' contents (``Page``), one builder per page, from the selectors."""

from collections.abc import Callable
from datetime import date
from typing import Any

from django.contrib.auth import get_user_model
from django.utils.translation import gettext as _

from analytics import selectors
from analytics.dashboards.figures import (
    HELP,
    MICRO,
    Cell,
    Compared,
    Kpi,
    Links,
    Page,
    Period,
    Table,
    bar_chart,
    count_cell,
    daily_series,
    format_value,
    heatmap_chart,
    kpi_table,
    line_chart,
    ms_cell,
    rates,
)
from conversations.models import Channel, Conversation, Message, Ticket
from tenants.models import Tenant

AI = Conversation.ResolutionKind.AI
AGENT = Conversation.ResolutionKind.AGENT
ABANDONED = Conversation.ResolutionKind.ABANDONED


def _label(choices: Any, key: str) -> str:
    return str(dict(choices).get(key, key or "—"))


def _counts_table(
    key: str,
    titles: tuple[str, str, str],
    counts: dict[str, int],
    choices: Any,
    link: Callable[[str], str],
) -> Table:
    """Counts by a key with choices (a reason, a source): the table's title, the key's and
    the count's column titles; each count drills down to ``link(key)``."""
    title, name, count = titles
    rows = [[Cell(_label(choices, k), k), count_cell(n, link(k))] for k, n in counts.items()]
    return Table(key, title, [name, count], rows, str(HELP[key]))


def _assistant_kpis(ai: Compared[selectors.AiMetrics], links: Links) -> list[Kpi]:
    by_ai = links.conversations("resolved", resolution_kind__exact=AI)
    return [
        ai.kpi("automation_rate", _("Automation rate"), "automation_rate", "percent", by_ai),
        ai.kpi(
            "resolution_confirmed",
            _("Resolved by the assistant, confirmed"),
            "resolution_rate_confirmed",
            "percent",
            by_ai,
        ),
        ai.kpi(
            "resolution_assumed",
            _("Resolved by the assistant, assumed"),
            "resolution_rate_assumed",
            "percent",
            by_ai,
        ),
        ai.kpi(
            "handoff_rate",
            _("Handoff rate"),
            "handoff_rate",
            "percent",
            links.conversations(handed_off="yes"),
            lower_is_better=True,
        ),
    ]


def _duration_kpis(
    people: Compared[Any], key: str, label: str, attribute: str, link: str
) -> list[Kpi]:
    """A duration's p50 and p90, now and before (``attribute``: its ``Durations``)."""
    return [
        people.kpi(
            f"{key}_{percentile}",
            _("%(metric)s, %(percentile)s") % {"metric": label, "percentile": percentile},
            f"{attribute}.{percentile}_ms",
            "ms",
            link,
            help_key=key,
            lower_is_better=True,
        )
        for percentile in ("p50", "p90")
    ]


def overview_kpis(*, tenant: Tenant, period: Period) -> list[Kpi]:
    """The overview's key figures, each beside the previous period's."""
    links = Links(period)
    volume = Compared.read(selectors.volume_metrics, tenant=tenant, period=period)
    ai = Compared.read(selectors.ai_metrics, tenant=tenant, period=period)
    people = Compared.read(selectors.people_metrics, tenant=tenant, period=period)
    satisfaction = Compared.read(selectors.satisfaction_metrics, tenant=tenant, period=period)
    cost = Compared.read(selectors.cost_metrics, tenant=tenant, period=period)
    return [
        volume.kpi(
            "conversations", _("Conversations"), "conversations", "count", links.conversations()
        ),
        *_assistant_kpis(ai, links),
        people.kpi(
            "first_response_p50",
            _("First response, p50"),
            "first_response.p50_ms",
            "ms",
            links.conversations(),
            help_key="first_response",
            lower_is_better=True,
        ),
        satisfaction.kpi(
            "csat",
            _("CSAT"),
            "csat",
            "percent",
            links.conversations("resolved", csat_rating__gte=4),
        ),
        cost.kpi(
            "cost", _("LLM cost"), "cost", "money", links.conversations(), lower_is_better=True
        ),
    ]


def overview_page(tenant: Tenant, period: Period) -> Page:
    links = Links(period)
    volume = selectors.volume_metrics(tenant=tenant, since=period.since, until=period.until)
    kpis = overview_kpis(tenant=tenant, period=period)
    volume_chart = line_chart(
        chart_id="volume",
        title=_("Conversations per day"),
        period=period,
        series=[
            (
                _("Conversations"),
                lambda s, u: daily_series(tenant, s, u, "conversations", "channel"),
            )
        ],
        chart="bar",
    )
    channels = Table(
        "channels",
        _("Conversations by channel"),
        [_("Channel"), _("Conversations")],
        [
            [
                Cell(_label(Channel.choices, channel), channel),
                count_cell(count, links.conversations(channel__exact=channel)),
            ]
            for channel, count in volume.conversations_by_channel.items()
        ],
        str(HELP["channels"]),
    )
    return Page(
        kpis,
        [volume_chart | {"wide": True}, heatmap_chart(tenant, period)],
        [kpi_table("kpis", _("Key figures"), kpis), channels],
    )


def ai_page(tenant: Tenant, period: Period) -> Page:
    links = Links(period)
    ai = Compared.read(selectors.ai_metrics, tenant=tenant, period=period)

    def resolved(since: date, until: date) -> list[float | None]:
        return daily_series(tenant, since, until, "ai_resolved", "confirmation")

    def started(since: date, until: date) -> list[float | None]:
        return daily_series(tenant, since, until, "conversations", "channel")

    def resolution(since: date, until: date) -> list[float | None]:
        return rates(resolved(since, until), started(since, until))

    def automation(since: date, until: date) -> list[float | None]:
        reopened = daily_series(tenant, since, until, "reopened", "kind", AI)
        pairs = zip(resolved(since, until), reopened, strict=True)
        kept: list[float | None] = [max((r or 0) - (o or 0), 0) for r, o in pairs]
        return rates(kept, started(since, until))

    def handoff(since: date, until: date) -> list[float | None]:
        return rates(
            daily_series(tenant, since, until, "handoffs", "reason"), started(since, until)
        )

    rates_chart = line_chart(
        chart_id="ai_rates",
        title=_("Rates per day"),
        period=period,
        series=[
            (_("Resolution rate"), resolution),
            (_("Automation rate"), automation),
            (_("Handoff rate"), handoff),
        ],
        kind="percent",
    )
    now = ai.now
    reasons = {
        _label(Conversation.HandoffReason.choices, k): n for k, n in now.handoffs_by_reason.items()
    }
    sources = {_label(Message.Source.choices, k): n for k, n in now.answers_by_source.items()}
    abandoned = links.conversations(resolution_kind__exact=ABANDONED)
    kpis = [
        *_assistant_kpis(ai, links),
        ai.kpi(
            "abandonment_rate",
            _("Abandonment rate"),
            "abandonment_rate",
            "percent",
            abandoned,
            lower_is_better=True,
        ),
        ai.kpi(
            "thumbs_up_rate",
            _("Helpful answers"),
            "thumbs_up_rate",
            "percent",
            links.conversations(),
        ),
    ]
    tables = [
        _counts_table(
            "handoffs",
            (_("Handoffs by reason"), _("Reason"), _("Handoffs")),
            now.handoffs_by_reason,
            Conversation.HandoffReason.choices,
            lambda reason: links.conversations(handoff_reason__exact=reason),
        ),
        _counts_table(
            "sources",
            (_("Answers by source"), _("Source"), _("Answers")),
            now.answers_by_source,
            Message.Source.choices,
            lambda source: links.conversations(answer_source=source),
        ),
        Table(
            "feedback",
            _("Feedback and abandonment"),
            [_("Metric"), _("Count")],
            [
                [
                    Cell(_("Rated helpful"), "thumbs_up"),
                    count_cell(now.thumbs_up, links.conversations()),
                ],
                [
                    Cell(_("Rated not helpful"), "thumbs_down"),
                    count_cell(now.thumbs_down, links.conversations()),
                ],
                [
                    Cell(_("Abandoned in the queue"), "abandoned"),
                    count_cell(now.abandoned, abandoned),
                ],
            ],
            str(HELP["thumbs_up_rate"]),
        ),
    ]
    charts = [
        rates_chart,
        bar_chart("handoffs", _("Handoffs by reason"), reasons),
        bar_chart("sources", _("Answers by source"), sources) | {"type": "pie"},
    ]
    return Page(kpis, charts, tables)


def _agent_names(agent_ids: list[int]) -> dict[int, str]:
    users = get_user_model().objects.filter(pk__in=agent_ids)
    return {user.pk: user.get_full_name() or user.get_username() for user in users}


def _agents_table(people: selectors.PeopleMetrics, links: Links) -> Table:
    names = _agent_names(list(people.agents))
    rows = []
    for agent in people.agents.values():
        mine = {"assignee__id__exact": agent.agent_id}
        name = names.get(agent.agent_id)
        rows.append(
            [
                Cell(name or f"#{agent.agent_id}", name),
                count_cell(agent.replies, links.conversations(**mine)),
                ms_cell(agent.human_response.p50_ms),
                ms_cell(agent.human_response.p90_ms),
                ms_cell(agent.human_response_business.p50_ms),
                count_cell(
                    agent.resolved,
                    links.conversations("resolved", resolution_kind__exact=AGENT, **mine),
                ),
                ms_cell(agent.resolution_time.p50_ms),
                count_cell(
                    agent.ratings,
                    links.conversations("resolved", csat_rating__isnull="False", **mine),
                ),
                Cell(format_value(agent.rating_mean, "score"), agent.rating_mean),
            ]
        )
    columns = [
        _("Agent"),
        _("Replies"),
        _("Reply time p50"),
        _("Reply time p90"),
        _("Reply time p50, business hours"),
        _("Resolved"),
        _("Resolution time p50"),
        _("Ratings"),
        _("Mean rating"),
    ]
    return Table("agents", _("Agents"), columns, rows, str(HELP["agents"]))


def _tickets_table(people: selectors.PeopleMetrics, links: Links) -> Table:
    sla_met = Cell(format_value(people.sla_met_rate, "percent"), people.sla_met_rate)
    rows = [
        [Cell(_("Opened"), "opened"), count_cell(people.tickets_opened)],
        [Cell(_("Solved"), "solved"), count_cell(people.tickets_solved)],
        [Cell(_("Past their SLA"), "sla_breached"), count_cell(people.tickets_sla_breached)],
        [Cell(_("SLA met"), "sla_met"), sla_met],
        [
            Cell(_("Open now"), "open"),
            count_cell(people.tickets_open, links.tickets(Ticket.Status.OPEN)),
        ],
        [
            Cell(_("Pending now"), "pending"),
            count_cell(people.tickets_pending, links.tickets(Ticket.Status.PENDING)),
        ],
    ]
    return Table("tickets", _("Tickets"), [_("Metric"), _("Tickets")], rows, str(HELP["tickets"]))


def people_page(tenant: Tenant, period: Period) -> Page:
    links = Links(period)
    people = Compared.read(selectors.people_metrics, tenant=tenant, period=period)
    kpis = [
        *_duration_kpis(
            people, "first_response", _("First response"), "first_response", links.conversations()
        ),
        *_duration_kpis(
            people,
            "human_response",
            _("Reply after handoff"),
            "human_response",
            links.conversations(handed_off="yes"),
        ),
        *_duration_kpis(
            people,
            "human_response_business",
            _("Reply after handoff, business hours"),
            "human_response_business",
            links.conversations(handed_off="yes"),
        ),
        people.kpi(
            "first_response_business_p50",
            _("First response in business hours, p50"),
            "first_response_business.p50_ms",
            "ms",
            links.conversations(),
            help_key="first_response_business",
            lower_is_better=True,
        ),
        people.kpi(
            "resolution_time_p50",
            _("Resolution time, p50"),
            "resolution_time.p50_ms",
            "ms",
            links.conversations("resolved"),
            help_key="resolution_time",
            lower_is_better=True,
        ),
        people.kpi("sla_met", _("SLA met"), "sla_met_rate", "percent"),
    ]
    times = line_chart(
        chart_id="response_times",
        title=_("Mean response times per day"),
        period=period,
        series=[
            (
                _("First response"),
                lambda s, u: daily_series(tenant, s, u, "first_response_ms", measure="mean"),
            ),
            (
                _("Reply after handoff"),
                lambda s, u: daily_series(tenant, s, u, "human_response_ms", measure="mean"),
            ),
        ],
        kind="ms",
    )
    tables = [_agents_table(people.now, links), _tickets_table(people.now, links)]
    return Page(kpis, [times], tables)


def satisfaction_page(tenant: Tenant, period: Period) -> Page:
    links = Links(period)
    satisfaction = Compared.read(selectors.satisfaction_metrics, tenant=tenant, period=period)
    rated = links.conversations("resolved", csat_rating__isnull="False")
    kpis = [
        satisfaction.kpi(
            "csat",
            _("CSAT"),
            "csat",
            "percent",
            links.conversations("resolved", csat_rating__gte=4),
        ),
        satisfaction.kpi("response_rate", _("Response rate"), "response_rate", "percent", rated),
        satisfaction.kpi("ratings", _("Ratings"), "ratings", "count", rated, help_key="csat"),
        satisfaction.kpi("mean", _("Mean score"), "mean", "score", rated, help_key="distribution"),
    ]
    distribution = Table(
        "distribution",
        _("Ratings by score"),
        [_("Score"), _("Ratings")],
        [
            [
                Cell("★" * score, score),
                count_cell(n, links.conversations("resolved", csat_rating__exact=score)),
            ]
            for score, n in satisfaction.now.distribution.items()
        ],
        str(HELP["distribution"]),
    )
    scores = {str(score): n for score, n in satisfaction.now.distribution.items()}
    charts = [
        bar_chart("distribution", _("Ratings by score"), scores),
        line_chart(
            chart_id="ratings",
            title=_("Ratings per day"),
            period=period,
            series=[(_("Ratings"), lambda s, u: daily_series(tenant, s, u, "ratings", "score"))],
            chart="bar",
        ),
    ]
    # The rollups count ratings; the comments stay with their conversations.
    note = _(
        "Customers' comments are kept with each conversation, not in the reports: open "
        "the conversations with a comment to read them."
    )
    comments = links.conversations("resolved", comment="yes")
    return Page(kpis, charts, [distribution], [note], comments)


def cost_page(tenant: Tenant, period: Period) -> Page:
    links = Links(period)
    cost = Compared.read(selectors.cost_metrics, tenant=tenant, period=period)
    in_period = links.conversations()
    kpis = [
        cost.kpi("cost", _("LLM cost"), "cost", "money", in_period, lower_is_better=True),
        cost.kpi("tokens_in", _("Input tokens"), "tokens_in", "count", in_period, help_key="cost"),
        cost.kpi(
            "tokens_out", _("Output tokens"), "tokens_out", "count", in_period, help_key="cost"
        ),
        cost.kpi(
            "llm_latency_p95",
            _("LLM latency, p95"),
            "llm_latency.p95_ms",
            "ms",
            in_period,
            help_key="llm_latency",
            lower_is_better=True,
        ),
        cost.kpi(
            "fallback_rate",
            _("Fallback"),
            "fallback_rate",
            "percent",
            links.conversations(answer_source=Message.Source.FALLBACK),
            lower_is_better=True,
        ),
    ]
    models = Table(
        "models",
        _("By provider and model"),
        [_("Provider"), _("Model"), _("Answers"), _("Input tokens"), _("Output tokens"), _("Cost")],
        [
            [
                Cell(usage.provider, usage.provider),
                Cell(usage.model, usage.model),
                count_cell(usage.answers, in_period),
                count_cell(usage.tokens_in),
                count_cell(usage.tokens_out),
                Cell(format_value(usage.cost, "money"), usage.cost.quantize(MICRO)),
            ]
            for usage in cost.now.by_model
        ],
        str(HELP["cost"]),
    )

    def tokens(metric: str) -> Any:
        return lambda s, u: daily_series(tenant, s, u, metric, "model", measure="total")

    charts = [
        line_chart(
            chart_id="cost",
            title=_("Cost per day"),
            period=period,
            series=[(_("LLM cost"), tokens("llm_cost"))],
            kind="money",
            chart="bar",
        ),
        line_chart(
            chart_id="tokens",
            title=_("Tokens per day"),
            period=period,
            series=[
                (_("Input tokens"), tokens("llm_tokens_in")),
                (_("Output tokens"), tokens("llm_tokens_out")),
            ],
        ),
    ]
    return Page(kpis, charts, [models])


def mine_page(tenant: Tenant, period: Period, user_id: int) -> Page:
    """An agent's own numbers, from the per-agent part of ``people_metrics``."""
    links = Links(period)
    people = Compared.read(selectors.people_metrics, tenant=tenant, period=period)
    empty = selectors.Durations(0, None, None, None, None)
    blank = selectors.AgentMetrics(user_id, 0, empty, 0, empty, 0, None, empty)
    mine = Compared(people.now.agents.get(user_id, blank), people.before.agents.get(user_id, blank))
    assigned = links.conversations(assignee__id__exact=user_id)
    kpis = [
        mine.kpi("replies", _("Replies"), "replies", "count", assigned, help_key="agents"),
        *_duration_kpis(
            mine, "human_response", _("Reply after handoff"), "human_response", assigned
        ),
        mine.kpi(
            "resolved",
            _("Resolved"),
            "resolved",
            "count",
            links.conversations(
                "resolved", resolution_kind__exact=AGENT, assignee__id__exact=user_id
            ),
            help_key="agents",
        ),
        mine.kpi(
            "resolution_time_p50",
            _("Resolution time, p50"),
            "resolution_time.p50_ms",
            "ms",
            help_key="resolution_time",
            lower_is_better=True,
        ),
        mine.kpi(
            "ratings",
            _("Ratings"),
            "ratings",
            "count",
            links.conversations(
                "resolved", csat_rating__isnull="False", assignee__id__exact=user_id
            ),
            help_key="agents",
        ),
        mine.kpi("rating_mean", _("Mean rating"), "rating_mean", "score", help_key="agents"),
    ]
    return Page(kpis, [], [kpi_table("mine", _("My numbers"), kpis)])
