"""The REST API's hot topics and knowledge gaps (docs/api.md), as the last run stored them
(analytics/topics.py, analytics/gaps.py)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from analytics import topic_selectors as selectors
from analytics.apis import TAGS, PeriodSerializer, _ratio, report_period
from analytics.models import KnowledgeGap, TopicPeriod
from analytics.topics import default_period
from helpdesk_site.api import api_tenant, paginated_response, query_filters
from helpdesk_site.api_view import ApiView
from tenants.models import ApiKey

_DAY = "A day of the tenant's time zone, YYYY-MM-DD (included)."


class TopicSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The topic's id (stable across runs).")
    name = serializers.CharField(help_text="The admin's name for the topic, else its label.")
    label = serializers.CharField(help_text="The name the clustering job gave it.")  # type: ignore[assignment]
    since = serializers.DateField()
    until = serializers.DateField()
    volume = serializers.IntegerField(help_text="Questions in the period.")
    previous_volume = serializers.IntegerField(help_text="Questions in the period before.")
    change = serializers.FloatField(
        allow_null=True, help_text="(volume - previous_volume) / previous_volume; null if new."
    )
    conversations = serializers.IntegerField()
    ai_resolution_rate = _ratio()
    handoff_rate = _ratio()
    csat = serializers.FloatField(allow_null=True, help_text="Mean rating (1–5), if any.")
    csat_count = serializers.IntegerField()
    sample_conversation_ids = serializers.ListField(child=serializers.IntegerField())

    class Meta:
        ref_name = "ReportTopic"

    def to_representation(self, instance: TopicPeriod) -> dict:
        row = selectors.topic_row(instance)
        return super().to_representation(
            {
                "id": row.topic_id,
                "name": row.name,
                "label": row.label,
                "since": instance.since,
                "until": instance.until,
                "volume": row.volume,
                "previous_volume": row.previous_volume,
                "change": row.change,
                "conversations": row.conversations,
                "ai_resolution_rate": row.ai_resolution_rate,
                "handoff_rate": row.handoff_rate,
                "csat": row.csat,
                "csat_count": row.csat_count,
                "sample_conversation_ids": row.sample_conversation_ids,
            }
        )


class ReportTopicsApi(ApiView):
    """The hot topics of a period."""

    required_scope = ApiKey.Scope.REPORTS_READ

    @extend_schema(
        operation_id="reports_topics",
        tags=TAGS,
        description=(
            "The topics customers asked about in the period `since` to `until` as the daily "
            "job (or a refresh) computed it: a period that was never computed has none. "
            "Default: the last 7 days, today included. Hidden and merged topics are left out."
        ),
        parameters=[
            OpenApiParameter(
                "since", OpenApiTypes.DATE, description=f"{_DAY} Default: 6 days before `until`."
            ),
            OpenApiParameter("until", OpenApiTypes.DATE, description=f"{_DAY} Default: today."),
        ],
        responses=TopicSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        tenant = api_tenant(request)
        values = query_filters(PeriodSerializer, request)
        default_since, default_until = default_period(tenant)
        until = values.get("until") or default_until
        since = values.get("since") or until - (default_until - default_since)
        since, until = report_period(tenant=tenant, since=since, until=until)
        rows = selectors.topic_periods(tenant=tenant, since=since, until=until)
        return paginated_response(
            request=request, view=self, queryset=rows, serializer_class=TopicSerializer
        )


class KnowledgeGapSerializer(serializers.ModelSerializer):
    class Meta:
        model = KnowledgeGap
        ref_name = "ReportKnowledgeGap"
        fields = [
            "id",
            "status",
            "question",
            "questions",
            "customers",
            "occurrences",
            "signals",
            "assistant_answer",
            "agent_answer",
            "sample_conversation_ids",
            "since",
            "until",
            "entry",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "questions": {"help_text": "The phrasings customers used (at most 20)."},
            "signals": {"help_text": "How many messages showed each signal."},
            "entry": {"help_text": "The FAQ entry that covers it, if any."},
        }


class GapFilterSerializer(PeriodSerializer):
    status = serializers.ChoiceField(choices=KnowledgeGap.Status.values, required=False)


class ReportKnowledgeGapsApi(ApiView):
    """Questions the assistant could not answer well."""

    required_scope = ApiKey.Scope.REPORTS_READ

    @extend_schema(
        operation_id="reports_knowledge_gaps",
        tags=TAGS,
        description=(
            "Knowledge gaps found in periods that overlap `since` to `until` (default: the "
            "last 30 days), with `status` open, covered or dismissed (default: all)."
        ),
        parameters=[
            OpenApiParameter("status", str, enum=KnowledgeGap.Status.values),
            OpenApiParameter(
                "since", OpenApiTypes.DATE, description=f"{_DAY} Default: 29 days before `until`."
            ),
            OpenApiParameter("until", OpenApiTypes.DATE, description=f"{_DAY} Default: today."),
        ],
        responses=KnowledgeGapSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        tenant = api_tenant(request)
        values = query_filters(GapFilterSerializer, request)
        since, until = report_period(
            tenant=tenant, since=values.get("since"), until=values.get("until")
        )
        gaps = selectors.knowledge_gaps(tenant=tenant, status=values.get("status")).filter(
            since__lte=until, until__gte=since
        )
        return paginated_response(
            request=request, view=self, queryset=gaps, serializer_class=KnowledgeGapSerializer
        )
