"""A member of tenant A can neither see nor touch tenant B's rows through any console URL."""

import pytest
from django.contrib import admin
from django.urls import reverse

from tenants.models import Role
from tests.support import factories

# Every console page over tenant data, with a factory for a row of a given tenant.
SCOPED_PAGES = {
    "tenants.membership": lambda t: factories.MembershipFactory(tenant=t),
    "tenants.apikey": lambda t: factories.ApiKeyFactory(tenant=t),
    "tenants.llmprovider": lambda t: factories.LLMProviderFactory(tenant=t),
    "tenants.tenant": lambda t: t,
    "conversations.customer": lambda t: factories.CustomerFactory(tenant=t),
    "conversations.conversation": lambda t: factories.ConversationFactory(tenant=t),
    "conversations.ticket": lambda t: factories.TicketFactory(tenant=t),
    "conversations.cannedresponse": lambda t: factories.CannedResponseFactory(tenant=t),
    "knowledge.knowledgeentry": lambda t: factories.KnowledgeEntryFactory(tenant=t),
    "knowledge.document": lambda t: factories.DocumentFactory(tenant=t),
    "knowledge.sensitivewordlist": lambda t: factories.SensitiveWordListFactory(tenant=t),
}
GLOBAL_PAGES = {"auth.user", "auth.group"}  # superusers only
NO_REPLIES = {"replies-TOTAL_FORMS": "0", "replies-INITIAL_FORMS": "0"}  # the ticket's inline


def _url(label: str, view: str, *args: object) -> str:
    app_label, model_name = label.split(".")
    return reverse(f"admin:{app_label}_{model_name}_{view}", args=args)


def test_every_console_page_is_covered_by_these_tests() -> None:
    registered = {model._meta.label_lower for model in admin.site._registry}
    assert registered == set(SCOPED_PAGES) | GLOBAL_PAGES


@pytest.mark.parametrize("label", sorted(SCOPED_PAGES))
def test_other_tenants_rows_are_invisible_and_untouchable(
    label: str, tenant_a, tenant_b, owner_client_a
) -> None:
    own = SCOPED_PAGES[label](tenant_a)
    other = SCOPED_PAGES[label](tenant_b)
    model = type(other)

    changelist = owner_client_a.get(_url(label, "changelist"))
    assert changelist.status_code == 200
    listed = {row.pk for row in changelist.context["cl"].result_list}
    assert own.pk in listed
    assert other.pk not in listed

    assert owner_client_a.get(_url(label, "change", own.pk)).status_code == 200
    for view in ("change", "delete", "history"):
        assert owner_client_a.get(_url(label, view, other.pk)).status_code == 404, view
    assert owner_client_a.post(_url(label, "change", other.pk), {}).status_code == 404
    assert owner_client_a.post(_url(label, "delete", other.pk), {"post": "yes"}).status_code == 404

    owner_client_a.post(
        _url(label, "changelist"),
        {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"},
    )
    assert model.objects.filter(pk=other.pk).exists()


def test_superuser_sees_every_tenant(superuser_client, tenant_a, tenant_b) -> None:
    a = factories.KnowledgeEntryFactory(tenant=tenant_a)
    b = factories.KnowledgeEntryFactory(tenant=tenant_b)
    response = superuser_client.get(_url("knowledge.knowledgeentry", "changelist"))
    assert {row.pk for row in response.context["cl"].result_list} == {a.pk, b.pk}
    assert superuser_client.get(_url("knowledge.knowledgeentry", "change", b.pk)).status_code == 200


def test_new_rows_land_in_the_members_tenant(admin_client_a, tenant_a, tenant_b) -> None:
    response = admin_client_a.post(
        _url("knowledge.knowledgeentry", "add"),
        {
            "question": "退货运费谁出？",
            "alternate_questions": "退货要运费吗\n退货邮费",
            "answer": "质量问题由我们承担。",
            "tags": "returns, 退货",
            "enabled": "on",
            # A forged tenant field is ignored: members never choose the tenant.
            "tenant": str(tenant_b.pk),
        },
    )
    assert response.status_code == 302
    entry = tenant_a_entries(tenant_a).get()
    assert entry.alternate_questions == ["退货要运费吗", "退货邮费"]
    assert entry.tags == ["returns", "退货"]


def tenant_a_entries(tenant):
    from knowledge.models import KnowledgeEntry

    return KnowledgeEntry.objects.filter(tenant=tenant)


def test_foreign_key_choices_are_limited_to_the_tenant(admin_client_a, tenant_a, tenant_b) -> None:
    own_customer = factories.CustomerFactory(tenant=tenant_a, display_name="Own customer")
    other_customer = factories.CustomerFactory(tenant=tenant_b, display_name="Other customer")
    other_member = factories.MembershipFactory(tenant=tenant_b, role=Role.AGENT).user

    form_page = admin_client_a.get(_url("conversations.ticket", "add"))
    assignee_field = form_page.context["adminform"].form.fields["assignee"]
    assignee_choices = {label for value, label in assignee_field.choices if value}
    assert admin_client_a.user.username in assignee_choices
    assert other_member.username not in assignee_choices

    response = admin_client_a.post(
        _url("conversations.ticket", "add"),
        {
            "subject": "Broken kettle",
            **NO_REPLIES,
            "customer": str(other_customer.pk),
            "status": "open",
            "priority": "normal",
            "assignee": str(other_member.pk),
        },
    )
    assert response.status_code == 200  # the form is shown again with errors
    errors = response.context["adminform"].form.errors
    assert "customer" in errors and "assignee" in errors

    response = admin_client_a.post(
        _url("conversations.ticket", "add"),
        {
            "subject": "Broken kettle",
            **NO_REPLIES,
            "customer": str(own_customer.pk),
            "status": "open",
            "priority": "normal",
            "assignee": str(admin_client_a.user.pk),
        },
    )
    assert response.status_code == 302


def test_autocomplete_does_not_leak_other_tenants(admin_client_a, tenant_a, tenant_b) -> None:
    factories.CustomerFactory(tenant=tenant_a, display_name="Alice Own")
    factories.CustomerFactory(tenant=tenant_b, display_name="Alice Other")
    response = admin_client_a.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "conversations",
            "model_name": "ticket",
            "field_name": "customer",
            "term": "Alice",
        },
    )
    assert response.status_code == 200
    assert [item["text"] for item in response.json()["results"]] == ["Alice Own"]
