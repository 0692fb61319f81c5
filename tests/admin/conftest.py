"""Fixtures of the console tests: bureau accounts of each role and a signed-in browser client."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from server import accounts
from server.extensions import db
from tests.helpers import auth
from tests.merchant.helpers import paycode, redeem

PASSWORD = "correct-horse-battery"


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client, username: str, password: str = PASSWORD, next_: str | None = None):
    page = client.get("/admin/login")
    token = csrf_token(page.get_data(as_text=True))
    url = "/admin/login" + (f"?next={next_}" if next_ else "")
    return client.post(url, data={"csrf_token": token, "username": username, "password": password})


@pytest.fixture
def make_account(app):
    def make(role: str = "admin", username: str | None = None) -> str:
        username = username or f"{role}-user"
        with app.app_context():
            accounts.create_admin(username, PASSWORD, role)
            db.session.commit()
        return username

    return make


@pytest.fixture
def console(app, make_account):
    """A client signed in with the given role: console("auditor")."""

    def signed_in(role: str = "admin"):
        client = app.test_client()
        answer = sign_in(client, make_account(role))
        assert answer.status_code == 302, answer.get_data(as_text=True)
        return client

    return signed_in


@pytest.fixture
def redemptions(app, client, make_campaign, make_resident, make_till, clock):
    """Six redemptions over two days at a hotel and a fuel station; one revoked, one refunded."""
    make_campaign()
    tills = {"hotel": make_till("hotel"), "fuel": make_till("fuel")}
    made = []
    for day in range(2):
        for n, category in enumerate(("hotel", "hotel", "fuel")):
            _, token = make_resident(phone=f"1391000{day}{n:03d}")
            won = client.post("/api/v1/draw", json={"category": category}, headers=auth(token)).get_json()
            coupon = won["coupon"]
            answer = redeem(client, tills[category][1], paycode(client, token, coupon["id"]), coupon["threshold_fen"])
            made.append((category, answer.get_json()["redemption"]["id"], f"1391000{day}{n:03d}"))
        clock.shift(timedelta(days=1))
    clock.shift(timedelta(days=-1))
    hotel_staff = tills["hotel"][1]
    for (_, redemption_id, _), action in ((made[4], "revoke"), (made[3], "refund")):
        path = f"/api/v1/merchant/redemptions/{redemption_id}/{action}"
        assert client.post(path, json={"reason": "核对"}, headers=auth(hotel_staff)).status_code == 200
    return {
        "made": made,
        "merchants": {k: v[0] for k, v in tills.items()},
        "staff": {k: v[1] for k, v in tills.items()},
    }
