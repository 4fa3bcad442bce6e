from datetime import time
from functools import partial
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from knowledge.services import knowledge_changed
from tenants import services
from tenants.console import (
    LinesField,
    MissingObjectIs404,
    RoleGate,
    TenantConsistentForm,
    TenantScopedAdmin,
)
from tenants.models import ApiKey, LLMProvider, Membership, Role, Tenant
from tenants.request import active_membership, active_tenant
from tenants.roles import Area


class TenantForm(forms.ModelForm):
    handoff_phrases = LinesField(
        label=gettext_lazy("Phrases that ask for a person"),
        required=False,
        help_text=gettext_lazy("One per line, for example 转人工 or human."),
    )
    allowed_origins = LinesField(
        label=gettext_lazy("Allowed widget origins"),
        required=False,
        help_text=gettext_lazy("One origin per line, for example https://shop.example.com"),
    )
    identity_secret = forms.CharField(
        label=gettext_lazy("Visitor identity secret"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=gettext_lazy("Leave empty to keep the current secret."),
    )

    class Meta:
        model = Tenant
        fields = [
            "name",
            "slug",
            "is_active",
            "default_language",
            "time_zone",
            "faq_threshold",
            "persona",
            "allowed_origins",
            "widget_color",
            "widget_position",
            "widget_greeting",
            "identity_secret",
            "handoff_phrases",
            "handoff_after_unanswered",
            "handoff_on_negative_feedback",
            "handoff_on_repeated_question",
            "handoff_on_provider_failure",
            "auto_assign",
            "business_hours",
            "ticket_sla_hours",
            "api_rate_limit",
        ]

    def clean_allowed_origins(self) -> list[str]:
        origins = []
        for origin in self.cleaned_data["allowed_origins"]:
            parts = urlsplit(origin.lower())
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or parts.path not in ("", "/")
                or parts.query
                or parts.fragment
            ):
                raise forms.ValidationError(
                    _("“%(origin)s” is not an origin such as https://shop.example.com")
                    % {"origin": origin}
                )
            origins.append(f"{parts.scheme}://{parts.netloc}")
        return list(dict.fromkeys(origins))

    def clean_business_hours(self) -> dict:
        hours = self.cleaned_data["business_hours"] or {}
        if not hours:
            return {}
        if not isinstance(hours, dict):
            raise forms.ValidationError(_("Business hours must be a JSON object."))
        try:
            ZoneInfo(hours.get("timezone", "UTC"))
            days = hours.get("days", list(range(7)))
            valid_days = isinstance(days, list) and all(d in range(7) for d in days)
            times = [
                time.fromisoformat(hours.get(k, d))
                for k, d in (("open", "00:00"), ("close", "23:59"))
            ]
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise forms.ValidationError(_("Check the time zone and the HH:MM times.")) from exc
        if not valid_days or times[0] >= times[1]:
            raise forms.ValidationError(
                _("Days are 0 (Monday) to 6; opening comes before closing.")
            )
        return hours

    def clean_identity_secret(self) -> str:
        return self.cleaned_data["identity_secret"] or self.instance.identity_secret or ""


@admin.register(Tenant)
class TenantAdmin(RoleGate, MissingObjectIs404, admin.ModelAdmin):
    area = Area.TENANT
    form = TenantForm
    list_display = ["name", "slug", "public_key", "default_language", "is_active"]
    search_fields = ["name", "slug"]
    readonly_fields = ["public_key", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "slug",
                    "is_active",
                    "public_key",
                    "default_language",
                    "time_zone",
                ]
            },
        ),
        (gettext_lazy("Answering"), {"fields": ["faq_threshold", "persona"]}),
        (
            gettext_lazy("People"),
            {
                "fields": [
                    "handoff_phrases",
                    "handoff_after_unanswered",
                    "handoff_on_negative_feedback",
                    "handoff_on_repeated_question",
                    "handoff_on_provider_failure",
                    "auto_assign",
                    "business_hours",
                    "ticket_sla_hours",
                ]
            },
        ),
        (
            gettext_lazy("Widget"),
            {
                "fields": [
                    "allowed_origins",
                    "widget_color",
                    "widget_position",
                    "widget_greeting",
                    "identity_secret",
                ]
            },
        ),
        (gettext_lazy("REST API"), {"fields": ["api_rate_limit"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        tenant = active_tenant(request)
        return queryset.filter(pk=tenant.pk) if tenant else queryset.none()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly += ["slug", "is_active"]
        return readonly

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> dict:
        return dict(self.prepopulated_fields) if request.user.is_superuser else {}

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


class MembershipAddForm(forms.ModelForm):
    """Adding a member creates their login; the console never lists other tenants' users."""

    username = forms.CharField(label=gettext_lazy("Username"), max_length=150)
    email = forms.EmailField(label=gettext_lazy("E-mail"))
    password = forms.CharField(
        label=gettext_lazy("Password"), widget=forms.PasswordInput, min_length=8
    )

    class Meta:
        model = Membership
        fields = ["role"]

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"]
        # Checked here so that a taken name is an error on the form; the service checks it
        # again inside its transaction.
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(_("This username is taken."))
        return username


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    area = Area.MEMBERS
    list_display = ["user", "email", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email"]
    list_select_related = ["user", "tenant"]

    @admin.display(description=gettext_lazy("E-mail"), ordering="user__email")
    def email(self, obj: Membership) -> str:
        return obj.user.email

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None and not request.user.is_superuser:
            kwargs["form"] = MembershipAddForm
            kwargs["fields"] = ["role"]
        form = super().get_form(request, obj, change, **kwargs)
        role_field = form.base_fields.get("role")
        if role_field is not None and not self._may_grant_owner(request):
            role_field.choices = [c for c in Role.choices if c[0] != Role.OWNER]
        return form

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None and not request.user.is_superuser:
            return [(None, {"fields": ["username", "email", "password", "role"]})]
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["user"] if obj is not None else []

    def _may_grant_owner(self, request: HttpRequest) -> bool:
        membership = active_membership(request)
        return request.user.is_superuser or (
            membership is not None and membership.role == Role.OWNER
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.role == Role.OWNER and not self._may_grant_owner(request):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.role == Role.OWNER and not self._may_grant_owner(request):
            return False
        if obj is not None and obj.user_id == request.user.pk:
            return False  # nobody locks themselves out of their own tenant
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change or request.user.is_superuser:
            super().save_model(request, obj, form, change)
            return
        tenant = active_tenant(request)
        if tenant is None:
            raise Http404(_("No active tenant."))
        created = services.membership_create_with_user(
            tenant=tenant,
            username=form.cleaned_data["username"],
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password"],
            role=form.cleaned_data["role"],
        )
        obj.pk = created.pk
        obj.user = created.user
        obj.tenant = tenant


class ApiKeyForm(TenantConsistentForm):
    scopes = forms.MultipleChoiceField(
        label=gettext_lazy("Scopes"),
        choices=ApiKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = ApiKey
        fields = ["tenant", "name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    area = Area.API_KEYS
    form = ApiKeyForm
    list_display = ["name", "prefix", "scope_list", "revoked", "last_used_at", "created_at"]
    search_fields = ["name", "prefix"]
    actions = ["revoke_keys"]

    @admin.display(description=gettext_lazy("Scopes"))
    def scope_list(self, obj: ApiKey) -> str:
        labels = dict(ApiKey.Scope.choices)
        return ", ".join(str(labels.get(scope, scope)) for scope in obj.scopes)

    @admin.display(description=gettext_lazy("Revoked"), boolean=True)
    def revoked(self, obj: ApiKey) -> bool:
        return obj.is_revoked

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None:
            return ["tenant", "name", "scopes", "prefix", "revoked_at", "last_used_at"]
        return []

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Keys are issued and revoked, never edited; the change page is read-only.
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        tenant = form.cleaned_data.get("tenant") or active_tenant(request)
        if tenant is None:
            raise Http404(_("No active tenant."))
        issued = services.api_key_issue(
            tenant=tenant,
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            created_by=request.user,  # type: ignore[arg-type]
        )
        obj.pk = issued.api_key.pk
        obj.prefix = issued.api_key.prefix
        messages.warning(
            request,
            format_html(
                "{} <code>{}</code>",
                _("Copy this key now; it is shown only once:"),
                issued.raw_key,
            ),
        )

    @admin.action(description=gettext_lazy("Revoke selected keys"), permissions=["delete"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            services.api_key_revoke(api_key=api_key)
        messages.success(request, _("%(count)d keys revoked.") % {"count": len(queryset)})


class LLMProviderForm(TenantConsistentForm):
    api_key = forms.CharField(
        label=gettext_lazy("API key"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=gettext_lazy("Stored encrypted. Leave empty to keep the current key."),
    )

    class Meta:
        model = LLMProvider
        fields = [
            "name",
            "base_url",
            "model",
            "embedding_model",
            "api_key",
            "priority",
            "enabled",
            "connect_timeout",
            "first_token_timeout",
            "total_timeout",
            "price_input_per_1k",
            "price_output_per_1k",
        ]
        field_classes = {"base_url": partial(forms.URLField, assume_scheme="https")}

    def clean_api_key(self) -> str:
        return self.cleaned_data["api_key"] or self.instance.api_key or ""


@admin.register(LLMProvider)
class LLMProviderAdmin(TenantScopedAdmin):
    area = Area.PROVIDERS
    form = LLMProviderForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["name", "model", "base_url", "priority", "enabled", "key_set"]
    list_editable = ["priority", "enabled"]
    list_filter = ["enabled"]
    search_fields = ["name", "model", "base_url"]

    @admin.display(description=gettext_lazy("API key set"), boolean=True)
    def key_set(self, obj: LLMProvider) -> bool:
        return bool(obj.api_key)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        # The embedding model may have changed: vectors and search indexes follow.
        knowledge_changed(tenant_id=obj.tenant_id)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        tenant_id = obj.tenant_id
        super().delete_model(request, obj)
        knowledge_changed(tenant_id=tenant_id)
