"""Pay codes, the till's scan and redeem: every refusal, replays, retries, races and isolation."""

from __future__ import annotations

import re
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from server.extensions import db
from server.models import Coupon, Redemption, RefusedRedemption
from tests.helpers import auth, paycode, redeem


def test_the_till_scans_and_redeems_once(client, app, shop, coupon):
    _, staff = shop()
    resident, won = coupon()
    code = paycode(client, resident, won["id"])
    scanned = client.post("/api/v1/merchant/scan", json={"paycode": code}, headers=auth(staff)).get_json()
    assert scanned["accepted"] is True and scanned["refusal"] is None
    assert scanned["coupon"]["face_fen"] == won["face_fen"]
    assert scanned["coupon"]["threshold_fen"] == won["threshold_fen"]
    answer = redeem(client, staff, code, won["threshold_fen"], key="k-1")
    assert answer.status_code == 200, answer.get_json()
    done = answer.get_json()["redemption"]
    assert (done["face_fen"], done["spend_fen"], done["spend_category"]) == (
        won["face_fen"],
        won["threshold_fen"],
        "住宿",
    )
    used = client.get("/api/v1/coupons?status=used", headers=auth(resident)).get_json()["items"]
    assert [c["id"] for c in used] == [won["id"]]
    # The same screenshot again: refused, and the refusal is logged.
    again = redeem(client, staff, code, won["threshold_fen"], key="k-2")
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "COUPON_USED"
    with app.app_context():
        assert db.session.scalar(sa.select(RefusedRedemption.code)) == "COUPON_USED"


def test_a_retried_submission_with_the_same_key_records_once(client, app, shop, coupon, clock):
    _, staff = shop()
    resident, won = coupon()
    code = paycode(client, resident, won["id"])
    first = redeem(client, staff, code, won["threshold_fen"], key="retry-1").get_json()
    second = redeem(client, staff, code, won["threshold_fen"], key="retry-1")
    assert second.status_code == 200
    assert second.get_json() == first
    # Retried after the pay code went stale (the till was offline for a while): still the same.
    clock.shift(timedelta(minutes=5))
    third = redeem(client, staff, code, won["threshold_fen"], key="retry-1")
    assert third.get_json() == first
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Redemption)) == 1


def test_a_key_reused_after_its_redemption_was_revoked_is_refused_not_answered(client, app, shop, coupon, clock):
    """The key's redemption was revoked: answering it (200) would show a sale while the coupon is
    back with the resident, unpaid. Refused in words; a new key redeems again."""
    _, staff = shop()
    resident, won = coupon()
    code = paycode(client, resident, won["id"])
    first = redeem(client, staff, code, won["threshold_fen"], key="k-1").get_json()["redemption"]
    path = f"/api/v1/merchant/redemptions/{first['id']}/revoke"
    assert client.post(path, json={"reason": "收银员误操作"}, headers=auth(staff)).status_code == 200
    again = redeem(client, staff, code, won["threshold_fen"], key="k-1")
    assert again.status_code == 400
    assert again.get_json()["error"]["message"] == "这个 Idempotency-Key 的核销已撤回，请用新的编号重新核销"
    with app.app_context():
        assert db.session.get(Coupon, won["id"]).state == "claimed"
    fresh = redeem(client, staff, code, won["threshold_fen"], key="k-2")
    assert fresh.status_code == 200 and fresh.get_json()["redemption"]["id"] != first["id"]


def test_a_key_reused_with_another_coupon_s_stale_code_is_refused_not_answered(client, app, shop, coupon, clock):
    _, staff = shop()
    first_resident, first = coupon()
    other_resident, other = coupon()
    stale = paycode(client, other_resident, other["id"])
    short = client.get(f"/api/v1/coupons/{other['id']}/paycode", headers=auth(other_resident)).get_json()
    assert redeem(client, staff, paycode(client, first_resident, first["id"]), first["threshold_fen"], key="k-1")
    clock.shift(timedelta(minutes=5))  # both of the other coupon's codes have gone stale
    for code in (stale, short["short_code"]):
        answer = redeem(client, staff, code, other["threshold_fen"], key="k-1")
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (400, "INVALID_INPUT")
    # A garbled code under that key is no retry either: refused for what it is.
    answer = redeem(client, staff, "garbled", other["threshold_fen"], key="k-1")
    assert answer.get_json()["error"]["code"] == "PAYCODE_EXPIRED"


def test_refusals_each_with_its_code(client, app, shop, coupon, clock):
    _, hotel_staff = shop("hotel")
    _, fuel_staff = shop("fuel")
    _, suspended_staff = shop("hotel", status="suspended")
    resident, won = coupon()
    code = paycode(client, resident, won["id"])

    def refused(staff, token, spend):
        answer = redeem(client, staff, token, spend)
        return answer.status_code, answer.get_json()["error"]["code"]

    assert refused(hotel_staff, code, won["threshold_fen"] - 1) == (409, "BELOW_THRESHOLD")
    assert refused(fuel_staff, code, won["threshold_fen"]) == (409, "CATEGORY_MISMATCH")
    assert refused(suspended_staff, code, won["threshold_fen"]) == (403, "MERCHANT_SUSPENDED")
    assert refused(hotel_staff, code[:-3] + "abc", won["threshold_fen"]) == (400, "PAYCODE_EXPIRED")
    clock.shift(timedelta(seconds=61))
    assert refused(hotel_staff, code, won["threshold_fen"]) == (400, "PAYCODE_EXPIRED")
    with app.app_context():
        logged = Counter(db.session.scalars(sa.select(RefusedRedemption.code)))
    assert logged == {
        "BELOW_THRESHOLD": 1,
        "CATEGORY_MISMATCH": 1,
        "MERCHANT_SUSPENDED": 1,
        "PAYCODE_EXPIRED": 2,
    }


def test_an_expired_coupon_gets_no_paycode_and_cannot_be_redeemed(client, shop, coupon, clock):
    _, staff = shop()
    resident, won = coupon()
    deadline = datetime(2026, 6, 29, 16, 0, tzinfo=UTC)  # 24:00 of the fifth day, Shanghai
    clock.move_to(deadline - timedelta(seconds=30))
    code = paycode(client, resident, won["id"])
    clock.shift(timedelta(seconds=31))
    assert redeem(client, staff, code, won["threshold_fen"]).get_json()["error"]["code"] == "COUPON_EXPIRED"
    answer = client.get(f"/api/v1/coupons/{won['id']}/paycode", headers=auth(resident))
    assert answer.get_json()["error"]["code"] == "COUPON_EXPIRED"


def test_staff_cannot_redeem_their_own_coupon(client, shop, coupon):
    _, staff = shop(phone="13911112222")
    resident, won = coupon(phone="13911112222")
    code = paycode(client, resident, won["id"])
    answer = redeem(client, staff, code, won["threshold_fen"])
    assert answer.status_code == 403
    assert answer.get_json()["error"]["message"] == "店员不能核销自己的消费券"


def test_a_resident_gets_paycodes_only_for_their_own_coupons(client, coupon, make_resident, shop):
    _, won = coupon()
    _, other = make_resident()
    assert client.get(f"/api/v1/coupons/{won['id']}/paycode", headers=auth(other)).status_code == 404
    assert client.get(f"/api/v1/coupons/{won['id']}/paycode.png", headers=auth(other)).status_code == 404


def test_paycode_png_is_a_qr_of_a_fresh_paycode(client, app, shop, coupon):
    from PIL import Image

    resident, won = coupon()
    answer = client.get(f"/api/v1/coupons/{won['id']}/paycode.png", headers=auth(resident))
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.headers["Cache-Control"] == "no-store"
    import io

    image = Image.open(io.BytesIO(answer.data))
    assert image.format == "PNG" and image.width >= 200


def test_paycode_svg_carries_a_qr(client, shop, coupon):
    resident, won = coupon()
    answer = client.get(f"/api/v1/coupons/{won['id']}/paycode.svg", headers=auth(resident))
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "image/svg+xml"
    assert answer.data.lstrip().startswith(b"<?xml") and b"<path" in answer.data


def test_the_same_key_racing_itself_records_once(client, app, shop, coupon):
    _, staff = shop()
    resident, won = coupon()
    code = paycode(client, resident, won["id"])
    start = threading.Barrier(8)
    answers = [None] * 8

    def go(i):
        r = redeem(app.test_client(), staff, code, won["threshold_fen"], key="double-tap")
        answers[i] = (r.status_code, r.get_json()["redemption"]["id"] if r.status_code == 200 else r.get_json())

    def run(i):
        start.wait()
        go(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {status for status, _ in answers} == {200}
    assert len({rid for _, rid in answers}) == 1
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Redemption)) == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RefusedRedemption)) == 0


def test_a_resident_token_is_not_a_staff_token(client, shop, coupon):
    resident, won = coupon()
    answer = client.post("/api/v1/merchant/scan", json={"paycode": "x"}, headers=auth(resident))
    assert answer.status_code == 403


def test_ten_tills_redeeming_one_coupon_at_once_record_one(client, app, shop, coupon):
    tills = [shop()[1] for _ in range(10)]
    resident, won = coupon()
    code = paycode(client, resident, won["id"])
    start = threading.Barrier(len(tills))
    answers = [None] * len(tills)

    def go(i, staff):
        c = app.test_client()
        start.wait()
        r = redeem(c, staff, code, won["threshold_fen"], key=f"till-{i}")
        answers[i] = r.status_code if r.status_code == 200 else r.get_json()["error"]["code"]

    threads = [threading.Thread(target=go, args=(i, s)) for i, s in enumerate(tills)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert Counter(answers) == {200: 1, "COUPON_USED": 9}
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Redemption)) == 1
        assert db.session.scalar(sa.select(Coupon.state).where(Coupon.id == won["id"])) == "used"


def test_the_short_code_typed_by_hand_redeems_in_its_window_and_no_later(client, shop, coupon, clock):
    _, staff = shop()
    resident, won = coupon()
    answer = client.get(f"/api/v1/coupons/{won['id']}/paycode", headers=auth(resident)).get_json()
    short = answer["short_code"]
    assert re.fullmatch(rf"{won['id']}-\d{{8}}", short)
    wrong = f"{won['id']}-{(int(short[-8:]) + 1) % 10**8:08d}"
    refused = client.post("/api/v1/merchant/scan", json={"paycode": wrong}, headers=auth(staff))
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "PAYCODE_EXPIRED"
    # Typed with a space or two, as people do, it is the same code; the next window still takes it.
    clock.shift(timedelta(seconds=60))
    scanned = client.post("/api/v1/merchant/scan", json={"paycode": f" {short[:6]} {short[6:]}"}, headers=auth(staff))
    assert scanned.status_code == 200 and scanned.get_json()["coupon"]["id"] == won["id"]
    clock.shift(timedelta(seconds=60))  # two windows on: stale
    stale = redeem(client, staff, short, won["threshold_fen"])
    assert stale.get_json()["error"]["code"] == "PAYCODE_EXPIRED"
    fresh = client.get(f"/api/v1/coupons/{won['id']}/paycode", headers=auth(resident)).get_json()["short_code"]
    assert redeem(client, staff, fresh, won["threshold_fen"]).status_code == 200


def test_a_code_naming_a_coupon_its_holder_does_not_hold_is_logged_with_that_coupon(
    client, app, shop, coupon, make_resident
):
    """The bureau's risk review sees which coupon a forged code aimed at; a code naming no coupon
    there is logged with none."""
    from server.auth import paycode as paycodes

    _, staff = shop()
    _, won = coupon()
    stranger, _ = make_resident()
    with app.app_context():
        aimed, _ = paycodes.issue(won["id"], stranger, datetime.now(UTC))
        nowhere, _ = paycodes.issue(10**9, stranger, datetime.now(UTC))
    for code in (aimed, nowhere):
        answer = redeem(client, staff, code, won["threshold_fen"])
        assert answer.get_json()["error"]["code"] == "NOT_FOUND"
    with app.app_context():
        logged = db.session.scalars(sa.select(RefusedRedemption.coupon_id).order_by(RefusedRedemption.id)).all()
    assert logged == [won["id"], None]


def test_the_campaigns_spend_categories_are_the_tills_and_excluded_ones_are_refused(
    client, app, make_campaign, make_resident, make_till, coupon, clock
):
    """Geermu: 不得用于交付定金、充值、预存. The till picks what the spend was from the campaign's list;
    a deposit or a top-up is refused in words, and words off the list are not taken."""
    from tests.helpers import campaign_doc

    doc = campaign_doc()
    doc["campaign"]["spend_categories"] = {
        "*": ["住宿", "餐饮", {"name": "押金", "excluded": True}, {"name": "充值", "excluded": True}],
        "fuel": ["92号汽油", "95号汽油"],
    }
    make_campaign(doc)
    _, staff = make_till("hotel")
    resident, won = coupon()
    code = paycode(client, resident, won["id"])
    scanned = client.post("/api/v1/merchant/scan", json={"paycode": code}, headers=auth(staff)).get_json()
    assert scanned["coupon"]["spend_categories"] == [
        {"name": "住宿", "excluded": False},
        {"name": "餐饮", "excluded": False},
        {"name": "押金", "excluded": True},
        {"name": "充值", "excluded": True},
    ]
    deposit = redeem(client, staff, code, won["threshold_fen"], category="押金")
    assert deposit.status_code == 409
    assert deposit.get_json()["error"] == {
        "code": "SPEND_EXCLUDED",
        "message": "消费券不得用于押金（本活动不得用于押金、充值）",
    }
    off_list = redeem(client, staff, code, won["threshold_fen"], category="房费")
    assert off_list.get_json()["error"] == {
        "code": "INVALID_INPUT",
        "message": "消费品类请从本活动的列表中选择：住宿、餐饮",
    }
    assert redeem(client, staff, code, won["threshold_fen"], category="住宿").status_code == 200
    with app.app_context():
        logged = db.session.scalars(sa.select(RefusedRedemption.code).order_by(RefusedRedemption.id)).all()
    assert logged == ["SPEND_EXCLUDED", "INVALID_INPUT"]


def test_spend_categories_a_file_cannot_mean_are_its_problems(app):
    from server.campaign import file as campaign_file
    from tests.helpers import campaign_doc

    cases = {
        "列表": ["campaign.spend_categories"],
        '{"nosuch": ["x"]}': ["campaign.spend_categories.nosuch"],
        '{"*": [{"name": "押金", "excluded": true}]}': ["campaign.spend_categories.*"],
        '{"*": ["餐饮", "餐饮"]}': ["campaign.spend_categories.*"],
    }
    import json

    for raw, places in cases.items():
        doc = campaign_doc()
        doc["campaign"]["spend_categories"] = json.loads(raw) if raw.startswith("{") else raw
        with app.app_context():
            _, problems = campaign_file.check(campaign_file.Document(doc, "test"))
        assert [p.place for p in problems] == places, raw


def test_a_workbook_writes_the_spend_categories_in_one_cell(tmp_path):
    from openpyxl import load_workbook

    from server.campaign import file as campaign_file
    from tests.helpers import ROOT

    book = load_workbook(ROOT / "examples" / "qianan-2022-annex1-as-printed.xlsx")
    book["活动"].append(["消费品类", "住宿、餐饮；不可用：押金、充值"])
    book.save(tmp_path / "plan.xlsx")
    doc = campaign_file.read(tmp_path / "plan.xlsx")
    assert doc.data["campaign"]["spend_categories"] == {
        "*": ["住宿", "餐饮", {"name": "押金", "excluded": True}, {"name": "充值", "excluded": True}]
    }
