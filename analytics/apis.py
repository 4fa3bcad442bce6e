"""The REST API's reports (docs/api.md): the metrics of docs/analytics.md over a range of the
tenant's local days, read from the rollups by analytics/selectors.py."""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
)
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from analytics import selectors
from analytics.models import Rollup
from analytics.rollups import local_today
from helpdesk_site.api import api_tenant, query_filters
from helpdesk_site.api_view import ApiView
from tenants.models import ApiKey, Tenant

TAGS = ["reports"]
DEFAULT_DAYS = 30
MAX_DAYS = 366
# Days a report may name: enough for any real history, and far from the calendar's ends.
MIN_DAY, MAX_DAY = date(2000, 1, 1), date(2999, 12, 31)


# The period -------------------------------------------------------------------------------------


class PeriodSerializer(serializers.Serializer):
    since = serializers.DateField(required=False, input_formats=["iso-8601"])
    until = serializers.DateField(required=False, input_formats=["iso-8601"])

    def _within_years(self, day: date) -> date:
        if not MIN_DAY <= day <= MAX_DAY:
            raise exceptions.ValidationError(
                _("Give a day from %(min)s to %(max)s.") % {"min": MIN_DAY, "max": MAX_DAY}
            )
        return day

    def validate_since(self, day: date) -> date:
        return self._within_years(day)

    def validate_until(self, day: date) -> date:
        return self._within_years(day)


def report_period(*, tenant: Tenant, since: date | None, until: date | None) -> tuple[date, date]:
    """The tenant's local days ``since`` to ``until`` (both included), the missing ends filled
    in (the last 30 days by default); a 400 naming the refused parameter."""
    if until is None:
        until = max(local_today(tenant), since) if since else local_today(tenant)
    if since is None:
        since = until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise exceptions.ValidationError({"until": [_("Give a day on or after since.")]})
    if (until - since).days + 1 > MAX_DAYS:
        raise exceptions.ValidationError(
            {"since": [_("A report covers at most %(days)d days.") % {"days": MAX_DAYS}]}
        )
    return since, until


_DAY = "A day of the tenant's time zone, YYYY-MM-DD (included)."
_PERIOD_PARAMETERS = [
    OpenApiParameter(
        "since",
        OpenApiTypes.DATE,
        description=f"{_DAY} Default: 29 days before `until` (30 days in all).",
    ),
    OpenApiParameter(
        "until",
        OpenApiTypes.DATE,
        description=f"{_DAY} Default: today. At most {MAX_DAYS} days from `since`.",
    ),
]


# Summary ----------------------------------------------------------------------------------------


def _ratio() -> serializers.FloatField:
    return serializers.FloatField(
        allow_null=True, help_text="A share from 0 to 1; null when there is nothing to divide by."
    )


class DurationsSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    mean_ms = serializers.IntegerField(allow_null=True)
    p50_ms = serializers.IntegerField(allow_null=True)
    p90_ms = serializers.IntegerField(allow_null=True)
    p95_ms = serializers.IntegerField(allow_null=True)

    class Meta:
        ref_name = "ReportDurations"


def _counts() -> serializers.DictField:
    return serializers.DictField(child=serializers.IntegerField())


class VolumeSerializer(serializers.Serializer):
    conversations = serializers.IntegerField()
    conversations_by_channel = _counts()
    customer_messages = serializers.IntegerField()
    customer_messages_by_channel = _counts()
    active_customer_days = serializers.IntegerField()
    active_customer_days_by_channel = _counts()
    messages_per_conversation = serializers.FloatField(allow_null=True)

    class Meta:
        ref_name = "ReportVolume"


class AiSerializer(serializers.Serializer):
    conversations = serializers.IntegerField()
    resolved_confirmed = serializers.IntegerField()
    resolved_assumed = serializers.IntegerField()
    reopened_after_ai = serializers.IntegerField()
    resolution_rate_confirmed = _ratio()
    resolution_rate_assumed = _ratio()
    automation_rate = _ratio()
    handoffs = serializers.IntegerField()
    handoffs_by_reason = _counts()
    handoff_rate = _ratio()
    abandoned = serializers.IntegerField()
    abandonment_rate = _ratio()
    answers_by_source = _counts()
    thumbs_up = serializers.IntegerField()
    thumbs_down = serializers.IntegerField()
    thumbs_up_rate = _ratio()

    class Meta:
        ref_name = "ReportAi"


class AgentSerializer(serializers.Serializer):
    agent_id = serializers.IntegerField(help_text="The agent's user id.")
    replies = serializers.IntegerField()
    human_response = DurationsSerializer()
    resolved = serializers.IntegerField()
    resolution_time = DurationsSerializer()
    ratings = serializers.IntegerField()
    rating_mean = serializers.FloatField(allow_null=True)
    human_response_business = DurationsSerializer(
        help_text="Reply time after handoff, counting only business hours."
    )

    class Meta:
        ref_name = "ReportAgent"


class PeopleSerializer(serializers.Serializer):
    first_response = DurationsSerializer()
    human_response = DurationsSerializer()
    first_response_business = DurationsSerializer(
        help_text="First response time counting only the tenant's business hours."
    )
    human_response_business = DurationsSerializer(
        help_text="Reply time after handoff counting only the tenant's business hours."
    )
    resolution_time = DurationsSerializer()
    tickets_opened = serializers.IntegerField()
    tickets_solved = serializers.IntegerField()
    tickets_sla_breached = serializers.IntegerField()
    sla_met_rate = _ratio()
    tickets_open = serializers.IntegerField(help_text="Now, whatever the period.")
    tickets_pending = serializers.IntegerField(help_text="Now, whatever the period.")
    agents = serializers.SerializerMethodField()

    class Meta:
        ref_name = "ReportPeople"

    @extend_schema_field(AgentSerializer(many=True))
    def get_agents(self, people: selectors.PeopleMetrics) -> list[dict[str, Any]]:
        """Per agent, by agent id."""
        return list(AgentSerializer(list(people.agents.values()), many=True).data)


class SatisfactionSerializer(serializers.Serializer):
    ratings = serializers.IntegerField()
    distribution = serializers.DictField(
        child=serializers.IntegerField(), help_text='Ratings by score, "1" to "5".'
    )
    csat = _ratio()
    response_rate = _ratio()
    mean = serializers.FloatField(allow_null=True)

    class Meta:
        ref_name = "ReportSatisfaction"


class ModelUsageSerializer(serializers.Serializer):
    provider = serializers.CharField()
    model = serializers.CharField()
    answers = serializers.IntegerField()
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=24, decimal_places=6)

    class Meta:
        ref_name = "ReportModelUsage"


class CostSerializer(serializers.Serializer):
    by_model = ModelUsageSerializer(many=True)
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=24, decimal_places=6)
    llm_latency = DurationsSerializer()
    fallback_rate = _ratio()

    class Meta:
        ref_name = "ReportCost"


class FaqHitsSerializer(serializers.Serializer):
    entry_id = serializers.IntegerField()
    answers = serializers.IntegerField()

    class Meta:
        ref_name = "ReportFaqHits"


class DocumentHitsSerializer(serializers.Serializer):
    document_id = serializers.IntegerField()
    answers = serializers.IntegerField()

    class Meta:
        ref_name = "ReportDocumentHits"


class KnowledgeSerializer(serializers.Serializer):
    hits = serializers.SerializerMethodField()
    entries_never_hit = serializers.ListField(child=serializers.IntegerField())
    document_hits = serializers.SerializerMethodField()
    documents_never_hit = serializers.ListField(child=serializers.IntegerField())

    class Meta:
        ref_name = "ReportKnowledge"

    @extend_schema_field(FaqHitsSerializer(many=True))
    def get_hits(self, knowledge: selectors.KnowledgeMetrics) -> list[dict[str, int]]:
        """Answers given straight from each FAQ entry, most first."""
        return [
            {"entry_id": entry, "answers": answers}
            for entry, answers in knowledge.hits_by_entry.items()
        ]

    @extend_schema_field(DocumentHitsSerializer(many=True))
    def get_document_hits(self, knowledge: selectors.KnowledgeMetrics) -> list[dict[str, int]]:
        """Answers that used each document (given to the LLM or shown), most first."""
        return [
            {"document_id": document, "answers": answers}
            for document, answers in knowledge.hits_by_document.items()
        ]


class PeriodMetricsSerializer(serializers.Serializer):
    since = serializers.DateField()
    until = serializers.DateField()
    volume = VolumeSerializer()
    ai = AiSerializer()
    people = PeopleSerializer()
    satisfaction = SatisfactionSerializer()
    cost = CostSerializer()
    knowledge = KnowledgeSerializer()

    class Meta:
        ref_name = "ReportPeriod"


_SUMMARY_EXAMPLE = {
    "since": "2026-11-04",
    "until": "2026-12-03",
    "time_zone": "Asia/Shanghai",
    "volume": {
        "conversations": 120,
        "conversations_by_channel": {"widget": 100, "api": 20},
        "customer_messages": 410,
        "customer_messages_by_channel": {"widget": 350, "api": 60},
        "active_customer_days": 130,
        "active_customer_days_by_channel": {"widget": 110, "api": 20},
        "messages_per_conversation": 7.1,
    },
    "ai": {"conversations": 120, "automation_rate": 0.62, "handoffs": 30, "…": "…"},
    "people": {
        "first_response": {
            "count": 118,
            "mean_ms": 2100,
            "p50_ms": 1500,
            "p90_ms": 3000,
            "p95_ms": 5000,
        },
        "tickets_open": 4,
        "agents": [{"agent_id": 7, "replies": 52, "…": "…"}],
        "…": "…",
    },
    "satisfaction": {"ratings": 12, "csat": 0.83, "…": "…"},
    "cost": {"tokens_in": 91000, "tokens_out": 12000, "cost": "0.412000", "…": "…"},
    "knowledge": {"hits": [{"entry_id": 3, "answers": 41}], "entries_never_hit": [9, 12]},
    "previous": None,
}


class ReportSummaryApi(ApiView):
    """The metrics of a period (docs/analytics.md) in one object."""

    required_scope = ApiKey.Scope.REPORTS_READ

    class FilterSerializer(PeriodSerializer):
        compare = serializers.ChoiceField(choices=["previous"], required=False)

    class OutputSerializer(PeriodMetricsSerializer):
        time_zone = serializers.CharField(help_text="The tenant's time zone, of the days.")
        previous = PeriodMetricsSerializer(
            allow_null=True,
            help_text="With compare=previous: the as long period just before; else null.",
        )

        class Meta:
            ref_name = "ReportSummary"

    @extend_schema(
        operation_id="reports_summary",
        tags=TAGS,
        description=(
            "The period's volume, assistant, people, satisfaction, cost and knowledge metrics "
            "(definitions in Kefu's analytics documentation), counted over the tenant's local "
            "days `since` to `until`, both included. Durations are in milliseconds, ratios "
            "from 0 to 1 (null when nothing to divide by), money as decimal strings. "
            "`compare=previous` adds the as long period just before, under `previous`."
        ),
        parameters=[
            *_PERIOD_PARAMETERS,
            OpenApiParameter(
                "compare",
                str,
                enum=["previous"],
                description="`previous`: add the previous period of the same length.",
            ),
        ],
        responses=OutputSerializer,
        examples=[OpenApiExample("The last 30 days", value=_SUMMARY_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request) -> Response:
        tenant = api_tenant(request)
        values = query_filters(self.FilterSerializer, request)
        since, until = report_period(
            tenant=tenant, since=values.get("since"), until=values.get("until")
        )
        previous = None
        if values.get("compare") == "previous":
            days = timedelta(days=(until - since).days + 1)
            previous = selectors.period_metrics(
                tenant=tenant, since=since - days, until=until - days
            )
        summary = selectors.period_metrics(tenant=tenant, since=since, until=until)
        output = {**vars(summary), "time_zone": tenant.time_zone, "previous": previous}
        return Response(self.OutputSerializer(output).data)


# Time series ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """A rollup metric as a time series: summed over the keys of ``dimension``; its value is
    the count of its rows, or (``measure``) the total of their measure (``"total"``), its mean
    (``"mean"``) or money (``"money"``)."""

    metric: str
    dimension: str = ""
    measure: str = "count"


SERIES: dict[str, Series] = {
    "conversations": Series("conversations", "channel"),
    "customer_messages": Series("customer_messages", "channel"),
    "active_customers": Series("active_customers", "channel"),
    "answers": Series("answers", "source"),
    "agent_replies": Series("agent_replies", "agent"),
    "handoffs": Series("handoffs", "reason"),
    "abandoned": Series("abandoned"),
    "resolved": Series("resolved", "kind"),
    "ai_resolved": Series("ai_resolved", "confirmation"),
    "reopened": Series("reopened", "kind"),
    "feedback": Series("feedback", "value"),
    "ratings": Series("ratings", "score"),
    "faq_hits": Series("faq_hits", "entry"),
    "document_hits": Series("document_hits", "document"),
    "tickets_opened": Series("tickets_opened"),
    "tickets_solved": Series("tickets_solved", "sla"),
    "tickets_sla_breached": Series("tickets_sla_breached"),
    "llm_tokens_in": Series("llm_tokens_in", "model", "total"),
    "llm_tokens_out": Series("llm_tokens_out", "model", "total"),
    "llm_cost": Series("llm_cost", "model", "money"),
    "first_response_ms": Series("first_response_ms", "", "mean"),
    "human_response_ms": Series("human_response_ms", "", "mean"),
    "first_response_business_ms": Series("first_response_business_ms", "", "mean"),
    "human_response_business_ms": Series("human_response_business_ms", "", "mean"),
    "resolution_ms": Series("resolution_ms", "", "mean"),
    "llm_latency_ms": Series("llm_latency_ms", "", "mean"),
}


def _value(series: Series, point: selectors.SeriesPoint) -> int | str:
    if series.measure == "total":
        return int(point.total)
    if series.measure == "mean":
        return int(point.total / point.count) if point.count else 0
    if series.measure == "money":
        return str(point.total.quantize(Decimal("0.000001")))
    return point.count


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer"},
            {"type": "string", "format": "decimal", "pattern": r"^-?\d+\.\d{6}$"},
        ]
    }
)
class SeriesValueField(serializers.Field):
    def to_representation(self, value: int | str) -> int | str:
        return value


class PointSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="The hour's or day's start, in UTC.")
    value = SeriesValueField(
        help_text="A count; tokens for llm_tokens_*; the mean in ms for *_ms; money as a "
        "decimal string for llm_cost."
    )

    class Meta:
        ref_name = "ReportPoint"


class ReportTimeseriesApi(ApiView):
    """One metric per day or hour of a period."""

    required_scope = ApiKey.Scope.REPORTS_READ

    class FilterSerializer(PeriodSerializer):
        metric = serializers.ChoiceField(choices=list(SERIES))
        granularity = serializers.ChoiceField(
            choices=Rollup.Granularity.values, default=Rollup.Granularity.DAY
        )

    class OutputSerializer(serializers.Serializer):
        metric = serializers.CharField()
        granularity = serializers.CharField()
        since = serializers.DateField()
        until = serializers.DateField()
        time_zone = serializers.CharField()
        points = PointSerializer(many=True)

        class Meta:
            ref_name = "ReportTimeseries"

    @extend_schema(
        operation_id="reports_timeseries",
        tags=TAGS,
        description=(
            "One metric per local day or hour of `since` to `until` (both included), oldest "
            "first; buckets with nothing are left out. Counts are of the metric's events; "
            "`llm_tokens_in`/`llm_tokens_out` are tokens, `*_ms` the mean duration in ms, "
            "`llm_cost` money as a decimal string. Hours are kept for the recent days only "
            "(ANALYTICS_HOURLY_DAYS, 14 by default)."
        ),
        parameters=[
            OpenApiParameter("metric", str, required=True, enum=list(SERIES)),
            OpenApiParameter(
                "granularity",
                str,
                enum=Rollup.Granularity.values,
                description="day (the default) or hour.",
            ),
            *_PERIOD_PARAMETERS,
        ],
        responses=OutputSerializer,
        examples=[
            OpenApiExample(
                "Conversations per day",
                value={
                    "metric": "conversations",
                    "granularity": "day",
                    "since": "2026-12-01",
                    "until": "2026-12-03",
                    "time_zone": "Asia/Shanghai",
                    "points": [
                        {"start": "2026-11-30T16:00:00Z", "value": 14},
                        {"start": "2026-12-02T16:00:00Z", "value": 3},
                    ],
                },
                response_only=True,
            )
        ],
    )
    def get(self, request: Request) -> Response:
        tenant = api_tenant(request)
        values = query_filters(self.FilterSerializer, request)
        since, until = report_period(
            tenant=tenant, since=values.get("since"), until=values.get("until")
        )
        hourly_days = settings.ANALYTICS_HOURLY_DAYS
        oldest = local_today(tenant) - timedelta(days=hourly_days)
        if values["granularity"] == Rollup.Granularity.HOUR and since < oldest:
            message = _("Hours are kept for the last %(days)d days: since %(oldest)s or later.")
            raise exceptions.ValidationError(
                {"granularity": [message % {"days": hourly_days, "oldest": oldest}]}
            )
        series = SERIES[values["metric"]]
        points = selectors.metric_series(
            tenant=tenant,
            metric=series.metric,
            dimension=series.dimension,
            since=since,
            until=until,
            granularity=values["granularity"],
        )
        output = {
            "metric": values["metric"],
            "granularity": values["granularity"],
            "since": since,
            "until": until,
            "time_zone": tenant.time_zone,
            "points": [{"start": p.bucket_start, "value": _value(series, p)} for p in points],
        }
        return Response(self.OutputSerializer(output).data)
