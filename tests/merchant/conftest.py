"""Fixtures of the merchant tests: approved shops with a staff token, residents holding a coupon."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from server import credit_code, tokens
from server.extensions import db
from server.models import BindingCode, Category, Merchant, Staff
from tests.helpers import T0, auth


@pytest.fixture
def shop(app, make_campaign, clock):
    """Make the standard campaign and return a factory of approved merchants with one staff token."""
    make_campaign()
    counter = iter(range(1, 1000))

    def make(category="hotel", status="approved", phone=None):
        n = next(counter)
        with app.app_context():
            cat = db.session.scalar(sa.select(Category).where(Category.code == category))
            merchant = Merchant(
                name=f"演示商户{n}",
                credit_code=credit_code.make("220723", f"MB{n:06d}"),
                address="乾安县",
                contact_name="演示联系人",
                contact_phone="13900000000",
                status=status,
                categories=[cat],
            )
            db.session.add(merchant)
            db.session.flush()
            code = BindingCode(merchant_id=merchant.id, code_hash=f"test-{n}", expires_at=T0, used_at=T0)
            db.session.add(code)
            db.session.flush()
            staff = Staff(
                merchant_id=merchant.id, name="店员", phone=phone or f"1370000{n:04d}", binding_code_id=code.id
            )
            db.session.add(staff)
            db.session.commit()
            return merchant.id, tokens.issue("staff", staff.id, bound=True)

    return make


@pytest.fixture
def coupon(client, make_resident):
    """A resident who drew a hotel coupon: (resident token, coupon)."""

    def make(category="hotel", phone=None):
        _, token = make_resident(phone=phone)
        body = client.post("/api/v1/draw", json={"category": category}, headers=auth(token)).get_json()
        return token, body["coupon"]

    return make
