"""Races, with real threads and one database connection each (the proof is on PostgreSQL).

The database holds the guarantees: stock rows claimed with SKIP LOCKED (never more coupons
than a tier's quantity) and the unique key of a draw (never two in one resident, category and
round). These tests run on both backends; .ci/run runs them on PostgreSQL as well.
"""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa

from server.extensions import db
from server.models import Coupon, Draw
from tests.helpers import ON_POSTGRES, at_once, auth

ROW_LOCKS = pytest.mark.skipif(
    not ON_POSTGRES, reason="row locks between connections: PostgreSQL (SQLite has one writer)"
)


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


def _held_last_coupon(app, make_campaign):
    """A fuel category of one coupon, and a connection of its own holding that coupon's row lock,
    as a draw in flight does: (the connection, the coupon's id)."""
    make_campaign(tiers=[{"category": "fuel", "face_yuan": 100, "quantity": 1}])
    with app.app_context():
        engine = db.engine
    holder = engine.connect()
    holder.begin()
    coupon_id = holder.execute(sa.text("SELECT id FROM coupons WHERE state = 'stock' FOR UPDATE")).scalar()
    return holder, coupon_id


def _draw_while(app, make_resident, release) -> tuple[int, dict]:
    """A draw for fuel, started while the coupon is held; `release` ends the hold mid-way."""
    import threading
    import time

    _, token = make_resident()
    answer = {}

    def drawing():
        response = app.test_client().post("/api/v1/draw", json={"category": "fuel"}, headers=auth(token))
        answer["got"] = (response.status_code, response.get_json())

    thread = threading.Thread(target=drawing)
    thread.start()
    time.sleep(0.1)  # the draw finds the only coupon held and looks again
    assert "got" not in answer
    release()
    thread.join(10)
    return answer["got"]


@ROW_LOCKS
def test_a_coupon_held_by_a_draw_that_fails_is_taken_by_the_one_looking_again(app, make_campaign, make_resident, clock):
    holder, coupon_id = _held_last_coupon(app, make_campaign)
    status, body = _draw_while(app, make_resident, holder.rollback)
    holder.close()
    assert status == 200 and body["coupon"]["id"] == coupon_id


@ROW_LOCKS
def test_a_held_coupon_that_goes_is_sold_out_for_the_draw_looking_again(app, make_campaign, make_resident, clock):
    """The claim confirms a sell-out by looking again, never by waiting on another draw's row lock
    (two draws waiting so lock each other out: a deadlock seen at a sell-out under load)."""
    holder, coupon_id = _held_last_coupon(app, make_campaign)
    waits = []

    def claim_it():
        waits.extend(
            holder.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE NOT l.granted AND a.datname = current_database()"
                )
            ).scalars()
        )
        # Taken off the stock (as another draw's claim, or the bureau's withdrawal, takes it).
        holder.execute(sa.text("UPDATE coupons SET state = 'withdrawn' WHERE id = :id"), {"id": coupon_id})
        holder.commit()

    status, body = _draw_while(app, make_resident, claim_it)
    holder.close()
    assert waits == [0]  # nobody was waiting for the held row
    assert (status, body["error"]["code"]) == (409, "SOLD_OUT")


@ROW_LOCKS
def test_a_coupon_held_past_a_second_is_no_sell_out_but_try_again(app, make_campaign, make_resident, clock):
    """A row held longer than draws take (a stalled worker) is not called sold out: the resident is
    told to try again, and the attempt is not counted as the round's draw."""
    holder, coupon_id = _held_last_coupon(app, make_campaign)
    _, token = make_resident()
    held = app.test_client().post("/api/v1/draw", json={"category": "fuel"}, headers=auth(token))
    assert held.status_code == 503 and held.headers["Retry-After"] == "1"
    assert held.get_json()["error"] == {"code": "SERVICE_UNAVAILABLE", "message": "参与的人太多，请稍后再试"}
    holder.rollback()
    holder.close()
    again = app.test_client().post("/api/v1/draw", json={"category": "fuel"}, headers=auth(token))
    assert again.status_code == 200 and again.get_json()["coupon"]["id"] == coupon_id
