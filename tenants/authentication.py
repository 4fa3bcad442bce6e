"""REST API authentication with tenant API keys: ``Authorization: Bearer kefu_…``."""

from typing import Any, Final

from django.contrib.auth.models import AnonymousUser
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from tenants.models import ApiKey
from tenants.scoping import enter_tenant_scope
from tenants.services import api_key_authenticate


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin1")
        if not header:
            return None
        keyword, _sep, raw_key = header.partition(" ")
        if keyword != self.keyword or not raw_key.strip():
            return None
        api_key = api_key_authenticate(raw_key=raw_key.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked API key."))
        # The rest of the request works for the key's tenant (the middleware's scope ends it).
        enter_tenant_scope(api_key.tenant_id)
        # The key acts for its tenant, not for a person: request.user stays anonymous.
        return ApiKeyUser(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ApiKeyUser(AnonymousUser):
    """The principal of a request made with an API key."""

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.tenant = api_key.tenant

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True


# ``required_scope`` of a view that any live key may call: it shows nothing but the key itself.
ANY_KEY: Final = "any-key"


def required_scope(view: Any, method: str) -> str | None:
    """The scope ``view`` declares for ``method``: its ``required_scope``, one scope for every
    method or a dict by HTTP method (``{"GET": Scope.KNOWLEDGE_READ, "POST": …}``; a method
    missing from it has none). HEAD and OPTIONS need what GET needs."""
    declared = getattr(view, "required_scope", None)
    if isinstance(declared, dict):
        return declared.get("GET" if method in ("HEAD", "OPTIONS") else method)
    return declared


class HasScope(permissions.BasePermission):
    """DRF permission (the default of every API view): the API key carries the view's
    ``required_scope`` for the request's method, an ``ApiKey.Scope`` or ``ANY_KEY``; the
    ``admin`` scope carries every scope. A view that declares no scope is refused to every key,
    so a forgotten declaration fails closed. A key without the scope is answered 403
    ``missing_scope``, naming it."""

    code = "missing_scope"
    message: str = gettext_noop("This API key does not have the scope this endpoint needs.")

    def has_permission(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        method = request.method or ""
        if not isinstance(api_key, ApiKey):
            return False
        if isinstance(getattr(view, "required_scope", None), dict) and not _handles(view, method):
            # A method the view does not implement is answered 405, as on every other view;
            # the view does nothing for it, so letting it through grants nothing.
            return True
        scope = required_scope(view, method)
        if scope is None:
            self.message = gettext(self.message)
            return False
        if scope == ANY_KEY or scope in api_key.scopes or ApiKey.Scope.ADMIN in api_key.scopes:
            return True
        self.message = gettext("This API key does not have the “%(scope)s” scope.") % {
            "scope": scope
        }
        return False

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return self.has_permission(request, view)


def _handles(view: Any, method: str) -> bool:
    name = method.lower()
    return name in getattr(view, "http_method_names", ()) and hasattr(view, name)
