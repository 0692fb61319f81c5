"""Headless Chromium for page tests: Debian's /usr/bin/chromium driven by Playwright, against
the test app served on a local port from a thread. Screenshots go to test-artifacts/."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.helpers import PASSWORD, ROOT

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"


def chromium_or_skip():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")


@pytest.fixture
def live_server(app):
    """The app on http://127.0.0.1:<port>, served from a thread for the test's duration."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


@contextlib.contextmanager
def chromium(*extra_args: str):
    """Headless Debian Chromium under Playwright, with extra command-line switches if asked."""
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  *extra_args],
        )  # fmt: skip
        yield launched
        launched.close()


@pytest.fixture
def browser():
    with chromium() as launched:
        yield launched


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def decode_qr(page, live_server: str, selector: str) -> str | None:
    """The QR image on the page, decoded in the page by jsQR (the staff page's own decoder)."""
    page.add_script_tag(url=f"{live_server}/static/vendor/jsqr/jsQR.js")
    return page.evaluate(
        """(selector) => {
            const img = document.querySelector(selector);
            const canvas = document.createElement('canvas');
            canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
            const context = canvas.getContext('2d');
            context.drawImage(img, 0, 0);
            const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
            const found = jsQR(pixels, canvas.width, canvas.height);
            return found && found.data;
        }""",
        selector,
    )


def signed_in(browser, live_server: str, username: str, password: str = PASSWORD):
    """A console page signed in as this account, at 1366 x 900 like a bureau laptop."""
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{live_server}/admin/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/admin/**")
    return page
