"""Secrets at rest: provider keys encrypted, API keys hashed, neither shown back."""

import hashlib

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.urls import reverse

from tenants import fields, services
from tenants.models import ApiKey, LLMProvider
from tests.support import factories


def _raw_column(model, pk: int, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


@pytest.fixture
def fresh_keys(settings):
    fields._fernet.cache_clear()
    yield settings
    fields._fernet.cache_clear()


def test_provider_api_keys_are_encrypted_at_rest(tenant_a, fresh_keys) -> None:
    provider = factories.LLMProviderFactory(tenant=tenant_a, api_key="sk-live-123456")
    stored = _raw_column(LLMProvider, provider.pk, "api_key")
    assert "sk-live" not in stored
    assert LLMProvider.objects.get(pk=provider.pk).api_key == "sk-live-123456"


def test_encryption_keys_rotate(tenant_a, fresh_keys) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    fresh_keys.FIELD_ENCRYPTION_KEYS = [old]
    provider = factories.LLMProviderFactory(tenant=tenant_a, api_key="sk-rotate")
    fields._fernet.cache_clear()
    fresh_keys.FIELD_ENCRYPTION_KEYS = [new, old]
    assert LLMProvider.objects.get(pk=provider.pk).api_key == "sk-rotate"
    fields._fernet.cache_clear()
    fresh_keys.FIELD_ENCRYPTION_KEYS = [new]
    with pytest.raises(ImproperlyConfigured):
        LLMProvider.objects.get(pk=provider.pk)


def test_the_console_never_shows_a_provider_key(admin_client_a, tenant_a) -> None:
    provider = factories.LLMProviderFactory(tenant=tenant_a, api_key="sk-do-not-show")
    url = reverse("admin:tenants_llmprovider_change", args=[provider.pk])
    page = admin_client_a.get(url)
    assert page.status_code == 200
    assert b"sk-do-not-show" not in page.content
    # Saving without typing a key keeps the current one.
    form = page.context["adminform"].form
    data = {name: form.initial.get(name, "") for name in form.fields if name != "api_key"}
    data.update(enabled="on", api_key="")
    assert admin_client_a.post(url, data).status_code == 302
    provider.refresh_from_db()
    assert provider.api_key == "sk-do-not-show"


def test_api_keys_are_stored_hashed_and_authenticate(tenant_a) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="CRM", scopes=["knowledge:read"])
    stored = ApiKey.objects.get(pk=issued.api_key.pk)
    assert issued.raw_key.startswith(f"kefu_{stored.prefix}_")
    assert stored.key_hash == hashlib.sha256(issued.raw_key.encode()).hexdigest()
    assert issued.raw_key not in str(ApiKey.objects.filter(pk=stored.pk).values().get())

    assert services.api_key_authenticate(raw_key=issued.raw_key) == stored
    assert services.api_key_authenticate(raw_key=issued.raw_key + "x") is None
    services.api_key_revoke(api_key=stored)
    assert services.api_key_authenticate(raw_key=issued.raw_key) is None


def test_unknown_scopes_are_refused(tenant_a) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.api_key_issue(tenant=tenant_a, name="Bad", scopes=["everything"])


def test_the_api_answers_for_the_keys_tenant_only(client, tenant_a) -> None:
    issued = services.api_key_issue(tenant=tenant_a, name="CRM", scopes=["knowledge:read"])
    url = reverse("api:tenant-current")
    assert client.get(url).status_code in (401, 403)
    assert client.get(url, HTTP_AUTHORIZATION="Bearer kefu_nope_nope").status_code == 401
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    assert response.status_code == 200
    assert response.json() == {
        "slug": "tenant-a",
        "name": "Tenant A",
        "key_prefix": issued.api_key.prefix,
        "scopes": ["knowledge:read"],
    }
    issued.api_key.refresh_from_db()
    assert issued.api_key.last_used_at is not None


def test_the_console_shows_a_new_key_once(admin_client_a, tenant_a) -> None:
    response = admin_client_a.post(
        reverse("admin:tenants_apikey_add"),
        {"name": "Zapier", "scopes": ["tickets:write"]},
        follow=True,
    )
    assert response.status_code == 200
    api_key = ApiKey.objects.get(tenant=tenant_a, name="Zapier")
    shown = [str(m) for m in response.context["messages"] if "kefu_" in str(m)]
    assert len(shown) == 1
    raw = shown[0].split("<code>")[1].split("</code>")[0]
    assert services.api_key_authenticate(raw_key=raw) == api_key
    later = admin_client_a.get(reverse("admin:tenants_apikey_change", args=[api_key.pk]))
    assert raw.encode() not in later.content
