"""Customer and agent in two browser contexts: the widget on the demo page and the agent
console page, from a request for a person to the customer's rating."""

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, Message
from tenants.models import Role
from tests.support import factories
from tests.support.browser import console_login
from tests.support.widget_page import ARTIFACTS, Widget

pytestmark = pytest.mark.django_db(transaction=True)


def test_request_accept_reply_both_ways_resolve_and_rate(shop, server, new_page) -> None:
    user = factories.UserFactory(username="wang")
    factories.MembershipFactory(user=user, tenant=shop, role=Role.AGENT)
    console = new_page()
    console_login(console, server.url, "wang", "pass-word-123")
    console.goto(f"{server.url}/console/agent/")
    expect(console.locator("#kefu-queue")).to_have_text("Nobody is waiting.")

    widget = Widget(new_page()).goto(server.url)
    widget.open()
    widget.ask("I want to talk to a real person")
    expect(widget.root.locator(".sys").last).to_have_text(
        "A person will be with you shortly. You are number 1 in the queue."
    )

    queued = console.locator("#kefu-queue button.kefu-open")
    expect(queued).to_have_count(1)
    queued.click()
    expect(console.locator("#kefu-status")).to_have_text("Waiting for an agent")
    expect(console.locator("#kefu-messages .kefu-customer")).to_have_text(
        ["Customer" + "I want to talk to a real person"]
    )
    console.click("#kefu-accept")
    expect(console.locator("#kefu-status")).to_have_text("With an agent")
    expect(console.locator("#kefu-mine button.kefu-open")).to_have_count(1)
    expect(widget.root.locator(".sys").last).to_have_text("wang has joined the conversation.")

    console.fill("#kefu-reply", "Hello, I am Wang. How can I help?")
    console.click("#kefu-send")
    expect(widget.root.locator(".msg.agent .body")).to_have_text(
        ["Hello, I am Wang. How can I help?"]
    )

    widget.ask("My order 1234 has not arrived")
    expect(console.locator("#kefu-messages .kefu-customer").last).to_contain_text(
        "My order 1234 has not arrived"
    )
    console.fill("#kefu-reply", "Checked: it arrives tomorrow.")
    console.check("#kefu-internal")
    console.click("#kefu-send")
    expect(console.locator("#kefu-messages .kefu-note")).to_contain_text(
        "Checked: it arrives tomorrow."
    )
    expect(widget.root.locator(".msg.agent")).to_have_count(1)  # internal notes stay internal

    console.click("#kefu-resolve")
    expect(widget.root.locator(".sys").last).to_have_text("This conversation has been resolved.")
    widget.root.locator(".rating").get_by_role("button", name="5 out of 5").click()
    expect(widget.root.locator(".sys").last).to_have_text("Thank you for your rating!")

    conversation = Conversation.objects.get(tenant=shop)
    assert (conversation.status, conversation.resolution_kind, conversation.csat_rating) == (
        "resolved",
        "agent",
        5,
    )
    assert not Message.objects.filter(conversation=conversation, role="assistant").exists()


MARKDOWN_ANSWER = (
    "Open **My Orders** and choose *Return*:\n\n"
    "- unused items\n"
    "- original packaging\n\n"
    "See [our policy](https://shop.example.com/returns) or [this](javascript:alert(1))."
)
HOSTILE_NAME = '<img src=x onerror="window.__xss=1">Li'


def test_answers_render_as_the_widget_renders_them_and_customers_have_readable_names(
    shop,
    server,
    new_page,
) -> None:
    # Given an anonymous visitor whose question the assistant answered in Markdown, and a
    # customer who typed markup as their name, both waiting for a person
    user = factories.UserFactory(username="wang")
    factories.MembershipFactory(user=user, tenant=shop, role=Role.AGENT)
    anonymous = factories.CustomerFactory(tenant=shop, display_name="", external_id="JDmdiOhOqECX")
    waiting = factories.ConversationFactory(tenant=shop, customer=anonymous, status="queued")
    factories.MessageFactory(conversation=waiting, content="How do I return **this**?")
    factories.MessageFactory(
        conversation=waiting, role="assistant", source="llm", content=MARKDOWN_ANSWER
    )
    hostile = factories.CustomerFactory(tenant=shop, display_name=HOSTILE_NAME)
    other = factories.ConversationFactory(tenant=shop, customer=hostile, status="queued")

    # When an agent opens the console and the anonymous visitor's conversation
    console = new_page()
    console_login(console, server.url, "wang", "pass-word-123")
    console.goto(f"{server.url}/console/agent/")
    queue = console.locator("#kefu-queue button.kefu-open")

    # Then the visitor has a readable, stable name, and a typed name stays text
    expect(queue).to_have_text(
        [f"Visitor #{anonymous.pk} · #{waiting.pk}", f"{HOSTILE_NAME} · #{other.pk}"]
    )
    queue.first.click()
    expect(console.locator("#kefu-customer")).to_have_text(f"Visitor #{anonymous.pk}")
    # and the answer is rendered as the widget renders it; the customer's text is left as typed
    answer = console.locator("#kefu-messages .kefu-assistant .kefu-text")
    expect(answer.locator("strong")).to_have_text(["My Orders"])
    expect(answer.locator("em")).to_have_text(["Return"])
    expect(answer.locator("ul > li")).to_have_text(["unused items", "original packaging"])
    expect(answer.locator("a")).to_have_text(["our policy"])  # javascript: stays text
    expect(answer.locator("a")).to_have_attribute("href", "https://shop.example.com/returns")
    expect(answer.locator("a")).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(answer).not_to_contain_text("**")
    expect(console.locator("#kefu-messages .kefu-customer .kefu-text")).to_have_text(
        "How do I return **this**?"
    )
    assert console.evaluate("typeof window.__xss") == "undefined"
    assert console.locator("#kefu-agent img").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    console.screenshot(path=str(ARTIFACTS / "agent-console.png"), full_page=True)


def test_an_agent_demoted_while_the_console_is_open_is_told_and_can_no_longer_accept(
    shop,
    server,
    new_page,
) -> None:
    user = factories.UserFactory(username="wang")
    membership = factories.MembershipFactory(user=user, tenant=shop, role=Role.AGENT)
    waiting = factories.ConversationFactory(tenant=shop, status="queued")
    console = new_page()
    console_login(console, server.url, "wang", "pass-word-123")
    console.goto(f"{server.url}/console/agent/")
    console.locator("#kefu-queue button.kefu-open").click()
    expect(console.locator("#kefu-status")).to_have_text("Waiting for an agent")

    membership.role = Role.VIEWER  # an admin demotes Wang in another browser
    membership.save(update_fields=["role"])
    console.click("#kefu-accept")

    expect(console.locator("#kefu-notice")).to_have_text(
        "You no longer have access to the agent console."
    )
    assert Conversation.objects.get(pk=waiting.pk).status == "queued"
