"""The hot topics and knowledge gaps pages in a real browser: rename a topic, make a FAQ entry
from a gap, and no console errors on the way."""

import os
from pathlib import Path

from analytics.gaps import gaps_refresh
from analytics.models import KnowledgeGap, Topic
from analytics.topics import default_period, topics_refresh
from conversations.models import Message
from knowledge.models import KnowledgeEntry
from tenants.models import Role
from tests.support import factories
from tests.support.browser import console_login
from tests.support.questions import SUBJECTS, ask, plant


def _shot(page, tmp_path: Path, name: str) -> None:
    """For a person to look at: KEFU_SCREENSHOTS=/some/dir pytest …"""
    folder = Path(os.environ.get("KEFU_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)


def test_topics_and_gaps_pages_in_a_browser(browser, live_server, tenant_a, tmp_path) -> None:
    plant(tenant_a)
    for text in SUBJECTS["invoice"]:
        ask(tenant_a, f"{text}?", answer="Sorry, I don't know.", source=Message.Source.OFFLINE)
    since, until = default_period(tenant_a)
    topics_refresh(tenant=tenant_a, since=since, until=until, llm_labels=False)
    gaps_refresh(tenant=tenant_a, since=since, until=until)
    user = factories.UserFactory(username="insights-admin")
    factories.MembershipFactory(user=user, tenant=tenant_a, role=Role.ADMIN)
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    console_login(page, live_server.url, "insights-admin", "pass-word-123")

    # Topics: from the home page, rename the most asked one.
    page.click("text=Hot topics")
    first = page.locator("#topics-table tbody tr").first
    topic_id = int(first.get_attribute("data-topic"))
    first.locator(".topic-rename input[name=name]").fill("Most asked")
    first.locator(".topic-rename input[type=submit]").click()
    page.wait_for_selector("text=Topic renamed.")
    assert page.locator(f"tr[data-topic='{topic_id}'] .topic-name").inner_text() == "Most asked"
    assert Topic.objects.get(pk=topic_id).custom_name == "Most asked"
    _shot(page, tmp_path, "topics.png")

    # Gaps: make a FAQ entry from the first one.
    page.goto(f"{live_server.url}/console/")
    page.click("text=Knowledge gaps")
    row = page.locator("#gaps-table tbody tr").first
    gap = KnowledgeGap.objects.get(pk=int(row.get_attribute("data-gap")))
    _shot(page, tmp_path, "gaps.png")
    row.locator("text=Create FAQ entry").click()
    assert page.input_value("#id_question") == gap.question
    page.fill("#id_answer", "在订单详情页点击“申请发票”。")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")

    gap.refresh_from_db()
    entry = KnowledgeEntry.objects.get(tenant=tenant_a)
    assert (gap.status, gap.entry_id) == (KnowledgeGap.Status.COVERED, entry.pk)
    assert entry.question == gap.question
    assert errors == []
