"""A campaign's end caps everything (Huating: 截止3月31日24时): nothing is grabbed, drawn or redeemed
after it, no coupon is valid past it, and what is left goes back when it comes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from server.campaign import file as campaign_file
from server.extensions import db
from server.models import Campaign, Tier
from server.pool.jobs import run_all
from tests.helpers import ROOT, auth, campaign_doc, paycode, redeem

HUATING = json.loads((ROOT / "examples" / "huating-2023.json").read_text(encoding="utf-8"))
HUATING["campaign"].pop("geofence")  # the fence has a test of its own
END = datetime(2023, 3, 31, 16, 0, tzinfo=UTC)  # 2023-04-01 00:00 in Huating: 3月31日24时


def tier(app, campaign_id: int, face_fen: int) -> Tier:
    with app.app_context():
        return db.session.scalar(sa.select(Tier).where(Tier.campaign_id == campaign_id, Tier.face_fen == face_fen))


def grab(client, token, tier_id):
    return client.post("/api/v1/grab", json={"tier_id": tier_id}, headers=auth(token))


def test_the_last_period_is_cut_at_the_campaigns_end(app, make_campaign):
    campaign_id = make_campaign(HUATING)
    with app.app_context():
        campaign = db.session.get(Campaign, campaign_id)
        last = campaign.rounds[-1]
        assert campaign.ends_at == END
        assert (last.number, last.closes_at, last.valid_until) == (11, END, END)  # not 2023-04-02
        assert all(r.valid_until <= END for r in campaign.rounds)


def test_after_the_end_nothing_is_grabbed_and_a_coupon_is_valid_to_the_end(
    app, client, make_campaign, make_resident, clock
):
    campaign_id = make_campaign(HUATING)
    ten = tier(app, campaign_id, 1000)  # 满30减10
    clock.move_to(END - timedelta(days=1, hours=4))  # 3月30日 20:00
    run_all(app)  # what the first ten periods left rolls into the last
    _, token = make_resident()
    won = grab(client, token, ten.id)
    assert won.status_code == 200, won.get_json()
    coupon = won.get_json()["coupon"]
    assert coupon["valid_until"] == "2023-04-01T00:00:00+08:00"  # 7 days from claim, cut at the end
    code_for_later = coupon["id"]

    clock.move_to(END + timedelta(hours=12))  # 4月1日 12:00
    late = grab(client, make_resident()[1], ten.id)
    assert late.status_code == 409
    assert late.get_json()["error"] == {"code": "ROUND_CLOSED", "message": "本期活动已于3月31日 24:00结束，感谢参与"}
    shown = client.get(f"/api/v1/coupons/{code_for_later}/paycode", headers=auth(token))
    assert shown.get_json()["error"]["code"] == "COUPON_EXPIRED"
    assert client.get("/api/v1/campaign?code=huating-2023").get_json()["ends_at"] == "2023-04-01T00:00:00+08:00"


def test_a_coupon_redeemed_before_the_end_stands_and_one_after_is_refused(
    app, client, make_campaign, make_resident, make_till, clock
):
    campaign_id = make_campaign(HUATING)
    ten = tier(app, campaign_id, 1000)
    clock.move_to(END - timedelta(hours=2))
    _, staff = make_till("general")  # its token signed now, not in the test's starting year
    run_all(app)
    _, early = make_resident()
    _, token = make_resident()
    first = grab(client, early, ten.id).get_json()["coupon"]
    second = grab(client, token, ten.id).get_json()["coupon"]
    assert redeem(client, staff, paycode(client, early, first["id"]), 3000, category="日用百货").status_code == 200
    clock.move_to(END - timedelta(seconds=30))
    code = paycode(client, token, second["id"])
    clock.move_to(END + timedelta(seconds=10))  # the pay code is fresh, the campaign is over
    refused = redeem(client, staff, code, 3000, category="日用百货")
    assert refused.get_json()["error"]["code"] == "COUPON_EXPIRED"


def test_what_is_left_goes_back_at_the_end_and_the_books_balance(
    app, client, make_campaign, make_resident, clock, balanced
):
    campaign_id = make_campaign(HUATING)
    ten = tier(app, campaign_id, 1000)
    clock.move_to(END - timedelta(hours=3))
    run_all(app)
    _, token = make_resident()
    assert grab(client, token, ten.id).status_code == 200
    clock.move_to(END - timedelta(minutes=1))
    run_all(app)
    assert balanced(campaign_id)["treasury"] == 0  # not over yet
    clock.move_to(END + timedelta(minutes=1))
    run_all(app)
    totals = balanced(campaign_id)
    assert (totals["pool"], totals["stock"], totals["claimed"]) == (0, 0, 0)
    assert totals["treasury"] == 400_000_00  # nothing was spent: the coupon held expired at the end


def test_a_round_that_opens_after_the_end_is_a_problem_of_the_file(app):
    doc = campaign_doc(ends="2026-07-05")  # rounds open every five days from 6月25日: the 4th on 7月10日
    with app.app_context():
        _, problems = campaign_file.check(campaign_file.Document(doc, "test"))
    assert [(p.place, p.message) for p in problems] == [
        ("campaign.ends", f"第{n}轮在活动截止之后才开始：请删去该轮或推后截止时间") for n in (4, 5, 6, 7)
    ]
    bad = campaign_doc(ends="三月底")
    with app.app_context():
        _, problems = campaign_file.check(campaign_file.Document(bad, "test"))
    assert [p.place for p in problems] == ["campaign.ends"]


def test_a_workbooks_end_date_is_that_days_24_00(tmp_path):
    from openpyxl import load_workbook

    book = load_workbook(ROOT / "examples" / "qianan-2022-annex1-as-printed.xlsx")
    book["活动"].append(["活动截止", datetime(2022, 7, 29)])
    book.save(tmp_path / "plan.xlsx")
    doc = campaign_file.read(tmp_path / "plan.xlsx")
    assert doc.data["campaign"]["ends"] == "2022-07-29"


def test_rounds_of_a_campaign_without_an_end_are_as_before(app, make_campaign):
    campaign_id = make_campaign()
    with app.app_context():
        campaign = db.session.get(Campaign, campaign_id)
        assert campaign.ends_at is None
        assert campaign.rounds[-1].valid_until == datetime(2026, 7, 29, 16, 0, tzinfo=UTC)
