"""The console in headless Chromium: sign in, see the charts drawn, filter and export redemptions,
approve a merchant."""

from __future__ import annotations

import re

import pytest

from tests.browser import screenshot, signed_in
from tests.helpers import PASSWORD, auth, paycode, redeem

pytestmark = pytest.mark.browser


def test_a_bureau_member_signs_in_sees_the_charts_and_approves_a_merchant(
    app,
    client,
    browser,
    live_server,
    make_account,
    make_campaign,
    make_resident,
    make_till,
    clock,  # noqa: F811
):
    make_campaign()
    _, hotel_till = make_till("hotel")
    make_till("fuel", status="applied")
    for category in ("hotel", "hotel", "fuel"):
        _, token = make_resident()
        won = client.post("/api/v1/draw", json={"category": category}, headers=auth(token)).get_json()["coupon"]
        if category == "hotel":
            redeem(client, hotel_till, paycode(client, token, won["id"]), won["threshold_fen"])
    make_account("admin", "wang")

    page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    page.goto(f"{live_server}/admin/")
    assert "/admin/login" in page.url
    page.fill("input[name=username]", "wang")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/admin/")
    for chart in ("chart-categories", "chart-days", "chart-pool"):
        page.wait_for_selector(f"#{chart}[data-drawn=true] canvas")
    assert page.locator(".cards").inner_text().count("核销") >= 2
    screenshot(page, "console-dashboard")

    page.click("header >> text=核销记录")
    page.select_option("select[name=category]", "hotel")
    page.click("form.filters button[type=submit]")
    assert "category=hotel" in page.url
    assert page.locator("table.grid tr").count() == 1 + 2  # the header and the two hotel redemptions
    screenshot(page, "console-redemptions-filtered")
    with page.expect_download() as download:
        page.click("text=CSV")
    exported = download.value.path().read_bytes()
    assert exported.startswith("\ufeff".encode()) and exported.decode("utf-8-sig").count("宾馆") == 2

    page.click("text=商户管理")
    page.select_option("select[name=status]", "applied")
    page.click("form.bar button[type=submit]")
    page.click("button[data-action=approve]")
    flash = page.locator(".flash.info").inner_text()
    assert re.search(r"已审核通过。店员绑定码 [A-Z0-9]{8}", flash), flash
    screenshot(page, "console-merchant-approved")
    page.click("text=操作日志")
    assert "审核通过商户" in page.locator("table.grid").inner_text()
    screenshot(page, "console-audit-log")


def test_an_operator_revokes_a_held_coupon_and_an_admin_downloads_a_statement(
    app, client, browser, live_server, make_account, make_resident, redemptions, clock
):
    _, token = make_resident(phone="13912345678")
    held = client.post("/api/v1/draw", json={"category": "fuel"}, headers=auth(token)).get_json()["coupon"]
    make_account("operator", "lili")
    make_account("admin", "wang")

    def sign_in(username: str):
        return signed_in(browser, live_server, username)

    page = sign_in("lili")
    page.goto(f"{live_server}/admin/lists/claims?state=unused")
    row = page.locator("table.grid tr", has_text=str(held["id"]))
    assert "未使用" in row.inner_text() and "13912345678" in row.inner_text()  # operators see phones
    row.locator("input[name=reason]").fill("冒用他人身份")
    row.locator("button[data-action=revoke]").click()
    assert f"已撤销券号 {held['id']}" in page.locator(".flash.info").inner_text()
    page.goto(f"{live_server}/admin/lists/claims?phone=13912345678")
    assert "已撤销/已退货" in page.locator("table.grid").inner_text()
    screenshot(page, "console-claim-revoked")

    page = sign_in("wang")
    page.goto(f"{live_server}/admin/settlement")
    hotel = page.locator("table tr", has_text="演示商户1")
    assert "100" in hotel.inner_text()  # two redemptions of 50 yuan owed
    screenshot(page, "console-settlement")
    with page.expect_download() as download:
        hotel.locator("a", has_text="XLSX").click()
    assert download.value.suggested_filename.endswith(".xlsx")
    assert download.value.path().read_bytes()[:2] == b"PK"  # a zip: the workbook


def test_a_settlement_batch_goes_from_freezing_to_payment_in_three_hands(
    app, browser, live_server, make_account, redemptions, clock
):
    for role, name in (("operator", "lili"), ("auditor", "zhao"), ("admin", "wang")):
        make_account(role, name)

    def sign_in(username: str):
        return signed_in(browser, live_server, username)

    page = sign_in("lili")
    page.goto(f"{live_server}/admin/settlement/batches")
    page.fill("#freeze input[name=label]", "6月25日")
    page.fill("#freeze input[name=to]", "2026-06-25")
    page.click("button[data-action=freeze]")
    assert "已生成第1批（6月25日）：2 家商户" in page.locator(".flash.info").inner_text()
    batch_url = page.url

    page = sign_in("zhao")
    page.goto(batch_url)
    sampled = page.locator("#sample tr").nth(1).locator("td").first.inner_text()
    page.fill("#invalid input[name=redemption]", sampled)
    page.fill("#invalid input[name=reason]", "小票与核销不符")
    page.click("button[data-action=invalid]")
    assert f"核销 {sampled} 已认定无效" in page.locator(".flash.info").inner_text()
    page.fill("#audit textarea[name=opinion]", "抽查1笔，1笔小票不符已剔除，其余无误")
    page.click("button[data-action=audit]")
    assert "待管理员批准" in page.locator(".flash.info").inner_text()

    page = sign_in("wang")
    page.goto(batch_url)
    page.click("button[data-action=approve]")
    assert "已批准" in page.locator(".flash.info").inner_text()

    page = sign_in("lili")
    page.goto(batch_url)
    row = page.locator("#lines tr", has_text="演示商户2")
    row.locator("input[name=reference]").fill("95588-20260801-0001")
    row.locator("button[data-action=pay]").click()
    assert "演示商户2：已登记付款" in page.locator(".flash.info").inner_text()
    assert "95588-20260801-0001" in page.locator("#lines tr", has_text="演示商户2").inner_text()
    assert "已批准待付款" in page.locator("body").inner_text()  # the hotel is not paid yet
    screenshot(page, "console-settlement-batch")
