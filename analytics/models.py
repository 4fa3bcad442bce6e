"""Reporting: one append-only row per thing that happened (``ReportRow``), and the per-tenant
hourly and daily sums the dashboards read (``Rollup``).

Reporting rows are written by a subscriber of ``conversations.events`` after the change they
describe has committed (analytics/services.py); rollups are rebuilt from them, bucket by bucket
in the tenant's time zone (analytics/rollups.py). Ids are plain numbers, not foreign keys: a
row tells what happened and stays when the conversation or ticket is deleted later (a
tenant's deletion still removes its rows).
"""

from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _

from tenants.models import TenantOwnedModel


class ReportRow(TenantOwnedModel):
    class Kind(models.TextChoices):
        CONVERSATION_CREATED = "conversation_created", _("Conversation created")
        CUSTOMER_MESSAGE = "customer_message", _("Customer message")
        ANSWER = "answer", _("Assistant's answer")
        FIRST_ANSWER = "first_answer", _("First answer")
        FAQ_HIT = "faq_hit", _("FAQ entry answered")
        DOCUMENT_HIT = "document_hit", _("Document used")
        HANDOFF = "handoff", _("Handed to a person")
        AGENT_REPLY = "agent_reply", _("Agent's reply")
        FIRST_HUMAN_RESPONSE = "first_human_response", _("First human response")
        RESOLVED = "resolved", _("Resolved")
        ABANDONED = "abandoned", _("Abandoned")
        REOPENED = "reopened", _("Reopened")
        RATING = "rating", _("Satisfaction rating")
        FEEDBACK = "feedback", _("Answer feedback")
        TICKET_OPENED = "ticket_opened", _("Ticket opened")
        TICKET_SOLVED = "ticket_solved", _("Ticket solved")
        TICKET_SLA_BREACHED = "ticket_sla_breached", _("Ticket past its SLA")

    kind = models.CharField(_("kind"), max_length=24, choices=Kind.choices)
    occurred_at = models.DateTimeField(_("occurred at"))
    channel = models.CharField(_("channel"), max_length=10, blank=True)
    conversation_id = models.BigIntegerField(_("conversation"), null=True, blank=True)
    customer_id = models.BigIntegerField(_("customer"), null=True, blank=True)
    agent_id = models.BigIntegerField(_("agent"), null=True, blank=True)
    message_id = models.BigIntegerField(_("message"), null=True, blank=True)
    ticket_id = models.BigIntegerField(_("ticket"), null=True, blank=True)
    # The FAQ entry of a FAQ hit; the document of a document hit.
    entry_id = models.BigIntegerField(_("knowledge entry"), null=True, blank=True)
    # What kind of handoff, resolution, answer source or feedback; the resolution a reopened
    # conversation had.
    reason = models.CharField(_("reason"), max_length=24, blank=True)
    provider = models.CharField(_("provider"), max_length=100, blank=True)
    model = models.CharField(_("model"), max_length=100, blank=True)
    tokens_in = models.PositiveIntegerField(_("input tokens"), default=0)
    tokens_out = models.PositiveIntegerField(_("output tokens"), default=0)
    cost = models.DecimalField(_("cost"), max_digits=12, decimal_places=6, default=Decimal("0"))
    latency_ms = models.PositiveIntegerField(_("latency (ms)"), null=True, blank=True)
    # How long it took: first answer and first human response (from the conversation's start
    # or its handoff), resolution (from the start), ticket solved (from its opening).
    duration_ms = models.BigIntegerField(_("duration (ms)"), null=True, blank=True)
    # The rating (1–5); for an AI resolution 1 when confirmed by the customer, else 0; for a
    # solved ticket 1 when within its SLA, else 0.
    value = models.SmallIntegerField(_("value"), null=True, blank=True)

    class Meta:
        verbose_name = _("reporting row")
        verbose_name_plural = _("reporting rows")
        ordering = ["occurred_at", "id"]
        indexes = [
            # The rollup of a tenant's day or hour.
            models.Index(fields=["tenant", "occurred_at"], name="report_tenant_time"),
            # What a conversation already has (its first answer, its human replies).
            models.Index(
                fields=["tenant", "conversation_id", "kind"], name="report_tenant_conversation"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.occurred_at:%Y-%m-%d %H:%M}"


class Rollup(TenantOwnedModel):
    """A sum over one bucket (an hour or a day of the tenant's local time, starting at
    ``bucket_start``, stored in UTC): ``count`` rows and the ``total`` of their measure, for
    one ``metric``, split by ``dimension`` = ``key`` (the channel, the handoff reason, a
    histogram bucket; empty for the whole)."""

    class Granularity(models.TextChoices):
        HOUR = "hour", _("Hour")
        DAY = "day", _("Day")

    granularity = models.CharField(_("granularity"), max_length=4, choices=Granularity.choices)
    bucket_start = models.DateTimeField(_("bucket start"))
    metric = models.CharField(_("metric"), max_length=40)
    dimension = models.CharField(_("dimension"), max_length=20, blank=True)
    key = models.CharField(_("key"), max_length=210, blank=True)
    count = models.BigIntegerField(_("count"), default=0)
    total = models.DecimalField(_("total"), max_digits=24, decimal_places=6, default=Decimal("0"))

    class Meta:
        verbose_name = _("rollup")
        verbose_name_plural = _("rollups")
        ordering = ["bucket_start", "metric", "dimension", "key"]
        indexes = [
            # A dashboard's read: the tenant's buckets of some metrics over a range.
            models.Index(
                fields=["tenant", "granularity", "metric", "bucket_start"],
                name="rollup_tenant_metric_time",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "granularity", "bucket_start", "metric", "dimension", "key"],
                name="rollup_unique_bucket",
            )
        ]

    def __str__(self) -> str:
        return f"{self.metric} {self.dimension}={self.key} {self.bucket_start:%Y-%m-%d %H:%M}"
