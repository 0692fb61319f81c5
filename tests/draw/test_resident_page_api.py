"""What the resident's and the assistant's pages ask of the API beyond the draw: the categories
drawn this round, void coupons with their reason, a survey sent empty, unbinding a till's phone,
and the host's front door."""

from __future__ import annotations

import re

from tests.helpers import auth, csrf_token, paycode, redeem


def test_the_categories_drawn_this_round_are_known_before_a_spin(client, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident()
    assert client.get("/api/v1/draws", headers=auth(token)).get_json() == {"round": 1, "drawn": []}
    assert client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).status_code == 200
    answer = client.get("/api/v1/draws", headers=auth(token)).get_json()
    assert answer == {"round": 1, "drawn": [{"category": "hotel", "outcome": "won"}]}
    _, other = make_resident()
    assert client.get("/api/v1/draws", headers=auth(other)).get_json()["drawn"] == []  # one's own only
    assert client.get("/api/v1/draws").status_code == 401


def test_a_void_coupon_is_listed_with_why(client, console, make_campaign, make_resident, make_till, clock):
    make_campaign()
    _, token = make_resident()
    revoked = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).get_json()["coupon"]
    refunded = client.post("/api/v1/draw", json={"category": "fuel"}, headers=auth(token)).get_json()["coupon"]
    operator = console("operator")
    page = operator.get("/admin/lists/claims").get_data(as_text=True)
    form = {"csrf_token": csrf_token(page), "reason": "冒用他人身份"}
    assert operator.post(f"/admin/claims/{revoked['id']}/revoke", data=form).status_code == 302
    _, staff = make_till("fuel")
    done = redeem(client, staff, paycode(client, token, refunded["id"]), refunded["threshold_fen"], category="汽油")
    path = f"/api/v1/merchant/redemptions/{done.get_json()['redemption']['id']}/refund"
    assert client.post(path, json={"reason": "顾客退货"}, headers=auth(staff)).status_code == 200
    void = client.get("/api/v1/coupons?status=void", headers=auth(token)).get_json()["items"]
    reasons = {c["id"]: c["void_reason"] for c in void}
    assert reasons == {
        revoked["id"]: "商务局已撤销此券：冒用他人身份。如有疑问请联系商务局。",
        refunded["id"]: "商户已办理退货，券随之作废（顾客退货）",
    }
    assert client.get("/api/v1/coupons?status=unused", headers=auth(token)).get_json()["items"] == []
    listed = client.get("/api/v1/coupons", headers=auth(token)).get_json()["items"]
    assert {c["id"]: c.get("void_reason") for c in listed} == reasons


def test_a_survey_sent_empty_names_the_first_question_in_chinese(client, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident()
    answer = client.post("/api/v1/survey", json={"answers": []}, headers=auth(token))
    assert answer.status_code == 400
    assert answer.get_json()["error"]["message"] == "第1题：请选择"


def test_an_assistant_unbinds_their_own_phone(client, make_campaign, make_till, clock):
    make_campaign()
    _, staff = make_till("hotel")
    answer = client.post("/api/v1/merchant/staff/unbind", json={}, headers=auth(staff))
    assert answer.status_code == 200 and answer.get_json() == {"unbound": True, "name": "店员"}
    assert client.get("/api/v1/merchant/settlement", headers=auth(staff)).status_code == 401
    assert client.post("/api/v1/merchant/staff/unbind", json={}, headers=auth(staff)).status_code == 401


def test_the_host_has_a_front_door_and_an_icon(client, make_campaign, clock):
    make_campaign()
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    for link in (
        'href="/h5/"',
        'href="/h5/staff"',
        'href="/admin/"',
        'href="/api/v1/docs"',
        'href="/public/test-campaign"',
    ):
        assert link in text
    assert re.search(r"测试消费券", text)
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.data[:4] == b"\x00\x00\x01\x00"  # an ICO file
