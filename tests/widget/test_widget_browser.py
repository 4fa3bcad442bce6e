"""The embeddable chat widget (static/kefu/widget.js) in a real browser.

Chromium loads the real ``/demo/`` page from the real ASGI app (HTTP and WebSocket, served by
uvicorn in a thread); every LLM call goes to the mock OpenAI-compatible server over HTTP.
"""

import gzip
import itertools
import re
import threading
from typing import Any

import pytest
from playwright.sync_api import Locator, expect

from conversations.models import Conversation, Message, Ticket
from tenants.models import Role, Tenant
from tests.support import factories
from tests.support.browser import console_login
from tests.support.live_asgi import LiveAsgiServer
from tests.support.widget_page import (
    ARTIFACTS,
    DELIVERY_A,
    DELIVERY_Q,
    GREETING,
    WARRANTY_A,
    WARRANTY_Q,
    WIDGET_JS,
    Widget,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_faq_question_is_answered_from_the_faq(shop, server, new_page) -> None:
    widget = Widget(new_page()).goto(server.url)
    widget.open()
    expect(widget.root.locator(".greeting")).to_have_text(GREETING)

    widget.ask(DELIVERY_Q)

    expect(widget.customer_texts).to_have_text([DELIVERY_Q])
    expect(widget.answer_bodies).to_have_text([DELIVERY_A])
    expect(widget.answers).to_have_attribute("data-source", "faq")
    expect(widget.root.locator(".msg.customer.pending")).to_have_count(0)
    expect(widget.root.locator(".typing")).to_have_count(0)


def test_an_llm_answer_streams_into_its_bubble(shop, server, mock_llm, new_page) -> None:
    streamed = "You can pay by card, Alipay or WeChat Pay, and we ship within two days."
    mock_llm.configure(text=streamed, token_ms=60)
    widget = Widget(new_page()).goto(server.url)
    widget.open()

    widget.ask("Can I pay with bitcoin?")

    seen: list[str] = []
    while not seen or seen[-1] != streamed:
        changed = widget.page.wait_for_function(
            """(previous) => {
                const root = document.querySelector('[data-kefu-widget]').shadowRoot;
                const body = root.querySelector('.msg.assistant .body');
                const text = body ? body.textContent : '';
                return text && text !== previous ? {text} : null;
            }""",
            arg=seen[-1] if seen else "",
        )
        seen.append(changed.json_value()["text"])
        assert len(seen) < 100
    assert len(seen) >= 3, seen
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))
    expect(widget.answer_bodies).to_have_text([streamed])
    _expect_stored(widget.answers, shop)


def test_html_and_scripts_in_messages_are_shown_as_text(shop, server, mock_llm, new_page) -> None:
    question = 'Is this safe? <img src=x onerror="window.__xss=1">'
    answer = (
        'Sure: <script>window.__xss=2</script><img src=x onerror="window.__xss=3"> '
        "and [click](javascript:alert(1)) here."
    )
    mock_llm.configure(text=answer)
    widget = Widget(new_page()).goto(server.url)
    widget.open()

    widget.ask(question)

    expect(widget.customer_texts).to_have_text([question])
    expect(widget.answer_bodies).to_have_text(
        [
            'Sure: <script>window.__xss=2</script><img src=x onerror="window.__xss=3"> '
            "and click here."
        ]
    )
    _expect_stored(widget.answers, shop)
    assert widget.page.evaluate("typeof window.__xss") == "undefined"
    assert widget.shadow_eval("root.querySelectorAll('img, script, iframe, object').length") == 0
    assert widget.shadow_eval("root.querySelectorAll('a').length") == 0  # javascript: is text
    assert widget.page.evaluate("document.querySelectorAll('img, script:not([src])').length") == 0


def test_answers_are_rendered_as_simple_markdown(shop, server, mock_llm, new_page) -> None:
    mock_llm.configure(
        text=(
            "**Free returns** within *30 days*:\n\n"
            "- unused items\n"
            "- original packaging\n\n"
            "1. Open `Orders`\n"
            "2. Click Return\n\n"
            "See [our policy](https://shop.example.com/returns) or https://shop.example.com/help."
        )
    )
    widget = Widget(new_page()).goto(server.url)
    widget.open()

    widget.ask("How do returns work for a gift?")

    body = widget.answer_bodies
    expect(body.locator("strong")).to_have_text(["Free returns"])
    expect(body.locator("em")).to_have_text(["30 days"])
    expect(body.locator("ul > li")).to_have_text(["unused items", "original packaging"])
    expect(body.locator("ol > li")).to_have_text(["Open Orders", "Click Return"])
    expect(body.locator("ol code")).to_have_text(["Orders"])
    links = body.locator("a")
    expect(links).to_have_text(["our policy", "https://shop.example.com/help"])
    expect(links.first).to_have_attribute("href", "https://shop.example.com/returns")
    expect(links.last).to_have_attribute("href", "https://shop.example.com/help")
    for index in range(2):
        expect(links.nth(index)).to_have_attribute("target", "_blank")
        expect(links.nth(index)).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(body.locator("p").last).to_have_text(
        "See our policy or https://shop.example.com/help."  # the full stop is not in the URL
    )


def test_messages_typed_while_disconnected_are_sent_once_after_reconnecting(
    shop, server, new_page
) -> None:
    widget = Widget(new_page()).goto(server.url)
    widget.open()
    widget.ask(DELIVERY_Q)
    expect(widget.answer_bodies).to_have_text([DELIVERY_A])

    restart = threading.Thread(target=server.restart, kwargs={"pause": 1.5})
    restart.start()
    try:
        expect(widget.notice).to_have_text("Reconnecting…")
        widget.ask(WARRANTY_Q)
        expect(widget.root.locator(".msg.customer.pending .text")).to_have_text([WARRANTY_Q])
    finally:
        restart.join(timeout=20)
    assert not restart.is_alive()

    expect(widget.answer_bodies).to_have_text([DELIVERY_A, WARRANTY_A], timeout=15_000)
    expect(widget.customer_texts).to_have_text([DELIVERY_Q, WARRANTY_Q])
    expect(widget.root.locator(".msg.customer.pending")).to_have_count(0)
    expect(widget.notice).to_be_hidden()
    conversation = Conversation.objects.get(tenant=shop)
    assert list(
        Message.objects.filter(conversation=conversation)
        .order_by("id")
        .values_list("role", "content")
    ) == [
        ("customer", DELIVERY_Q),
        ("assistant", DELIVERY_A),
        ("customer", WARRANTY_Q),
        ("assistant", WARRANTY_A),
    ]


def test_a_reload_restores_the_conversation_from_the_visitor_token(shop, server, new_page) -> None:
    widget = Widget(new_page()).goto(server.url)
    widget.open()
    widget.ask(DELIVERY_Q)
    _expect_stored(widget.answers, shop)
    token_key = f"kefu:{shop.public_key}:visitor"
    token = widget.page.evaluate("(key) => localStorage.getItem(key)", token_key)
    assert token

    widget.page.reload()
    expect(widget.launcher).to_be_visible()
    widget.open()

    expect(widget.customer_texts).to_have_text([DELIVERY_Q])
    expect(widget.answer_bodies).to_have_text([DELIVERY_A])
    expect(widget.answers).to_have_attribute("data-source", "faq")
    assert Conversation.objects.filter(tenant=shop).count() == 1


def test_hostile_page_css_does_not_reach_inside_the_widget(shop, server, new_page) -> None:
    widget = Widget(new_page()).goto(server.url)
    widget.page.add_style_tag(
        content=(
            "* { color: red !important; font-size: 40px !important; display: block !important;"
            " background: yellow !important; }"
            " button, div, textarea { width: 10px !important; border: 5px solid red !important; }"
        )
    )
    widget.open()
    widget.ask(DELIVERY_Q)
    expect(widget.answer_bodies).to_have_text([DELIVERY_A])

    assert widget.page.evaluate(
        "getComputedStyle(document.querySelector('.product h3')).color"
    ) == ("rgb(255, 0, 0)")  # the page itself did get the hostile CSS
    styles = widget.shadow_eval(
        """(() => {
            const css = (selector, property) =>
                getComputedStyle(root.querySelector(selector)).getPropertyValue(property);
            return {
                launcherWidth: css('.launcher', 'width'),
                launcherDisplay: css('.launcher', 'display'),
                launcherBackground: css('.launcher', 'background-color'),
                panelDisplay: css('.panel', 'display'),
                panelWidth: css('.panel', 'width'),
                answerColor: css('.msg.assistant .body', 'color'),
                answerSize: css('.msg.assistant .body', 'font-size'),
                inputSize: css('.composer textarea', 'font-size'),
                inputBorder: css('.composer textarea', 'border-top-color'),
            };
        })()"""
    )
    assert styles == {
        "launcherWidth": "56px",
        "launcherDisplay": "flex",
        "launcherBackground": "rgb(15, 118, 110)",  # the tenant's colour
        "panelDisplay": "flex",
        "panelWidth": "380px",
        "answerColor": "rgb(31, 41, 55)",
        "answerSize": "14px",
        "inputSize": "14px",
        "inputBorder": "rgb(15, 118, 110)",  # focused
    }
    # Nothing of the widget's own CSS went into the page.
    assert widget.page.evaluate("document.adoptedStyleSheets.length") == 0
    assert widget.page.evaluate("document.styleSheets.length") == 2  # the page's and the test's


def test_the_panel_fits_a_360_pixel_phone(shop, server, new_page) -> None:
    page = new_page(width=360, height=740)
    widget = Widget(page).goto(server.url)
    widget.open()
    widget.ask(DELIVERY_Q)
    expect(widget.answer_bodies).to_have_text([DELIVERY_A])
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "widget-360.png")

    box = widget.settled_box(widget.panel)
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360
    assert box["y"] >= 0 and box["y"] + box["height"] <= 740
    input_box = widget.input.bounding_box()
    assert input_box is not None and input_box["x"] + input_box["width"] <= 360


def test_the_demo_shop_and_its_widget_work_on_a_phone(shop, server, new_page) -> None:
    # Given a phone: a 360 x 740 viewport with mobile emulation and touch
    page = new_page(width=360, height=740, is_mobile=True, has_touch=True)
    widget = Widget(page).goto(server.url)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "demo-phone-closed.png")

    # Then the page is no wider than the screen and the launcher is on it
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    launcher = widget.launcher.bounding_box()
    assert launcher is not None
    assert launcher["x"] >= 0 and launcher["x"] + launcher["width"] <= 360
    assert launcher["y"] >= 0 and launcher["y"] + launcher["height"] <= 740

    # When the customer taps it (a real click: Playwright checks nothing covers it)
    widget.launcher.click()

    # Then the panel opens on the screen and works
    expect(widget.panel).to_be_visible()
    widget.ask(DELIVERY_Q)
    expect(widget.answer_bodies).to_have_text([DELIVERY_A])
    page.screenshot(path=ARTIFACTS / "demo-phone-open.png")
    panel = widget.settled_box(widget.panel)
    assert panel["x"] >= 0 and panel["x"] + panel["width"] <= 360
    assert panel["y"] >= 0 and panel["y"] + panel["height"] <= 740
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


def test_the_widget_is_usable_with_the_keyboard(shop, server, new_page) -> None:
    widget = Widget(new_page()).goto(server.url)
    expect(widget.launcher).to_have_attribute("aria-label", "Open chat")
    expect(widget.launcher).to_have_attribute("aria-expanded", "false")
    expect(widget.panel).to_have_attribute("role", "dialog")
    expect(widget.panel).to_have_attribute("aria-label", "Chat with Acme Shop")
    expect(widget.root.locator(".list")).to_have_attribute("aria-live", "polite")

    widget.launcher.focus()
    widget.page.keyboard.press("Enter")
    expect(widget.panel).to_be_visible()
    expect(widget.input).to_be_focused()
    expect(widget.launcher).to_have_attribute("aria-expanded", "true")

    widget.page.keyboard.type("first line")
    widget.page.keyboard.press("Shift+Enter")
    widget.page.keyboard.type("second line")
    expect(widget.input).to_have_value("first line\nsecond line")
    widget.page.keyboard.press("Enter")
    expect(widget.customer_texts).to_have_text(["first line\nsecond line"])
    expect(widget.input).to_have_value("")

    widget.page.keyboard.press("Escape")
    expect(widget.panel).to_be_hidden()
    expect(widget.launcher).to_be_focused()


def test_feedback_and_talking_to_a_human_when_nobody_is_there(
    shop, server, mock_llm, new_page
) -> None:
    Tenant.objects.filter(pk=shop.pk).update(handoff_on_provider_failure=False)
    mock_llm.configure(fault="500")  # every provider fails: knowledge and an offer of a person
    widget = Widget(new_page()).goto(server.url)
    widget.open()
    widget.ask(DELIVERY_Q)
    expect(widget.answers).to_have_attribute("data-source", "faq")
    expect(widget.human).to_have_class("human")

    helpful = widget.answers.get_by_role("button", name="Helpful", exact=True)
    helpful.click()
    expect(helpful).to_have_attribute("aria-pressed", "true")
    assert Message.objects.get(tenant=shop, role="assistant").feedback == "up"

    widget.ask("Can I pay with bitcoin?")
    expect(widget.answers.last).to_have_attribute("data-source", "fallback")
    expect(widget.human).to_have_class("human prominent")

    widget.human.click()  # no agent is online: the customer leaves details for a ticket
    expect(widget.root.locator(".sys")).to_have_text(
        ["Nobody is available right now. Leave your contact details and we will get back to you."]
    )
    expect(widget.human).to_be_hidden()
    assert Conversation.objects.get(tenant=shop).status == "queued"
    contact = widget.root.locator("form.contact")
    contact.get_by_label("Email").fill("wang@example.com")
    contact.get_by_label("How can we help? (optional)").fill("My kettle leaks.")
    contact.get_by_role("button", name="Send my details").click()

    expect(widget.root.locator(".sys").last).to_contain_text("We received your request")
    expect(contact).to_have_count(0)
    ticket = Ticket.objects.get(tenant=shop)
    assert ticket.contact_email == "wang@example.com"
    assert f"#{ticket.pk}" in widget.root.locator(".sys").last.inner_text()


def test_an_agent_takes_over_replies_and_asks_for_a_rating(shop, server, new_page) -> None:
    user = factories.UserFactory(username="wang")
    factories.MembershipFactory(user=user, tenant=shop, role=Role.AGENT)
    agent = new_page()
    console_login(agent, server.url, "wang", "pass-word-123")
    agent.evaluate(
        """() => new Promise((resolve, reject) => {
            window.agentFrames = [];
            window.agentSocket = new WebSocket(`ws://${location.host}/ws/agent/`);
            agentSocket.onmessage = (event) => agentFrames.push(JSON.parse(event.data));
            agentSocket.onopen = resolve;
            agentSocket.onerror = reject;
        })"""
    )
    agent.wait_for_function("agentFrames.some((frame) => frame.type === 'lists')")

    def agent_sends(frame: dict[str, Any]) -> None:
        agent.evaluate("(frame) => agentSocket.send(JSON.stringify(frame))", frame)

    widget = Widget(new_page()).goto(server.url)
    widget.open()
    widget.ask("I want to talk to a real person")
    status_lines = widget.root.locator(".sys")
    expect(status_lines).to_have_text(
        ["A person will be with you shortly. You are number 1 in the queue."]
    )
    expect(widget.root.locator(".typing")).to_have_count(0)  # the assistant stays silent
    conversation_id = Conversation.objects.get(tenant=shop).pk

    agent_sends({"type": "accept", "conversation_id": conversation_id})
    expect(status_lines.last).to_have_text("wang has joined the conversation.")
    agent_sends({"type": "typing", "conversation_id": conversation_id})
    expect(widget.root.locator(".typing")).to_have_text("wang is typing…")
    agent_sends(
        {"type": "reply", "conversation_id": conversation_id, "text": "I am **Wang**. <b>Hi</b>"}
    )
    agent_reply = widget.root.locator(".msg.agent")
    expect(agent_reply.locator(".body")).to_have_text("I am Wang. <b>Hi</b>")
    expect(agent_reply.locator(".body strong")).to_have_text("Wang")
    expect(agent_reply.locator(".who")).to_have_text("wang")
    expect(widget.root.locator(".typing")).to_have_count(0)

    widget.ask("Thanks, my order is 1234")
    agent.wait_for_function(
        "agentFrames.some((f) => f.type === 'customer_message' && f.text.includes('1234'))"
    )
    assert widget.answers.count() == 0  # nothing from the assistant while a person has it

    agent_sends({"type": "resolve", "conversation_id": conversation_id})
    expect(status_lines.last).to_have_text("This conversation has been resolved.")
    widget.root.locator(".rating").get_by_role("button", name="4 out of 5").click()
    expect(status_lines.last).to_have_text("Thank you for your rating!")
    expect(widget.root.locator(".rating")).to_have_count(0)
    assert Conversation.objects.get(pk=conversation_id).csat_rating == 4


def _reconnect(widget: "Widget", server: LiveAsgiServer) -> None:
    """Drops the widget's connection (the server stops for a moment) and waits for it to be
    back, with the list rebuilt from the server's welcome."""
    restart = threading.Thread(target=server.restart, kwargs={"pause": 1.0})
    restart.start()
    try:
        expect(widget.notice).to_have_text("Reconnecting…")
    finally:
        restart.join(timeout=20)
    assert not restart.is_alive()
    expect(widget.notice).to_be_hidden(timeout=15_000)


def test_the_contact_form_is_shown_again_after_a_reconnect(shop, server, new_page) -> None:
    widget = Widget(new_page()).goto(server.url)
    widget.open()
    widget.ask("I want to talk to a real person")  # nobody is online
    contact = widget.root.locator("form.contact")
    expect(contact).to_have_count(1)
    contact.get_by_label("Email").fill("wang@example.com")  # typed, not sent yet

    _reconnect(widget, server)

    expect(widget.root.locator(".sys")).to_have_text(
        ["Nobody is available right now. Leave your contact details and we will get back to you."]
    )
    expect(contact).to_have_count(1)
    expect(contact.get_by_label("Email")).to_have_value("wang@example.com")
    ARTIFACTS.mkdir(exist_ok=True)
    widget.panel.screenshot(path=ARTIFACTS / "widget-contact-after-reconnect.png")
    contact.get_by_role("button", name="Send my details").click()
    expect(widget.root.locator(".sys").last).to_contain_text("We received your request")
    expect(contact).to_have_count(0)
    assert Ticket.objects.get(tenant=shop).contact_email == "wang@example.com"

    _reconnect(widget, server)  # answered: not asked again
    expect(widget.root.locator(".msg.card.ticket")).to_have_count(1)
    expect(contact).to_have_count(0)


def test_the_rating_card_is_shown_again_after_a_reconnect(shop, server, new_page) -> None:
    widget = Widget(new_page()).goto(server.url)
    widget.open()
    widget.ask(DELIVERY_Q)
    _expect_stored(widget.answers, shop)
    # A person resolved the conversation while the widget was away: its request for a rating
    # never reached the page.
    Conversation.objects.filter(tenant=shop).update(status="resolved", resolution_kind="agent")

    _reconnect(widget, server)

    rating = widget.root.locator(".rating")
    expect(rating).to_have_count(1)
    ARTIFACTS.mkdir(exist_ok=True)
    widget.panel.screenshot(path=ARTIFACTS / "widget-rating-after-reconnect.png")
    rating.get_by_role("button", name="5 out of 5").click()
    expect(widget.root.locator(".sys").last).to_have_text("Thank you for your rating!")
    assert Conversation.objects.get(tenant=shop).csat_rating == 5

    _reconnect(widget, server)  # rated: not asked again
    expect(widget.answer_bodies).to_have_text([DELIVERY_A])
    expect(rating).to_have_count(0)


def test_api_calls_queued_before_the_script_loads_are_replayed(shop, server, new_page) -> None:
    page = new_page(init_script=f'window.Kefu = {{q: [["ask", "{DELIVERY_Q}"]]}};')
    widget = Widget(page).goto(server.url)

    expect(widget.panel).to_be_visible()
    expect(widget.answer_bodies).to_have_text([DELIVERY_A])
    page.evaluate("Kefu.close()")
    expect(widget.panel).to_be_hidden()
    page.evaluate("Kefu.q.push(['open'])")  # the queue keeps working after loading
    expect(widget.panel).to_be_visible()


def test_the_widget_script_stays_small() -> None:
    assert len(gzip.compress(WIDGET_JS.read_bytes())) <= 30 * 1024


def _expect_stored(answer: Locator, tenant: Tenant) -> None:
    """Waits for ``done`` (the answer gets its message id), which must be the stored answer's."""
    expect(answer).to_have_attribute("data-mid", re.compile(r"^\d+$"))
    stored = Message.objects.filter(tenant=tenant, role="assistant").order_by("-id").first()
    assert stored is not None
    assert answer.get_attribute("data-mid") == str(stored.pk)
