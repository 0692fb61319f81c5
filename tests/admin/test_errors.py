"""The console answers its errors as pages of the console, never the API's JSON."""

from __future__ import annotations

import pytest

from server.admin import dashboard


@pytest.mark.parametrize("path", ["/admin/lists/nope", "/admin/nope", "/admin/lists/claims/export.pdf"])
def test_a_page_that_is_not_there_is_the_consoles_404(console, path):
    answer = console("admin").get(path)
    assert answer.status_code == 404
    assert answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    assert "找不到页面" in page and "返回数据看板" in page


def test_a_crash_is_the_consoles_500_page_and_changes_nothing(app, console, make_campaign, monkeypatch, caplog):
    make_campaign()
    client = console("admin")

    def broken(_campaign):
        raise RuntimeError("a defect")

    monkeypatch.setattr(dashboard, "figures_of", broken)
    answer = client.get("/admin/")
    assert answer.status_code == 500 and answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    assert "系统出错" in page and "a defect" not in page and "Traceback" not in page
    # The page names the request, as its header and the log do: a bureau user can quote it.
    request_id = answer.headers["X-Request-Id"]
    assert f"请求编号 {request_id}" in page
    assert f"unhandled error on GET /admin/ (request {request_id})" in caplog.text


def test_a_post_the_page_does_not_take_is_the_consoles_405(console):
    answer = console("admin").post("/admin/audit")
    assert answer.status_code == 405 and answer.mimetype == "text/html"
    assert "操作无效" in answer.get_data(as_text=True)


def test_a_form_the_console_cannot_take_is_its_400_page(app, console, make_campaign):
    from tests.helpers import csrf_token

    campaign_id = make_campaign()
    client = console("admin")
    path = f"/admin/campaigns/{campaign_id}/rounds/2"
    token = csrf_token(client.get(path).get_data(as_text=True))
    answer = client.post(path, data={"csrf_token": token, "reason": "长" * 201})
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    assert "操作未执行" in answer.get_data(as_text=True)


def test_a_plan_file_too_large_is_the_consoles_413_page(console):
    import io

    from tests.helpers import csrf_token

    client = console("admin")
    token = csrf_token(client.get("/admin/campaigns").get_data(as_text=True))
    big = {"csrf_token": token, "file": (io.BytesIO(b"x" * (6 * 1024 * 1024)), "plan.json")}
    answer = client.post("/admin/campaigns", data=big, content_type="multipart/form-data")
    assert answer.status_code == 413 and answer.mimetype == "text/html"
    assert "文件过大" in answer.get_data(as_text=True)


@pytest.mark.parametrize("suffix", ["screen", "screen.json", "screen.png"])
def test_the_screen_of_a_campaign_that_has_none_is_the_consoles_404(console, make_campaign, suffix):
    """A wheel campaign has no big screen, campaign 999 does not exist: the console's page, in
    Chinese, whatever the browser says it accepts."""
    wheel_id = make_campaign()
    client = console("operator")
    for path in (f"/admin/campaigns/{wheel_id}/{suffix}", f"/admin/campaigns/999/{suffix}"):
        for accept in ("text/html", "application/json", "*/*"):
            answer = client.get(path, headers={"Accept": accept})
            assert answer.status_code == 404 and answer.mimetype == "text/html", (path, accept)
            page = answer.get_data(as_text=True)
            assert "找不到页面" in page and '"error"' not in page


@pytest.mark.parametrize("path", ["/admin/nope", "/admin/nope/deeper", "/admin/campaigns/x/screen", "/admin/lists/"])
def test_an_unknown_console_address_is_a_page_signed_in_or_not(app, console, path):
    for client in (console("admin"), app.test_client()):
        answer = client.get(path, headers={"Accept": "application/json"})
        assert answer.status_code == 404 and answer.mimetype == "text/html", path
        assert "找不到页面" in answer.get_data(as_text=True)
