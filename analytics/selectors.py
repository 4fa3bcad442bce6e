"""Reads that summarise a tenant's activity for the console and dashboards."""

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils import timezone

from conversations.models import Conversation, Message, Ticket
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
