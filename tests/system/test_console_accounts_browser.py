"""The console's account page, audit log and blacklisting in headless Chromium at 1366x900: an
admin creates and resets an account and the new person signs in; the audit log reads in words,
filters, and fits the screen; a blacklisting waits for its confirmation and an admin lifts it."""

from __future__ import annotations

import re

import pytest

from tests.admin.test_audit_log import log_every_action
from tests.browser import screenshot, signed_in

pytestmark = pytest.mark.browser

GENERATED = re.compile(r"[2-9a-zA-Z]{4}-[2-9a-zA-Z]{4}-[2-9a-zA-Z]{4}")


def fits_the_screen(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_an_admin_creates_an_account_resets_its_password_and_the_person_signs_in(
    browser, live_server, make_account, make_campaign
):
    make_campaign()
    make_account("admin", "wang")
    make_account("auditor", "qian")
    page = signed_in(browser, live_server, "wang")
    page.click("header >> text=账号管理")
    page.wait_for_url(f"{live_server}/admin/accounts")
    page.fill("#new-account input[name=username]", "zhao.lei")
    page.select_option("#new-account select[name=role]", "operator")
    page.click("#new-account button[data-action=create]")
    flash = page.locator(".flash.info").inner_text()
    assert "已新建账号 zhao.lei（运营）" in flash and "只显示这一次" in flash
    first = GENERATED.search(flash).group(0)
    row = page.locator("tr", has_text="zhao.lei")
    assert row.locator("td").nth(1).inner_text() == "运营" and "从未登录" in row.inner_text()

    row.locator("button[data-action=password]").click()
    flash = page.locator(".flash.info").inner_text()
    assert "已重置账号 zhao.lei 的密码" in flash
    second = GENERATED.search(flash).group(0)
    assert second != first and first not in page.content()
    assert fits_the_screen(page)
    screenshot(page, "console-accounts")

    newcomer = signed_in(browser, live_server, "zhao.lei", second)
    assert "运营" in newcomer.locator(".who").inner_text()
    assert newcomer.locator("header >> text=账号管理").count() == 0

    page.locator("tr", has_text="qian").locator("button[data-action=disable]").click()
    assert "已停用账号 qian" in page.locator(".flash.info").inner_text()
    assert "已停用" in page.locator("tr", has_text="qian").inner_text()
    assert page.locator("tr", has_text="wang").locator("button[data-action=disable]").count() == 0  # oneself


def test_the_audit_log_reads_in_words_filters_and_fits_the_screen(
    app, browser, live_server, make_account, make_campaign, make_till, make_resident
):
    make_account("admin", "admin-user")
    log_every_action(app, make_campaign, make_till, make_resident)
    page = signed_in(browser, live_server, "admin-user")
    page.click("header >> text=操作日志")
    page.wait_for_url(f"{live_server}/admin/audit")
    table = page.locator("table.audit").inner_text()
    for sentence in (
        "审核通过商户「演示商户1」（测试消费券）",
        "导出核销记录（XLSX），筛选条件：商户 演示商户1；品类 宾馆；状态 有效",
        "登记结算付款：演示商户2 100.00 元",
        "新建账号「lina」（审计）",
    ):
        assert sentence in table, sentence
    assert '{"' not in table  # the raw records are folded away
    assert fits_the_screen(page)
    screenshot(page, "console-audit-log")

    page.select_option("select[name=action]", "settlement_pay")
    page.click("form.filters button[type=submit]")
    assert "action=settlement_pay" in page.url
    rows = page.locator("table.audit tr")
    assert rows.count() == 2
    page.click("table.audit summary")
    assert '"reference": "B1-fuel"' in page.locator("table.audit details").inner_text()
    assert fits_the_screen(page)
    screenshot(page, "console-audit-log-filtered")

    make_account("auditor", "qian")
    auditor = signed_in(browser, live_server, "qian")
    auditor.goto(f"{live_server}/admin/audit?action=phone_search")
    assert "在居民中按手机号 139****6666 查询" in auditor.locator("table.audit").inner_text()
    assert "13955556666" not in auditor.content()


def test_a_blacklisting_waits_for_its_confirmation_and_an_admin_lifts_it(
    browser, live_server, make_account, make_campaign, make_till
):
    make_campaign()
    make_till("hotel")
    make_account("admin", "wang")
    page = signed_in(browser, live_server, "wang")
    page.click("header >> text=商户管理")
    blacklist = page.locator("form.blacklist")
    blacklist.locator("input[name=reason]").fill("虚假交易")
    blacklist.locator("button[data-action=blacklist]").click()  # not confirmed: the browser holds it
    assert page.locator(".flash").count() == 0
    assert blacklist.locator("input[name=confirm]").evaluate("box => !box.validity.valid")
    assert fits_the_screen(page)
    screenshot(page, "console-merchant-blacklist-confirm")
    blacklist.locator("input[name=confirm]").check()
    blacklist.locator("button[data-action=blacklist]").click()
    assert "已列入黑名单" in page.locator(".flash.info").inner_text()

    lift = page.locator("button[data-action=unblacklist]").locator("xpath=..")
    lift.locator("input[name=reason]").fill("核实为误列")
    lift.locator("button[data-action=unblacklist]").click()
    assert "已撤销黑名单，恢复为已通过" in page.locator(".flash.info").inner_text()
    assert "已通过" in page.locator("table.grid").inner_text()
    screenshot(page, "console-merchant-unblacklisted")
