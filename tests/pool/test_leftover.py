"""What a period and a campaign leave: periods with their own allocation and no rollover (Geermu
每期发放15万元), the leftover's delay (Geermu: 截止后两周) and its way to the next campaign instead of
the treasury (Qian'an 二: 结余资金可用于下一期活动), as ledger moves that balance on both sides."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import sqlalchemy as sa

from server.campaign import file as campaign_file
from server.extensions import db
from server.models import Campaign, Coupon, LedgerEntry, Round
from server.pool import ledger
from server.pool.jobs import run_all
from tests.helpers import auth, campaign_doc

SMALL = {
    "budget_yuan": 20000,
    "tiers": [
        {"category": "hotel", "face_yuan": 50, "quantity": 10},
        {"category": "fuel", "face_yuan": 100, "quantity": 5},
    ],
    "rounds": {"count": 3, "first_draw": "2026-06-25T09:00", "every_days": 2, "valid_days": 2},
}


def stock(app, number: int) -> Counter:
    with app.app_context():
        return Counter(
            db.session.scalars(
                sa.select(Coupon.face_fen).join(Round, Round.id == Coupon.round_id).where(Round.number == number)
            )
        )


def last_deadline(app, campaign_id: int):
    with app.app_context():
        return max(r.valid_until for r in db.session.get(Campaign, campaign_id).rounds)


def kinds(app, campaign_id: int) -> Counter:
    with app.app_context():
        return Counter(db.session.scalars(sa.select(LedgerEntry.kind).where(LedgerEntry.campaign_id == campaign_id)))


def test_periods_with_their_own_allocation_roll_nothing_over(
    app, client, make_campaign, make_resident, balanced, clock
):
    """Geermu: every period is stocked with its plan, 15 万 a week; round 1's undrawn stock stays in
    the pool instead of doubling round 2, and goes back at the end."""
    campaign_id = make_campaign(campaign_doc(allocate="every_round", rollover={"policy": "none"}, **SMALL))
    planned = Counter({5000: 10, 10000: 5})
    assert stock(app, 1) == stock(app, 2) == stock(app, 3) == planned
    _, token = make_resident()
    won = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).get_json()["coupon"]
    for number in (2, 3):
        with app.app_context():
            opens = db.session.scalar(sa.select(Round.opens_at).where(Round.number == number))
        clock.move_to(opens + timedelta(minutes=1))
        run_all(app)
        assert stock(app, number) == planned  # nothing rolled in
        balanced(campaign_id)
    assert "rollover" not in kinds(app, campaign_id)
    clock.move_to(last_deadline(app, campaign_id) + timedelta(minutes=1))
    run_all(app)
    totals = balanced(campaign_id)
    assert totals["treasury"] == 2_000_000 and won["face_fen"] == 5000  # nothing was spent
    assert (totals["pool"], totals["stock"], totals["claimed"]) == (0, 0, 0)


def test_the_leftover_waits_the_days_the_plan_gives(app, make_campaign, balanced, clock):
    campaign_id = make_campaign(campaign_doc(leftover={"after_days": 14}, **SMALL))
    end = last_deadline(app, campaign_id)
    clock.move_to(end + timedelta(days=13, hours=23))
    run_all(app)
    assert balanced(campaign_id)["treasury"] == 0
    assert balanced(campaign_id)["pool"] == 2_000_000
    clock.move_to(end + timedelta(days=14))
    run_all(app)
    assert balanced(campaign_id)["treasury"] == 2_000_000


def test_the_leftover_goes_to_the_next_campaign_once_it_exists(app, make_campaign, balanced, clock):
    """Named for a campaign not imported yet, the leftover waits in the pool; once it is there, the
    whole pool moves into the next campaign's pool, both books balance, and nothing moves twice."""
    first = make_campaign(campaign_doc(leftover={"to": "next-period"}, **SMALL))
    clock.move_to(last_deadline(app, first) + timedelta(hours=1))
    run_all(app)
    assert balanced(first)["pool"] == 2_000_000 and "carry_out" not in kinds(app, first)

    doc = campaign_doc(code="next-period", **SMALL)
    doc["rounds"]["first_draw"] = "2026-08-01T09:00"
    with app.app_context():
        plan, problems = campaign_file.check(campaign_file.Document(doc, "next"))
        assert problems == []
        second = campaign_file.create(plan).id
        db.session.commit()
    before = balanced(second)
    run_all(app)
    run_all(app)
    sent, received = balanced(first), balanced(second)
    assert (sent["pool"], sent["carried"], sent["treasury"]) == (0, 2_000_000, 0)
    assert received["carried_in"] == -2_000_000
    assert received["pool"] - before["pool"] == 2_000_000
    assert kinds(app, first)["carry_out"] == 1 and kinds(app, second)["carry_in"] == 1
    with app.app_context():
        text = ledger.report_text(ledger.verify(db.session.get(Campaign, second)))
    assert "上期结余转入 20,000 元" in text and "账实相符" in text


def test_leftover_settings_a_file_cannot_mean_are_its_problems(app):
    cases = {
        "soon": "campaign.leftover",
        '{"after_days": -1}': "campaign.leftover.after_days",
        '{"to": "Not A Code!"}': "campaign.leftover.to",
        '{"to": "test-campaign"}': "campaign.leftover.to",
        '{"when": 3}': "campaign.leftover",
    }
    import json

    for raw, where in cases.items():
        doc = campaign_doc(leftover=json.loads(raw) if raw.startswith("{") else raw)
        with app.app_context():
            _, problems = campaign_file.check(campaign_file.Document(doc, "test"))
        assert [p.place for p in problems] == [where], raw


def test_a_workbook_writes_the_leftover_and_no_rollover_in_words(tmp_path):
    from openpyxl import load_workbook

    from tests.helpers import ROOT

    book = load_workbook(ROOT / "examples" / "qianan-2022-annex1-as-printed.xlsx")
    book["活动"].append(["结余处理", "截止后14天转入 qianan-2023"])
    book["活动"].append(["滚动方式", "不滚动"])
    book.save(tmp_path / "plan.xlsx")
    data = campaign_file.read(tmp_path / "plan.xlsx").data["campaign"]
    assert data["leftover"] == {"after_days": 14, "to": "qianan-2023"}
    assert data["rollover"] == {"policy": "none"}


def test_geermus_second_week_is_stocked_its_own_150_000_yuan(app, make_campaign, balanced, clock):
    """The issue's reproduction: period 2 was stocked 299,940 yuan (its plan and period 1's leftover)."""
    import json

    from tests.helpers import ROOT

    doc = json.loads((ROOT / "examples" / "geermu-2026.json").read_text(encoding="utf-8"))
    campaign_id = make_campaign(doc)
    with app.app_context():
        second = db.session.get(Campaign, campaign_id).rounds[1]
        opens = second.opens_at
    clock.move_to(opens + timedelta(minutes=1))
    run_all(app)
    assert sum(face * n for face, n in stock(app, 2).items()) == 15_000_000
    assert balanced(campaign_id)["pool"] == 15_000_000  # period 1's, waiting for the end and two weeks


def test_seven_periods_without_rollover_ending_early_and_returning_late_balance_at_every_step(
    app, client, make_campaign, make_resident, make_till, balanced, clock
):
    """Seven periods each stocked with its own plan, no rollover, the campaign ending in the middle
    of the seventh, sales refunded in part, and the leftover returned two weeks after the end: the
    books balance after every step, and the treasury gets the budget less what was spent for good."""
    from datetime import UTC, datetime

    from tests.helpers import paycode, redeem

    app.config["TOKEN_MAX_AGE_S"] = 60 * 24 * 3600
    doc = campaign_doc(
        allocate="every_round", rollover={"policy": "none"}, ends="2026-07-27", leftover={"after_days": 14}
    )
    campaign_id = make_campaign(doc)
    end = datetime(2026, 7, 27, 16, 0, tzinfo=UTC)  # 7月27日24时 in Shanghai
    planned = stock(app, 1)
    tills = {"hotel": make_till("hotel")[1], "fuel": make_till("fuel")[1]}
    residents = [make_resident()[1] for _ in range(4)]
    spent_for_good = 0
    with app.app_context():
        periods = [(r.number, r.opens_at, r.closes_at) for r in db.session.get(Campaign, campaign_id).rounds]
    assert periods[-1][2] == end  # the seventh period is cut at the campaign's end
    for number, opens, _ in periods:
        clock.move_to(opens + timedelta(minutes=1))
        run_all(app)
        assert stock(app, number) == planned
        balanced(campaign_id)
        for n, token in enumerate(residents):
            for category in ("hotel", "fuel"):
                won = client.post("/api/v1/draw", json={"category": category}, headers=auth(token)).get_json()
                if n % 2 or "coupon" not in won:
                    continue
                coupon = won["coupon"]
                done = redeem(client, tills[category], paycode(client, token, coupon["id"]), coupon["threshold_fen"])
                redemption = done.get_json()["redemption"]
                part = coupon["threshold_fen"] // 3
                refunded = client.post(
                    f"/api/v1/merchant/redemptions/{redemption['id']}/refund",
                    json={"reason": "部分退货", "spend_fen": part},
                    headers=auth(tills[category]),
                ).get_json()["redemption"]
                spent_for_good += refunded["paid_fen"] - refunded["returned_fen"]
                balanced(campaign_id)
    clock.move_to(end + timedelta(days=13))
    run_all(app)
    totals = balanced(campaign_id)
    assert totals["treasury"] == 0 and (totals["stock"], totals["claimed"]) == (0, 0)
    clock.move_to(end + timedelta(days=14))
    run_all(app)
    totals = balanced(campaign_id)
    assert totals["treasury"] == 10_000_000 - spent_for_good
    assert totals["redeemed"] == spent_for_good and totals["pool"] == 0
    assert "rollover" not in kinds(app, campaign_id)
