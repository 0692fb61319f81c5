"""What a coupon pays of a sale, and what refunds take back: no change (不找零) refused or settled
at the spend, refunds of the whole sale or of parts with the coupon's share by proportion, under
both policies; the books balance after every step and the merchant is owed what is left."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

import pytest
import sqlalchemy as sa

from server.extensions import db
from server.models import Campaign, Coupon, LedgerEntry, Redemption, Refund, RefusedRedemption
from server.pool import ledger
from server.pool.coupons import refund_share
from tests.helpers import auth, campaign_doc, paycode, redeem

NO_THRESHOLD = campaign_doc(
    threshold_multiple=None,
    min_leverage=None,
    tiers=[{"category": "hotel", "face_yuan": 10, "threshold_yuan": 0, "quantity": 50}],
)


def balanced(app) -> dict[str, int]:
    with app.app_context():
        report = ledger.verify(db.session.scalars(sa.select(Campaign)).one())
        assert report.problems == []
        return report.totals


def owed(client, staff) -> int:
    return client.get("/api/v1/merchant/settlement", headers=auth(staff)).get_json()["owed_fen"]


def refund(client, staff, redemption_id, spend_fen=None, reason="顾客退货"):
    body = {"reason": reason} | ({"spend_fen": spend_fen} if spend_fen is not None else {})
    return client.post(f"/api/v1/merchant/redemptions/{redemption_id}/refund", json=body, headers=auth(staff))


def test_a_coupon_never_pays_more_than_the_sale(client, app, make_campaign, make_till, coupon, clock):
    """Geermu 活动二 (不得找零): a 10-yuan coupon without threshold on a 0.01-yuan sale is refused in
    words and changes nothing; on a 10-yuan sale it pays its 10 yuan."""
    make_campaign(NO_THRESHOLD)
    _, staff = make_till("hotel")
    resident, won = coupon()
    assert (won["face_fen"], won["threshold_fen"]) == (1000, 0)
    code = paycode(client, resident, won["id"])
    before = balanced(app)
    short = redeem(client, staff, code, 1)
    assert short.status_code == 409
    assert short.get_json()["error"] == {
        "code": "BELOW_THRESHOLD",
        "message": "消费金额不足券面额，本券不找零（券面10元，本次消费0.01元）",
    }
    assert balanced(app) == before
    with app.app_context():
        assert db.session.get(Coupon, won["id"]).state == "claimed"
        assert db.session.scalar(sa.select(RefusedRedemption.code)) == "BELOW_THRESHOLD"
    done = redeem(client, staff, code, 1000).get_json()["redemption"]
    assert (done["paid_fen"], done["owed_fen"]) == (1000, 1000)
    assert owed(client, staff) == 1000


def test_a_campaign_may_settle_a_short_sale_at_the_spend_and_a_revoke_restores_the_coupon(
    client, app, make_campaign, make_till, coupon, clock
):
    """Where the file says short_sale: settle, a 3-yuan sale with a 10-yuan coupon settles 3 yuan and
    the other 7 go back to the pool; revoking it makes the coupon whole again."""
    doc = campaign_doc(**{k: v for k, v in NO_THRESHOLD["campaign"].items() if k != "code"})
    doc["campaign"]["short_sale"] = "settle"
    doc["tiers"] = NO_THRESHOLD["tiers"]
    make_campaign(doc)
    _, staff = make_till("hotel")
    resident, won = coupon()
    before = balanced(app)
    done = redeem(client, staff, paycode(client, resident, won["id"]), 300).get_json()["redemption"]
    assert (done["face_fen"], done["spend_fen"], done["paid_fen"], done["owed_fen"]) == (1000, 300, 300, 300)
    after = balanced(app)
    assert after["redeemed"] - before["redeemed"] == 300
    assert after["pool"] - before["pool"] == 700
    assert after["claimed"] - before["claimed"] == -1000
    assert owed(client, staff) == 300
    with app.app_context():
        kinds = db.session.execute(
            sa.select(LedgerEntry.kind, LedgerEntry.amount_fen, LedgerEntry.coupons)
            .where(LedgerEntry.redemption_id == done["id"])
            .order_by(LedgerEntry.id)
        ).all()
    assert kinds == [("redeem", 300, 1), ("short", 700, 0)]

    clock.shift(timedelta(minutes=5))
    revoked = client.post(
        f"/api/v1/merchant/redemptions/{done['id']}/revoke", json={"reason": "金额录错"}, headers=auth(staff)
    )
    assert revoked.status_code == 200
    assert balanced(app) == before
    unused = client.get("/api/v1/coupons?status=unused", headers=auth(resident)).get_json()["items"]
    assert [(c["id"], c["face_fen"]) for c in unused] == [(won["id"], 1000)]
    assert owed(client, staff) == 0


@pytest.mark.parametrize("policy", ["return", "forfeit"])
def test_partial_refunds_take_the_coupons_share_by_proportion_to_the_fen(
    client, app, make_campaign, make_till, coupon, clock, policy
):
    """Jincheng: 部分退货按比例退回. A 100-yuan coupon on a 300-yuan sale, refunded 100 yuan three
    times: shares 33.33, 33.33 and 33.34 yuan (rounded down, the last takes the rest), never more
    than the coupon; under "return" to the pool and the coupon void at the end, under "forfeit"
    withheld from the shop while the coupon stays used."""
    make_campaign(campaign_doc(refund_policy=policy))
    _, staff = make_till("hotel")
    while True:  # a 100-yuan coupon (threshold 300)
        resident, won = coupon()
        if won["face_fen"] == 10000:
            break
    done = redeem(client, staff, paycode(client, resident, won["id"]), 30000).get_json()["redemption"]
    start = balanced(app)
    account = "pool" if policy == "return" else "forfeited"
    shares = []
    for n in range(3):
        answer = refund(client, staff, done["id"], 10000)
        assert answer.status_code == 200, answer.get_json()
        got = answer.get_json()["redemption"]
        shares.append(got["returned_fen"] + got["withheld_fen"] - sum(shares))
        assert got["refunded_spend_fen"] == 10000 * (n + 1)
        assert got["owed_fen"] == 10000 - sum(shares) == owed(client, staff)
        assert (got["refunded_at"] is not None) == (n == 2)
        assert balanced(app)[account] - start[account] == sum(shares)
    assert shares == [3333, 3333, 3334]
    with app.app_context():
        assert db.session.get(Coupon, won["id"]).state == ("void" if policy == "return" else "used")
        assert db.session.scalars(sa.select(Refund.share_fen).order_by(Refund.id)).all() == shares
    # Nothing is left to refund; the coupon was never worth more than its face.
    again = refund(client, staff, done["id"], 1)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "COUPON_USED"


def test_a_refund_beyond_the_sale_is_refused_and_a_refunded_sale_cannot_be_revoked(client, app, shop, coupon):
    _, staff = shop()
    resident, won = coupon()
    done = redeem(client, staff, paycode(client, resident, won["id"]), won["threshold_fen"]).get_json()["redemption"]
    before = balanced(app)
    too_much = refund(client, staff, done["id"], won["threshold_fen"] + 1)
    assert too_much.status_code == 400
    assert (
        too_much.get_json()["error"]["message"]
        == f"退货金额应大于0，且不超过尚未退货的{won['threshold_fen'] // 100}.00元"
    )
    assert balanced(app) == before
    assert refund(client, staff, done["id"], 100).status_code == 200
    revoked = client.post(
        f"/api/v1/merchant/redemptions/{done['id']}/revoke", json={"reason": "录入错误"}, headers=auth(staff)
    )
    assert revoked.status_code == 403
    assert revoked.get_json()["error"]["message"] == "这笔核销已部分退货，不能撤回；请为其余商品办理退货"
    with app.app_context():
        assert db.session.get(Redemption, done["id"]).revoked_at is None


@pytest.mark.parametrize(
    ("paid", "spend", "parts"),
    [(10000, 30000, [10000, 10000, 10000]), (1000, 1000, [1, 998, 1]), (5000, 15001, [7, 15000 - 7, 1]), (300, 0, [0])],
)
def test_the_shares_add_up_to_the_coupon_exactly(paid, spend, parts):
    refunded, shares = 0, []
    for part in parts:
        shares.append(refund_share(paid, spend, refunded, refunded + part))
        refunded += part
    # Each share is within a fen of its exact proportion, and together they are the coupon's value.
    exact = [Fraction(paid * part, spend) if spend else Fraction(paid) for part in parts]
    assert all(abs(share - fair) < 1 for share, fair in zip(shares, exact, strict=True))
    assert sum(shares) == paid


def test_a_workbook_says_how_a_short_sale_is_settled(tmp_path):
    from openpyxl import load_workbook

    from server.campaign import file as campaign_file
    from tests.helpers import ROOT

    book = load_workbook(ROOT / "examples" / "qianan-2022-annex1-as-printed.xlsx")
    book["活动"].append(["不足面额", "按消费金额结算"])
    book.save(tmp_path / "plan.xlsx")
    assert campaign_file.read(tmp_path / "plan.xlsx").data["campaign"]["short_sale"] == "settle"
