"""The hit-testing page: an admin types a question and sees what would be answered, and why."""

import pytest
from django.urls import reverse

from knowledge import services
from knowledge.search import registry
from tenants.models import Role
from tests.support import factories
from tests.support.browser import console_login

HIT_TEST = reverse("admin:knowledge_hit_test")


@pytest.fixture(autouse=True)
def _fresh_registry():
    registry.forget()
    yield
    registry.forget()


def _faq(tenant):
    entry = factories.KnowledgeEntryFactory(
        tenant=tenant,
        question="发票怎么开？",
        alternate_questions=["可以开增值税发票吗", "How do I get an invoice?"],
        answer="在订单详情页点击“申请发票”。",
    )
    factories.KnowledgeEntryFactory(
        tenant=tenant, question="How long is delivery?", answer="3 days."
    )
    services.knowledge_changed(tenant_id=tenant.pk)
    return entry


def test_hit_test_shows_the_direct_answer_and_ranked_entries(admin_client_a, tenant_a) -> None:
    entry = _faq(tenant_a)
    page = admin_client_a.get(HIT_TEST, {"question": "可以开增值税发票吗"})
    assert page.status_code == 200
    assert page.context["direct"].entry_id == entry.pk
    assert page.context["candidates"][0].confidence == 1.0
    assert page.context["hits"][0].id == entry.pk
    html = page.content.decode()
    assert 'id="hit-test-direct"' in html and "发票怎么开？" in html


def test_hit_test_explains_when_nothing_is_answered_directly(admin_client_a, tenant_a) -> None:
    _faq(tenant_a)
    page = admin_client_a.get(HIT_TEST, {"question": "Do you ship to the Moon?"})
    assert page.context["direct"] is None
    assert page.context["candidates"] == []


def test_hit_test_is_scoped_and_role_checked(agent_client_a, tenant_a, tenant_b) -> None:
    _faq(tenant_b)
    page = agent_client_a.get(HIT_TEST, {"question": "发票怎么开？"})
    assert page.status_code == 200  # agents may read the knowledge base
    assert page.context["candidates"] == []  # but only their own tenant's


def test_hit_test_in_a_browser(browser, live_server, tenant_a) -> None:
    _faq(tenant_a)
    user = factories.UserFactory(username="kb-admin")
    factories.MembershipFactory(user=user, tenant=tenant_a, role=Role.ADMIN)
    page = browser.new_page()
    console_login(page, live_server.url, "kb-admin", "pass-word-123")
    page.goto(f"{live_server.url}/console/knowledge/knowledgeentry/")
    page.click("text=Hit testing")
    page.fill("textarea[name=question]", "How do I get an invoice?")
    page.click("input[type=submit][value=Test]")
    direct = page.locator("#hit-test-direct")
    assert "Answered directly from the FAQ" in direct.inner_text()
    assert "发票怎么开？" in direct.inner_text()
    rows = page.locator("#hit-test-faq tbody tr")
    assert rows.first.inner_text().startswith("1")

    page.fill("textarea[name=question]", "Do you ship to the Moon?")
    page.click("input[type=submit][value=Test]")
    assert "No FAQ entry shares a word" in page.locator("#hit-test-direct").inner_text()
