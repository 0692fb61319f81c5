"""Races, with real threads and one database connection each (the proof is on PostgreSQL).

The database holds the guarantees: stock rows claimed with SKIP LOCKED (never more coupons
than a tier's quantity) and the unique key of a draw (never two in one resident, category and
round). These tests run on both backends; .ci/run runs them on PostgreSQL as well.
"""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from server.extensions import db
from server.models import Coupon, Draw
from tests.helpers import ON_POSTGRES, at_once, auth


def race(app, tokens, category):
    """Fire one draw per token at once, each from its own thread, client and connection."""
    return at_once(
        app,
        [lambda client, t=t: client.post("/api/v1/draw", json={"category": category}, headers=auth(t)) for t in tokens],
    )


def test_many_residents_racing_for_the_last_coupons_get_exactly_what_is_left(app, make_campaign, make_resident, clock):
    make_campaign(
        tiers=[
            {"category": "fuel", "face_yuan": 100, "quantity": 25},
            {"category": "fuel", "face_yuan": 50, "quantity": 5},
        ]
    )
    racers = 60 if ON_POSTGRES else 40
    tokens = [make_resident()[1] for _ in range(racers)]
    answers = race(app, tokens, "fuel")
    codes = Counter(status if status == 200 else body["error"]["code"] for status, body in answers)
    assert codes == {200: 30, "SOLD_OUT": racers - 30}
    won = [body["coupon"]["id"] for status, body in answers if status == 200]
    assert len(set(won)) == 30
    with app.app_context():
        claimed = db.session.scalar(sa.select(sa.func.count()).select_from(Coupon).where(Coupon.state == "claimed"))
        stock = db.session.scalar(sa.select(sa.func.count()).select_from(Coupon).where(Coupon.state == "stock"))
        draws = db.session.scalar(sa.select(sa.func.count()).select_from(Draw))
    assert (claimed, stock, draws) == (30, 0, 30)


def test_one_resident_spinning_one_category_twenty_times_at_once_gets_one_coupon(
    app, make_campaign, make_resident, clock
):
    make_campaign()
    _, token = make_resident()
    answers = race(app, [token] * 20, "hotel")
    codes = Counter(status if status == 200 else body["error"]["code"] for status, body in answers)
    assert codes == {200: 1, "ALREADY_DRAWN": 19}
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Coupon).where(Coupon.state == "claimed")) == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Draw)) == 1


def test_the_database_refuses_a_second_draw_even_without_the_service(app, make_campaign, make_resident, clock):
    """The unique key itself, not a Python check, holds "one draw per resident, category and round"."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    make_campaign()
    resident_id, _ = make_resident()
    with app.app_context():
        round_id, category_id = db.session.execute(
            sa.text("SELECT r.id, c.id FROM rounds r, categories c WHERE r.number = 1 AND c.code = 'hotel'")
        ).one()
        row = {
            "resident_id": resident_id,
            "round_id": round_id,
            "category_id": category_id,
            "outcome": "won",
        }
        db.session.add(Draw(**row))
        db.session.commit()
        db.session.add(Draw(**row))
        with pytest.raises(IntegrityError):
            db.session.commit()
