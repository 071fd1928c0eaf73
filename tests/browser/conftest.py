"""Browser fixtures: the pinned htmx from npm, the app on a live server, and one headless Chromium per session.

The page loads htmx from its CDN with an SRI hash. Tests cannot reach a CDN, so the same version comes from the
npm registry, its hash is checked against the pin, and the browser is handed that file for the CDN URL.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import socket
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, Response, Route, sync_playwright
from werkzeug.serving import make_server

from app.assets import HTMX
from tests.support import AppFactory

REPO_ROOT = Path(__file__).parents[2]
CACHE_DIR = REPO_ROOT / ".cache"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-quic", "--no-first-run",
]
VIEWPORT = {"width": 1100, "height": 700}

# Chromium reports a CSP violation as a console error; this listener reports it directly as well.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(`${event.violatedDirective} blocked ${event.blockedURI || "inline code"}`);
});
"""


def sri_sha384(content: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(content).digest()).decode("ascii")


def _npm_tarball(version: str) -> Path:
    """`npm pack htmx.org@VERSION` into .cache/htmx-VERSION/, reusing a tarball already there."""
    folder = CACHE_DIR / f"htmx-{version}"
    cached = sorted(folder.glob("*.tgz"))
    if cached:
        return cached[0]
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"npm is not installed: the browser tests need it to fetch {HTMX.package}@{version} "
                    "(the page loads htmx from a CDN the tests cannot reach). Install Node.js and npm.")
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [npm, "pack", f"{HTMX.package}@{version}", "--pack-destination", str(folder), "--silent"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"`npm pack {HTMX.package}@{version}` failed ({result.returncode}):\n{result.stderr}")
    return folder / result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def htmx_js() -> bytes:
    """The htmx file the page pins, from npm, checked against the pinned SRI hash."""
    tarball = _npm_tarball(HTMX.version)
    member = f"package/{HTMX.path}"
    with tarfile.open(tarball, "r:gz") as archive:
        try:
            extracted = archive.extractfile(member)
        except KeyError:
            pytest.fail(f"{tarball.name} has no {member}: does app.assets.HTMX.path still exist in that version?")
        assert extracted is not None, f"{member} in {tarball.name} is not a regular file"
        with extracted:
            content = extracted.read()
    actual = sri_sha384(content)
    assert actual == HTMX.integrity, (
        f"{HTMX.package}@{HTMX.version}/{HTMX.path} from npm hashes to {actual}, but app.assets.HTMX pins "
        f"{HTMX.integrity}: the pinned version and integrity have drifted apart, and browsers would refuse the script."
    )
    return content


@pytest.fixture(scope="module")
def live_host() -> str:
    """The name the browser reaches the live app by: a module overrides it with "localhost" where the browser needs
    a name rather than an IP address (WebAuthn refuses IP origins). Either way the server listens on 127.0.0.1."""
    return "127.0.0.1"


@pytest.fixture(scope="module")
def live_listener() -> Iterator[socket.socket]:
    """The live server's listening socket, bound before the app is built, so its settings can name the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def live_base_url(live_listener: socket.socket, live_host: str) -> str:
    return f"http://{live_host}:{live_listener.getsockname()[1]}"


@pytest.fixture(scope="module")
def live_settings() -> dict:
    """Settings of the live app besides the test configuration: a module overrides this fixture to change them (to
    send mail to its own SMTP server, for instance; it may use live_base_url)."""
    return {}


@pytest.fixture(scope="module")
def live_app(tmp_path_factory, live_settings: dict, live_listener: socket.socket,
             live_base_url: str) -> Iterator[tuple[Flask, str]]:
    """The app on a fresh database, served on a free local port; yields the app (to set up data) and base URL."""
    factory = AppFactory(tmp_path_factory.mktemp("live"))
    # Not quiet: the pages show the usage the background flush writes.
    app = factory(**{"USAGE_FLUSH_SECONDS": "1", **live_settings})
    host, port = live_listener.getsockname()
    server = make_server(host, port, app, threaded=True, fd=live_listener.fileno())
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield app, live_base_url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        factory.close()


@pytest.fixture(scope="module")
def live_server(live_app) -> str:
    """The base URL of the live app."""
    return live_app[1]


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def page_problems() -> list[str]:
    """Console errors, uncaught page errors, CSP violations and off-site requests seen by this test's pages."""
    return []


@pytest.fixture
def new_page(browser: Browser, htmx_js: bytes, live_server: str,
             page_problems: list[str]) -> Iterator[Callable[..., Page]]:
    """Open a page in a fresh browser context (options go to browser.new_context); all close after the test."""
    contexts = []
    local_origin = live_server

    def serve_htmx(route: Route) -> None:
        route.fulfill(status=200, body=htmx_js, content_type="application/javascript",
                      headers={"Access-Control-Allow-Origin": "*"})

    # A form with errors answers 422 (429 when throttled, 409 for a refused action) on purpose; Chromium logs any
    # 4xx page as a console error, which is no problem when the page or the htmx fragment was the answer. A 4xx
    # script or stylesheet still counts.
    refused_pages: set[str] = set()

    def on_response(response: Response) -> None:
        if response.request.resource_type in ("document", "xhr", "fetch") and 400 <= response.status < 500:
            refused_pages.add(response.url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if message.text.startswith("Failed to load resource: the server responded with a status of 4") \
                and message.location.get("url") in refused_pages:
            return
        page_problems.append(f"console error: {message.text} ({message.location.get('url')})")

    def on_request(request: Request) -> None:
        parts = urlsplit(request.url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if request.url != HTMX.url and origin != local_origin and parts.scheme in ("http", "https"):
            page_problems.append(f"off-site request: {request.url}")

    def open_page(**options) -> Page:
        options.setdefault("viewport", VIEWPORT)
        context = browser.new_context(**options)
        contexts.append(context)
        context.route(HTMX.url, serve_htmx)
        context.expose_function("reportCspViolation",
                                lambda text: page_problems.append(f"CSP violation: {text}"))
        context.add_init_script(CSP_LISTENER)
        page = context.new_page()
        page.set_default_timeout(5000)
        page.on("console", on_console)
        page.on("pageerror", lambda error: page_problems.append(f"page error: {error}"))
        page.on("request", on_request)
        page.on("response", on_response)
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    """A page in a fresh context, JavaScript on, 1100×700."""
    return new_page()
