"""The widget socket's door: tenant key, allowed origins, and frames that are not understood."""

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from conversations.models import Customer, Message, Ticket
from conversations.services import identity_signature
from helpdesk_site.asgi import application
from tests.support.factories import TenantFactory
from tests.support.sockets import SOCKET_WAIT

pytestmark = pytest.mark.django_db(transaction=True)


def _communicator(
    public_key: str, origin: str, host: str = "kefu.example.com"
) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application,
        f"/ws/widget/{public_key}/",
        headers=[(b"origin", origin.encode()), (b"host", host.encode())],
    )


async def _tenant(**kwargs):
    from asgiref.sync import sync_to_async

    return await sync_to_async(TenantFactory)(**kwargs)


async def test_listed_origin_connects_and_pings() -> None:
    tenant = await _tenant(allowed_origins=["https://shop.example.com"])
    communicator = _communicator(tenant.public_key, "https://shop.example.com")
    try:
        connected, _ = await communicator.connect(timeout=SOCKET_WAIT)
        assert connected
        await communicator.send_to(text_data=json.dumps({"type": "ping", "id": 7}))
        assert await communicator.receive_json_from(timeout=SOCKET_WAIT) == {
            "v": 1,
            "type": "pong",
            "id": 7,
        }
    finally:
        await communicator.disconnect()


async def test_frames_do_not_queue_for_the_shared_database_thread(monkeypatch) -> None:
    # Channels closes stale database connections on its one shared thread before every frame;
    # the widget's socket skips that (its database calls do it in their own worker thread).
    hops: list[str] = []

    async def counted() -> None:
        hops.append("close_old_connections")

    monkeypatch.setattr("channels.consumer.aclose_old_connections", counted)
    monkeypatch.setattr("channels.generic.websocket.aclose_old_connections", counted)
    tenant = await _tenant(allowed_origins=["https://shop.example.com"])
    communicator = _communicator(tenant.public_key, "https://shop.example.com")
    try:
        connected, _ = await communicator.connect(timeout=SOCKET_WAIT)
        assert connected
        for frame_id in range(3):
            await communicator.send_to(text_data=json.dumps({"type": "ping", "id": frame_id}))
            assert (await communicator.receive_json_from(timeout=SOCKET_WAIT))["id"] == frame_id
    finally:
        await communicator.disconnect()
    assert hops == []


async def test_kefus_own_host_may_connect() -> None:
    tenant = await _tenant(allowed_origins=[])
    communicator = _communicator(
        tenant.public_key, "http://kefu.example.com", host="kefu.example.com"
    )
    try:
        connected, _ = await communicator.connect(timeout=SOCKET_WAIT)
        assert connected
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize(
    "origin", ["https://evil.example.com", "", "https://shop.example.com.evil.com"]
)
async def test_other_origins_are_refused(origin: str) -> None:
    tenant = await _tenant(allowed_origins=["https://shop.example.com"])
    communicator = _communicator(tenant.public_key, origin)
    try:
        connected, code = await communicator.connect(timeout=SOCKET_WAIT)
        assert not connected
        assert code == 4403
    finally:
        await communicator.disconnect()


async def test_unknown_or_inactive_tenant_is_refused() -> None:
    inactive = await _tenant(allowed_origins=["https://shop.example.com"], is_active=False)
    for key in ("pk_does_not_exist", inactive.public_key):
        communicator = _communicator(key, "https://shop.example.com")
        try:
            connected, _ = await communicator.connect(timeout=SOCKET_WAIT)
            assert not connected
        finally:
            await communicator.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('{"no": "type"}', "bad_frame"),
        ('{"type": "launch_missiles"}', "unknown_type"),
        (json.dumps({"type": "ping", "pad": "x" * 20000}), "bad_frame"),
    ],
)
async def test_malformed_frames_get_an_error_not_a_crash(frame: str, code: str) -> None:
    tenant = await _tenant(allowed_origins=["https://shop.example.com"], default_language="en")
    communicator = _communicator(tenant.public_key, "https://shop.example.com")
    try:
        await communicator.connect(timeout=SOCKET_WAIT)
        await communicator.send_to(text_data=frame)
        reply = await communicator.receive_json_from(timeout=SOCKET_WAIT)
        assert reply["type"] == "error"
        assert reply["code"] == code
        assert reply["text"]
        # The socket is still usable afterwards.
        await communicator.send_to(text_data='{"type": "ping"}')
        assert (await communicator.receive_json_from(timeout=SOCKET_WAIT))["type"] == "pong"
    finally:
        await communicator.disconnect()


async def test_errors_speak_the_tenants_language() -> None:
    tenant = await _tenant(allowed_origins=["https://shop.example.com"], default_language="zh-hans")
    communicator = _communicator(tenant.public_key, "https://shop.example.com")
    try:
        await communicator.connect(timeout=SOCKET_WAIT)
        await communicator.send_to(text_data="not json")
        reply = await communicator.receive_json_from(timeout=SOCKET_WAIT)
        assert reply["text"] == "消息不是有效的 JSON。"
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("depth", [5000, 20], ids=["beyond-the-parser", "beyond-the-protocol"])
async def test_a_deeply_nested_frame_gets_an_error_not_a_crash(depth: int) -> None:
    tenant = await _tenant(allowed_origins=["https://shop.example.com"], default_language="en")
    communicator = _communicator(tenant.public_key, "https://shop.example.com")
    try:
        await communicator.connect(timeout=SOCKET_WAIT)
        await communicator.send_to(
            text_data='{"type": "ping", "x": ' + "[" * depth + "]" * depth + "}"
        )
        reply = await communicator.receive_json_from(timeout=SOCKET_WAIT)
        assert (reply["type"], reply["code"]) == ("error", "bad_frame")
        await communicator.send_to(text_data='{"type": "ping"}')
        assert (await communicator.receive_json_from(timeout=SOCKET_WAIT))["type"] == "pong"
    finally:
        await communicator.disconnect()


async def _frames_until(communicator: WebsocketCommunicator, *types: str) -> list[dict[str, Any]]:
    frames = [await communicator.receive_json_from(timeout=SOCKET_WAIT)]
    while frames[-1]["type"] not in types:
        frames.append(await communicator.receive_json_from(timeout=SOCKET_WAIT))
    return frames


def _raw(frame: dict[str, Any]) -> str:
    # json.dumps writes a NUL as \u0000 and a lone surrogate as \ud800, as a client could.
    return json.dumps(frame)


@database_sync_to_async
def _stored_texts(tenant_id: int) -> list[str]:
    customer = Customer.objects.get(tenant_id=tenant_id)
    messages = Message.objects.filter(tenant_id=tenant_id, role="customer")
    tickets = Ticket.objects.filter(tenant_id=tenant_id)
    return [
        customer.display_name,
        customer.phone,
        *messages.values_list("content", flat=True),
        *(t.subject for t in tickets),
        *(t.contact_phone for t in tickets),
        *customer.conversations.values_list("csat_comment", flat=True),
    ]


async def test_text_a_database_cannot_store_is_cleaned_at_the_socket() -> None:
    # Given a widget whose every text field carries a NUL or a lone surrogate
    tenant = await _tenant(allowed_origins=["https://shop.example.com"], default_language="en")
    communicator = _communicator(tenant.public_key, "https://shop.example.com")
    try:
        await communicator.connect(timeout=SOCKET_WAIT)
        await communicator.send_to(text_data=_raw({"type": "hello", "visitor_token": "t\x00"}))
        assert (await communicator.receive_json_from(timeout=SOCKET_WAIT))["type"] == "welcome"
        # When the customer writes, asks for a person, leaves details and rates
        message = {"type": "message", "id": "m\x00", "text": "Hi\x00 there \ud800!"}
        await communicator.send_to(text_data=_raw(message))
        frames = await _frames_until(communicator, "done", "error")
        await communicator.send_to(text_data=_raw({"type": "handoff"}))
        await _frames_until(communicator, "status")
        contact = {
            "type": "contact",
            "name": "Ann\x00 Lee\udc00",
            "email": "ann@example.com",
            "phone": "555\x00 0100",
            "text": "Call me \ud83d back",
        }
        await communicator.send_to(text_data=_raw(contact))
        ticket = await _frames_until(communicator, "ticket", "error")
        await communicator.send_to(
            text_data=_raw({"type": "rating", "value": 4, "comment": "ok\x00"})
        )
        rating = await _frames_until(communicator, "ack", "error")
    finally:
        await communicator.disconnect()

    # Then everything was stored, without the characters no database can keep
    assert [f["type"] for f in frames if f["type"] in ("ack", "done")] == ["ack", "done"]
    assert ticket[-1]["type"] == "ticket" and rating[-1] == {"v": 1, "type": "ack", "rating": 4}
    assert await _stored_texts(tenant.pk) == [
        "Ann Lee\ufffd",
        "555 0100",
        "Hi there \ufffd!",
        "Call me \ufffd back",
        "555 0100",
        "ok",
    ]


async def test_a_verified_identity_is_cleaned_before_it_is_stored() -> None:
    tenant = await _tenant(
        allowed_origins=["https://shop.example.com"], identity_secret="s3cret-identity-key"
    )
    identity = {
        "external_id": "u1",
        "signature": identity_signature(secret="s3cret-identity-key", external_id="u1"),
        "name": "Ann\x00\ud800",
        "email": "ann@example.com",
    }
    communicator = _communicator(tenant.public_key, "https://shop.example.com")
    try:
        await communicator.connect(timeout=SOCKET_WAIT)
        await communicator.send_to(text_data=_raw({"type": "hello", "identity": identity}))
        welcome = await _frames_until(communicator, "welcome", "error")
    finally:
        await communicator.disconnect()
    assert welcome[-1]["type"] == "welcome"
    customer = await Customer.objects.aget(tenant=tenant)
    assert (customer.display_name, customer.email) == ("Ann\ufffd", "ann@example.com")
