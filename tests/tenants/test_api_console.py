"""The console's side of the REST API: owners and admins issue and revoke keys with readable
scopes, set the tenant's API rate limit; agents and viewers cannot touch keys."""

import pytest
from django.urls import reverse

from tenants import services
from tenants.models import ApiKey, Role
from tests.support import factories
from tests.support.browser import console_login

KEYS = reverse("admin:tenants_apikey_changelist")
ADD_KEY = reverse("admin:tenants_apikey_add")


def _tenant_form(**changes: str) -> dict[str, str]:
    data = {
        "name": "Tenant A",
        "default_language": "en",
        "faq_threshold": "0.8",
        "handoff_after_unanswered": "2",
        "ticket_sla_hours": "24",
        "time_zone": "UTC",
        "widget_color": "#111111",
        "widget_position": "left",
        "api_rate_limit": "",
    }
    return data | changes


@pytest.mark.parametrize("client_fixture", ["owner_client_a", "admin_client_a"])
def test_owners_and_admins_set_the_api_rate_limit(request, client_fixture, tenant_a) -> None:
    client = request.getfixturevalue(client_fixture)
    url = reverse("admin:tenants_tenant_change", args=[tenant_a.pk])
    assert 'name="api_rate_limit"' in client.get(url).content.decode()

    saved = client.post(url, _tenant_form(api_rate_limit="120/60"))
    refused = client.post(url, _tenant_form(api_rate_limit="fast"))

    assert saved.status_code == 302, saved.context["adminform"].form.errors
    assert refused.status_code == 200
    assert "api_rate_limit" in refused.context["adminform"].form.errors
    tenant_a.refresh_from_db()
    assert tenant_a.api_rate_limit == "120/60"


def test_the_key_page_offers_every_scope_with_its_label(admin_client_a, tenant_a) -> None:
    page = admin_client_a.get(ADD_KEY)

    form = page.context["adminform"].form
    assert list(form.fields["scopes"].choices) == list(ApiKey.Scope.choices)
    html = page.content.decode()
    for value, label in ApiKey.Scope.choices:
        assert f'value="{value}"' in html
        assert str(label) in html


def test_an_admin_issues_a_key_shown_once_and_listed_by_scope_label(
    admin_client_a, tenant_a
) -> None:
    response = admin_client_a.post(
        ADD_KEY,
        {"name": "Shop backend", "scopes": ["tickets:read", "knowledge:write"]},
        follow=True,
    )

    api_key = ApiKey.objects.get(tenant=tenant_a)
    assert api_key.scopes == ["knowledge:write", "tickets:read"]
    shown = [str(m) for m in response.context["messages"]]
    assert any("kefu_" + api_key.prefix in m for m in shown)
    listing = admin_client_a.get(KEYS).content.decode()
    assert "Read tickets" in listing and "Write knowledge" in listing
    assert "kefu_" + api_key.prefix not in listing  # never shown again


@pytest.mark.parametrize("client_fixture", ["agent_client_a", "viewer_client_a"])
def test_agents_and_viewers_cannot_open_or_revoke_keys(request, client_fixture, tenant_a) -> None:
    client = request.getfixturevalue(client_fixture)
    issued = services.api_key_issue(tenant=tenant_a, name="Backend", scopes=["admin"])
    change = reverse("admin:tenants_apikey_change", args=[issued.api_key.pk])

    assert client.get(KEYS).status_code == 403
    assert client.get(ADD_KEY).status_code == 403
    assert client.get(change).status_code == 403
    issue = client.post(ADD_KEY, {"name": "Mine", "scopes": ["admin"]})
    revoke = client.post(
        KEYS, {"action": "revoke_keys", "_selected_action": [str(issued.api_key.pk)]}
    )

    assert issue.status_code == 403 and revoke.status_code == 403
    assert ApiKey.objects.filter(tenant=tenant_a).count() == 1
    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is None


def test_key_and_tenant_pages_in_a_browser(browser, live_server, tenant_a, tmp_path) -> None:
    user = factories.UserFactory(username="key-owner")
    factories.MembershipFactory(user=user, tenant=tenant_a, role=Role.OWNER)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    console_login(page, live_server.url, "key-owner", "pass-word-123")

    page.goto(f"{live_server.url}{ADD_KEY}")
    for _value, label in ApiKey.Scope.choices:
        assert page.get_by_label(str(label)).is_visible()
    page.screenshot(path=tmp_path / "api-key-add.png", full_page=True)
    page.fill("input[name=name]", "Shop backend")
    page.get_by_label("Read tickets").check()
    page.click("input[name=_save]")
    assert "Copy this key now" in page.locator(".messagelist").inner_text()

    page.goto(f"{live_server.url}{reverse('admin:tenants_tenant_change', args=[tenant_a.pk])}")
    field = page.locator("input[name=api_rate_limit]")
    field.scroll_into_view_if_needed()
    assert field.is_editable()
    page.screenshot(path=tmp_path / "tenant-settings.png", full_page=True)
    field.fill("120/60")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    tenant_a.refresh_from_db()
    assert tenant_a.api_rate_limit == "120/60"
