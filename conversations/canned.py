"""Canned responses: ready-made replies agents insert with one click (console, agent socket,
REST API)."""

from collections.abc import Mapping
from typing import Any

from conversations.models import CannedResponse
from tenants.models import Tenant

_EDITABLE_FIELDS = ("title", "text")


def canned_response_create(*, tenant: Tenant, title: str, text: str) -> CannedResponse:
    canned = CannedResponse(tenant=tenant, title=title, text=text)
    canned.full_clean(exclude=["tenant"])
    canned.save()
    return canned


def canned_response_update(
    *, canned_response: CannedResponse, changes: Mapping[str, Any]
) -> CannedResponse:
    """Applies ``changes`` (title, text) and saves the response."""
    unknown = set(changes) - set(_EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    for name, value in changes.items():
        setattr(canned_response, name, value)
    canned_response.full_clean(exclude=["tenant"])
    canned_response.save(update_fields=[*changes, "updated_at"])
    return canned_response


def canned_response_delete(*, canned_response: CannedResponse) -> None:
    canned_response.delete()
