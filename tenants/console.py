"""Base classes that make a Django admin page a tenant-scoped page of the console.

Every queryset, foreign-key choice, filter, save and object URL is limited to the user's active
tenant; another tenant's object id answers 404. Superusers see and edit everything. What a
member may do follows their role (``tenants.roles``), not Django's model permissions.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.utils.translation import gettext as _

from tenants.models import Tenant
from tenants.request import active_membership, active_tenant
from tenants.roles import Action, Area, role_allows
from tenants.selectors import tenant_member_user_ids


def _is_tenant_owned(model: type[models.Model]) -> bool:
    try:
        field = model._meta.get_field("tenant")
    except Exception:
        return False
    return getattr(field, "related_model", None) is Tenant


class TenantConsistentForm(forms.ModelForm):
    """Rejects related objects that belong to another tenant than the edited row."""

    kefu_tenant: Tenant | None = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        tenant = cleaned.get("tenant") or self.kefu_tenant or getattr(self.instance, "tenant", None)
        if tenant is None:
            return cleaned
        user_ids = None
        for name, value in cleaned.items():
            if not isinstance(value, models.Model) or name == "tenant":
                continue
            if _is_tenant_owned(type(value)) and value.tenant_id != tenant.pk:  # type: ignore[attr-defined]
                self.add_error(name, _("This belongs to another tenant."))
            elif isinstance(value, get_user_model()) and not value.is_superuser:
                if user_ids is None:
                    user_ids = set(tenant_member_user_ids(tenant=tenant))
                if value.pk not in user_ids:
                    self.add_error(name, _("This person is not a member of the tenant."))
        return cleaned


def _tenant_of(obj: Any) -> Tenant | None:
    try:
        return getattr(obj, "tenant", None)
    except Exception:
        return None


class RoleGate:
    """Permission checks by role for one console area."""

    area: Area

    def _allows(self, request: HttpRequest, action: Action) -> bool:
        if request.user.is_superuser:
            return True
        membership = active_membership(request)
        return membership is not None and role_allows(membership.role, self.area, action)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._allows(request, Action.VIEW)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allows(request, Action.VIEW) or self._allows(request, Action.CHANGE)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._allows(request, Action.ADD)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allows(request, Action.CHANGE)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allows(request, Action.DELETE)


class MissingObjectIs404:
    """The stock admin redirects to the index for a missing object; an id outside the user's
    scope must look exactly like an id that does not exist: 404."""

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Any:
        obj = super().get_object(request, object_id, from_field)  # type: ignore[misc]
        if obj is None:
            raise Http404(_("No such object."))
        return obj


class ScopedFormfieldsMixin:
    """Limits foreign-key and many-to-many choices to the active tenant and its members."""

    def _scope_choices(self, db_field: models.Field, request: HttpRequest, kwargs: dict) -> None:
        if request.user.is_superuser:
            return
        tenant = active_tenant(request)
        related = db_field.related_model
        if related is None:
            return
        base = kwargs.get("queryset")
        if base is None:
            base = related._default_manager.all()
        if tenant is None:
            kwargs["queryset"] = base.none()
        elif related is Tenant:
            kwargs["queryset"] = base.filter(pk=tenant.pk)
        elif _is_tenant_owned(related):
            kwargs["queryset"] = base.filter(tenant=tenant)
        elif related is get_user_model():
            kwargs["queryset"] = base.filter(pk__in=tenant_member_user_ids(tenant=tenant))

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey, request: HttpRequest, **kwargs: Any
    ) -> Any:
        self._scope_choices(db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def formfield_for_manytomany(
        self, db_field: models.ManyToManyField, request: HttpRequest, **kwargs: Any
    ) -> Any:
        self._scope_choices(db_field, request, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]


class TenantScopedAdmin(RoleGate, MissingObjectIs404, ScopedFormfieldsMixin, admin.ModelAdmin):
    """A console page over a tenant-owned model."""

    form: type[forms.ModelForm] = TenantConsistentForm
    tenant_field = "tenant"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        tenant = active_tenant(request)
        if tenant is None:
            return queryset.none()
        return queryset.filter(**{self.tenant_field: tenant})

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = list(super().get_list_display(request))
        if request.user.is_superuser and self.tenant_field not in columns:
            columns.append(self.tenant_field)
        return columns

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = list(super().get_list_filter(request))
        if request.user.is_superuser and self.tenant_field not in filters:
            filters.append(self.tenant_field)
        return filters

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        exclude = list(super().get_exclude(request, obj) or [])
        if not request.user.is_superuser:
            exclude.append(self.tenant_field)
        return exclude

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        names = {name for _title, opts in fieldsets for name in opts.get("fields", ())}
        if request.user.is_superuser and self.tenant_field not in names:
            fieldsets.insert(0, (None, {"fields": [self.tenant_field]}))
        if not request.user.is_superuser:
            fieldsets = [
                (title, {**opts, "fields": [f for f in opts["fields"] if f != self.tenant_field]})
                for title, opts in fieldsets
            ]
        return fieldsets

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        tenant = _tenant_of(obj) if obj is not None else active_tenant(request)
        return type(form.__name__, (form,), {"kefu_tenant": tenant})

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change and not request.user.is_superuser:
            tenant = active_tenant(request)
            if tenant is None:
                raise Http404(_("No active tenant."))
            setattr(obj, self.tenant_field, tenant)
        super().save_model(request, obj, form, change)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        instances = formset.save(commit=False)
        for instance in instances:
            if _is_tenant_owned(type(instance)) and getattr(instance, "tenant_id", None) is None:
                instance.tenant = form.instance.tenant
            instance.save()
        for deleted in formset.deleted_objects:
            deleted.delete()
        formset.save_m2m()


class TenantScopedInline(ScopedFormfieldsMixin, admin.TabularInline):
    """An inline under a scoped page; permissions follow the parent page's area."""

    area: Area
    form = TenantConsistentForm

    def _allows(self, request: HttpRequest, action: Action) -> bool:
        return RoleGate._allows(self, request, action)  # type: ignore[arg-type]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allows(request, Action.VIEW)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allows(request, Action.ADD)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allows(request, Action.CHANGE)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allows(request, Action.DELETE)


class LinesField(forms.CharField):
    """A list of strings edited as one item per line (stored in a JSON list field)."""

    widget: type[forms.Widget] | forms.Widget = forms.Textarea(attrs={"rows": 4})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list | tuple):
            items = [str(item) for item in value]
        else:
            items = (super().to_python(value) or "").splitlines()
        return list(dict.fromkeys(item.strip() for item in items if item.strip()))


class CommaListField(LinesField):
    """A list of short strings edited as a comma-separated line (tags)."""

    widget = forms.TextInput()

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list | tuple):
            return super().to_python(value)
        text = forms.CharField.to_python(self, value) or ""
        return list(
            dict.fromkeys(p.strip() for p in text.replace("，", ",").split(",") if p.strip())
        )
