"""REST API clients for tests, each with a fresh API key of the given scopes."""

from rest_framework.test import APIClient

from tenants import services
from tenants.models import Tenant


def api_client(tenant: Tenant, *scopes: str) -> APIClient:
    """A client that sends JSON with a new key of ``tenant`` holding ``scopes``."""
    issued = services.api_key_issue(tenant=tenant, name="Test", scopes=list(scopes))
    client = APIClient()
    client.default_format = "json"
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    return client
