"""Every HTTP request runs in one tenant scope (``tenants.scoping``)."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from tenants.request import active_membership
from tenants.scoping import all_tenants, scope_entry, tenant_scope


class TenantScopeMiddleware:
    """Enters the request's tenant scope; after ``AuthenticationMiddleware``.

    A signed-in member works in their active tenant (``tenants.request``); a superuser's pages
    cover every tenant; any other request starts with no tenant, and an endpoint that learns its
    tenant from the request (a widget's public key, an API key) enters that tenant itself.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with scope_entry():
            user = request.user
            if user.is_authenticated and user.is_superuser:
                with all_tenants("a superuser's console pages cover every tenant"):
                    return self.get_response(request)
            membership = active_membership(request) if user.is_authenticated else None
            if membership is None:
                return self.get_response(request)
            with tenant_scope(membership.tenant_id):
                return self.get_response(request)
