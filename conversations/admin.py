import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy

from conversations.models import (
    CannedResponse,
    Conversation,
    Customer,
    Message,
    Ticket,
    TicketReply,
)
from conversations.tickets import ticket_reply_send, ticket_status_set
from tenants.console import TenantScopedAdmin, TenantScopedInline
from tenants.request import active_tenant
from tenants.roles import Action, Area


@admin.register(Customer)
class CustomerAdmin(TenantScopedAdmin):
    area = Area.CUSTOMERS
    list_display = ["__str__", "channel", "email", "identified", "last_seen_at", "created_at"]
    list_filter = ["channel", "identified"]
    search_fields = ["display_name", "email", "external_id"]
    readonly_fields = ["channel", "external_id", "identified", "last_seen_at", "created_at"]
    fields = [
        "display_name",
        "email",
        "phone",
        "channel",
        "external_id",
        "identified",
        "metadata",
        "last_seen_at",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # customers arrive through channels, never typed in


TRANSCRIPT_FIELDS = ("created_at", "role", "content", "source", "model", "tokens_out", "feedback")


class MessageInline(TenantScopedInline):
    """The transcript, read-only: what was said is never edited afterwards."""

    model = Message
    area = Area.CONVERSATIONS
    fields = TRANSCRIPT_FIELDS
    readonly_fields = TRANSCRIPT_FIELDS
    extra = 0
    can_delete = False
    ordering = ["created_at", "id"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LocalDaysFilter(admin.ListFilter):
    """Rows whose ``field`` falls on the tenant's local days ``<prefix>_since`` to
    ``<prefix>_until`` (YYYY-MM-DD, both included; either may be left out): the analytics
    pages' drill-downs name their period this way."""

    field: str
    prefix: str
    template = "admin/filter.html"

    def __init__(self, request: HttpRequest, params: Any, model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        tenant = active_tenant(request)
        self.zone = zoneinfo.ZoneInfo(tenant.time_zone) if tenant else UTC
        self.days: dict[str, date] = {}
        for name in (f"{self.prefix}_since", f"{self.prefix}_until"):
            if name not in params:
                continue
            value = params.pop(name)
            value = value[-1] if isinstance(value, list) else value
            self.used_parameters[name] = value
            try:
                self.days[name] = date.fromisoformat(value)
            except ValueError as error:
                raise IncorrectLookupParameters(error) from error

    def expected_parameters(self) -> list[str | None]:
        return [f"{self.prefix}_since", f"{self.prefix}_until"]

    def has_output(self) -> bool:
        return True

    def _start(self, day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=self.zone)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        since = self.days.get(f"{self.prefix}_since")
        until = self.days.get(f"{self.prefix}_until")
        if since is not None:
            queryset = queryset.filter(**{f"{self.field}__gte": self._start(since)})
        if until is not None:
            queryset = queryset.filter(**{f"{self.field}__lt": self._start(until + timedelta(1))})
        return queryset

    def choices(self, changelist: Any) -> Any:
        since, until = (f"{self.prefix}_since", f"{self.prefix}_until")
        yield {
            "selected": not self.days,
            "query_string": changelist.get_query_string(remove=[since, until]),
            "display": gettext_lazy("Any date"),
        }
        if self.days:
            shown = " – ".join(str(self.used_parameters.get(name, "…")) for name in (since, until))
            yield {
                "selected": True,
                "query_string": changelist.get_query_string(),
                "display": shown,
            }


class StartedFilter(LocalDaysFilter):
    title = gettext_lazy("started (local days)")
    field = "created_at"
    prefix = "started"


class ResolvedFilter(LocalDaysFilter):
    title = gettext_lazy("resolved (local days)")
    field = "resolved_at"
    prefix = "resolved"


class HandedOffFilter(admin.SimpleListFilter):
    title = gettext_lazy("handed to a person")
    parameter_name = "handed_off"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", gettext_lazy("Yes")), ("no", gettext_lazy("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.exclude(handoff_reason="")
        if self.value() == "no":
            return queryset.filter(handoff_reason="")
        return queryset


class AnswerSourceFilter(admin.SimpleListFilter):
    """Conversations with at least one answer from a source (the FAQ, an LLM…)."""

    title = gettext_lazy("answer source")
    parameter_name = "answer_source"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(value, label) for value, label in Message.Source.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() is None:
            return queryset
        answers = Message.objects.filter(conversation=OuterRef("pk"), source=self.value())
        return queryset.filter(Exists(answers))


class CommentFilter(admin.SimpleListFilter):
    title = gettext_lazy("satisfaction comment")
    parameter_name = "comment"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", gettext_lazy("With a comment"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(~Q(csat_comment=""))
        return queryset


@admin.register(Conversation)
class ConversationAdmin(TenantScopedAdmin):
    area = Area.CONVERSATIONS
    list_display = [
        "__str__",
        "status",
        "channel",
        "assignee",
        "handoff_reason",
        "csat_rating",
        "last_message_at",
    ]
    list_filter = [
        StartedFilter,
        ResolvedFilter,
        "status",
        "channel",
        HandedOffFilter,
        "handoff_reason",
        "resolution_kind",
        AnswerSourceFilter,
        "csat_rating",
        CommentFilter,
        ("assignee", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["customer__display_name", "customer__email", "messages__content"]
    list_select_related = ["customer", "assignee", "tenant"]
    readonly_fields = [
        "customer",
        "channel",
        "language",
        "handoff_reason",
        "csat_rating",
        "csat_comment",
        "created_at",
        "last_message_at",
        "queued_at",
        "assigned_at",
        "resolved_at",
        "closed_at",
    ]
    fieldsets = [
        (None, {"fields": ["customer", "channel", "language", "status", "assignee"]}),
        (
            gettext_lazy("Outcome"),
            {"fields": ["resolution_kind", "handoff_reason", "csat_rating", "csat_comment"]},
        ),
        (
            gettext_lazy("Timeline"),
            {
                "fields": [
                    "created_at",
                    "last_message_at",
                    "queued_at",
                    "assigned_at",
                    "resolved_at",
                    "closed_at",
                ]
            },
        ),
    ]
    inlines = [MessageInline]
    date_hierarchy = "created_at"

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        results, _may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return results.distinct() if search_term else results, False

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False


class TicketReplyInline(TenantScopedInline):
    """Replies on a ticket. A new one is e-mailed to the customer; sent ones are never edited."""

    model = TicketReply
    area = Area.TICKETS
    fields = ["created_at", "author", "from_customer", "content", "emailed_at"]
    readonly_fields = ["created_at", "author", "from_customer", "emailed_at"]
    extra = 1
    can_delete = False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allows(request, Action.CHANGE)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields


@admin.register(Ticket)
class TicketAdmin(TenantScopedAdmin):
    area = Area.TICKETS
    inlines = [TicketReplyInline]
    actions = ["mark_pending", "mark_solved"]
    list_display = ["__str__", "status", "priority", "assignee", "sla_due_at", "created_at"]
    list_filter = ["status", "priority", ("assignee", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["subject", "description", "contact_email"]
    list_select_related = ["assignee", "tenant"]
    readonly_fields = ["solved_at", "created_at", "updated_at"]
    autocomplete_fields = ["customer", "conversation"]
    fields = [
        "subject",
        "description",
        "customer",
        "conversation",
        "contact_email",
        "contact_phone",
        "status",
        "priority",
        "assignee",
        "sla_due_at",
        "solved_at",
        "created_at",
    ]

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not TicketReply:
            super().save_formset(request, form, formset, change)
            return
        for reply in formset.save(commit=False):
            if reply.pk is None and reply.content.strip():
                ticket_reply_send(
                    ticket=form.instance, author_id=request.user.pk, content=reply.content.strip()
                )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if "status" in form.changed_data:
            ticket_status_set(ticket=obj, status=obj.status)

    @admin.action(description=gettext_lazy("Mark as pending"), permissions=["change"])
    def mark_pending(self, request: HttpRequest, queryset: Any) -> None:
        for ticket in queryset:
            ticket_status_set(ticket=ticket, status=Ticket.Status.PENDING)

    @admin.action(description=gettext_lazy("Mark as solved"), permissions=["change"])
    def mark_solved(self, request: HttpRequest, queryset: Any) -> None:
        for ticket in queryset:
            ticket_status_set(ticket=ticket, status=Ticket.Status.SOLVED)


@admin.register(CannedResponse)
class CannedResponseAdmin(TenantScopedAdmin):
    area = Area.KNOWLEDGE
    list_display = ["title", "updated_at"]
    search_fields = ["title", "text"]
    fields = ["title", "text"]
