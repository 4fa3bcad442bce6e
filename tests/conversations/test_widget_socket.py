"""The widget socket's door: tenant key, allowed origins, and frames that are not understood."""

import json

import pytest
from channels.testing import WebsocketCommunicator

from helpdesk_site.asgi import application
from tests.factories import TenantFactory

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
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_to(text_data=json.dumps({"type": "ping", "id": 7}))
        assert await communicator.receive_json_from() == {"v": 1, "type": "pong", "id": 7}
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
        connected, _ = await communicator.connect()
        assert connected
        for frame_id in range(3):
            await communicator.send_to(text_data=json.dumps({"type": "ping", "id": frame_id}))
            assert (await communicator.receive_json_from())["id"] == frame_id
    finally:
        await communicator.disconnect()
    assert hops == []


async def test_kefus_own_host_may_connect() -> None:
    tenant = await _tenant(allowed_origins=[])
    communicator = _communicator(
        tenant.public_key, "http://kefu.example.com", host="kefu.example.com"
    )
    try:
        connected, _ = await communicator.connect()
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
        connected, code = await communicator.connect()
        assert not connected
        assert code == 4403
    finally:
        await communicator.disconnect()


async def test_unknown_or_inactive_tenant_is_refused() -> None:
    inactive = await _tenant(allowed_origins=["https://shop.example.com"], is_active=False)
    for key in ("pk_does_not_exist", inactive.public_key):
        communicator = _communicator(key, "https://shop.example.com")
        try:
            connected, _ = await communicator.connect()
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
        await communicator.connect()
        await communicator.send_to(text_data=frame)
        reply = await communicator.receive_json_from()
        assert reply["type"] == "error"
        assert reply["code"] == code
        assert reply["text"]
        # The socket is still usable afterwards.
        await communicator.send_to(text_data='{"type": "ping"}')
        assert (await communicator.receive_json_from())["type"] == "pong"
    finally:
        await communicator.disconnect()


async def test_errors_speak_the_tenants_language() -> None:
    tenant = await _tenant(allowed_origins=["https://shop.example.com"], default_language="zh-hans")
    communicator = _communicator(tenant.public_key, "https://shop.example.com")
    try:
        await communicator.connect()
        await communicator.send_to(text_data="not json")
        reply = await communicator.receive_json_from()
        assert reply["text"] == "消息不是有效的 JSON。"
    finally:
        await communicator.disconnect()
