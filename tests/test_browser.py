"""The browser fixture: waits poll their condition up to a deadline a busy machine can meet."""

from playwright.sync_api import Browser, expect


def test_a_wait_outlasts_a_slow_page(browser: Browser) -> None:
    # Given a page that shows its text later than Playwright's own 5 s default
    page = browser.new_page()
    try:
        page.set_content(
            "<p id=state>loading</p>"
            "<script>setTimeout(() => {"
            " document.getElementById('state').textContent = 'ready'; }, 6500);</script>"
        )

        # Then waiting for the text waits for the text
        expect(page.locator("#state")).to_have_text("ready")
    finally:
        page.close()
