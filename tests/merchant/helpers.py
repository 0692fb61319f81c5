"""Helpers of the merchant tests."""

from __future__ import annotations

from tests.helpers import auth


def paycode(client, token, coupon_id):
    answer = client.get(f"/api/v1/coupons/{coupon_id}/paycode", headers=auth(token))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["paycode"]


def redeem(client, staff, code, spend_fen, key=None, category="住宿"):
    headers = auth(staff) | ({"Idempotency-Key": key} if key else {})
    body = {"paycode": code, "spend_fen": spend_fen, "spend_category": category}
    return client.post("/api/v1/merchant/redeem", json=body, headers=headers)
