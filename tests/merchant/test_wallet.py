"""Best coupon at the till (Youhao: 系统默认优先抵扣符合条件的最大面值消费券): one wallet pay code,
and the server applies the largest unused coupon that this shop and this spend qualify for."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from server.auth import tokens
from server.extensions import db
from server.models import Campaign, Coupon, Redemption, Tier
from server.pool import ledger
from tests.helpers import ROOT, at_once, auth, id_number, redeem

YOUHAO = json.loads((ROOT / "examples" / "youhao-2023.json").read_text(encoding="utf-8"))
YOUHAO["campaign"].pop("geofence")  # residents here grab from within Youhao; the fence has its own test
OPENS = datetime(2023, 3, 27, 1, 0, tzinfo=UTC)  # 09:00 Shanghai


def wallet_code(client, token) -> str:
    answer = client.get("/api/v1/wallet/paycode", headers=auth(token))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["paycode"]


def youhao_resident(app, client, make_campaign, make_resident, clock) -> tuple[int, str, dict[int, int]]:
    """A resident holding Youhao's three coupons (20, 40 and 80 yuan); their ids by face in yuan."""
    campaign_id = make_campaign(YOUHAO)
    clock.move_to(OPENS + timedelta(minutes=5))
    resident_id, token = make_resident(id_card=id_number(1))  # Youhao: 手机号 + 身份证
    with app.app_context():
        tiers = db.session.scalars(sa.select(Tier).where(Tier.campaign_id == campaign_id)).all()
    held = {}
    for tier in tiers:
        answer = client.post("/api/v1/grab", json={"tier_id": tier.id}, headers=auth(token))
        assert answer.status_code == 200, answer.get_json()
        held[tier.face_fen // 100] = answer.get_json()["coupon"]["id"]
    return campaign_id, token, held


def test_a_wallet_code_pays_once_so_a_photo_of_it_cannot_empty_the_wallet(
    app, client, make_campaign, make_resident, make_till, clock
):
    _, token, held = youhao_resident(app, client, make_campaign, make_resident, clock)
    _, till = make_till("general")
    _, other_till = make_till("general")
    code = wallet_code(client, token)
    assert redeem(client, till, code, 40000, key="a-1", category="百货").status_code == 200
    scanned = client.post("/api/v1/merchant/scan", json={"paycode": code}, headers=auth(other_till)).get_json()
    assert scanned["accepted"] is False and scanned["refusal"]["code"] == "PAYCODE_EXPIRED"
    for staff, key in ((till, "a-2"), (other_till, "b-1")):  # the same code again, under a new key
        again = redeem(client, staff, code, 40000, key=key, category="百货")
        assert again.status_code == 400
        assert again.get_json()["error"] == {
            "code": "PAYCODE_EXPIRED",
            "message": "这个付款码已用过一次，请让顾客刷新付款码后再扫",
        }
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Redemption)) == 1
        assert {db.session.get(Coupon, held[f]).state for f in (20, 40)} == {"claimed"}
    # A fresh code pays the next coupon.
    assert redeem(client, till, wallet_code(client, token), 40000, key="a-3", category="百货").status_code == 200


def test_a_wallet_codes_nonce_is_64_bits_and_used_up_only_in_its_own_wallet(
    app, client, make_campaign, make_resident, make_till, clock, monkeypatch
):
    """Unique across every redemption, a 32-bit nonce would at scale refuse a fresh code as used:
    now 64 bits, and a nonce another wallet happened to use pays here."""
    from server.auth import paycode as paycodes

    _, token, _ = youhao_resident(app, client, make_campaign, make_resident, clock)
    _, other = make_resident(id_card=id_number(9))
    with app.app_context():
        tier_id = db.session.scalar(sa.select(Tier.id).where(Tier.face_fen == 8000))
    assert client.post("/api/v1/grab", json={"tier_id": tier_id}, headers=auth(other)).status_code == 200
    _, till = make_till("general")
    with app.app_context(), app.test_request_context():
        assert len(paycodes.read(wallet_code(client, token)).nonce) == 16  # 64 bits in hex
    monkeypatch.setattr(paycodes.secrets, "token_hex", lambda n: "0123456789abcdef")  # the same nonce twice
    assert redeem(client, till, wallet_code(client, token), 40000, key="w-1", category="百货").status_code == 200
    answer = redeem(client, till, wallet_code(client, other), 40000, key="w-2", category="百货")
    assert answer.status_code == 200, answer.get_json()
    # In its own wallet the nonce is used up: the same nonce again is refused.
    again = redeem(client, till, wallet_code(client, token), 40000, key="w-3", category="百货")
    assert again.get_json()["error"]["message"] == "这个付款码已用过一次，请让顾客刷新付款码后再扫"


def test_the_till_applies_the_largest_coupon_the_spend_reaches(
    app, client, make_campaign, make_resident, make_till, clock, balanced
):
    campaign_id, token, held = youhao_resident(app, client, make_campaign, make_resident, clock)
    _, till = make_till("general")
    # 250 yuan reaches 满100减20 and 满200减40, not 满300减80: the 40 is applied.
    first = redeem(client, till, wallet_code(client, token), 25000, category="百货")
    assert first.status_code == 200, first.get_json()
    assert (first.get_json()["redemption"]["coupon_id"], first.get_json()["redemption"]["face_fen"]) == (held[40], 4000)
    # 350 yuan reaches all three; of those left, the 80.
    second = redeem(client, till, wallet_code(client, token), 35000, category="百货")
    assert second.get_json()["redemption"]["coupon_id"] == held[80]
    # 99 yuan reaches none: the till is told what would.
    short = redeem(client, till, wallet_code(client, token), 9900, category="百货")
    assert short.status_code == 409
    assert short.get_json()["error"] == {
        "code": "NO_QUALIFYING_COUPON",
        "message": "本次消费99.00元，未达到顾客消费券的使用门槛：最低消费满100元可用20元券",
    }
    third = redeem(client, till, wallet_code(client, token), 10000, category="百货")
    assert third.get_json()["redemption"]["coupon_id"] == held[20]
    empty = redeem(client, till, wallet_code(client, token), 50000, category="百货")
    assert empty.get_json()["error"] == {"code": "NO_QUALIFYING_COUPON", "message": "顾客没有可在本店使用的消费券"}
    balanced(campaign_id)


def test_only_coupons_this_shop_takes_and_still_valid_are_chosen(
    app, client, make_campaign, make_resident, make_till, clock
):
    """Standard campaign, paid by the wallet: hotel 50/100/200 (thresholds 150/300/600), fuel 100 (300)."""
    make_campaign(wallet=True)
    _, token = make_resident(id_card=id_number(2))
    for category in ("hotel", "fuel"):
        assert client.post("/api/v1/draw", json={"category": category}, headers=auth(token)).status_code == 200
    _, hotel = make_till("hotel")
    with app.app_context():
        hotel_coupon, fuel_coupon = (
            db.session.scalar(sa.select(Coupon).where(Coupon.category.has(code=code), Coupon.state == "claimed"))
            for code in ("hotel", "fuel")
        )
        hotel_id, hotel_face, fuel_id = hotel_coupon.id, hotel_coupon.face_fen, fuel_coupon.id
    scan = client.post("/api/v1/merchant/scan", json={"paycode": wallet_code(client, token)}, headers=auth(hotel))
    assert scan.status_code == 200
    assert [c["id"] for c in scan.get_json()["wallet"]] == [hotel_id]  # the fuel coupon is not this shop's
    assert scan.get_json()["accepted"] is True
    paid = redeem(client, hotel, wallet_code(client, token), 100000)
    assert paid.get_json()["redemption"]["coupon_id"] == hotel_id
    assert paid.get_json()["redemption"]["face_fen"] == hotel_face
    with app.app_context():
        assert db.session.get(Coupon, fuel_id).state == "claimed"

    # At its deadline a coupon is no longer chosen.
    _, fuel = make_till("fuel")
    clock.move_to(datetime(2026, 6, 29, 16, 0, tzinfo=UTC))  # round 1 ends: 24:00 of its fifth day
    expired = redeem(client, fuel, wallet_code(client, token), 100000)
    assert expired.get_json()["error"]["code"] == "NO_QUALIFYING_COUPON"


def test_a_retried_wallet_payment_records_once_even_with_a_stale_code(
    app, client, make_campaign, make_resident, make_till, clock
):
    _, token, held = youhao_resident(app, client, make_campaign, make_resident, clock)
    _, till = make_till("general")
    code = wallet_code(client, token)
    first = redeem(client, till, code, 40000, key="till-1-0001", category="百货")
    assert first.get_json()["redemption"]["coupon_id"] == held[80]
    clock.move_to(OPENS + timedelta(minutes=10))  # the code is stale by the retry
    retry = redeem(client, till, code, 40000, key="till-1-0001", category="百货")
    assert retry.status_code == 200
    assert retry.get_json()["redemption"]["id"] == first.get_json()["redemption"]["id"]
    with app.app_context():  # the 40 and the 20 are still the resident's
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Redemption)) == 1
        assert db.session.get(Coupon, held[40]).state == "claimed"


def test_a_key_reused_for_another_residents_wallet_is_refused(
    app, client, make_campaign, make_resident, make_till, clock
):
    _, token, _ = youhao_resident(app, client, make_campaign, make_resident, clock)
    _, till = make_till("general")
    assert redeem(client, till, wallet_code(client, token), 40000, key="k-1", category="百货").status_code == 200
    with app.app_context():
        other_tiers = db.session.scalars(sa.select(Tier.id)).all()
    _, other = make_resident(id_card=id_number(3))
    for tier_id in other_tiers:
        client.post("/api/v1/grab", json={"tier_id": tier_id}, headers=auth(other))
    reused = redeem(client, till, wallet_code(client, other), 40000, key="k-1", category="百货")
    assert reused.status_code == 400
    assert "另一位顾客" in reused.get_json()["error"]["message"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Redemption)) == 1


def test_a_shop_assistant_cannot_pay_with_their_own_wallet(app, client, make_campaign, make_resident, make_till, clock):
    campaign_id = make_campaign(YOUHAO)
    clock.move_to(OPENS + timedelta(minutes=5))
    _, token = make_resident(phone="13700000001", id_card=id_number(4))
    _, till = make_till("general", phone="13700000001")
    with app.app_context():
        tier_id = db.session.scalar(sa.select(Tier.id).where(Tier.campaign_id == campaign_id, Tier.face_fen == 2000))
    client.post("/api/v1/grab", json={"tier_id": tier_id}, headers=auth(token))
    own = redeem(client, till, wallet_code(client, token), 20000, category="百货")
    assert own.status_code == 403 and own.get_json()["error"]["code"] == "FORBIDDEN"


def test_two_tills_taking_one_wallet_at_once_never_spend_a_coupon_twice(
    app, client, make_campaign, make_resident, make_till, clock
):
    campaign_id, token, held = youhao_resident(app, client, make_campaign, make_resident, clock)
    tills = [make_till("general")[1] for _ in range(6)]
    code = wallet_code(client, token)
    answers = at_once(
        app,
        [
            lambda own, i=i, till=till: redeem(own, till, code, 40000, key=f"race-{i}", category="百货")
            for i, till in enumerate(tills)
        ],
    )
    spent = [body["redemption"]["coupon_id"] for status, body in answers if status == 200]
    refused = {body["error"]["code"] for status, body in answers if status != 200}
    # One code, six tills: it pays once; the others are told to ask for a fresh code.
    assert len(spent) == 1 and set(spent) <= set(held.values())
    assert refused <= {"PAYCODE_EXPIRED", "COUPON_USED"}
    with app.app_context():
        report = ledger.verify(db.session.get(Campaign, campaign_id))
        assert report.problems == []
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Redemption)) == len(spent)


def test_the_wallet_code_needs_a_bound_resident(client, make_resident, app):
    _, unbound = make_resident(bound=False)
    assert client.get("/api/v1/wallet/paycode", headers=auth(unbound)).get_json()["error"]["code"] == "NOT_BOUND"
    with app.app_context():
        staff = tokens.issue("staff", 1, bound=True)
    assert client.get("/api/v1/wallet/paycode", headers=auth(staff)).status_code == 403


def test_youhao_coupons_are_spent_between_9_and_22_only_and_say_so(
    app, client, make_campaign, make_resident, make_till, clock
):
    """Youhao: 活动期间每天9:00-22:00使用. Outside the hours the till is refused in words, before
    the spend is typed; the coupon says its hours on the resident's page and at the till."""
    _, token, held = youhao_resident(app, client, make_campaign, make_resident, clock)
    _, till = make_till("general")
    mine = client.get("/api/v1/coupons?status=unused", headers=auth(token)).get_json()["items"]
    assert {c["usable_hours"] for c in mine} == {"09:00-22:00"}

    clock.move_to(OPENS + timedelta(hours=14, minutes=30))  # 23:30
    code = wallet_code(client, token)
    scanned = client.post("/api/v1/merchant/scan", json={"paycode": code}, headers=auth(till)).get_json()
    assert scanned["accepted"] is False and scanned["coupon"]["usable_hours"] == "09:00-22:00"
    refused = redeem(client, till, code, 40000, category="百货")
    assert refused.status_code == 409
    assert refused.get_json()["error"] == {
        "code": "OUTSIDE_HOURS",
        "message": "这张消费券仅限每日09:00-22:00使用，现在不在使用时段内",
    }
    clock.move_to(OPENS + timedelta(days=1, hours=-1, minutes=30))  # 08:30 the next day
    assert redeem(client, till, wallet_code(client, token), 40000, category="百货").status_code == 409
    clock.move_to(OPENS + timedelta(days=1, hours=12, minutes=59))  # 21:59
    assert redeem(client, till, wallet_code(client, token), 40000, category="百货").status_code == 200


def test_a_tiers_own_hours_and_hours_a_file_cannot_mean(app, make_campaign):
    from server.campaign import file as campaign_file
    from tests.helpers import campaign_doc

    doc = campaign_doc()
    doc["campaign"]["hours"] = "09:00-22:00"
    doc["tiers"][0]["hours"] = "10:00-24:00"
    campaign_id = make_campaign(doc)
    with app.app_context():
        tiers = {t.face_fen: t.usage_hours for t in db.session.get(Campaign, campaign_id).tiers}
    assert tiers[5000] == "10:00-24:00" and tiers[10000] is None  # the others follow the campaign
    for wrong in ("22:00-09:00", "9点到22点", "09:00-24:30", "25:00-26:00"):
        bad = campaign_doc(code="test-other")
        bad["campaign"]["hours"] = wrong
        with app.app_context():
            _, problems = campaign_file.check(campaign_file.Document(bad, "test"))
        assert [p.place for p in problems] == ["campaign.hours"], wrong


def test_the_wallet_is_for_campaigns_paid_by_it_and_has_a_code_to_type(
    app, client, make_campaign, make_resident, make_till, clock
):
    """A campaign without the wallet is paid coupon by coupon: a resident holding only its coupons
    gets no wallet code. The wallet's short code, typed at the till, pays once in its minute."""
    make_campaign()
    _, token = make_resident()
    assert client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).status_code == 200
    refused = client.get("/api/v1/wallet/paycode", headers=auth(token))
    assert refused.status_code == 409 and "出示要用的那张券的付款码" in refused.get_json()["error"]["message"]
    assert client.get("/api/v1/campaign").get_json()["wallet"] is False

    make_campaign(code="wallet-campaign", wallet=True)
    _, staff = make_till("hotel")  # the newest campaign's hotel
    other_id, other = make_resident()
    won = client.post("/api/v1/draw", json={"category": "hotel", "campaign": "wallet-campaign"}, headers=auth(other))
    coupon = won.get_json()["coupon"]
    code = client.get("/api/v1/wallet/paycode", headers=auth(other)).get_json()
    assert re.fullmatch(rf"W{other_id}-\d{{8}}", code["short_code"])
    paid = redeem(client, staff, code["short_code"], coupon["threshold_fen"])
    assert paid.status_code == 200, paid.get_json()
    assert paid.get_json()["redemption"]["coupon_id"] == coupon["id"]
    again = redeem(client, staff, code["short_code"], coupon["threshold_fen"])
    assert again.status_code == 400 and again.get_json()["error"]["code"] == "PAYCODE_EXPIRED"
    wrong = redeem(client, staff, f"W{other_id}-00000000", coupon["threshold_fen"])
    assert wrong.get_json()["error"]["code"] == "PAYCODE_EXPIRED"
