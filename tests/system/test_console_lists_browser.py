"""The console's redemption search and campaigns page in headless Chromium at a bureau laptop's
1366x900: staff found by name or phone, only merchants that can have redemptions offered, a
table that reads without words broken letter by letter, and the campaigns page in words."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.browser import screenshot, signed_in
from tests.helpers import ROOT

pytestmark = pytest.mark.browser

LAPTOP = {"width": 1366, "height": 900}


def real_names(app, redemptions) -> None:
    """The fixture's shops, assistants and notes as a county's look: long legal names."""
    from server.extensions import db
    from server.models import Merchant, Redemption, Staff

    names = {"hotel": "乾安县如家快捷酒店有限公司", "fuel": "吉林省松苑石油销售有限责任公司"}
    assistants = {"hotel": ("王丽娟", "13700001111"), "fuel": ("李建国", "13700002222")}
    with app.app_context():
        for category, merchant_id in redemptions["merchants"].items():
            db.session.execute(sa.update(Merchant).where(Merchant.id == merchant_id).values(name=names[category]))
            name, phone = assistants[category]
            db.session.execute(sa.update(Staff).where(Staff.merchant_id == merchant_id).values(name=name, phone=phone))
        first = redemptions["made"][0][1]
        db.session.execute(sa.update(Redemption).where(Redemption.id == first).values(note="店内收款191元，含早餐"))
        db.session.commit()


def test_the_redemption_search_finds_an_assistant_by_name_and_reads_at_1366(
    app, browser, live_server, make_account, make_till, redemptions, clock
):
    real_names(app, redemptions)
    make_till("hotel", status="rejected")  # never approved: no redemptions, not offered
    make_account("admin", "wang")
    page = signed_in(browser, live_server, "wang")
    page.goto(f"{live_server}/admin/lists/redemptions")

    offered = page.locator("select[name=merchant] option").all_inner_texts()
    assert offered == ["全部商户", "乾安县如家快捷酒店有限公司", "吉林省松苑石油销售有限责任公司"]
    staff = page.locator("input[name=staff]")
    assert staff.get_attribute("placeholder") == "店员姓名或手机号"
    # The placeholder fits its box: nothing of it is cut.
    assert staff.evaluate(
        """e => {
            const style = getComputedStyle(e);
            const context = document.createElement('canvas').getContext('2d');
            context.font = style.font;
            const room = e.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            return context.measureText(e.placeholder).width <= room;
        }"""
    )

    staff.fill("丽娟")
    page.click("form.filters button[type=submit]")
    assert "staff=" in page.url
    rows = page.locator("table.grid tr")
    assert rows.count() == 1 + 4  # the hotel's four redemptions, revoked and refunded included
    assert "王丽娟" in page.locator("table.grid").inner_text()

    # No cell of a short column or heading breaks inside a word: each is one line high.
    heights = page.evaluate(
        """() => {
            const table = document.querySelector('#list-redemptions');
            const line = parseFloat(getComputedStyle(table).lineHeight);
            const tall = [];
            for (const cell of table.querySelectorAll('th, td')) {
                const wraps = ['商户', '状态', '备注'].includes(table.rows[0].cells[cell.cellIndex].textContent);
                const range = document.createRange();
                range.selectNodeContents(cell);
                const lines = Math.round(range.getBoundingClientRect().height / line);
                if (!wraps && lines > 1) tall.push(cell.textContent);
            }
            return tall;
        }"""
    )
    assert heights == []
    # The page is no wider than the laptop's screen (a wider table scrolls in its own box).
    assert page.evaluate("document.documentElement.scrollWidth") <= LAPTOP["width"]
    screenshot(page, "console-redemptions-by-staff")

    staff.fill("13700002222")
    page.click("form.filters button[type=submit]")
    assert page.locator("table.grid tr").count() == 1 + 2  # the fuel station's two
    screenshot(page, "console-redemptions-by-staff-phone")


def import_the_fair(page, live_server: str) -> None:
    """An admin uploads the Geermu fair's plan on the campaigns page, checked then imported."""
    page.goto(f"{live_server}/admin/campaigns")
    page.set_input_files("input[name=file]", str(ROOT / "examples" / "geermu-2026-fair.json"))
    page.click("button[value=import]")
    assert "已导入活动「昆仑启新岁·乐购暖冬春 年货大集专场消费券」" in page.locator(".flash.info").inner_text()


def test_the_campaigns_page_speaks_to_the_bureau_and_a_past_fair_is_over_on_its_screen_too(
    app, browser, live_server, make_account, make_campaign, clock
):
    make_campaign()  # the wheel campaign, in its first round at T0
    make_account("admin", "wang")
    page = signed_in(browser, live_server, "wang")
    import_the_fair(page, live_server)  # held in February; it is June 2026

    guide = page.locator(".guide").inner_text()
    assert "任何一处有问题都不会导入" in guide and "flask" not in page.locator("main").inner_text()
    rows = page.locator("table.grid tr")
    fair_row = page.locator("table.grid tr", has_text="年货大集")
    wheel_row = page.locator("table.grid tr", has_text="测试消费券")
    assert rows.count() == 1 + 2
    assert "已结束" in fair_row.locator(".phase").inner_text()
    assert "进行中" in wheel_row.locator(".phase").inner_text()
    assert wheel_row.locator("[data-action=screen]").count() == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= LAPTOP["width"]
    screenshot(page, "console-campaigns")

    with page.context.expect_page() as opened:
        fair_row.locator("[data-action=screen]").click()
    screen = opened.value
    screen.wait_for_selector("#left li")
    assert screen.locator("#left").inner_text() == "当前不在活动时间"  # as the campaigns page says
    assert "领券时间 2月6日 09:00 至 2月15日 24:00" in screen.locator("#when").inner_text()


def test_during_the_fair_both_say_it_is_on_and_the_screen_counts_what_is_left(
    app, browser, live_server, make_account, clock
):
    from tests.draw.test_event import OPENS

    clock.move_to(OPENS + timedelta(hours=2))
    make_account("operator", "lili")
    make_account("admin", "wang")
    import_the_fair(signed_in(browser, live_server, "wang"), live_server)

    page = signed_in(browser, live_server, "lili")  # operators run the fair's display
    page.goto(f"{live_server}/admin/campaigns")
    fair_row = page.locator("table.grid tr", has_text="年货大集")
    assert fair_row.locator(".phase").inner_text() == "进行中"
    assert "领券中，至2月15日 24:00" in fair_row.inner_text()
    with page.context.expect_page() as opened:
        fair_row.locator("[data-action=screen]").click()
    screen = opened.value
    screen.set_viewport_size({"width": 1366, "height": 900})
    screen.wait_for_selector("#left li b")
    assert screen.locator("#left").inner_text().split("\n")[0] == "20元券 剩余 1000 张"
    screenshot(screen, "console-event-screen")


def test_a_round_fed_only_by_rollover_says_why_its_quotas_are_zero(
    app, browser, live_server, make_account, make_campaign, clock
):
    make_campaign(budget_yuan=9000)  # exactly what round 1 puts out: nothing left in the pool
    make_account("admin", "wang")
    page = signed_in(browser, live_server, "wang")
    page.goto(f"{live_server}/admin/campaigns")
    page.locator("table.grid a", has_text="第2轮").click()
    why = page.locator("#empty").inner_text()
    assert why.startswith("本活动的预算全部投放在第1轮；第2轮的券由第1轮未领取、过期和退回的金额滚动生成")
    assert all(cell == "0" for cell in page.locator("table.grid td:nth-child(4)").all_inner_texts())
    screenshot(page, "console-round-rollover-only")
    page.click("text=配额建议")
    assert page.locator("#empty").inner_text() == why
