"""What a person does in the browser, shared by the browser tests: register, log in, log out."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.support import PASSWORD

SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"


def submit(page: Page, button: Locator) -> None:
    """Click a form's button and wait for the server's answer. With JavaScript on, hx-boost sends the form in the
    background, so without this wait the next page.goto() would race the answer (and its new session cookie)."""
    with page.expect_response(lambda response: response.request.method == "POST"):
        button.click()
    # After a redirect htmx still fetches the next page and swaps it in: wait until it has finished.
    expect(page.locator(".htmx-request, .htmx-swapping, .htmx-settling")).to_have_count(0)


def register(page: Page, base_url: str, email: str, password: str = PASSWORD, confirm: str | None = None) -> None:
    page.goto(f"{base_url}/register")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Repeat password").fill(password if confirm is None else confirm)
    submit(page, page.get_by_role("button", name="Create account"))


def log_in(page: Page, base_url: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    submit(page, page.get_by_role("button", name="Log in"))


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    # The boosted form answers in the background: wait for it, or the next page load races its new session cookie.
    expect(page.get_by_role("status")).to_have_text("You have logged out.")


def htmx_is_running(page: Page) -> bool:
    """Wait for the deferred htmx script (a busy machine can be slow to run it); False if it never loads."""
    try:
        page.wait_for_function("typeof window.htmx === 'object'", timeout=5000)
    except Exception:
        return False
    return True


def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    """Take a screenshot; with UPDATE_SCREENSHOTS=1 (`make screenshots`) it replaces docs/screenshots/NAME.png for
    the README, otherwise it goes to a temporary folder so a test run leaves the repository as it was.
    caret="initial": Playwright's default hides the text caret with an injected style, which the page's CSP then
    reports as a violation on the next htmx swap."""
    update = os.environ.get("UPDATE_SCREENSHOTS") == "1"
    folder = SCREENSHOTS if update else Path(tempfile.gettempdir()) / "keyfob-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / f"{name}.png", full_page=full_page, caret="initial")
