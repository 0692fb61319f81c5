"""The pool's rules one by one: rollover policies, the bureau's quota changes, expiry as the
resident and the till see it, and the operator commands."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.campaign import file as campaign_file
from server.campaign.file.read import _xlsx_rollover
from server.core.time import utcnow
from server.extensions import db
from server.models import Campaign, Coupon, LedgerEntry, Round, Tier
from server.pool import rounds
from server.pool.jobs import run_all
from tests.helpers import auth, campaign_doc, paycode, redeem


def round_of(app, number):
    with app.app_context():
        return db.session.scalar(sa.select(Round).where(Round.number == number))


def stock(app, number) -> dict[tuple[str, int], int]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(Tier, sa.func.count())
            .join(Coupon, Coupon.tier_id == Tier.id)
            .join(Round, Round.id == Coupon.round_id)
            .where(Round.number == number, Coupon.state == "stock")
            .group_by(Tier)
        ).all()
        return {(t.category.code, t.face_fen // 100): n for t, n in rows}


# ---------------------------------------------------------------- rollover


def test_split_buys_whole_coupons_by_weight_and_never_spends_more_than_it_has():
    a, b, c = (Tier(id=i, face_fen=f) for i, f in ((1, 5000), (2, 10000), (3, 20000)))
    assert rounds.split(100000, {a: 1, b: 1}) == {a: 10, b: 5}
    # 1,234.56 yuan over 50/100/200 by 1:2:1: whole coupons only, the odd 34.56 stays in the pool.
    counts = rounds.split(123456, {a: 1, b: 2, c: 1})
    spent = sum(t.face_fen * n for t, n in counts.items())
    assert spent <= 123456 and 123456 - spent < 5000
    # Shares 308.64 / 617.28 / 308.64 buy 6, 6 and 1; of the 134.56 left the 100 yuan tier
    # (largest unspent share that still fits) gets one more.
    assert counts == {a: 6, b: 7, c: 1}
    assert rounds.split(4999, {a: 1}) == {}
    assert rounds.split(0, {a: 1}) == {}


def test_a_chosen_mix_turns_what_round_one_returned_into_the_tiers_the_bureau_chose(
    app, make_campaign, balanced, clock
):
    doc = campaign_doc(
        rollover={"policy": "mix", "mix": [{"category": "fuel", "face_yuan": 100, "weight": 3},
                                            {"category": "hotel", "face_yuan": 200, "weight": 1}]},
    )  # fmt: skip
    campaign_id = make_campaign(doc)
    clock.move_to(round_of(app, 1).valid_until + timedelta(minutes=1))
    run_all(app)
    # Nothing was drawn: all 9,000 yuan returned. Shares of 6,750 and 2,250 yuan buy 67 and 11
    # coupons; the 100 yuan left buys one more of the tier with the larger unspent share.
    assert stock(app, 2) == {("fuel", 100): 68, ("hotel", 200): 11}
    totals = balanced(campaign_id)
    assert totals["stock"] == 900000 and totals["pool"] == 10000000 - 900000


def test_the_rollover_plan_of_same_tiers_is_scaled_down_when_the_bureau_spent_returned_value(
    app, make_campaign, balanced, clock
):
    """Budget exactly the plan: no reserve. Round 1 returns everything; the bureau spends part of
    it on round 3 before round 2's rollover; round 2 gets the rest, in proportion."""
    campaign_id = make_campaign(budget_yuan=9000)
    clock.move_to(round_of(app, 1).valid_until - timedelta(hours=1))
    with app.app_context():
        rounds.close_rounds(round_of(app, 1).closes_at, None)
        db.session.commit()
        fuel100 = db.session.scalar(sa.select(Tier.id).join(Tier.category).where(Tier.face_fen == 10000).limit(1))
        rounds.adjust_quotas(round_of(app, 3).id, {fuel100: 10}, "admin:test", utcnow())
        db.session.commit()
    clock.move_to(round_of(app, 1).valid_until + timedelta(minutes=1))
    run_all(app)
    got = stock(app, 2)
    assert sum(face * 100 * n for (_, face), n in got.items()) <= 800000
    assert got[("fuel", 100)] < 30 and got[("hotel", 50)] < 40
    assert balanced(campaign_id)["pool"] >= 0


# ---------------------------------------------------------------- quota changes


def test_quota_changes_are_refused_once_the_round_has_opened_or_beyond_the_pool(app, make_campaign, balanced, clock):
    campaign_id = make_campaign(budget_yuan=9500)  # a reserve of 500 yuan
    with app.app_context():
        tier = db.session.scalar(sa.select(Tier).where(Tier.face_fen == 20000))
        round1, round2 = (db.session.scalar(sa.select(Round).where(Round.number == n)) for n in (1, 2))
        with pytest.raises(rounds.QuotaRefused, match="第1轮已开始"):
            rounds.adjust_quotas(round1.id, {tier.id: 20}, "admin:test", utcnow())
        db.session.rollback()
        with pytest.raises(rounds.QuotaRefused, match="调增需要 600 元，资金池只有 500 元"):
            rounds.adjust_quotas(round2.id, {tier.id: 3}, "admin:test", utcnow())
        db.session.rollback()
        changes = rounds.adjust_quotas(round2.id, {tier.id: 2}, "admin:test", utcnow())
        db.session.commit()
        assert [(c.before, c.after) for c in changes] == [(0, 2)]
        entry = db.session.scalar(sa.select(LedgerEntry).where(LedgerEntry.kind == "adjust_up"))
        assert (entry.amount_fen, entry.coupons, entry.actor) == (40000, 2, "admin:test")
    assert balanced(campaign_id)["pool"] == 10000


def test_the_round_adjust_command_sets_quotas_and_reports_the_pool(runner, make_campaign, clock):
    make_campaign(budget_yuan=10000)
    result = runner.invoke(args=["round", "adjust", "--campaign", "test-campaign", "--round", "2", "hotel:200=3"])
    assert result.exit_code == 0, result.output
    assert "第2轮 宾馆200元券：0 → 3 张" in result.output and "资金池余额 400 元" in result.output
    refused = runner.invoke(args=["round", "adjust", "--campaign", "test-campaign", "--round", "2", "hotel:200=9"])
    assert refused.exit_code == 1 and "未调整：调增需要 1,200 元，资金池只有 400 元" in refused.output
    unknown = runner.invoke(args=["round", "adjust", "--campaign", "test-campaign", "--round", "2", "hotel:70=1"])
    assert unknown.exit_code == 2 and "找不到唯一的券种" in unknown.output


# ---------------------------------------------------------------- expiry as people see it


def test_an_expired_coupon_is_listed_as_expired_and_refused_at_the_till_before_and_after_the_job(
    app, client, make_campaign, make_resident, make_till, clock
):
    make_campaign()
    _, staff = make_till("hotel")
    _, token = make_resident()
    won = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).get_json()["coupon"]
    code = paycode(client, token, won["id"])
    clock.move_to(round_of(app, 1).valid_until + timedelta(seconds=1))
    for _ in ("before the job", "after the job"):
        listed = client.get("/api/v1/coupons?status=expired", headers=auth(token)).get_json()["items"]
        assert [c["id"] for c in listed] == [won["id"]] and listed[0]["status"] == "expired"
        assert client.get("/api/v1/coupons?status=unused", headers=auth(token)).get_json()["items"] == []
        answer = redeem(client, staff, code, won["threshold_fen"])
        assert answer.get_json()["error"]["code"] in ("COUPON_EXPIRED", "PAYCODE_EXPIRED")
        refused = client.get(f"/api/v1/coupons/{won['id']}/paycode", headers=auth(token))
        assert refused.get_json()["error"]["code"] == "COUPON_EXPIRED"
        run_all(app)
    with app.app_context():
        assert db.session.get(Coupon, won["id"]).state == "expired"


# ---------------------------------------------------------------- the ledger command


def test_the_ledger_command_prints_balances_and_fails_when_the_books_and_coupons_disagree(
    app, client, runner, make_campaign, make_resident, clock
):
    make_campaign()
    _, token = make_resident()
    assert client.post("/api/v1/draw", json={"category": "fuel"}, headers=auth(token)).status_code == 200
    result = runner.invoke(args=["ledger"])
    assert result.exit_code == 0, result.output
    assert "账实相符" in result.output and "第1轮" in result.output and "加油" in result.output
    assert "100,000" in result.output  # the budget in yuan
    # Someone edits a coupon behind the ledger's back: a claimed coupon put back in stock.
    with app.app_context():
        db.session.execute(
            sa.update(Coupon)
            .where(Coupon.state == "claimed")
            .values(state="stock", resident_id=None, draw_id=None, claimed_at=None, valid_until=None)
        )
        db.session.commit()
    result = runner.invoke(args=["ledger", "--campaign", "test-campaign"])
    assert result.exit_code == 1
    assert "账实不符" in result.output and "第1轮 加油100元券：账上已领未用 100 元，券面实有 0 元" in result.output


def test_the_ledger_command_catches_a_deleted_entry(app, runner, make_campaign, clock):
    make_campaign()
    with app.app_context():
        db.session.execute(sa.delete(LedgerEntry).where(LedgerEntry.kind == "allocate").where(LedgerEntry.id == 2))
        db.session.commit()
    result = runner.invoke(args=["ledger"])
    assert result.exit_code == 1 and "账实不符" in result.output


def test_scheduler_tick_runs_every_job_once(app, runner, make_campaign, clock):
    make_campaign()
    clock.move_to(round_of(app, 1).valid_until + timedelta(minutes=1))
    result = runner.invoke(args=["scheduler", "tick"])
    assert result.exit_code == 0, result.output
    assert "close_rounds" in result.output and "roll_over" in result.output
    assert round_of(app, 2).rolled_over_at is not None


# ---------------------------------------------------------------- the campaign file


def test_campaign_files_name_their_rollover_policy_and_a_wrong_one_is_reported(app):
    def problems_of(doc):
        with app.app_context():
            return campaign_file.check(campaign_file.Document(doc, "t"))

    plan, problems = problems_of(campaign_doc())
    assert problems == [] and plan.campaign["rollover_policy"] == "same_tiers"
    mix = [{"category": "fuel", "face_yuan": 70, "weight": 1}, {"category": "hotel", "face_yuan": 50, "weight": 0}]
    _, problems = problems_of(campaign_doc(rollover={"policy": "mix", "mix": mix}))
    assert [p.place for p in problems] == ["campaign.rollover.mix[0]", "campaign.rollover.mix[1].weight"]
    _, problems = problems_of(campaign_doc(rollover={"policy": "all"}))
    assert "滚动方式应为" in problems[0].message


def test_an_xlsx_campaign_sheet_can_choose_a_mix():
    assert _xlsx_rollover("同券种按比例") == {"policy": "same_tiers"}
    assert _xlsx_rollover("餐饮100=2，宾馆200元=1") == {
        "policy": "mix",
        "mix": [
            {"category": "restaurant", "face_yuan": "100", "weight": 2},
            {"category": "hotel", "face_yuan": "200", "weight": 1},
        ],
    }


def test_every_new_campaign_opens_its_books_with_the_budget_and_round_one(app, make_campaign, balanced):
    campaign_id = make_campaign()
    totals = balanced(campaign_id)
    assert totals["stock"] == 900000 and totals["pool"] == 10000000 - 900000
    with app.app_context():
        assert Counter(db.session.scalars(sa.select(LedgerEntry.kind))) == {"budget": 1, "allocate": 4}
        assert db.session.get(Campaign, campaign_id).rollover_policy == "same_tiers"
