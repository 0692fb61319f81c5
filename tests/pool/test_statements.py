"""What the hot paths cost the database, in statements: a draw, a redemption (and its refusal), a
scan. Pinned, because an extra read slips in unnoticed and the 09:00 crowd pays for every one."""

from __future__ import annotations

import pytest

from tests.helpers import ON_POSTGRES, auth, paycode, redeem


@pytest.fixture
def warm(app, client, make_campaign, make_resident, make_till, clock):
    """The standard campaign, its snapshot cached as in production, and a first draw made (caches
    and connections warm): (client, a resident's token, a hotel till's staff token)."""
    app.config["CAMPAIGN_CACHE_SECONDS"] = 60
    make_campaign()
    _, first = make_resident()
    assert client.post("/api/v1/draw", json={"category": "fuel"}, headers=auth(first)).status_code == 200
    _, token = make_resident()
    _, staff = make_till("hotel")
    return client, token, staff


def draw(client, token, category="hotel"):
    return client.post("/api/v1/draw", json={"category": category}, headers=auth(token))


@pytest.mark.skipif(not ON_POSTGRES, reason="the one-statement claim is PostgreSQL's (SQLite: insert, claim, book)")
def test_a_draw_is_one_statement_on_postgresql(warm, count_queries):
    client, token, _ = warm
    with count_queries() as count:
        assert draw(client, token).status_code == 200
    assert count() == 1, count.statements


def test_a_draw_on_sqlite_is_the_draw_the_claim_and_its_entry(warm, count_queries):
    client, token, _ = warm
    with count_queries() as count:
        assert draw(client, token).status_code == 200
    assert count() <= (1 if ON_POSTGRES else 3), count.statements


def test_a_redemption_is_three_statements_on_postgresql_five_on_sqlite(warm, count_queries):
    """The till, the coupon, then on PostgreSQL one statement spends it, records the redemption
    with its Idempotency-Key and books it (SQLite: the update, the insert, the entry)."""
    client, token, staff = warm
    coupon = draw(client, token).get_json()["coupon"]
    code = paycode(client, token, coupon["id"])
    with count_queries() as count:
        answer = redeem(client, staff, code, coupon["threshold_fen"], key="k-1")
    assert answer.status_code == 200, answer.get_json()
    assert count() == (3 if ON_POSTGRES else 5), count.statements


def test_a_refused_redemption_is_at_most_five_statements(warm, count_queries):
    client, token, staff = warm
    coupon = draw(client, token).get_json()["coupon"]
    code = paycode(client, token, coupon["id"])
    with count_queries() as count:
        answer = redeem(client, staff, code, coupon["threshold_fen"] - 1, key="k-2")
    assert answer.get_json()["error"]["code"] == "BELOW_THRESHOLD"
    assert count() <= 5, count.statements


def test_a_scan_is_at_most_three_statements(warm, count_queries):
    client, token, staff = warm
    coupon = draw(client, token).get_json()["coupon"]
    code = paycode(client, token, coupon["id"])
    with count_queries() as count:
        answer = client.post("/api/v1/merchant/scan", json={"paycode": code}, headers=auth(staff))
    assert answer.get_json()["accepted"] is True
    assert count() <= 3, count.statements


def _plan(app, statement, params: dict | None = None) -> str:
    """The plan PostgreSQL makes for a statement (a hot path's `Prepared` with `params`, or one
    carrying its values), table scans ruled out (a test's table is too small for an index to beat
    one): which index serves it."""
    import json

    from server.extensions import db

    with app.app_context():
        connection = db.session.connection()
        if params is None:
            compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
            sql, params = compiled.string, compiled.params
            binds = {name: bind.type.bind_processor(connection.dialect) for name, bind in compiled.binds.items()}
        else:
            sql, binds, _ = statement._for(connection)
        params = params | {name: process(params[name]) for name, process in binds.items() if process and name in params}
        driver = connection.connection.driver_connection
        driver.execute("SET LOCAL enable_seqscan = off")
        plan = driver.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()[0]
        db.session.rollback()
    return json.dumps(plan)


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL's planner")
def test_statistics_from_before_the_crowd_cannot_lead_a_redemption_or_a_sell_out_astray(warm, app, make_resident):
    """At 09:00 the statistics say nothing is claimed and everything is in stock. A redemption must
    still find its coupon by its key, and a wallet its resident's coupons by theirs, not walk every
    claimed coupon's deadline; a look for stock left must use the stock's index."""
    import sqlalchemy as sa

    from server.extensions import db
    from server.merchant import redemption
    from server.pool import coupons

    client, _, _ = warm
    with app.app_context():
        db.session.execute(sa.text("ANALYZE coupons"))  # before the crowd
        db.session.commit()
    for _ in range(20):
        assert draw(client, make_resident()[1]).status_code == 200  # the crowd, unseen by the statistics
    with app.app_context():
        coupon_id, category_id, round_id, valid_until, resident_id = db.session.execute(
            sa.text(
                "SELECT id, category_id, round_id, valid_until, resident_id FROM coupons"
                " WHERE state = 'claimed' LIMIT 1"
            )
        ).one()
    use = dict.fromkeys(coupons._REDEMPTION_COLUMNS) | {"coupon_id": coupon_id, "rest_fen": 0}
    plan = _plan(app, coupons._USE_AND_RECORD, use | {"created_at": valid_until.replace(year=2026, month=6)})
    assert "pk_coupons" in plan and "ix_coupons_claimed_deadline" not in plan, plan
    left = {"round_id": round_id, "key": category_id, "max_seq": coupons.ALL_RELEASED}
    plan = _plan(app, coupons.database.Prepared(coupons._STOCK_LEFT["category_id"]), left)
    assert "ix_coupons_stock_by_category" in plan, plan
    # A wallet pay code's coupons, and a resident's own list: by the resident's key, not the deadlines.
    till = redemption.Till(1, "17000000000", 1, frozenset({category_id}))
    plan = _plan(app, redemption._wallet(till, resident_id, valid_until.replace(year=2026, month=6)))
    assert "ix_coupons_resident" in plan and "ix_coupons_claimed_deadline" not in plan, plan
