"""Fixtures of the merchant tests: approved shops with a staff token, residents holding a coupon."""

from __future__ import annotations

import pytest

from tests.helpers import auth


@pytest.fixture
def shop(make_campaign, make_till, clock):
    """Make the standard campaign and return a factory of approved merchants with one staff token."""
    make_campaign()
    return make_till


@pytest.fixture
def coupon(client, make_resident):
    """A resident who drew a hotel coupon: (resident token, coupon)."""

    def make(category="hotel", phone=None):
        _, token = make_resident(phone=phone)
        body = client.post("/api/v1/draw", json={"category": category}, headers=auth(token)).get_json()
        return token, body["coupon"]

    return make
