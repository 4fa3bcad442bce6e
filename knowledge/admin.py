from pathlib import PurePosixPath
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from knowledge import ingest, services
from knowledge.entry_sources import entry_sources
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

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial: dict[str, Any] = dict(super().get_changeform_initial_data(request))
        tenant = active_tenant(request)
        for source in entry_sources():
            value = request.GET.get(source.parameter)
            if value and tenant is not None:
                initial.update(source.initial(tenant, value) or {})
        return initial

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change and not request.user.is_superuser:
            tenant = active_tenant(request)
            if tenant is None:
                raise Http404(_("No active tenant."))
            obj.tenant = tenant
        services.knowledge_entry_save(entry=obj)
        if not change:
            # The page that opened the form pre-filled (a knowledge gap) hears of the entry.
            for source in entry_sources():
                value = request.GET.get(source.parameter)
                if value:
                    source.saved(obj.tenant, value, obj)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.knowledge_entries_delete(
            tenant=obj.tenant, entries=KnowledgeEntry.objects.filter(pk=obj.pk)
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for tenant in Tenant.objects.filter(pk__in=queryset.values("tenant_id")):
            services.knowledge_entries_delete(tenant=tenant, entries=queryset.filter(tenant=tenant))

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


CHUNKS_SHOWN = 200


class FirstChunksFormSet(forms.BaseInlineFormSet):
    """Only a document's first chunks: a long one has thousands, too many for one page."""

    def get_queryset(self) -> QuerySet:
        # Kept: the formset asks for its queryset once per form.
        if not hasattr(self, "_first_chunks"):
            self._first_chunks = super().get_queryset()[:CHUNKS_SHOWN]
            for chunk in self._first_chunks:  # each row shows str(chunk), which names the document
                chunk.document = self.instance
        return self._first_chunks


class ChunkInline(TenantScopedInline):
    model = Chunk
    area = Area.KNOWLEDGE
    formset = FirstChunksFormSet
    fields = ["ordinal", "heading", "content"]
    readonly_fields = ["ordinal", "heading", "content"]
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DocumentForm(TenantConsistentForm):
    """A file to upload or text to paste; the format is read from the file name unless chosen."""

    title = forms.CharField(
        label=gettext_lazy("Title"),
        max_length=200,
        required=False,
        help_text=gettext_lazy("Leave empty to use the file name."),
    )
    format = forms.ChoiceField(
        label=gettext_lazy("Format"),
        required=False,
        choices=[("", gettext_lazy("Detect from the file name")), *Document.Format.choices],
        help_text=gettext_lazy(
            ".md, .markdown, .txt, .html, .htm or .pdf; pasted text is Markdown."
        ),
    )

    class Meta:
        model = Document
        fields = ["title", "format", "source_file", "content", "enabled"]
        help_texts = {
            "source_file": gettext_lazy("Markdown, plain text, HTML or PDF, at most 20 MB."),
            "content": gettext_lazy("Or paste the text here instead of uploading a file."),
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        value = cleaned.get("source_file")
        upload = value if isinstance(value, UploadedFile) else None
        # ``False`` means the "clear" box was ticked; otherwise the stored file stays.
        keeps_file = upload is None and value is not False and bool(self.instance.source_file)
        file_name = upload.name if upload else self.instance.source_file.name if keeps_file else ""
        file_name = file_name or ""
        if not cleaned.get("format"):
            guessed = (
                ingest.format_for_filename(file_name) if file_name else Document.Format.MARKDOWN
            )
            if guessed is None:
                self.add_error(
                    "format", _("The format cannot be told from the file name; choose it.")
                )
                return cleaned
            cleaned["format"] = guessed
        if not cleaned.get("title") and file_name:
            cleaned["title"] = PurePosixPath(file_name).stem[:200]
        try:
            services.document_source_validate(
                format=cleaned["format"],
                content=cleaned.get("content") or "",
                uploaded_file=upload,
                has_stored_file=keeps_file,
            )
        except ValidationError as error:
            self.add_error(None, error)  # keyed by field, so each lands next to its field
        return cleaned


@admin.register(Document)
class DocumentAdmin(TenantScopedAdmin):
    """Documents are written through the services: saving queues processing, and the chunks
    appear (read-only) when it is done."""

    area = Area.KNOWLEDGE
    form = DocumentForm
    list_display = [
        "title",
        "format",
        "status_label",
        "progress_bar",
        "chunk_count",
        "enabled",
        "updated_at",
    ]
    list_filter = ["status", "format", "enabled"]
    search_fields = ["title"]
    fields = [
        "title",
        "format",
        "source_file",
        "content",
        "enabled",
        "status",
        "progress_bar",
        "error",
    ]
    readonly_fields = ["status", "progress_bar", "error"]
    inlines = [ChunkInline]
    actions = ["reprocess_documents"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(chunk_total=Count("chunks"))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = super().get_fields(request, obj)
        if obj is None:  # nothing to report on before the first save
            return [name for name in fields if name not in self.readonly_fields]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = list(super().get_readonly_fields(request, obj))
        # Moving a document to another tenant would strand its chunks in the old one.
        if obj is not None and request.user.is_superuser:
            readonly.append(self.tenant_field)
        return readonly

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else []

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra = {**(extra_context or {}), "kefu_chunks_shown": CHUNKS_SHOWN}
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description=gettext_lazy("Status"), ordering="status")
    def status_label(self, obj: Document) -> str:
        if obj.status == Document.Status.FAILED and obj.error:
            return format_html('<span title="{}">{} ⚠</span>', obj.error, obj.get_status_display())
        return obj.get_status_display()

    @admin.display(description=gettext_lazy("Progress"), ordering="progress")
    def progress_bar(self, obj: Document) -> str:
        return format_html(
            '<progress max="100" value="{}">{}%</progress> {}%',
            obj.progress,
            obj.progress,
            obj.progress,
        )

    @admin.display(description=gettext_lazy("Chunks"), ordering="chunk_total")
    def chunk_count(self, obj: Document) -> int:
        return getattr(obj, "chunk_total", 0)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        data = form.cleaned_data
        upload = data["source_file"] if isinstance(data.get("source_file"), UploadedFile) else None
        if change:
            # The form has copied its values onto ``obj``; the service compares with the stored
            # row to tell whether the source changed.
            obj.refresh_from_db()
            services.document_update(
                document=obj,
                title=data["title"],
                format=data["format"],
                content=data["content"],
                enabled=data["enabled"],
                uploaded_file=upload,
                clear_file=data.get("source_file") is False,
            )
            return
        tenant = (
            data.get(self.tenant_field) if request.user.is_superuser else active_tenant(request)
        )
        if tenant is None:
            raise Http404(_("No active tenant."))
        document = services.document_create(
            tenant=tenant,
            title=data["title"],
            format=data["format"],
            content=data["content"],
            uploaded_file=upload,
        )
        # The admin goes on to log the addition and redirect with ``obj``.
        vars(obj).update(vars(document))

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is Chunk:
            # Chunks are only ever written by processing; their inline is for reading. Saving
            # without committing writes nothing but fills in what the change message reads.
            formset.save(commit=False)
            return
        super().save_formset(request, form, formset, change)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.document_delete(document=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for document in queryset:
            services.document_delete(document=document)

    @admin.action(description=gettext_lazy("Re-process selected documents"), permissions=["change"])
    def reprocess_documents(self, request: HttpRequest, queryset: QuerySet) -> None:
        documents = list(queryset)
        for document in documents:
            services.document_reprocess(document=document)
        messages.success(
            request, _("Documents queued for processing: %(count)d.") % {"count": len(documents)}
        )


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
