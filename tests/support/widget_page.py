"""The chat widget on the demo page in a real browser, and the shop and server behind it.

``tests/widget/conftest.py`` offers the fixtures to the browser tests of the widget.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from playwright.sync_api import Browser, BrowserContext, Page, expect

from devtools.mockllm import MockLLMServer
from knowledge import services as knowledge_services
from knowledge.search import registry
from tests.support import factories
from tests.support.browser import BROWSER_WAIT_MS
from tests.support.live_asgi import LiveAsgiServer

REPO = Path(__file__).resolve().parents[2]
WIDGET_JS = REPO / "static" / "kefu" / "widget.js"
ARTIFACTS = REPO / "test-artifacts"

DELIVERY_Q = "How long does delivery take?"
DELIVERY_A = "Delivery takes 3–5 working days."
WARRANTY_Q = "What is the warranty on headphones?"
WARRANTY_A = "Headphones have a 12-month warranty covering manufacturing defects."
GREETING = "Hello from Acme! Ask us anything."


@pytest.fixture(autouse=True)
def _fresh_state(settings: Any) -> Iterator[None]:
    settings.RATE_LIMIT_VISITOR = "100/60"
    settings.LLM_BACKOFF_BASE = 0.01
    settings.LLM_BACKOFF_CAP = 0.02
    registry.forget()
    cache.clear()  # answers are cached per tenant id, and ids are reused between tests
    yield
    registry.forget()


@pytest.fixture
def server(live_asgi: LiveAsgiServer) -> LiveAsgiServer:
    """Kefu's ASGI app (HTTP and WebSocket) on a local port."""
    return live_asgi


@pytest.fixture
def shop(server: LiveAsgiServer, mock_llm: MockLLMServer):
    """The tenant that ``/demo/`` embeds (slug "acme"), with two FAQ entries and the mock LLM."""
    tenant = factories.TenantFactory(
        slug="acme",
        name="Acme Shop",
        allowed_origins=[server.url],
        default_language="en",
        widget_color="#0f766e",
        widget_greeting=GREETING,
    )
    factories.KnowledgeEntryFactory(tenant=tenant, question=DELIVERY_Q, answer=DELIVERY_A)
    factories.KnowledgeEntryFactory(tenant=tenant, question=WARRANTY_Q, answer=WARRANTY_A)
    factories.LLMProviderFactory(
        tenant=tenant, base_url=mock_llm.base_url, model="kefu-mock", first_token_timeout=2.0
    )
    knowledge_services.knowledge_changed(tenant_id=tenant.pk)
    return tenant


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Opens pages in fresh browser contexts (own storage), closed after the test."""
    contexts: list[BrowserContext] = []

    def open_page(
        width: int = 1280, height: int = 800, init_script: str = "", **options: Any
    ) -> Page:
        context = browser.new_context(
            locale="en-US", viewport={"width": width, "height": height}, **options
        )
        contexts.append(context)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        page.set_default_timeout(BROWSER_WAIT_MS)
        return page

    yield open_page
    for context in contexts:
        context.close()


class Widget:
    """The widget on a page. Playwright's CSS locators pierce its (open) shadow root."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.root = page.locator("[data-kefu-widget]")
        self.launcher = self.root.locator(".launcher")
        self.panel = self.root.locator(".panel")
        self.input = self.root.locator(".composer textarea")
        self.notice = self.root.locator(".notice")
        self.customer_texts = self.root.locator(".msg.customer .text")
        self.answers = self.root.locator(".msg.assistant")
        self.answer_bodies = self.root.locator(".msg.assistant .body")
        self.human = self.root.locator("button.human")

    def goto(self, base_url: str) -> "Widget":
        self.page.goto(f"{base_url}/demo/")
        expect(self.launcher).to_be_visible()
        return self

    def open(self) -> None:
        self.launcher.click()
        expect(self.panel).to_be_visible()

    def settled_box(self, locator: Any) -> dict[str, float]:
        """``locator``'s box once its animations (the panel slides in) have finished: a box
        measured mid-animation is a few pixels off, and a busy machine measures later."""
        locator.evaluate("el => Promise.all(el.getAnimations().map(a => a.finished))")
        box = locator.bounding_box()
        assert box is not None
        return dict(box)

    def ask(self, text: str) -> None:
        self.input.fill(text)
        self.input.press("Enter")

    def shadow_eval(self, expression: str) -> Any:
        """Evaluates ``expression`` with ``root`` bound to the widget's shadow root."""
        return self.page.evaluate(
            "(expression) => new Function('root', 'return ' + expression)("
            "document.querySelector('[data-kefu-widget]').shadowRoot)",
            expression,
        )
