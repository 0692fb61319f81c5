"""Risk flags on the console: each rule catches its pattern and leaves ordinary trade alone."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from server.admin import risk
from server.extensions import db
from server.models import Merchant, Resident
from tests.helpers import auth, paycode

QIANAN = {"lat": 45.0087, "lng": 124.0244}
TEN_KM_AWAY = {"lat": 45.0987, "lng": 124.0244}
NEAR = {"lat": 45.0095, "lng": 124.0250}
DAY = date(2026, 6, 25)  # T0's day in Shanghai: the flags' links open that day's redemptions


@pytest.fixture(autouse=True)
def small_rules(monkeypatch):
    rules = {
        "burst": {"count": 5, "minutes": 10},
        "exact": {"count": 3, "percent": 50},
        "staff": {"residents": 4},
        "address": {"residents": 3},
        "device": {"residents": 2},
        "far": {"metres": 3000},
        "refund": {"count": 1},
        "repeat": {"minutes": 5},
    }
    monkeypatch.setattr(risk, "RULES", rules)


def redeem_one(client, make_resident, staff, clock, *, over=0, location=None, minutes=1):
    _, token = make_resident()
    coupon = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).get_json()["coupon"]
    body = {
        "paycode": paycode(client, token, coupon["id"]),
        "spend_fen": coupon["threshold_fen"] + over,
        "spend_category": "住宿",
        "location": location,
    }
    answer = client.post("/api/v1/merchant/redeem", json=body, headers=auth(staff))
    assert answer.status_code == 200, answer.get_json()
    clock.shift(timedelta(minutes=minutes))
    return answer.get_json()["redemption"]["id"]


def bind_via_api(client, phone, device):
    client.post("/api/v1/auth/sms", json={"phone": phone})
    code = client.get(f"/api/v1/dev/sms-outbox?phone={phone}").get_json()["items"][0]["code"]
    answer = client.post(
        "/api/v1/auth/bind",
        json={"name": "王五", "phone": phone, "sms_code": code},
        headers={"X-Device-Id": device},
    )
    assert answer.status_code == 200, answer.get_json()


@pytest.fixture
def trade(app, client, make_campaign, make_resident, make_till, clock):
    make_campaign()
    busy_id, busy = make_till("hotel")
    quiet_id, quiet = make_till("hotel")
    with app.app_context():
        db.session.get(Merchant, quiet_id).lat, db.session.get(Merchant, quiet_id).lng = QIANAN["lat"], QIANAN["lng"]
        db.session.commit()
    for _ in range(6):  # six at exactly the threshold, a minute apart, six residents, one assistant
        redeem_one(client, make_resident, busy, clock)
    for location in (TEN_KM_AWAY, NEAR, None):  # twenty minutes apart, above the threshold
        redeem_one(client, make_resident, quiet, clock, over=500, location=location, minutes=20)
    bind_via_api(client, "13800000001", "device-aaaa-1111")
    bind_via_api(client, "13800000002", "device-aaaa-1111")
    bind_via_api(client, "13800000003", "device-bbbb-2222")
    return busy_id, quiet_id


def rules_of(app, role="admin"):
    from server.core.time import utcnow

    with app.app_context():
        return {rule.kind: rule for rule in risk.flags(7, utcnow(), role)}


def test_each_rule_flags_its_pattern_and_only_it(app, trade):
    busy, quiet = trade
    found = rules_of(app)
    burst = found["burst"].flags
    assert [(f.subject, f.detail, f.link) for f in burst] == [
        ("演示商户1", "10分钟内核销达到5张，共出现2次", {"merchant": busy, "from": DAY, "to": DAY})
    ]
    assert [(f.subject, f.detail) for f in found["exact"].flags] == [
        ("演示商户1", "6笔消费金额恰好等于使用门槛，占该店核销的100%（共6笔）")
    ]
    (staff,) = found["staff"].flags
    assert staff.subject == "演示商户1 店员店员（13700000001）"
    assert staff.detail == "2026-06-25一天内为6位不同居民核销"
    assert staff.link == {"merchant": busy, "staff": 1, "from": "2026-06-25", "to": "2026-06-25"}
    (far,) = found["far"].flags
    assert (far.subject, far.detail) == ("演示商户2", "1笔核销时收银手机距门店超过3公里（最远10.0公里）")
    (address,) = found["address"].flags
    assert address.subject == "网络地址 127.0.0.1" and "绑定了3位居民" in address.detail
    (device,) = found["device"].flags
    assert device.subject == "设备 device-aaaa-1111" and device.detail == "绑定了2位居民"


def test_the_auditor_sees_the_assistant_s_phone_masked(app, trade):
    (staff,) = rules_of(app, "auditor")["staff"].flags
    assert "137****0001" in staff.subject


def test_ordinary_trade_raises_no_flag(app, client, make_campaign, make_resident, make_till, clock):
    make_campaign()
    _, staff = make_till("hotel")
    for _ in range(3):  # below every threshold of small_rules
        redeem_one(client, make_resident, staff, clock, over=1000, minutes=30)
    assert {kind: rule.flags for kind, rule in rules_of(app).items()} == {
        kind: [] for kind in ("burst", "exact", "staff", "address", "device", "far", "refund", "repeat")
    }


def test_binding_records_where_it_came_from(app, client, clock):
    bind_via_api(client, "13800000009", "device-cccc-3333")
    with app.app_context():
        resident = db.session.scalar(sa.select(Resident).where(Resident.phone == "13800000009"))
        assert (resident.bound_address, resident.bound_device) == ("127.0.0.1", "device-cccc-3333")


def test_the_console_page_lists_the_flags_with_links_to_the_redemptions(console, trade, app):
    page = console("operator").get("/admin/risk?days=7")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "风险提示" in html and "短时间大量核销" in html and "消费金额恰好等于门槛" in html
    assert "运营商共享出口" in html
    links = re.findall(r'href="(/admin/lists/redemptions\?[^"]+)"', html)
    assert links, html
    listed = console("admin").get(links[0].replace("&amp;", "&"))
    assert listed.status_code == 200
    assert listed.get_data(as_text=True).count("演示商户1") >= 6


def test_two_coupons_of_one_resident_at_one_shop_within_minutes_and_refunds_are_flagged(
    app, client, make_campaign, make_resident, make_till, clock
):
    """Qian'an 六(三) 一次消费只能使用一张券: a resident's hotel and fuel coupons spent at one shop a
    minute apart are flagged; Youhao: refunds after redemption are listed per merchant, with what
    was withheld from the shop under "forfeit"."""
    from server.models import Category, merchant_categories

    make_campaign(refund_policy="forfeit")
    shop_id, staff = make_till("hotel")
    with app.app_context():
        fuel = db.session.scalar(sa.select(Category.id).where(Category.code == "fuel"))
        db.session.execute(sa.insert(merchant_categories).values(merchant_id=shop_id, category_id=fuel))
        db.session.commit()
    phone, token = make_resident(phone="13900000077")
    done = []
    for category in ("hotel", "fuel"):
        coupon = client.post("/api/v1/draw", json={"category": category}, headers=auth(token)).get_json()["coupon"]
        body = {
            "paycode": paycode(client, token, coupon["id"]),
            "spend_fen": coupon["threshold_fen"],
            "spend_category": "住宿",
        }
        answer = client.post("/api/v1/merchant/redeem", json=body, headers=auth(staff))
        assert answer.status_code == 200, answer.get_json()
        done.append((coupon, answer.get_json()["redemption"]["id"]))
        clock.shift(timedelta(minutes=1))
    coupon, redemption_id = done[1]
    refund = client.post(
        f"/api/v1/merchant/redemptions/{redemption_id}/refund",
        json={"reason": "退一半", "spend_fen": coupon["threshold_fen"] // 2},
        headers=auth(staff),
    )
    assert refund.status_code == 200, refund.get_json()
    found = rules_of(app)
    (repeat,) = found["repeat"].flags
    assert (repeat.subject, repeat.detail) == (
        "演示商户1 · 居民13900000077",
        "2张券在5分钟内先后核销（每次消费限用一张券）",
    )
    assert repeat.link == {"merchant": shop_id, "phone": "13900000077", "from": DAY, "to": DAY}
    (masked,) = rules_of(app, "auditor")["repeat"].flags
    assert masked.subject == "演示商户1 · 居民139****0077"
    assert masked.link == {"merchant": shop_id, "from": DAY, "to": DAY}
    (refunded,) = found["refund"].flags
    half, share = coupon["threshold_fen"] // 2 / 100, coupon["face_fen"] // 2 / 100
    assert refunded.subject == "演示商户1"
    assert refunded.detail == (
        f"1次退货（1笔核销），退货金额{half:.2f}元，对应券值{share:.2f}元，其中{share:.2f}元视为已用、不予结算"
    )
    assert refunded.link == {"merchant": shop_id, "state": "refunded", "from": DAY, "to": DAY}
