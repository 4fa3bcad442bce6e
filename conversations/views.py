"""Public HTTP endpoints of the customer widget."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from conversations.consumers import origin_allowed
from tenants.scoping import enter_tenant_scope
from tenants.selectors import tenant_get_by_public_key


@require_GET
def widget_config(request: HttpRequest, public_key: str) -> HttpResponse:
    """What the widget needs before it connects: appearance, greeting, language, socket path.

    Readable cross-origin by the tenant's allowed origins only (the same rule as the socket).
    """
    tenant = tenant_get_by_public_key(public_key=public_key)
    origin = request.headers.get("Origin", "")
    if tenant is None:
        return JsonResponse({"error": "unknown_key"}, status=404)
    enter_tenant_scope(tenant.pk)  # the public key names the tenant (the middleware ends it)
    if origin and not origin_allowed(
        origin=origin, host=request.get_host(), allowed_origins=tenant.allowed_origins
    ):
        return JsonResponse({"error": "origin_not_allowed"}, status=403)
    response = JsonResponse(
        {
            "name": tenant.name,
            "color": tenant.widget_color,
            "position": tenant.widget_position,
            "greeting": tenant.widget_greeting,
            "language": tenant.default_language,
            "identity": bool(tenant.identity_secret),
            "socket_path": f"/ws/widget/{tenant.public_key}/",
        }
    )
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Vary"] = "Origin"
    response["Cache-Control"] = "public, max-age=60"
    return response
