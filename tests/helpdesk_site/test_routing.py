"""WebSocket routing: the widget's socket without session and auth, the agent's with them."""

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from conversations.consumers import WidgetConsumer
from helpdesk_site.asgi import application
from tenants.models import Role
from tests.support.factories import MembershipFactory, TenantFactory, UserFactory
from tests.support.sockets import SOCKET_WAIT

pytestmark = pytest.mark.django_db(transaction=True)

SHOP = "https://shop.example.com"


@sync_to_async
def _signed_in_agent_cookie(tenant: Any) -> bytes:
    user = UserFactory()
    MembershipFactory(user=user, tenant=tenant, role=Role.AGENT)
    client = Client()
    client.force_login(user)
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    return f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()


async def test_widget_socket_runs_without_cookie_session_or_auth_middleware(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a visitor who is also signed in to the console (so the browser sends its cookie)
    tenant = await sync_to_async(TenantFactory)(allowed_origins=[SHOP])
    cookie = await _signed_in_agent_cookie(tenant)
    seen: dict[str, Any] = {}
    connect = WidgetConsumer.connect

    async def connect_spy(consumer: WidgetConsumer) -> None:
        seen.update(consumer.scope)
        await connect(consumer)

    monkeypatch.setattr(WidgetConsumer, "connect", connect_spy)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/widget/{tenant.public_key}/",
        headers=[(b"origin", SHOP.encode()), (b"host", b"kefu.example.com"), (b"cookie", cookie)],
    )
    try:
        # When the widget connects
        connected, _ = await communicator.connect(timeout=SOCKET_WAIT)
        # Then it is served, and nothing resolved a session or a user for it
        assert connected
        assert seen["url_route"]["kwargs"] == {"public_key": tenant.public_key}
        assert {"cookies", "session", "user"}.isdisjoint(seen)
    finally:
        await communicator.disconnect()


async def test_widget_socket_still_checks_the_origin() -> None:
    tenant = await sync_to_async(TenantFactory)(allowed_origins=[SHOP])
    communicator = WebsocketCommunicator(
        application,
        f"/ws/widget/{tenant.public_key}/",
        headers=[(b"origin", b"https://evil.example.com"), (b"host", b"kefu.example.com")],
    )
    try:
        assert await communicator.connect(timeout=SOCKET_WAIT) == (False, 4403)
    finally:
        await communicator.disconnect()


async def test_agent_socket_refuses_a_visitor_without_a_session() -> None:
    communicator = WebsocketCommunicator(application, "/ws/agent/")
    try:
        assert await communicator.connect(timeout=SOCKET_WAIT) == (False, 4401)
    finally:
        await communicator.disconnect()


async def test_agent_socket_serves_the_signed_in_agent_from_the_session_cookie() -> None:
    tenant = await sync_to_async(TenantFactory)()
    cookie = await _signed_in_agent_cookie(tenant)
    communicator = WebsocketCommunicator(application, "/ws/agent/", headers=[(b"cookie", cookie)])
    try:
        connected, code = await communicator.connect(timeout=SOCKET_WAIT)
        assert connected, code
        assert (await communicator.receive_json_from(timeout=SOCKET_WAIT))["type"] == "lists"
    finally:
        await communicator.disconnect()


async def _agent_handshake(
    cookie: bytes, *, origin: bytes | None, host: bytes, extra: tuple = ()
) -> tuple[bool, Any]:
    headers = [(b"host", host), (b"cookie", cookie), *extra]
    if origin is not None:
        headers.append((b"origin", origin))
    communicator = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
    try:
        connected, code = await communicator.connect(timeout=SOCKET_WAIT)
        if connected:
            assert (await communicator.receive_json_from(timeout=SOCKET_WAIT))["type"] == "lists"
        return connected, code
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        (b"http://127.0.0.1:9999", b"127.0.0.1:8000"),  # another port of the same site
        (b"http://evil.localhost:8000", b"localhost:8000"),  # a sibling subdomain
        (b"https://127.0.0.1:8000", b"127.0.0.1:8000"),  # another scheme
        (b"null", b"127.0.0.1:8000"),  # sandboxed frame, file: page
        (b"", b"127.0.0.1:8000"),
        (b"https://evil.example.com", b"127.0.0.1:8000"),
        (b"http://rebound.example:8000", b"rebound.example:8000"),  # Host not in ALLOWED_HOSTS
    ],
)
async def test_agent_socket_refuses_pages_of_other_origins(origin: bytes, host: bytes) -> None:
    # Given a signed-in agent whose browser sends the session cookie with any handshake
    cookie = await _signed_in_agent_cookie(await sync_to_async(TenantFactory)())
    # When a page of another origin opens the agent socket, then it is refused
    assert await _agent_handshake(cookie, origin=origin, host=host) == (False, 4403)


@pytest.mark.parametrize(
    ("origin", "host", "trusted"),
    [
        (b"http://127.0.0.1:8000", b"127.0.0.1:8000", []),  # the console's own page
        (b"http://localhost", b"localhost", []),
        (None, b"127.0.0.1:8000", []),  # not a browser: it holds the cookie itself
        # Behind a TLS proxy: the page is https, the handshake reaches Kefu as plain ws.
        (b"https://help.example.com", b"127.0.0.1:8000", ["https://help.example.com"]),
        (b"https://eu.help.example.com", b"127.0.0.1:8000", ["https://*.help.example.com"]),
    ],
)
async def test_agent_socket_accepts_its_own_origin_and_csrf_trusted_origins(
    settings: Any, origin: bytes | None, host: bytes, trusted: list[str]
) -> None:
    settings.CSRF_TRUSTED_ORIGINS = trusted
    cookie = await _signed_in_agent_cookie(await sync_to_async(TenantFactory)())
    connected, code = await _agent_handshake(cookie, origin=origin, host=host)
    assert connected, code


@pytest.mark.parametrize(
    ("origin", "connected"), [(b"https://localhost", True), (b"http://localhost", False)]
)
async def test_behind_a_tls_proxy_the_own_origin_is_https(
    settings: Any, origin: bytes, connected: bool
) -> None:
    # As in production: the proxy says the browser used TLS; the handshake reaches Kefu as ws.
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    cookie = await _signed_in_agent_cookie(await sync_to_async(TenantFactory)())
    result = await _agent_handshake(
        cookie, origin=origin, host=b"localhost", extra=((b"x-forwarded-proto", b"https"),)
    )
    assert result[0] is connected, result


@sync_to_async
def _end_session(cookie: bytes, how: str) -> None:
    session_key = cookie.decode().split("=", 1)[1]
    session = SessionStore(session_key)
    if how == "signed_out":
        session.delete()
    else:  # an admin resets the password of a compromised account
        user = get_user_model().objects.get(pk=session[SESSION_KEY])
        user.set_password("a-new-pass-word-456")
        user.save()


@pytest.mark.parametrize("how", ["signed_out", "password_changed"])
async def test_an_open_agent_socket_ends_with_its_session(how: str) -> None:
    cookie = await _signed_in_agent_cookie(await sync_to_async(TenantFactory)())
    communicator = WebsocketCommunicator(application, "/ws/agent/", headers=[(b"cookie", cookie)])
    try:
        connected, code = await communicator.connect(timeout=SOCKET_WAIT)
        assert connected, code
        assert (await communicator.receive_json_from(timeout=SOCKET_WAIT))["type"] == "lists"
        await _end_session(cookie, how)
        await communicator.send_json_to({"type": "agents"})
        assert (await communicator.receive_json_from(timeout=SOCKET_WAIT))[
            "code"
        ] == "access_revoked"
        assert await communicator.receive_output(timeout=SOCKET_WAIT) == {
            "type": "websocket.close",
            "code": 4403,
        }
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize(
    "path", ["/ws/widget/%00/", "/ws/widget/\x00/", "/ws/widget//", "/ws/nowhere/"]
)
async def test_a_socket_to_a_path_no_tenant_can_have_is_refused_cleanly(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    communicator = WebsocketCommunicator(
        application, path, headers=[(b"origin", SHOP.encode()), (b"host", b"kefu.example.com")]
    )
    try:
        connected, code = await communicator.connect(timeout=SOCKET_WAIT)
        assert not connected
        assert code in (4403, 4404)
    finally:
        await communicator.disconnect()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


@pytest.mark.parametrize("path", ["/api/v1/tenant/", "/api/v1/no-such-thing", "/api/v2/tenant"])
def test_a_path_under_api_that_names_no_endpoint_is_a_json_404(path: str) -> None:
    response = Client().get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
    assert path in response.json()["error"]["message"]
