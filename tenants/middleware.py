"""Every HTTP request runs in one tenant scope (``tenants.scoping``)."""

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from helpdesk_site.asyncdb import async_twin
from tenants.request import active_membership
from tenants.scoping import all_tenants, scope_entry, tenant_scope

SUPERUSER_SCOPE_REASON = "a superuser's console pages cover every tenant"

aactive_membership = async_twin(active_membership)


class TenantScopeMiddleware:
    """Enters the request's tenant scope; after ``AuthenticationMiddleware``.

    A signed-in member works in their active tenant (``tenants.request``); a superuser's pages
    cover every tenant; any other request starts with no tenant, and an endpoint that learns its
    tenant from the request (a widget's public key, an API key) enters that tenant itself.

    Sync and async: under ASGI a request stays on the event loop through this middleware, so an
    async view (the chat API) is reached without a thread of its own; a sync view still gets
    one from Django, in this scope.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        with scope_entry():
            user = request.user
            if user.is_authenticated and user.is_superuser:
                with all_tenants(SUPERUSER_SCOPE_REASON):
                    return self.get_response(request)
            membership = active_membership(request) if user.is_authenticated else None
            if membership is None:
                return self.get_response(request)
            with tenant_scope(membership.tenant_id):
                return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponse]] = self.get_response
        with scope_entry():
            user = await request.auser()
            if user.is_authenticated and user.is_superuser:
                with all_tenants(SUPERUSER_SCOPE_REASON):
                    return await get_response(request)
            membership = await aactive_membership(request) if user.is_authenticated else None
            if membership is None:
                return await get_response(request)
            with tenant_scope(membership.tenant_id):
                return await get_response(request)
