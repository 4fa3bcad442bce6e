"""Canned responses over the REST API: the same replies agents see in the console."""

import pytest
from rest_framework.test import APIClient

from conversations.models import CannedResponse
from conversations.selectors import Agent, canned_responses
from tenants.models import ApiKey
from tests.support import factories
from tests.support.api import api_client

CANNED = "/api/v1/canned-responses"


@pytest.fixture
def api(tenant_a) -> APIClient:
    return api_client(tenant_a, ApiKey.Scope.CONVERSATIONS_READ, ApiKey.Scope.CONVERSATIONS_WRITE)


def test_canned_responses_are_created_read_changed_and_deleted(api, tenant_a) -> None:
    created = api.post(CANNED, {"title": "Greeting", "text": "Hello! How can I help?"})

    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) == {"id", "title", "text", "created_at", "updated_at"}
    assert (body["title"], body["text"]) == ("Greeting", "Hello! How can I help?")
    agent = Agent(tenant=tenant_a, user_id=0, name="Ann", role="agent")
    # What agents are offered in the console.
    assert canned_responses(agent=agent) == [
        {"id": body["id"], "title": "Greeting", "text": "Hello! How can I help?"}
    ]

    url = f"{CANNED}/{body['id']}"
    changed = api.patch(url, {"text": "Hi! What can I do for you?"})
    assert changed.status_code == 200
    assert (changed.json()["title"], changed.json()["text"]) == (
        "Greeting",
        "Hi! What can I do for you?",
    )
    assert api.get(url).json()["text"] == "Hi! What can I do for you?"

    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert not CannedResponse.objects.filter(pk=body["id"]).exists()


def test_canned_response_list_filters_and_pages(api, tenant_a, tenant_b) -> None:
    greeting = factories.CannedResponseFactory(tenant=tenant_a, title="Greeting")
    refund = factories.CannedResponseFactory(
        tenant=tenant_a, title="Refund", text="Your refund is on its way."
    )
    factories.CannedResponseFactory(tenant=tenant_b, title="Tenant B's refund")

    listed = api.get(CANNED).json()
    searched = api.get(CANNED, {"q": "refund"}).json()
    first = api.get(CANNED, {"limit": 1, "order": "asc"}).json()
    rest = api.get(CANNED, {"limit": 1, "cursor": first["next_cursor"]}).json()

    assert [row["id"] for row in listed["data"]] == [refund.pk, greeting.pk]
    assert [row["id"] for row in searched["data"]] == [refund.pk]
    assert [row["id"] for row in first["data"]] == [greeting.pk]
    assert [row["id"] for row in rest["data"]] == [refund.pk]
    assert rest["has_more"] is False


def test_canned_response_validation_names_each_field(api, tenant_a) -> None:
    canned = factories.CannedResponseFactory(tenant=tenant_a)

    missing = api.post(CANNED, {"title": ""})
    too_long = api.patch(f"{CANNED}/{canned.pk}", {"title": "x" * 101})

    assert missing.status_code == too_long.status_code == 400
    assert set(missing.json()["error"]["fields"]) == {"title", "text"}
    assert list(too_long.json()["error"]["fields"]) == ["title"]
    canned.refresh_from_db()
    assert len(canned.title) < 101


def test_another_tenants_canned_response_is_not_found(api, tenant_b) -> None:
    theirs = factories.CannedResponseFactory(tenant=tenant_b, title="Theirs")
    url = f"{CANNED}/{theirs.pk}"

    for response in (api.get(url), api.patch(url, {"title": "Mine"}), api.delete(url)):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.title == "Theirs"


def test_a_read_key_cannot_write_canned_responses(tenant_a) -> None:
    reader = api_client(tenant_a, ApiKey.Scope.CONVERSATIONS_READ)
    canned = factories.CannedResponseFactory(tenant=tenant_a, title="Greeting")
    url = f"{CANNED}/{canned.pk}"

    writes = [
        reader.post(CANNED, {"title": "T", "text": "x"}),
        reader.patch(url, {"title": "Changed"}),
        reader.delete(url),
    ]

    for response in writes:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "missing_scope"
    assert reader.get(url).json()["title"] == "Greeting"
    knowledge_key = api_client(tenant_a, ApiKey.Scope.KNOWLEDGE_WRITE)
    assert knowledge_key.get(CANNED).json()["error"]["code"] == "missing_scope"
