"""REST API clients for tests: an API key of the tenant's with the given scopes, sent as the
``Authorization`` header of every request."""

from typing import Any

from rest_framework.test import APIClient

from tenants import services
from tenants.models import ApiKey, Tenant


def api_client(tenant: Tenant, *scopes: str) -> APIClient:
    """A client sending JSON with a new key of ``tenant``'s carrying ``scopes`` (``admin`` if
    none)."""
    issued = services.api_key_issue(
        tenant=tenant, name="Integration", scopes=list(scopes) or [ApiKey.Scope.ADMIN]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    client.default_format = "json"
    return client


def page_ids(response: Any) -> list[int]:
    """The ids of a successful list response's page, in order."""
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["data"]]
