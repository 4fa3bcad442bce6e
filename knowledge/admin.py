from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from knowledge import services
from knowledge.models import Chunk, Document, KnowledgeEntry, SensitiveWordList
from knowledge.selectors import knowledge_entries_csv
from tenants.console import (
    CommaListField,
    LinesField,
    MissingObjectIs404,
    RoleGate,
    TenantConsistentForm,
    TenantScopedAdmin,
    TenantScopedInline,
)
from tenants.models import Tenant
from tenants.request import active_tenant
from tenants.roles import Action, Area


class KnowledgeEntryForm(TenantConsistentForm):
    alternate_questions = LinesField(
        label=gettext_lazy("Alternate phrasings"),
        required=False,
        help_text=gettext_lazy("Other ways customers ask the same thing, one per line."),
    )
    tags = CommaListField(
        label=gettext_lazy("Tags"), required=False, help_text=gettext_lazy("Comma-separated.")
    )

    class Meta:
        model = KnowledgeEntry
        fields = ["question", "alternate_questions", "answer", "tags", "enabled"]


class TagFilter(admin.SimpleListFilter):
    title = gettext_lazy("tag")
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        tags: set[str] = set()
        for entry_tags in model_admin.get_queryset(request).values_list("tags", flat=True)[:5000]:
            tags.update(entry_tags or [])
        return [(tag, tag) for tag in sorted(tags)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        # JSON containment is not portable to SQLite; match the tag's JSON text instead.
        return queryset.filter(tags__icontains=f'"{value}"')


class CsvImportForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("CSV file"),
        help_text=gettext_lazy(
            "Columns: id, question, alternate_questions, answer, tags, enabled. "
            "Leave id empty for new entries. UTF-8 or GB18030."
        ),
    )


@admin.register(KnowledgeEntry)
class KnowledgeEntryAdmin(TenantScopedAdmin):
    area = Area.KNOWLEDGE
    form = KnowledgeEntryForm
    list_display = ["question", "tag_list", "enabled", "hit_count", "updated_at"]
    list_filter = ["enabled", TagFilter]
    search_fields = ["question", "answer", "alternate_questions"]
    readonly_fields = ["hit_count", "last_hit_at", "created_at", "updated_at"]
    fields = [
        "question",
        "alternate_questions",
        "answer",
        "tags",
        "enabled",
        "hit_count",
        "last_hit_at",
    ]
    actions = ["enable_entries", "disable_entries", "export_csv"]
    change_list_template = "admin/knowledge/knowledgeentry/change_list.html"
    list_per_page = 50

    @admin.display(description=gettext_lazy("Tags"))
    def tag_list(self, obj: KnowledgeEntry) -> str:
        return ", ".join(obj.tags)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "import-csv/",
                self.admin_site.admin_view(self.import_csv_view),
                name="knowledge_knowledgeentry_import_csv",
            ),
            path(
                "export-csv/",
                self.admin_site.admin_view(self.export_all_csv_view),
                name="knowledge_knowledgeentry_export_csv",
            ),
            *super().get_urls(),
        ]

    def _bulk_enable(self, request: HttpRequest, queryset: QuerySet, enabled: bool) -> None:
        changed = 0
        # The queryset is already scoped: one tenant, or several only for a superuser.
        for tenant in Tenant.objects.filter(pk__in=queryset.values("tenant_id")):
            changed += services.knowledge_entries_set_enabled(
                tenant=tenant, entries=queryset.filter(tenant=tenant), enabled=enabled
            )
        messages.success(request, _("%(count)d entries changed.") % {"count": changed})

    @admin.action(description=gettext_lazy("Enable selected entries"), permissions=["change"])
    def enable_entries(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk_enable(request, queryset, True)

    @admin.action(description=gettext_lazy("Disable selected entries"), permissions=["change"])
    def disable_entries(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk_enable(request, queryset, False)

    @admin.action(description=gettext_lazy("Export selected entries as CSV"), permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        return self._csv_response(queryset.order_by("id"))

    def export_all_csv_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return self._csv_response(self.get_queryset(request).order_by("id"))

    def _csv_response(self, queryset: QuerySet) -> HttpResponse:
        stamp = timezone.now().strftime("%Y%m%d-%H%M")
        response = HttpResponse(
            knowledge_entries_csv(entries=queryset.iterator(chunk_size=1000)),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="faq-{stamp}.csv"'
        return response

    def import_csv_view(self, request: HttpRequest) -> HttpResponse:
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        tenant = active_tenant(request)
        if tenant is None:
            # Superusers without a membership import into a tenant's console, not globally.
            raise Http404(_("Open a tenant's console to import entries."))
        form = CsvImportForm(request.POST or None, request.FILES or None)
        errors: list[str] = []
        if request.method == "POST" and form.is_valid():
            result = services.knowledge_entries_import_csv(
                tenant=tenant, data=form.cleaned_data["file"].read()
            )
            if not result.errors:
                messages.success(
                    request,
                    _("Imported: %(created)d new, %(updated)d updated.")
                    % {"created": result.created, "updated": result.updated},
                )
                return HttpResponseRedirect(reverse("admin:knowledge_knowledgeentry_changelist"))
            errors = result.errors
        context = {
            **self.admin_site.each_context(request),
            "title": _("Import FAQ entries"),
            "opts": self.model._meta,
            "form": form,
            "import_errors": errors[:100],
            "more_errors": max(0, len(errors) - 100),
        }
        return TemplateResponse(request, "admin/knowledge/knowledgeentry/import_csv.html", context)


class ChunkInline(TenantScopedInline):
    model = Chunk
    area = Area.KNOWLEDGE
    fields = ["ordinal", "heading", "content"]
    readonly_fields = ["ordinal", "heading", "content"]
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Document)
class DocumentAdmin(TenantScopedAdmin):
    area = Area.KNOWLEDGE
    list_display = ["title", "format", "status", "progress", "enabled", "updated_at"]
    list_filter = ["status", "format", "enabled"]
    search_fields = ["title"]
    readonly_fields = ["status", "progress", "error", "created_at", "updated_at"]
    inlines = [ChunkInline]


class SensitiveWordListAdmin(RoleGate, MissingObjectIs404, admin.ModelAdmin):
    """Tenants manage their own lists and see the global ones, which only superusers edit."""

    area = Area.MODERATION
    list_display = ["name", "action", "scope", "word_count", "enabled", "updated_at"]
    list_filter = ["action", "enabled"]
    search_fields = ["name", "words"]

    @admin.display(description=gettext_lazy("Applies to"))
    def scope(self, obj: SensitiveWordList) -> str:
        return str(obj.tenant) if obj.tenant_id else _("All tenants")

    @admin.display(description=gettext_lazy("Words"))
    def word_count(self, obj: SensitiveWordList) -> int:
        return len(obj.word_set())

    def get_queryset(self, request: HttpRequest) -> QuerySet[SensitiveWordList]:
        queryset = super().get_queryset(request).select_related("tenant")
        if request.user.is_superuser:
            return queryset
        tenant = active_tenant(request)
        if tenant is None:
            return queryset.none()
        return queryset.filter(Q(tenant=tenant) | Q(tenant__isnull=True))

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if request.user.is_superuser else ["tenant"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.tenant_id is None and not request.user.is_superuser:
            return False
        return self._allows(request, Action.CHANGE)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.tenant_id is None and not request.user.is_superuser:
            return False
        return self._allows(request, Action.DELETE)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change and not request.user.is_superuser:
            tenant = active_tenant(request)
            if tenant is None:
                raise Http404(_("No active tenant."))
            obj.tenant = tenant
        super().save_model(request, obj, form, change)


admin.site.register(SensitiveWordList, SensitiveWordListAdmin)
