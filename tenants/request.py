"""The tenant a signed-in console user is working in, read once per request."""

from django.http import HttpRequest

from tenants.models import Membership, Tenant
from tenants.selectors import membership_get_active

ACTIVE_TENANT_SESSION_KEY = "kefu_active_tenant_id"
_CACHE_ATTR = "_kefu_active_membership"


def active_membership(request: HttpRequest) -> Membership | None:
    if not hasattr(request, _CACHE_ATTR):
        membership = membership_get_active(
            user=request.user, tenant_id=request.session.get(ACTIVE_TENANT_SESSION_KEY)
        )
        setattr(request, _CACHE_ATTR, membership)
    return getattr(request, _CACHE_ATTR)


def active_tenant(request: HttpRequest) -> Tenant | None:
    membership = active_membership(request)
    return membership.tenant if membership else None


def set_active_tenant(request: HttpRequest, tenant_id: int) -> Membership | None:
    """Switches the console to another of the user's tenants; None if not a member there."""
    membership = membership_get_active(user=request.user, tenant_id=tenant_id)
    if membership is None or membership.tenant_id != tenant_id:
        return None
    request.session[ACTIVE_TENANT_SESSION_KEY] = tenant_id
    setattr(request, _CACHE_ATTR, membership)
    return membership
