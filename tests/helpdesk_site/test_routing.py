"""WebSocket routing: the widget's socket without session and auth, the agent's with them."""

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from conversations.consumers import WidgetConsumer
from helpdesk_site.asgi import application
from tenants.models import Role
from tests.factories import MembershipFactory, TenantFactory, UserFactory

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
        connected, _ = await communicator.connect()
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
        assert await communicator.connect() == (False, 4403)
    finally:
        await communicator.disconnect()


async def test_agent_socket_refuses_a_visitor_without_a_session() -> None:
    communicator = WebsocketCommunicator(application, "/ws/agent/")
    try:
        assert await communicator.connect() == (False, 4401)
    finally:
        await communicator.disconnect()


async def test_agent_socket_serves_the_signed_in_agent_from_the_session_cookie() -> None:
    tenant = await sync_to_async(TenantFactory)()
    cookie = await _signed_in_agent_cookie(tenant)
    communicator = WebsocketCommunicator(application, "/ws/agent/", headers=[(b"cookie", cookie)])
    try:
        connected, code = await communicator.connect()
        assert connected, code
        assert (await communicator.receive_json_from(timeout=5))["type"] == "lists"
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
        connected, code = await communicator.connect()
        assert not connected
        assert code in (4403, 4404)
    finally:
        await communicator.disconnect()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
