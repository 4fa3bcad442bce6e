"""The widget's HTTP side: its configuration, signed visitor identities, the demo page."""

import json

import pytest
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from conversations.models import Customer
from conversations.services import identity_signature
from helpdesk_site.asgi import application
from tests.support import factories
from tests.support.sockets import SOCKET_WAIT

ORIGIN = "https://shop.example.com"


@pytest.fixture
def shop(db):
    return factories.TenantFactory(
        slug="acme",
        name="Acme Shop",
        allowed_origins=[ORIGIN],
        widget_color="#ff5500",
        widget_position="left",
        widget_greeting="Hi there",
        default_language="en",
        identity_secret="s3cret-identity-key",
    )


def test_config_for_an_allowed_origin(client, shop) -> None:
    response = client.get(reverse("widget-config", args=[shop.public_key]), HTTP_ORIGIN=ORIGIN)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert response.json() == {
        "name": "Acme Shop",
        "color": "#ff5500",
        "position": "left",
        "greeting": "Hi there",
        "language": "en",
        "identity": True,
        "socket_path": f"/ws/widget/{shop.public_key}/",
    }
    assert "s3cret" not in response.content.decode()


def test_config_refuses_other_origins_and_unknown_keys(client, shop) -> None:
    url = reverse("widget-config", args=[shop.public_key])
    assert client.get(url, HTTP_ORIGIN="https://evil.example.com").status_code == 403
    assert client.get(reverse("widget-config", args=["pk_nope"])).status_code == 404


@pytest.mark.parametrize("key", ["pk_\x00", "pk_é", "x" * 65])
def test_config_for_a_key_no_tenant_can_have_is_not_found(client, shop, key: str) -> None:
    response = client.get(reverse("widget-config", args=[key]), HTTP_ORIGIN=ORIGIN)
    assert response.status_code == 404


def test_the_demo_page_embeds_the_widget(client, shop) -> None:
    page = client.get(reverse("demo")).content.decode()
    assert f'data-key="{shop.public_key}"' in page
    assert "/static/kefu/widget.js" in page


async def _hello(tenant, identity: dict) -> list[dict]:
    communicator = WebsocketCommunicator(
        application,
        f"/ws/widget/{tenant.public_key}/",
        headers=[(b"origin", ORIGIN.encode()), (b"host", b"kefu.example.com")],
    )
    try:
        await communicator.connect(timeout=SOCKET_WAIT)
        await communicator.send_to(text_data=json.dumps({"type": "hello", "identity": identity}))
        frames = [json.loads(await communicator.receive_from(timeout=SOCKET_WAIT))]
        if not await communicator.receive_nothing(timeout=0.2):
            frames.append(json.loads(await communicator.receive_from(timeout=SOCKET_WAIT)))
        return frames
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_signed_identity_is_the_same_customer_everywhere(shop) -> None:
    signature = identity_signature(secret="s3cret-identity-key", external_id="u-42")
    identity = {
        "external_id": "u-42",
        "signature": signature,
        "name": "Li Lei",
        "email": "li@example.com",
    }
    first = await _hello(shop, identity)
    second = await _hello(shop, identity)
    assert [f["type"] for f in first] == ["welcome"]
    assert first[0]["conversation_id"] == second[0]["conversation_id"]
    customer = await Customer.objects.aget(tenant=shop, external_id="user:u-42")
    assert (customer.identified, customer.display_name, customer.email) == (
        True,
        "Li Lei",
        "li@example.com",
    )


@pytest.mark.django_db(transaction=True)
async def test_a_forged_identity_is_refused_and_the_visitor_stays_anonymous(shop) -> None:
    frames = await _hello(shop, {"external_id": "u-42", "signature": "0" * 64, "name": "Boss"})
    assert [f["type"] for f in frames] == ["welcome", "error"]
    assert frames[1]["code"] == "identity_rejected"
    assert not await Customer.objects.filter(external_id="user:u-42").aexists()
