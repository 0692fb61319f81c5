"""The draw: what a resident wins, and each refusal with its code and Chinese message."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.extensions import db
from server.models import Coupon, Draw
from tests.helpers import T0, auth, campaign_doc


def spin(client, token, category="hotel", **body):
    return client.post("/api/v1/draw", json={"category": category, **body}, headers=auth(token))


def test_draw_gives_a_coupon_of_the_category_with_its_terms(client, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident()
    answer = spin(client, token)
    assert answer.status_code == 200
    body = answer.get_json()
    coupon = body["coupon"]
    assert coupon["category"] == {"code": "hotel", "name": "宾馆"}
    assert coupon["face_fen"] in (5000, 10000, 20000)
    assert coupon["threshold_fen"] == 3 * coupon["face_fen"]
    assert coupon["round"] == 1
    assert coupon["status"] == "unused"
    # Valid to 24:00 of the fifth day: round 1 opens 25 June, so until 30 June 00:00 Shanghai.
    assert coupon["valid_until"] == "2026-06-30T00:00:00+08:00"
    assert coupon["claimed_at"] == "2026-06-25T09:00:00+08:00"
    wheel = client.get("/api/v1/draw/hotel/wheel").get_json()
    segment = wheel["segments"][body["segment_index"]]
    assert segment["face_fen"] == coupon["face_fen"]
    assert wheel["remaining"] == 69


def test_draw_refuses_second_spin_in_same_round(client, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident()
    won = spin(client, token).get_json()["coupon"]
    again = spin(client, token)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "ALREADY_DRAWN"
    assert "每轮每个品类限抽一次" in again.get_json()["error"]["message"]
    # A retry whose first answer was lost still learns which coupon it won.
    assert again.get_json()["error"]["coupon_id"] == won["id"]
    assert "我的券" in again.get_json()["error"]["message"]
    # Another category in the same round is a separate draw.
    assert spin(client, token, "fuel").status_code == 200


def test_draw_allows_the_same_category_again_next_round(client, make_campaign, make_resident, clock):
    make_campaign(allocate="every_round")
    _, token = make_resident()
    assert spin(client, token).status_code == 200
    clock.move_to(T0 + timedelta(days=5))
    second = spin(client, token)
    assert second.status_code == 200
    assert second.get_json()["coupon"]["round"] == 2


def test_draw_refuses_before_the_round_opens(client, make_campaign, make_resident, clock):
    make_campaign()
    clock.move_to(T0 - timedelta(minutes=1))
    _, token = make_resident()
    answer = spin(client, token)
    assert answer.status_code == 409
    error = answer.get_json()["error"]
    assert error["code"] == "ROUND_NOT_OPEN"
    assert "6月25日 09:00" in error["message"]


def test_draw_refuses_between_rounds(client, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident()
    clock.move_to(T0 + timedelta(days=5, minutes=-30))  # 08:30 on the day round 2 opens
    error = spin(client, token).get_json()["error"]
    assert error["code"] == "ROUND_NOT_OPEN"
    assert "第2轮" in error["message"]


def test_draw_refuses_after_the_last_round(client, make_campaign, make_resident, clock):
    make_campaign()
    clock.move_to(T0 + timedelta(days=40))
    _, token = make_resident()
    answer = spin(client, token)
    assert answer.status_code == 409
    assert answer.get_json()["error"]["code"] == "ROUND_CLOSED"


def test_draw_refuses_when_the_category_is_sold_out(client, app, make_campaign, make_resident, clock):
    make_campaign(tiers=[{"category": "fuel", "face_yuan": 100, "quantity": 2}])
    winners = [make_resident()[1] for _ in range(2)]
    for token in winners:
        assert spin(client, token, "fuel").status_code == 200
    _, late = make_resident()
    answer = spin(client, late, "fuel")
    assert answer.status_code == 409
    error = answer.get_json()["error"]
    assert error["code"] == "SOLD_OUT"
    assert "券已被抢完" in error["message"]
    with app.app_context():
        # The refused draw left nothing behind: the resident may still spin if stock comes back.
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Draw)) == 2


def test_draw_refuses_an_unbound_resident(client, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident(bound=False)
    answer = spin(client, token)
    assert answer.status_code == 403
    assert answer.get_json()["error"]["code"] == "NOT_BOUND"


@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Basic abc", "Bearer "])
def test_draw_refuses_without_a_valid_token(client, make_campaign, clock, header):
    make_campaign()
    headers = {"Authorization": header} if header else {}
    answer = client.post("/api/v1/draw", json={"category": "hotel"}, headers=headers)
    assert answer.status_code == 401
    assert answer.get_json()["error"]["code"] == "UNAUTHORIZED"


def test_draw_refuses_an_expired_token(client, app, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident()
    clock.move_to(T0 + timedelta(seconds=app.config["TOKEN_MAX_AGE_S"] + 1))
    assert spin(client, token).get_json()["error"]["code"] == "UNAUTHORIZED"


def test_draw_refuses_an_unknown_category(client, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident()
    answer = spin(client, token, "casino")
    assert answer.status_code == 404
    assert answer.get_json()["error"] == {"code": "NOT_FOUND", "message": "没有这个品类"}


def test_draw_without_a_campaign_says_so(client, make_resident, clock):
    _, token = make_resident()
    answer = spin(client, token)
    assert answer.status_code == 404
    assert answer.get_json()["error"]["code"] == "NO_CAMPAIGN"


CIRCLE = {"kind": "circle", "lat": 45.0113, "lng": 124.0217, "radius_m": 30000}  # around Qian'an


def test_geofence_requires_a_location(client, make_campaign, make_resident, clock):
    make_campaign(geofence=CIRCLE)
    _, token = make_resident()
    answer = spin(client, token)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "LOCATION_REQUIRED"


def test_geofence_refuses_a_location_outside_the_region(client, make_campaign, make_resident, clock):
    make_campaign(geofence=CIRCLE)
    _, token = make_resident()
    changchun = {"lat": 43.8171, "lng": 125.3235}
    answer = spin(client, token, location=changchun)
    assert answer.status_code == 403
    assert answer.get_json()["error"]["code"] == "OUTSIDE_REGION"
    assert spin(client, token, location={"lat": 45.02, "lng": 124.03}).status_code == 200


def test_geofence_polygon(client, make_campaign, make_resident, clock):
    square = {"kind": "polygon", "points": [[44.9, 123.9], [44.9, 124.2], [45.1, 124.2], [45.1, 123.9]]}
    make_campaign(geofence=square)
    _, token = make_resident()
    assert spin(client, token, location={"lat": 45.2, "lng": 124.0}).get_json()["error"]["code"] == "OUTSIDE_REGION"
    assert spin(client, token, location={"lat": 45.0, "lng": 124.0}).status_code == 200


def test_validity_days_from_claim(client, make_campaign, make_resident, clock):
    make_campaign(validity={"kind": "days_from_claim", "days": 7})
    _, token = make_resident()
    clock.move_to(T0 + timedelta(days=2, hours=3))
    coupon = spin(client, token).get_json()["coupon"]
    assert coupon["valid_until"] == "2026-07-04T12:00:00+08:00"


def test_my_coupons_by_status_follow_the_clock(client, app, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident()
    won = spin(client, token).get_json()["coupon"]
    unused = client.get("/api/v1/coupons?status=unused", headers=auth(token)).get_json()["items"]
    assert [c["id"] for c in unused] == [won["id"]]
    assert unused[0]["merchants"] == "/api/v1/categories/hotel/merchants?code=test-campaign"
    # No job has run: at the deadline the coupon is expired all the same.
    clock.move_to(T0 + timedelta(days=5))
    assert client.get("/api/v1/coupons?status=unused", headers=auth(token)).get_json()["items"] == []
    expired = client.get("/api/v1/coupons?status=expired", headers=auth(token)).get_json()["items"]
    assert [(c["id"], c["status"]) for c in expired] == [(won["id"], "expired")]
    with app.app_context():
        db.session.execute(sa.update(Coupon).where(Coupon.id == won["id"]).values(state="used"))
        db.session.commit()
    used = client.get("/api/v1/coupons?status=used", headers=auth(token)).get_json()["items"]
    assert [c["status"] for c in used] == ["used"]
    assert len(client.get("/api/v1/coupons", headers=auth(token)).get_json()["items"]) == 1


def test_my_coupons_shows_only_my_own(client, make_campaign, make_resident, clock):
    make_campaign()
    _, mine = make_resident()
    _, theirs = make_resident()
    spin(client, theirs)
    assert client.get("/api/v1/coupons", headers=auth(mine)).get_json()["items"] == []


def test_my_coupons_rejects_an_unknown_status(client, make_resident):
    _, token = make_resident()
    answer = client.get("/api/v1/coupons?status=lost", headers=auth(token))
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "INVALID_INPUT"


def test_campaign_shows_categories_tiers_rounds_and_what_is_left(client, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident()
    spin(client, token, "fuel")
    campaign = client.get("/api/v1/campaign").get_json()
    assert campaign["name"] == "测试消费券"
    assert campaign["current_round"] == 1
    assert campaign["categories"] == [{"code": "hotel", "name": "宾馆"}, {"code": "fuel", "name": "加油"}]
    fuel = [t for t in campaign["tiers"] if t["category"]["code"] == "fuel"]
    assert [(t["face_fen"], t["threshold_fen"], t["quantity"], t["remaining"]) for t in fuel] == [
        (10000, 30000, 30, 29)
    ]
    assert len(campaign["rounds"]) == 7
    assert campaign["rounds"][1]["opens_at"] == "2026-06-30T09:00:00+08:00"


def test_merchants_of_a_category_lists_only_approved_ones(client, app, make_campaign, clock):
    from server.models import Category, Enrolment, Merchant

    campaign_id = make_campaign()
    with app.app_context():
        hotel = db.session.scalar(
            sa.select(Category).where(Category.campaign_id == campaign_id, Category.code == "hotel")
        )
        for n, status in enumerate(["approved", "applied", "suspended"]):
            merchant = Merchant(
                name=f"宾馆{n}",
                credit_code=f"91220723MA00000{n}XX",
                address="乾安县",
                contact_name="演示",
                contact_phone="10000000000",
                categories=[hotel],
            )
            db.session.add_all([merchant, Enrolment(merchant=merchant, campaign_id=campaign_id, status=status)])
        db.session.commit()
    answer = client.get("/api/v1/categories/hotel/merchants").get_json()
    assert [m["name"] for m in answer["items"]] == ["宾馆0"]
    assert client.get("/api/v1/categories/fuel/merchants").get_json()["items"] == []
    assert client.get("/api/v1/categories/nope/merchants").status_code == 404


def test_fixed_odds_can_answer_thanks_and_still_counts_as_the_draw(client, app, make_campaign, make_resident, clock):
    doc = campaign_doc(draw_strategy="fixed_odds", thanks_weight=1000)
    for tier in doc["tiers"]:
        tier["odds_weight"] = 0 if tier["category"] == "hotel" else 1
    make_campaign(doc)
    _, token = make_resident()
    answer = spin(client, token).get_json()
    assert answer["coupon"] is None
    wheel = client.get("/api/v1/draw/hotel/wheel").get_json()
    assert wheel["segments"][answer["segment_index"]]["label"] == "谢谢参与"
    assert spin(client, token).get_json()["error"]["code"] == "ALREADY_DRAWN"
    with app.app_context():
        assert db.session.scalar(sa.select(Draw.outcome)) == "thanks"
