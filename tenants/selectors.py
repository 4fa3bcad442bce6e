"""Reads of tenants, memberships and keys. Everything here is scoped by tenant or user."""

import re
from urllib.parse import urlsplit

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from helpdesk_site.asyncdb import async_twin
from tenants.models import LLMProvider, Membership, Tenant
from tenants.scoping import all_tenants

# What ``new_public_key`` makes. Any other text names no tenant and is not looked up: a key from
# a URL can hold a NUL, which PostgreSQL refuses even to compare.
_PUBLIC_KEY_FORMAT = re.compile(r"[A-Za-z0-9_-]{1,64}")


def membership_list_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    with all_tenants("a user's memberships decide which tenant scope the user may enter"):
        return (
            Membership.objects.filter(user_id=user.pk, tenant__is_active=True)
            .select_related("tenant")
            .order_by("tenant__name", "id")
        )


def membership_get_active(
    *, user: AbstractBaseUser | AnonymousUser, tenant_id: int | None
) -> Membership | None:
    """The membership the user works in now: the chosen tenant if still allowed, else the first."""
    memberships = membership_list_for_user(user=user)
    if tenant_id is not None:
        chosen = memberships.filter(tenant_id=tenant_id).first()
        if chosen is not None:
            return chosen
    return memberships.first()


def tenant_get_by_public_key(*, public_key: str) -> Tenant | None:
    if not _PUBLIC_KEY_FORMAT.fullmatch(public_key):
        return None
    return Tenant.objects.filter(public_key=public_key, is_active=True).first()


def tenant_member_user_ids(*, tenant: Tenant) -> QuerySet[Membership, int]:
    return Membership.objects.filter(tenant=tenant).values_list("user_id", flat=True)


def llm_provider_chain(*, tenant_id: int) -> QuerySet[LLMProvider]:
    """The tenant's enabled providers in fallback order."""
    return LLMProvider.objects.filter(tenant_id=tenant_id, enabled=True).order_by("priority", "id")


def tenant_website(*, tenant: Tenant) -> str | None:
    """The tenant's own website for the console's "View site": its first allowed widget origin
    that is an http(s) address, or None."""
    for origin in tenant.allowed_origins:
        parts = urlsplit(str(origin))
        if parts.scheme in ("http", "https") and parts.hostname:
            return f"{parts.scheme}://{parts.netloc}/"
    return None


# Async twins, for consumers (helpdesk_site/asyncdb.py) ----------------------------------------

atenant_get_by_public_key = async_twin(tenant_get_by_public_key, parallel=True)
