"""REST API helpers for tests: clients with an API key of the given scopes, and objects for
the API's path parameters (named as in docs/api.md's endpoint table: the schema-wide tests,
scope matrix and fuzzing, fill every ``{name}`` of every path with them)."""

from typing import Any

from django.db.models import Model
from rest_framework.test import APIClient

from tenants import services
from tenants.models import ApiKey, Tenant
from tests.support.factories import (
    CannedResponseFactory,
    ChunkFactory,
    ConversationFactory,
    CustomerFactory,
    DocumentFactory,
    KnowledgeEntryFactory,
    MessageFactory,
    TicketFactory,
)


def key_client(raw_key: str | None) -> APIClient:
    """A client sending ``raw_key`` as its bearer token (none: no Authorization header)."""
    client = APIClient()
    if raw_key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def api_client(tenant: Tenant, *scopes: str) -> APIClient:
    """A client sending JSON with a new key of ``tenant``'s carrying ``scopes`` (``admin`` if
    none)."""
    issued = services.api_key_issue(
        tenant=tenant, name="Integration", scopes=list(scopes) or [ApiKey.Scope.ADMIN]
    )
    client = key_client(issued.raw_key)
    client.default_format = "json"
    return client


def page_ids(response: Any) -> list[int]:
    """The ids of a successful list response's page, in order."""
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["data"]]


def path_parameter_objects(tenant: Tenant) -> dict[str, Model]:
    """One object of ``tenant`` per path parameter name, related the way nested paths need
    (the chunk belongs to the document, the message to the conversation). A path parameter of
    a new endpoint needs an entry here, or the scope matrix fails."""
    customer = CustomerFactory.create(tenant=tenant)
    conversation = ConversationFactory.create(tenant=tenant, customer=customer)
    document = DocumentFactory.create(tenant=tenant)
    return {
        "customer_id": customer,
        "conversation_id": conversation,
        "message_id": MessageFactory.create(conversation=conversation),
        "ticket_id": TicketFactory.create(tenant=tenant, customer=customer),
        "faq_id": KnowledgeEntryFactory.create(tenant=tenant),
        "document_id": document,
        "chunk_id": ChunkFactory.create(document=document),
        "canned_response_id": CannedResponseFactory.create(tenant=tenant),
    }
