"""A real browser for tests: Debian's Chromium driven by Playwright (no browser download)."""

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.services import skip_or_fail

CHROMIUM = os.environ.get("KEFU_CHROMIUM", "/usr/bin/chromium")
# Every wait polls its condition until this deadline (milliseconds): a passing test never waits
# for it, and a busy CI machine gets time to answer instead of failing at Playwright's 5 s.
BROWSER_WAIT_MS = int(os.environ.get("KEFU_BROWSER_WAIT_MS", "30000"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -e '.[dev]')")
    if not shutil.which(CHROMIUM):
        skip_or_fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls happen
    # between browser steps, never concurrently with it.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    expect.set_options(timeout=BROWSER_WAIT_MS)
    try:
        with sync_playwright() as playwright:
            instance = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield instance
            finally:
                instance.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def console_login(page: Any, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/console/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/console/")
