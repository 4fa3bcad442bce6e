"""Which pages may open a WebSocket that rides on the console's session cookie.

Browsers send the session cookie with a WebSocket handshake whatever page opens it, and the
same-origin policy does not apply to WebSockets: without a check, any page a signed-in agent
visits (another port or subdomain of the same site included, since cookies ignore ports) could
read the queue and act as the agent. The rule is Django's CSRF origin rule for the console's
forms: the page's origin is Kefu's own (scheme, host and port of this handshake, the host one of
``ALLOWED_HOSTS``) or one of ``CSRF_TRUSTED_ORIGINS``. ``Origin: null`` (sandboxed frames,
``file:`` pages, some redirects) is refused.

A handshake without an ``Origin`` header is let through: every browser sends one on every
WebSocket handshake, so its absence means a non-browser client, which can only carry the
session cookie if it already holds it and so gains nothing it could not do directly.
"""

from typing import Any
from urllib.parse import urlparse

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.http.request import split_domain_port, validate_host

CLOSE_ORIGIN_REFUSED = 4403


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin1"))
    return None


def _own_origin(scope: dict[str, Any]) -> str | None:
    """``http(s)://host[:port]`` of this handshake, when its Host is one Kefu is served on."""
    host = _header(scope, b"host") or ""
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:  # Django's own fallback in HttpRequest.get_host
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(host)
    # A leading dot would turn the pattern below into a wildcard for every subdomain.
    if not domain or domain.startswith(".") or not validate_host(domain, allowed_hosts):
        return None
    scheme = "https" if _secure(scope) else "http"
    return f"{scheme}://{host}"


def _secure(scope: dict[str, Any]) -> bool:
    """Whether the browser reached Kefu over TLS: ``HttpRequest.is_secure`` for a handshake,
    trusting ``SECURE_PROXY_SSL_HEADER`` as the console's pages do."""
    if scope.get("scheme") in ("wss", "https"):
        return True
    if not settings.SECURE_PROXY_SSL_HEADER:
        return False
    meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
    name = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin1")
    value = _header(scope, name)
    return value is not None and value.split(",", 1)[0].strip() == secure_value


def _trusted_patterns() -> list[str]:
    # Channels writes Django's "https://*.example.com" wildcard as "https://.example.com".
    return [origin.replace("://*.", "://.", 1) for origin in settings.CSRF_TRUSTED_ORIGINS]


def websocket_origin_allowed(*, scope: dict[str, Any]) -> bool:
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    own = _own_origin(scope)
    patterns = ([own] if own else []) + _trusted_patterns()
    matcher = OriginValidator(None, patterns)
    parsed = urlparse(origin.strip().lower())
    # "null" and other non-URLs have no host and match nothing.
    return matcher.validate_origin(parsed)


class _OriginRefused(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.close(code=CLOSE_ORIGIN_REFUSED)


class ConsoleOriginValidator:
    """ASGI middleware for WebSocket routes authenticated by the console's session cookie."""

    def __init__(self, application: Any) -> None:
        self.application = application
        self.refuse = _OriginRefused.as_asgi()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not websocket_origin_allowed(scope=scope):
            return await self.refuse(scope, receive, send)
        return await self.application(scope, receive, send)
