"""Honest figures: planned, issued and re-issued apart, coverage, and the monthly report (月报)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import sqlalchemy as sa
from openpyxl import load_workbook

from server.admin import dashboard
from server.core.time import utcnow
from server.extensions import db
from server.models import AuditEntry, Campaign, LedgerEntry
from server.pool import rollup
from server.pool.jobs import run_all
from tests.helpers import auth, paycode, redeem

JULY_5 = datetime(2026, 7, 5, 1, 1, tzinfo=UTC)  # round 3 opened at 09:00 Shanghai


def draw(client, token, category="hotel") -> dict:
    answer = client.post("/api/v1/draw", json={"category": category}, headers=auth(token))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["coupon"]


def june_and_july(app, client, make_resident, make_till, clock) -> dict:
    """June: three residents claim (two hotel, one fuel as well), one redeems at 3x the face.
    July: a fourth resident binds and claims. One bound resident never claims."""
    _, till = make_till("hotel")
    tokens = [make_resident()[1] for _ in range(3)]
    make_resident()  # bound, never claims
    june = [draw(client, tokens[0]), draw(client, tokens[1]), draw(client, tokens[1], "fuel")]
    answer = redeem(client, till, paycode(client, tokens[0], june[0]["id"]), june[0]["face_fen"] * 3)
    assert answer.status_code == 200, answer.get_json()
    clock.move_to(JULY_5)
    run_all(app)  # the scheduler's catch-up: rounds 1 and 2 closed and rolled over
    _, july_token = make_resident()
    july = [draw(client, july_token)]
    return {"june": june, "july": july}


def test_a_months_figures_count_its_claims_and_coverage_at_its_end(
    app, client, make_campaign, make_resident, make_till, clock
):
    campaign_id = make_campaign()
    won = june_and_july(app, client, make_resident, make_till, clock)
    with app.app_context():
        campaign = db.session.get(Campaign, campaign_id)
        codes = {c.id: c.code for c in campaign.categories}
        june = dashboard.figures_of(campaign, rollup.Period(date(2026, 6, 1), date(2026, 6, 30)))
        july = dashboard.figures_of(campaign, rollup.Period(date(2026, 7, 1), date(2026, 7, 31)))
        whole = dashboard.figures_of(campaign)
    # June: 3 coupons to 2 residents of the 4 bound by June's end; one redemption.
    assert (june.total.claimed, june.total.claimants, june.bound) == (3, 2, 4)
    assert june.total.coverage == 0.5 and june.total.redeemed == 1
    assert june.total.order_fen == won["june"][0]["face_fen"] * 3
    assert set(june.by_day) == {"2026-06-25"}
    # Per category: hotel was claimed by 2 of 4, fuel by 1 of 4.
    by_code = {codes[k]: f for k, f in june.by_category.items()}
    assert (by_code["hotel"].claimants, by_code["fuel"].claimants) == (2, 1)
    assert (by_code["hotel"].coverage, by_code["fuel"].coverage) == (0.5, 0.25)
    # July: the fourth resident's claim; by July's end 3 residents of the 5 bound had claimed.
    assert (july.total.claimed, july.total.claimants, july.bound, july.total.redeemed) == (1, 3, 5, 0)
    assert july.total.coverage == 3 / 5
    # June put round 1's plan on the wheel (and round 2's rollover of what was left); the whole
    # campaign so far: the plan once, the rest re-issued.
    assert june.total.planned == 100 and july.total.planned == 0
    assert whole.total.planned == 100 and whole.total.claimants == 3 and whole.total.coverage == 3 / 5
    assert whole.total.issued == whole.total.planned + whole.total.reissued + whole.total.adjusted
    assert whole.total.reissued == june.total.reissued + july.total.reissued > 0
    # Stored hours (pool/rollup.py) give the same figures as the claims themselves.
    with app.app_context():
        assert rollup.close_hours(utcnow()) > 0
        db.session.commit()
        campaign = db.session.get(Campaign, campaign_id)
        stored = dashboard.figures_of(campaign, rollup.Period(date(2026, 6, 1), date(2026, 6, 30)))
        assert (stored.total, stored.by_category, stored.by_round, stored.bound) == (
            june.total, june.by_category, june.by_round, june.bound)  # fmt: skip
        stored = dashboard.figures_of(campaign)
        assert (stored.total, stored.by_category, stored.by_day) == (whole.total, whole.by_category, whole.by_day)


def test_the_console_offers_each_month_from_the_first_of_the_next(
    app, client, console, make_campaign, make_resident, make_till, clock
):
    campaign_id = make_campaign()
    won = june_and_july(app, client, make_resident, make_till, clock)
    browser = console("auditor")
    page = browser.get(f"/admin/?campaign={campaign_id}").get_data(as_text=True)
    assert f'/admin/campaigns/{campaign_id}/reports/2026-06.xlsx">2026年6月月报.xlsx</a>' in page
    assert "2026年7月月报（2026年8月1日起提供）" in page
    assert "2026年8月月报" not in page  # no month not begun

    answer = browser.get(f"/admin/campaigns/{campaign_id}/reports/2026-06.xlsx")
    assert answer.status_code == 200
    assert "attachment" in answer.headers["Content-Disposition"]
    workbook = load_workbook(io.BytesIO(answer.data))
    assert workbook.sheetnames == ["月报", "按日", "资金池"]
    sheet = workbook["月报"]
    rows = [row for row in sheet.iter_rows(values_only=True)]
    assert rows[0][0] == "测试消费券 2026年6月消费券月报"
    assert rows[2] == ("月末已绑定居民(人)", 4, *(None,) * 15)
    titles = rows[5]
    total = dict(zip(titles, rows[6], strict=True))
    face = won["june"][0]["face_fen"]
    assert total["项目"] == "合计"
    assert (total["计划投放(张)"], total["领取量(张)"]) == (100, 3)
    assert (total["累计领取人数(截至月末)"], total["覆盖率(截至月末)"]) == (2, 0.5)
    assert (total["核销量(张)"], total["核销率"], total["核销金额(元)"]) == (1, 1 / 3, face / 100)
    assert (total["订单金额(元)"], total["直接带动比"], total["核销商家数"]) == (face * 3 / 100, 3, 1)
    labels = [row[0] for row in rows[6:10]]
    assert labels == ["合计", "宾馆", "加油", "第1轮"]
    assert sheet.cell(7, titles.index("覆盖率(截至月末)") + 1).number_format == "0.0%"
    days = list(workbook["按日"].iter_rows(values_only=True))
    assert [row[0] for row in days] == ["项目", "2026-06-25"]
    pool = dict(row for row in workbook["资金池"].iter_rows(min_row=2, values_only=True))
    assert pool["总预算"] == 100000
    assert sum(v for k, v in pool.items() if k != "总预算") == 100000  # the accounts add up to the budget
    with app.app_context():
        entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "export"))
        assert entry.after == {"monthly_report": "2026-06", "campaign": "test-campaign"}

    # July is not over: refused in words, back on the dashboard, nothing served.
    answer = browser.get(f"/admin/campaigns/{campaign_id}/reports/2026-07.xlsx")
    assert answer.status_code == 302 and answer.headers["Location"].endswith(f"/admin/?campaign={campaign_id}")
    shown = browser.get(answer.headers["Location"]).get_data(as_text=True)
    assert "2026年7月尚未结束，月报2026年8月1日起提供" in shown
    # On 1 August it is there.
    clock.move_to(datetime(2026, 7, 31, 16, 0, tzinfo=UTC))  # 00:00 on 1 August in Shanghai
    browser = console("admin")  # signed in again: a console session lasts hours, not weeks
    assert browser.get(f"/admin/campaigns/{campaign_id}/reports/2026-07.xlsx").status_code == 200
    assert browser.get(f"/admin/campaigns/{campaign_id}/reports/2026-13.xlsx").status_code == 404


def test_the_dashboard_shows_planned_issued_and_reissued_apart(
    app, client, console, make_campaign, make_resident, make_till, clock
):
    campaign_id = make_campaign()
    june_and_july(app, client, make_resident, make_till, clock)
    browser = console("auditor")
    data = browser.get(f"/api/v1/admin/dashboard?campaign={campaign_id}").get_json()
    total = data["total"]
    with app.app_context():
        allocated = db.session.scalar(
            sa.select(sa.func.sum(LedgerEntry.amount_fen)).where(LedgerEntry.kind == "allocate")
        )
    assert total["planned"] == 100 and total["planned_fen"] == allocated > 0
    assert total["issued"] == total["planned"] + total["reissued"] + total["adjusted"]
    assert (total["claimants"], data["bound"], total["coverage"]) == (3, 5, 0.6)
    page = browser.get(f"/admin/?campaign={campaign_id}").get_data(as_text=True)
    assert "计划投放(张)" in page and "其中滚动再投放(张)" in page and "覆盖率（3 / 5 人）" in page
