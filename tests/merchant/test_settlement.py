"""Revoke, refunds under both policies, the merchant's own list and settlement; nothing across merchants."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.extensions import db
from server.models import Campaign, Coupon, Redemption
from tests.helpers import auth, paycode, redeem


@pytest.fixture
def redeemed(client, shop, coupon):
    """A merchant's staff token and a function redeeming a fresh hotel coupon at it."""
    _, staff = shop()

    def make(spend_extra=0):
        resident, won = coupon()
        answer = redeem(client, staff, paycode(client, resident, won["id"]), won["threshold_fen"] + spend_extra)
        assert answer.status_code == 200, answer.get_json()
        return resident, won, answer.get_json()["redemption"]

    return staff, make


def post(client, staff, path, reason="录入错误"):
    return client.post(f"/api/v1/merchant/redemptions/{path}", json={"reason": reason}, headers=auth(staff))


def test_revoke_within_the_window_gives_the_coupon_back(client, redeemed, clock):
    staff, make = redeemed
    resident, won, done = make()
    clock.shift(timedelta(minutes=29))
    answer = post(client, staff, f"{done['id']}/revoke")
    assert answer.status_code == 200
    assert answer.get_json()["redemption"]["revoked_at"]
    unused = client.get("/api/v1/coupons?status=unused", headers=auth(resident)).get_json()["items"]
    assert [c["id"] for c in unused] == [won["id"]]
    assert post(client, staff, f"{done['id']}/revoke").get_json()["error"]["code"] == "COUPON_USED"
    # The coupon can be spent again, and is settled once.
    again = redeem(client, staff, paycode(client, resident, won["id"]), won["threshold_fen"])
    assert again.status_code == 200
    assert client.get("/api/v1/merchant/settlement", headers=auth(staff)).get_json()["count"] == 1


def test_revoke_after_the_window_is_refused(client, redeemed, clock):
    staff, make = redeemed
    _, _, done = make()
    clock.shift(timedelta(minutes=31))
    answer = post(client, staff, f"{done['id']}/revoke")
    assert answer.status_code == 403
    assert "不能撤回" in answer.get_json()["error"]["message"]


@pytest.mark.parametrize(("policy", "state", "standing"), [("return", "void", 0), ("forfeit", "used", 1)])
def test_refund_follows_the_campaign_policy(client, app, redeemed, policy, state, standing):
    """Under "return" the coupon is voided and its value goes back to the pool; under "forfeit" it
    stays used for the resident, and the shop is not paid for a sale it took back (Youhao: a
    refunded coupon is treated as used -- not a way to turn a coupon into cash)."""
    staff, make = redeemed
    with app.app_context():
        db.session.execute(sa.update(Campaign).values(refund_policy=policy))
        db.session.commit()
    _, won, done = make()
    answer = post(client, staff, f"{done['id']}/refund", reason="顾客退货")
    assert answer.status_code == 200
    assert answer.get_json()["redemption"]["refunded_at"]
    with app.app_context():
        assert db.session.scalar(sa.select(Coupon.state).where(Coupon.id == won["id"])) == state
    settlement = client.get("/api/v1/merchant/settlement", headers=auth(staff)).get_json()
    assert settlement["count"] == standing
    assert settlement["owed_fen"] == 0
    refunded = answer.get_json()["redemption"]
    share = {"returned_fen": won["face_fen"] * (1 - standing), "withheld_fen": won["face_fen"] * standing}
    assert {key: refunded[key] for key in share} == share
    assert refunded["owed_fen"] == 0


def test_settlement_per_day_and_the_forfeit_rule(client, app, redeemed, clock):
    staff, make = redeemed
    faces = []
    for day in range(2):
        for _ in range(2):
            faces.append((day, make()[1]["face_fen"]))
        clock.shift(timedelta(days=1))
    with app.app_context():
        # A redemption recorded without a spend category (as the old system allowed) forfeits.
        first = db.session.scalar(sa.select(Redemption).order_by(Redemption.id).limit(1))
        first.spend_category = " "
        db.session.commit()
    settlement = client.get("/api/v1/merchant/settlement", headers=auth(staff)).get_json()
    assert [d["date"] for d in settlement["days"]] == ["2026-06-25", "2026-06-26"]
    assert settlement["days"][0]["count"] == 1
    assert settlement["owed_fen"] == sum(face for _, face in faces[1:])
    # The clock is now on 2026-06-27, by the server's clock: nothing today yet.
    assert settlement["today"] == {"date": "2026-06-27", "count": 0, "owed_fen": 0}
    clock.shift(timedelta(days=-1))
    today = client.get("/api/v1/merchant/settlement", headers=auth(staff)).get_json()["today"]
    assert today == settlement["days"][1]


def test_own_redemptions_paginate_and_filter_by_local_date(client, redeemed, clock):
    staff, make = redeemed
    make()
    clock.shift(timedelta(days=1))
    ids = [make()[2]["id"] for _ in range(3)]
    page = client.get("/api/v1/merchant/redemptions?per_page=2", headers=auth(staff)).get_json()
    assert page["total"] == 4 and [r["id"] for r in page["items"]] == ids[::-1][:2]
    second = client.get("/api/v1/merchant/redemptions?per_page=2&page=2", headers=auth(staff)).get_json()
    assert len(second["items"]) == 2
    day = client.get("/api/v1/merchant/redemptions?start=2026-06-26&end=2026-06-26", headers=auth(staff)).get_json()
    assert sorted(r["id"] for r in day["items"]) == ids


def test_a_merchant_sees_and_touches_nothing_of_another(client, shop, redeemed):
    staff_a, make = redeemed
    _, _, done = make()
    _, staff_b = shop()
    assert client.get("/api/v1/merchant/redemptions", headers=auth(staff_b)).get_json()["total"] == 0
    assert client.get("/api/v1/merchant/settlement", headers=auth(staff_b)).get_json()["owed_fen"] == 0
    for action in ("revoke", "refund"):
        answer = post(client, staff_b, f"{done['id']}/{action}")
        assert answer.status_code == 404
        assert answer.get_json()["error"]["code"] == "NOT_FOUND"


def test_a_day_out_of_any_campaign_s_reach_is_refused_not_a_crash(client, shop):
    _, staff = shop("hotel")
    for query in ("start=0001-01-01", "end=9999-12-31", "start=1999-12-31"):
        answer = client.get(f"/api/v1/merchant/redemptions?{query}", headers=auth(staff))
        assert answer.status_code == 400, query
        assert answer.get_json()["error"]["code"] == "INVALID_INPUT"
    assert client.get("/api/v1/merchant/redemptions?start=2026-06-25", headers=auth(staff)).status_code == 200
