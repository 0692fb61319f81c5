"""Property: whatever residents, tills, the bureau and the clock do, in any order, the ledger
agrees with the coupons after every step, and at the end the treasury gets back exactly the
budget less what was spent for good. Sales reach the threshold, pass it, or fall short of a
coupon's face (refused, or settled at the spend where the campaign says so); refunds take the
whole sale or a part of it.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from server.core.time import utcnow
from server.extensions import db
from server.models import Campaign, Redemption, Round
from server.pool import ledger, rounds
from server.pool.jobs import run_all
from tests.helpers import T0, assert_books_count_the_coupons, auth, campaign_doc, fresh_world, redeem

CATEGORIES = ("hotel", "fuel")
draw = st.tuples(st.just("draw"), st.integers(0, 3), st.sampled_from(CATEGORIES))
operation = st.one_of(
    draw,
    draw,
    st.tuples(st.just("redeem"), st.integers(0, 50), st.sampled_from(["threshold", "more", "short"])),
    st.tuples(st.just("revoke"), st.integers(0, 50)),
    st.tuples(st.just("refund"), st.integers(0, 50), st.one_of(st.none(), st.integers(1, 40000))),
    # Minutes: a few (inside the revoke window), or up to 2.5 days at once.
    st.tuples(st.just("advance"), st.one_of(st.integers(1, 20), st.integers(1, 60 * 60))),
    st.tuples(st.just("jobs")),
    st.tuples(st.just("adjust"), st.integers(0, 2), st.integers(-3, 3)),
)


def fresh_campaign(app, policy: str, validity: dict, short_sale: str = "refuse") -> tuple[int, list[str]]:
    """Empty the database and make a tiny 3-round campaign and 4 residents; its 20-yuan fuel
    coupons have no threshold, so a sale can fall short of their face."""
    doc = campaign_doc(
        refund_policy=policy,
        validity=validity,
        budget_yuan=2000,
        min_leverage=None,
        tiers=[
            {"category": "hotel", "face_yuan": 50, "quantity": 4},
            {"category": "hotel", "face_yuan": 100, "quantity": 2},
            {"category": "fuel", "face_yuan": 100, "quantity": 2},
            {"category": "fuel", "face_yuan": 20, "threshold_yuan": 0, "quantity": 2},
        ],
        rounds={"count": 3, "first_draw": "2026-06-25T09:00", "every_days": 2, "valid_days": 2},
    )
    doc["campaign"]["short_sale"] = short_sale
    return fresh_world(app, doc, residents=4)


SPENDS = {"threshold": lambda c: c["threshold_fen"], "more": lambda c: c["threshold_fen"] + 1234,
          "short": lambda c: c["face_fen"] // 3}  # fmt: skip


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    policy=st.sampled_from(["return", "forfeit"]),
    validity=st.sampled_from([{"kind": "round_deadline"}, {"kind": "days_from_claim", "days": 1}]),
    short_sale=st.sampled_from(["refuse", "settle"]),
    operations=st.lists(operation, min_size=5, max_size=30),
)
# The paths a short random list may miss, always tried: a revoke and a refund inside the round,
# then the round's end with coupons held, spent and returned.
@example(
    policy="return",
    validity={"kind": "round_deadline"},
    short_sale="refuse",
    operations=[("draw", 0, "hotel"), ("draw", 1, "hotel"), ("draw", 2, "fuel"), ("redeem", 0, "threshold"),
                ("redeem", 1, "more"), ("redeem", 2, "short"), ("revoke", 0), ("refund", 1, None),
                ("advance", 3000), ("jobs",), ("adjust", 1, 2), ("advance", 2000), ("jobs",), ("draw", 3, "hotel")],
)  # fmt: skip
@example(
    policy="forfeit",
    validity={"kind": "days_from_claim", "days": 1},
    short_sale="settle",
    operations=[("draw", 0, "fuel"), ("draw", 1, "fuel"), ("draw", 2, "fuel"), ("redeem", 0, "short"),
                ("redeem", 1, "short"), ("redeem", 2, "more"), ("refund", 2, 5000), ("refund", 2, 700),
                ("refund", 1, None), ("revoke", 0), ("draw", 3, "fuel"), ("redeem", 3, "threshold"),
                ("revoke", 0), ("advance", 3600), ("jobs",), ("adjust", 2, -3), ("jobs",)],
)  # fmt: skip
def test_the_ledger_balances_after_any_sequence_of_operations(
    app, client, make_till, clock, policy, validity, short_sale, operations
):
    app.config["TOKEN_MAX_AGE_S"] = 60 * 24 * 3600
    clock.move_to(T0)
    campaign_id, residents = fresh_campaign(app, policy, validity, short_sale)
    tills = {category: make_till(category)[1] for category in CATEGORIES}
    held: list[tuple[str, dict]] = []  # (resident token, coupon) won
    done: list[tuple[str, int]] = []  # (till token, redemption id)

    def check():
        with app.app_context():
            report = ledger.verify(db.session.get(Campaign, campaign_id))
            assert report.problems == [], (operations, report.problems)
            assert_books_count_the_coupons(campaign_id)
            return report.totals

    for op in operations:
        kind = op[0]
        if kind == "draw":
            answer = client.post("/api/v1/draw", json={"category": op[2]}, headers=auth(residents[op[1]]))
            if answer.status_code == 200:
                held.append((residents[op[1]], answer.get_json()["coupon"]))
        elif kind == "redeem" and held:
            token, coupon = held[op[1] % len(held)]
            code = client.get(f"/api/v1/coupons/{coupon['id']}/paycode", headers=auth(token))
            if code.status_code == 200:
                till = tills[coupon["category"]["code"]]
                answer = redeem(client, till, code.get_json()["paycode"], SPENDS[op[2]](coupon))
                if answer.status_code == 200:
                    done.append((till, answer.get_json()["redemption"]["id"]))
        elif kind in ("revoke", "refund") and done:
            till, redemption_id = done[op[1] % len(done)]
            body = {"reason": "测试"} | ({"spend_fen": op[2]} if kind == "refund" and op[2] else {})
            client.post(f"/api/v1/merchant/redemptions/{redemption_id}/{kind}", json=body, headers=auth(till))
        elif kind == "advance":
            clock.shift(timedelta(minutes=op[1]))
        elif kind == "jobs":
            run_all(app)
        elif kind == "adjust":
            with app.app_context():
                upcoming = db.session.scalar(
                    sa.select(Round).where(Round.campaign_id == campaign_id, Round.opens_at > utcnow()).limit(1)
                )
                if upcoming is not None:
                    tier = db.session.get(Campaign, campaign_id).tiers[op[1]]
                    have = sum(a.quantity for a in upcoming.allocations if a.tier_id == tier.id)
                    try:
                        rounds.adjust_quotas(upcoming.id, {tier.id: max(have + op[2], 0)}, "admin:test", utcnow())
                        db.session.commit()
                    except rounds.QuotaRefused:
                        db.session.rollback()
        check()

    # After the last deadline the scheduler returns everything not spent for good.
    with app.app_context():
        end = max(r.valid_until for r in db.session.get(Campaign, campaign_id).rounds)
    clock.move_to(end + timedelta(minutes=1))
    run_all(app)
    totals = check()
    with app.app_context():
        # What coupons paid, less the refunds' shares given back (those withheld stay spent).
        spent = db.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(Redemption.paid_fen - Redemption.returned_fen), 0)).where(
                Redemption.revoked_at.is_(None)
            )
        )
        withheld = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Redemption.withheld_fen), 0)))
    assert totals["treasury"] == 200000 - spent
    assert totals["redeemed"] + totals["forfeited"] == spent
    assert totals["forfeited"] == withheld
    assert (totals["pool"], totals["stock"], totals["claimed"]) == (0, 0, 0)
