"""Every console page renders for the people allowed to open it."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from analytics.models import ReportRow
from analytics.rollups import local_today, rollups_rebuild
from conversations.models import Conversation
from tests.support import factories

PAGES = sorted((model._meta.app_label, model._meta.model_name) for model in admin.site._registry)


# Customers and conversations arrive through channels; nobody types them in.
NEVER_ADDED = {("conversations", "conversation"), ("conversations", "customer")}


@pytest.mark.parametrize(("app_label", "model_name"), PAGES)
def test_superuser_pages_render(
    superuser_client, tenant_a, app_label: str, model_name: str
) -> None:
    changelist = superuser_client.get(reverse(f"admin:{app_label}_{model_name}_changelist"))
    assert changelist.status_code == 200
    add = superuser_client.get(reverse(f"admin:{app_label}_{model_name}_add"))
    assert add.status_code == (403 if (app_label, model_name) in NEVER_ADDED else 200)


@pytest.mark.parametrize(("app_label", "model_name"), PAGES)
def test_owner_pages_render_or_are_refused(owner_client_a, app_label: str, model_name: str) -> None:
    model_admin = next(
        ma
        for m, ma in admin.site._registry.items()
        if (m._meta.app_label, m._meta.model_name) == (app_label, model_name)
    )
    changelist = owner_client_a.get(reverse(f"admin:{app_label}_{model_name}_changelist"))
    add = owner_client_a.get(reverse(f"admin:{app_label}_{model_name}_add"))
    if app_label == "auth":
        assert (changelist.status_code, add.status_code) == (403, 403)
        return
    assert changelist.status_code == 200
    expected_add = 200 if model_admin.has_add_permission(add.wsgi_request) else 403
    assert add.status_code == expected_add


def test_console_home_shows_the_overview(owner_client_a, tenant_a) -> None:
    # The home page's figures are the analytics overview's: the rollups of the last 30 days.
    today = local_today(tenant_a)
    now = timezone.now()
    for kind, fields in [
        (ReportRow.Kind.CONVERSATION_CREATED, {}),
        (ReportRow.Kind.CONVERSATION_CREATED, {}),
        (ReportRow.Kind.RESOLVED, {"reason": "ai", "value": 0}),
        (ReportRow.Kind.ANSWER, {"reason": "llm", "model": "m", "cost": Decimal("0.5")}),
    ]:
        ReportRow.objects.create(tenant=tenant_a, kind=kind, occurred_at=now, **fields)
    rollups_rebuild(tenant=tenant_a, since=today, until=today)

    response = owner_client_a.get(reverse("admin:index"))

    figures = {kpi.key: kpi for kpi in response.context["kefu_overview"]}
    assert (figures["conversations"].value, figures["automation_rate"].value) == (2, 0.5)
    assert figures["cost"].text == "0.5000"
    html = response.content.decode()
    assert 'id="kefu-overview"' in html
    assert 'id="kpi-automation_rate"' in html
    assert f'href="{reverse("admin:analytics_overview")}"' in html


def test_the_console_home_records_how_idle_conversations_ended(owner_client_a, tenant_a) -> None:
    # Without Celery beat (the embedded defaults) the home page itself runs the tenant's sweep.
    long_ago = timezone.now() - timedelta(hours=2)
    resolved = factories.ConversationFactory(tenant=tenant_a, last_message_at=long_ago)
    factories.MessageFactory(conversation=resolved, role="customer")
    factories.MessageFactory(
        conversation=resolved, role="assistant", source="faq", knowledge_refs=["faq-1"]
    )
    Conversation.objects.filter(pk=resolved.pk).update(last_message_at=long_ago)
    abandoned = factories.ConversationFactory(
        tenant=tenant_a,
        status="queued",
        handoff_reason="customer_request",
        queued_at=long_ago,
        last_message_at=long_ago,
    )
    other = factories.ConversationFactory(status="queued", queued_at=long_ago)

    response = owner_client_a.get(reverse("admin:index"))

    assert response.status_code == 200
    resolved.refresh_from_db()
    abandoned.refresh_from_db()
    assert (resolved.resolution_kind, abandoned.resolution_kind) == ("ai", "abandoned")
    other.refresh_from_db()
    assert other.status == "queued"  # another tenant's queue is not this page's business


@pytest.mark.parametrize("page", ["admin:login", "admin:index"])
def test_console_pages_link_a_favicon_that_is_served(owner_client_a, client, page: str) -> None:
    visitor = client if page == "admin:login" else owner_client_a
    html = visitor.get(reverse(page)).content.decode()

    icons = re.findall(r'<link rel="icon" href="([^"]+)"', html)

    assert len(icons) == 1
    favicon = client.get(icons[0])
    assert favicon.status_code == 200
    assert favicon["Content-Type"].startswith("image/svg+xml")
    assert int(favicon["Content-Length"]) > 0


def test_view_site_leads_to_the_tenants_website(owner_client_a, tenant_a) -> None:
    tenant_a.allowed_origins = ["https://shop.example.com"]
    tenant_a.save(update_fields=["allowed_origins"])

    html = owner_client_a.get(reverse("admin:index")).content.decode()

    assert re.findall(r'<a href="([^"]*)">View site</a>', html) == ["https://shop.example.com/"]


def test_view_site_is_hidden_when_the_tenant_has_no_website(owner_client_a, tenant_a) -> None:
    tenant_a.allowed_origins = []
    tenant_a.save(update_fields=["allowed_origins"])

    html = owner_client_a.get(reverse("admin:index")).content.decode()

    assert "View site" not in html
