"""The API's interactive docs: Swagger UI vendored under static/vendor/, rendered in headless
Chromium under the pages' content security policy, loading nothing from another site."""

from __future__ import annotations

import pytest

from tests.browser import screenshot

pytestmark = pytest.mark.browser


def test_the_docs_render_offline_from_our_own_files(browser, live_server):
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    requested, refused = [], []
    page.on("request", lambda r: requested.append(r.url))
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    answer = page.goto(f"{live_server}/api/v1/docs")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    page.wait_for_selector(".opblock", timeout=15000)
    assert page.locator(".opblock").count() > 20  # the operations of the document
    assert "Huigou API" in page.inner_text(".info")
    assert requested and all(url.startswith(live_server) for url in requested)
    assert refused == []
    screenshot(page, "api-docs")


def test_the_docs_page_names_no_other_site(client):
    answer = client.get("/api/v1/docs")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "https://" not in html and "http://" not in html
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
