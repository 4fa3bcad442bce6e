"""The API docs in a real browser: Swagger UI and Redoc come from the server itself (the sidecar
package; nothing is fetched from elsewhere), show the operations of the schema, and Swagger UI
calls the API with a key typed into its Authorize dialog."""

import json
import os
import urllib.request
from typing import Any

import pytest

from tenants import services
from tests.support.browser import BROWSER_WAIT_MS

CHAT_PATH = "/api/v1/chat/messages"


class Requests:
    """Every request a page makes, and those its content security policy stopped in the
    browser (they never leave it)."""

    def __init__(self, page: Any) -> None:
        self.urls: list[str] = []
        self.blocked: set[str] = set()
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("requestfailed", self._failed)

    def _failed(self, request: Any) -> None:
        if request.failure == "csp":
            self.blocked.add(request.url)

    def assert_same_origin(self, origin: str) -> None:
        assert self.urls, "the page made no request"
        network = [u for u in self.urls if u.split(":")[0] in ("http", "https", "ws", "wss")]
        strangers = [u for u in network if not u.startswith(f"{origin}/")]
        assert set(strangers) <= self.blocked, strangers


@pytest.mark.django_db(transaction=True)
def test_swagger_ui_is_self_hosted_and_calls_the_api(
    browser, live_asgi, tenant_a, tmp_path
) -> None:
    raw_key = services.api_key_issue(tenant=tenant_a, name="Docs", scopes=["tickets:read"]).raw_key
    with urllib.request.urlopen(f"{live_asgi.url}/api/v1/schema?format=json") as answer:  # noqa: S310
        paths = json.load(answer)["paths"]
    # The chat endpoint is the one integrators look for first.
    assert CHAT_PATH in paths
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    requests = Requests(page)

    page.goto(f"{live_asgi.url}/api/v1/docs")
    operation = page.locator(".opblock-summary-path", has_text=CHAT_PATH).first
    operation.wait_for(timeout=BROWSER_WAIT_MS)
    assert operation.is_visible()
    for path in paths:
        assert page.locator(f".opblock-summary-path[data-path='{path}']").count() >= 1, path

    page.click("button.authorize")
    page.fill(".auth-container input", raw_key)
    page.click(".auth-btn-wrapper button.authorize")
    page.click(".auth-btn-wrapper button.btn-done")
    tenant_op = page.locator(".opblock", has=page.locator("[data-path='/api/v1/tenant']")).first
    tenant_op.locator(".opblock-summary").click()
    tenant_op.get_by_text("any live API key").wait_for(timeout=BROWSER_WAIT_MS)
    tenant_op.locator("button.try-out__btn").click()
    tenant_op.locator("button.execute").click()
    body = tenant_op.locator(".live-responses-table .response-col_description pre").first
    body.wait_for(timeout=BROWSER_WAIT_MS)
    assert '"slug": "tenant-a"' in body.inner_text()
    page.screenshot(path=tmp_path / "swagger-ui.png", full_page=True)
    shots = os.environ.get("KEFU_SCREENSHOTS")
    if shots:  # for a person to look at: KEFU_SCREENSHOTS=/some/dir pytest …
        page.screenshot(path=f"{shots}/api-docs.png", full_page=False)

    requests.assert_same_origin(live_asgi.url)
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in u for u in requests.urls)


@pytest.mark.django_db(transaction=True)
def test_redoc_is_self_hosted(browser, live_asgi, tmp_path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    requests = Requests(page)

    page.goto(f"{live_asgi.url}/api/v1/docs/redoc")
    page.get_by_text("/api/v1/tenant").first.wait_for(state="attached", timeout=BROWSER_WAIT_MS)
    page.screenshot(path=tmp_path / "redoc.png")

    requests.assert_same_origin(live_asgi.url)
    assert any("/static/drf_spectacular_sidecar/redoc/" in u for u in requests.urls)
