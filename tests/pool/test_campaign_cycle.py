"""A whole 7-round campaign in travelled time: draws, redemptions, revokes, refunds, expiries,
the scheduler's jobs and a quota change, with the ledger checked against the coupons after
every step. Nothing sleeps: the clock is moved and the jobs are run as the scheduler runs them.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.admin import dashboard
from server.core.time import utcnow
from server.extensions import db
from server.models import Campaign, Coupon, LedgerEntry, Round
from server.pool import rounds
from server.pool.jobs import run_all
from tests.helpers import auth, paycode, redeem

RESIDENTS = 6


def stock_by_tier(app, round_number: int) -> Counter:
    with app.app_context():
        rows = db.session.execute(
            sa.select(Coupon.tier_id, sa.func.count())
            .join(Round, Round.id == Coupon.round_id)
            .where(Round.number == round_number, Coupon.state == "stock")
            .group_by(Coupon.tier_id)
        )
        return Counter(dict(rows.all()))


def round_times(app, number: int):
    with app.app_context():
        r = db.session.scalar(sa.select(Round).where(Round.number == number))
        return r.opens_at, r.closes_at, r.valid_until


@pytest.mark.parametrize("policy", ["return", "forfeit"])
def test_seven_rounds_balance_after_every_step_and_the_treasury_gets_budget_minus_redeemed(
    app, client, make_campaign, make_resident, make_till, balanced, clock, policy
):
    app.config["TOKEN_MAX_AGE_S"] = 60 * 24 * 3600  # the same people, signed in all campaign long
    campaign_id = make_campaign(refund_policy=policy)
    tills = {"hotel": make_till("hotel")[1], "fuel": make_till("fuel")[1]}
    residents = [make_resident()[1] for _ in range(RESIDENTS)]
    run = lambda: run_all(app)  # noqa: E731 - the scheduler's catch-up, as on start
    budget = balanced(campaign_id)["pool"] + balanced(campaign_id)["stock"]
    net_redeemed = 0  # face value spent and not given back to the pool
    expected_stock = stock_by_tier(app, 1)
    put_on_wheel = 0  # every round's stock at its opening: the coupons issued

    for number in range(1, 8):
        opens, closes, valid_until = round_times(app, number)
        clock.move_to(opens + timedelta(minutes=1))
        run()
        balanced(campaign_id)
        # Round n's stock is round n-1's, less what was spent for good: everything else (not
        # drawn, drawn and expired, refunded under "return") came back through the pool.
        assert stock_by_tier(app, number) == expected_stock
        put_on_wheel += sum(expected_stock.values())

        won = []
        for token in residents:
            for category in ("hotel", "fuel"):
                answer = client.post("/api/v1/draw", json={"category": category}, headers=auth(token))
                assert answer.status_code == 200, answer.get_json()
                won.append((token, category, answer.get_json()["coupon"]))
                balanced(campaign_id)
        spent = []
        for token, category, coupon in won[::2]:  # half the coupons are spent at once
            code = paycode(client, token, coupon["id"])
            answer = redeem(client, tills[category], code, coupon["threshold_fen"])
            assert answer.status_code == 200, answer.get_json()
            spent.append((category, coupon, answer.get_json()["redemption"]["id"]))
            balanced(campaign_id)
        # One mistaken redemption undone (the coupon then expires unused), one refund.
        for (category, _, redemption_id), action, reason in zip(
            spent, ("revoke", "refund"), ("收银员误操作", "顾客退货"), strict=False
        ):
            path = f"/api/v1/merchant/redemptions/{redemption_id}/{action}"
            answer = client.post(path, json={"reason": reason}, headers=auth(tills[category]))
            assert answer.status_code == 200, answer.get_json()
            balanced(campaign_id)
        kept = [c for _, c, _ in spent[1:]] if policy == "forfeit" else [c for _, c, _ in spent[2:]]
        net_redeemed += sum(c["face_fen"] for c in kept)
        # In the last round, a third of one sale is refunded (Jincheng: 部分退货按比例退回): its
        # coupon stays used, and under "return" its share goes back to the pool.
        if number == 7:
            category, coupon, redemption_id = spent[2]
            path = f"/api/v1/merchant/redemptions/{redemption_id}/refund"
            body = {"reason": "部分退货", "spend_fen": coupon["threshold_fen"] // 3}
            answer = client.post(path, json=body, headers=auth(tills[category]))
            assert answer.status_code == 200, answer.get_json()
            share = coupon["face_fen"] * (coupon["threshold_fen"] // 3) // coupon["threshold_fen"]
            assert answer.get_json()["redemption"]["owed_fen"] == coupon["face_fen"] - share
            net_redeemed -= share if policy == "return" else 0
        totals = balanced(campaign_id)
        assert totals["redeemed"] + totals["forfeited"] == net_redeemed

        with app.app_context():
            spent_tiers = Counter(
                db.session.scalars(sa.select(Coupon.tier_id).where(Coupon.id.in_([c["id"] for c in kept])))
            )
        expected_stock = expected_stock - spent_tiers

        # Between rounds 5 and 6 the bureau moves quota from hotel 50 to fuel 100 (the Qian'an
        # plan adjusts after round 5): paid from the pool, at the rollover's stock.
        if number == 5:
            clock.move_to(valid_until + timedelta(minutes=1))
            run()
            balanced(campaign_id)
            held = stock_by_tier(app, 6)
            with app.app_context():
                campaign = db.session.get(Campaign, campaign_id)
                round6 = next(r for r in campaign.rounds if r.number == 6)
                tiers = {(t.category.code, t.face_fen): t.id for t in campaign.tiers}
                hotel50, fuel100 = tiers["hotel", 5000], tiers["fuel", 10000]
                quotas = {hotel50: held[hotel50] - 10, fuel100: held[fuel100] + 5}
                rounds.adjust_quotas(round6.id, quotas, "admin:test", utcnow())
                db.session.commit()
            balanced(campaign_id)
            expected_stock[hotel50] -= 10
            expected_stock[fuel100] += 5

        clock.move_to(closes + timedelta(seconds=1))

    clock.move_to(round_times(app, 7)[2] + timedelta(hours=1))
    run()
    totals = balanced(campaign_id)
    assert totals["treasury"] == budget - net_redeemed
    assert (totals["pool"], totals["stock"], totals["claimed"]) == (0, 0, 0)
    with app.app_context():
        states = Counter(db.session.scalars(sa.select(Coupon.state)))
        assert states["claimed"] == 0 and states["stock"] == 0
        assert states["expired"] > 0 and states["withdrawn"] > 0
        kinds = set(db.session.scalars(sa.select(LedgerEntry.kind)))
    # The dashboard's 投放量 counts the money once planned and then re-issued: shown apart, the
    # plan is the first round's 100 coupons, the rest came back and went out again, and the
    # bureau's change is its own line.
    with app.app_context():
        figures = dashboard.figures_of(db.session.get(Campaign, campaign_id)).total
    assert (figures.planned, figures.adjusted, figures.issued) == (100, -5, put_on_wheel)
    assert figures.reissued == put_on_wheel - 100 + 5 > 100
    must = {"budget", "allocate", "rollover", "claim", "redeem", "revoke", "expire", "withdraw", "treasury"}
    must |= {"adjust_up", "adjust_down", "refund_forfeit" if policy == "forfeit" else "refund_return"}
    assert must <= kinds

    # Running every job again moves nothing.
    with app.app_context():
        before = db.session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry))
    run()
    run()
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry)) == before
    assert balanced(campaign_id) == totals
