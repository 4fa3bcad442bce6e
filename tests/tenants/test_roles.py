"""What each role may do in the console: admins run the tenant, agents work conversations."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from conversations.models import Conversation
from tenants.models import Membership, Role
from tests.support import factories


@pytest.mark.parametrize(
    "page",
    ["tenants_llmprovider", "tenants_apikey", "tenants_membership", "knowledge_sensitivewordlist"],
)
def test_agents_cannot_open_admin_only_pages(agent_client_a, page: str) -> None:
    assert agent_client_a.get(reverse(f"admin:{page}_changelist")).status_code == 403
    assert agent_client_a.get(reverse(f"admin:{page}_add")).status_code == 403


def test_agents_read_knowledge_but_cannot_change_it(agent_client_a, tenant_a) -> None:
    entry = factories.KnowledgeEntryFactory(tenant=tenant_a, answer="Original")
    url = reverse("admin:knowledge_knowledgeentry_change", args=[entry.pk])
    page = agent_client_a.get(url)
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    response = agent_client_a.post(url, {"question": entry.question, "answer": "Changed"})
    assert response.status_code == 403
    entry.refresh_from_db()
    assert entry.answer == "Original"
    assert agent_client_a.get(reverse("admin:knowledge_knowledgeentry_add")).status_code == 403


def test_agents_work_conversations(agent_client_a, tenant_a) -> None:
    conversation = factories.ConversationFactory(tenant=tenant_a, status=Conversation.Status.QUEUED)
    response = agent_client_a.post(
        reverse("admin:conversations_conversation_change", args=[conversation.pk]),
        {
            "status": Conversation.Status.HUMAN,
            "assignee": str(agent_client_a.user.pk),
            "resolution_kind": "",
            "messages-TOTAL_FORMS": "0",
            "messages-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.HUMAN
    assert conversation.assignee == agent_client_a.user


def test_viewers_only_look(viewer_client_a, tenant_a) -> None:
    conversation = factories.ConversationFactory(tenant=tenant_a)
    url = reverse("admin:conversations_conversation_change", args=[conversation.pk])
    assert viewer_client_a.get(url).status_code == 200
    assert viewer_client_a.post(url, {"status": "closed"}).status_code == 403
    delete = reverse("admin:conversations_conversation_delete", args=[conversation.pk])
    assert viewer_client_a.post(delete, {"post": "yes"}).status_code == 403
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_admin_adds_an_agent_with_a_new_login(admin_client_a, tenant_a) -> None:
    response = admin_client_a.post(
        reverse("admin:tenants_membership_add"),
        {
            "username": "new-agent",
            "email": "new@example.com",
            "password": "long-enough-1",
            "role": "agent",
        },
    )
    assert response.status_code == 302
    membership = Membership.objects.get(user__username="new-agent")
    assert membership.tenant == tenant_a
    assert membership.role == Role.AGENT
    client = Client()
    assert client.login(username="new-agent", password="long-enough-1")
    assert client.get(reverse("admin:index")).status_code == 200


def test_admins_cannot_make_owners_but_owners_can(admin_client_a, owner_client_a) -> None:
    data = {
        "username": "boss",
        "email": "boss@example.com",
        "password": "long-enough-1",
        "role": "owner",
    }
    response = admin_client_a.post(reverse("admin:tenants_membership_add"), data)
    assert response.status_code == 200
    assert "role" in response.context["adminform"].form.errors
    assert not Membership.objects.filter(user__username="boss").exists()

    assert owner_client_a.post(reverse("admin:tenants_membership_add"), data).status_code == 302
    assert Membership.objects.get(user__username="boss").role == Role.OWNER


def test_admins_cannot_change_owners(admin_client_a, tenant_a) -> None:
    owner = factories.MembershipFactory(tenant=tenant_a, role=Role.OWNER)
    url = reverse("admin:tenants_membership_change", args=[owner.pk])
    assert admin_client_a.post(url, {"role": "viewer"}).status_code == 403
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_people_without_a_membership_cannot_enter_the_console(db) -> None:
    client = Client()
    client.force_login(factories.UserFactory())
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_tenant_admins_edit_settings_but_not_identity(admin_client_a, tenant_a) -> None:
    url = reverse("admin:tenants_tenant_change", args=[tenant_a.pk])
    response = admin_client_a.post(
        url,
        {
            "name": "Renamed",
            "default_language": "en",
            "faq_threshold": "0.9",
            "persona": "Be kind.",
            "allowed_origins": "https://shop.example.com/\nhttps://WWW.example.com",
            "widget_color": "#111111",
            "widget_position": "left",
            "widget_greeting": "Hi",
            "identity_secret": "",
            "handoff_phrases": "转人工\nhuman",
            "handoff_after_unanswered": "3",
            "business_hours": json.dumps(
                {
                    "timezone": "Asia/Shanghai",
                    "days": [0, 1, 2, 3, 4],
                    "open": "09:00",
                    "close": "18:00",
                }
            ),
            "ticket_sla_hours": "8",
            "time_zone": "Asia/Shanghai",
            # Not editable by members: ignored.
            "slug": "hijacked",
            "is_active": "",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant_a.refresh_from_db()
    assert tenant_a.name == "Renamed"
    assert tenant_a.faq_threshold == 0.9
    assert tenant_a.allowed_origins == ["https://shop.example.com", "https://www.example.com"]
    assert tenant_a.handoff_phrases == ["转人工", "human"]
    assert (tenant_a.handoff_after_unanswered, tenant_a.ticket_sla_hours) == (3, 8)
    assert tenant_a.business_hours["open"] == "09:00"
    assert tenant_a.time_zone == "Asia/Shanghai"
    assert tenant_a.slug == "tenant-a"
    assert tenant_a.is_active is True


def test_invalid_origins_are_refused(admin_client_a, tenant_a) -> None:
    response = admin_client_a.post(
        reverse("admin:tenants_tenant_change", args=[tenant_a.pk]),
        {
            "name": "A",
            "default_language": "en",
            "faq_threshold": "0.8",
            "allowed_origins": "shop.example.com/path",
            "handoff_after_unanswered": "2",
            "ticket_sla_hours": "24",
            "time_zone": "Mars/Olympus",
            "business_hours": '{"timezone": "Mars/Olympus", "open": "18:00", "close": "09:00"}',
            "widget_color": "#111111",
            "widget_position": "left",
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "allowed_origins" in errors and "business_hours" in errors
    assert "time_zone" in errors


def test_members_of_two_tenants_switch_between_them(tenant_a, tenant_b) -> None:
    user = factories.UserFactory()
    factories.MembershipFactory(user=user, tenant=tenant_a, role=Role.ADMIN)
    factories.MembershipFactory(user=user, tenant=tenant_b, role=Role.ADMIN)
    entry_b = factories.KnowledgeEntryFactory(tenant=tenant_b)
    client = Client()
    client.force_login(user)
    changelist = reverse("admin:knowledge_knowledgeentry_changelist")
    assert entry_b.pk not in {e.pk for e in client.get(changelist).context["cl"].result_list}

    client.post(reverse("admin:switch_tenant"), {"tenant": tenant_b.pk})
    assert entry_b.pk in {e.pk for e in client.get(changelist).context["cl"].result_list}

    stranger = factories.TenantFactory(slug="stranger")
    client.post(reverse("admin:switch_tenant"), {"tenant": stranger.pk})
    assert entry_b.pk in {e.pk for e in client.get(changelist).context["cl"].result_list}


def test_members_sign_in_with_their_password(tenant_a) -> None:
    user = factories.UserFactory(username="agent-zhang")
    factories.MembershipFactory(user=user, tenant=tenant_a, role=Role.AGENT)
    client = Client()
    login = reverse("admin:login")
    response = client.post(login, {"username": "agent-zhang", "password": "pass-word-123"})
    assert response.status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


def test_people_without_a_tenant_cannot_sign_in(db) -> None:
    factories.UserFactory(username="drifter")
    client = Client()
    response = client.post(
        reverse("admin:login"), {"username": "drifter", "password": "pass-word-123"}
    )
    assert response.status_code == 200
    assert "not a member of any active tenant" in response.content.decode()
    assert client.get(reverse("admin:index")).status_code == 302


@pytest.mark.parametrize("username", ["taken-name", "TAKEN-Name"])
def test_adding_a_member_with_a_taken_username_is_a_form_error(
    admin_client_a, tenant_b, username: str
) -> None:
    factories.MembershipFactory(tenant=tenant_b, user__username="taken-name")
    response = admin_client_a.post(
        reverse("admin:tenants_membership_add"),
        {
            "username": username,
            "email": "new@example.com",
            "password": "long-enough-1",
            "role": "agent",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["username"] == ["This username is taken."]
    assert Membership.objects.filter(user__username__iexact="taken-name").count() == 1
