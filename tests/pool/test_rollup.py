"""Stored figures of past hours: the dashboard and the settlement read them, and they always
agree with the claims, redemptions and ledger entries themselves."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from server.admin import dashboard
from server.admin.settlement import merchant_periods
from server.core.time import utcnow
from server.extensions import db
from server.models import Campaign, HourMark, HourRedemptions, LedgerEntry, Redemption
from server.pool import ledger, rollup
from tests.helpers import ON_POSTGRES, T0, assert_books_count_the_coupons, auth


def figures(app):
    """The dashboard's figures, the settlement of all time and of 2026-06-25; and a check that
    the dashboard's pool balances are the ledger's own, and the coupon table the coupons'."""
    with app.app_context():
        campaign = db.session.scalar(sa.select(Campaign))
        board = dashboard.figures_of(campaign)
        assert board.balances == ledger.balances(campaign.id)[()]
        assert_books_count_the_coupons(campaign.id)
        settlement = [
            (p.merchant.id, p.redeemed, p.order_fen, p.settled, p.owed_fen, p.refunded) for p in merchant_periods({})
        ]
        one_day = [
            (p.merchant.id, p.owed_fen) for p in merchant_periods({"from": date(2026, 6, 25), "to": date(2026, 6, 25)})
        ]
        return (board.total, board.by_round, board.by_category, board.by_day), settlement, one_day


def close_hours(app) -> int:
    with app.app_context():
        closed = rollup.close_hours(utcnow())
        db.session.commit()
        return closed


def test_stored_hours_give_the_figures_of_the_source_and_follow_a_late_refund(app, client, redemptions, clock):
    live = figures(app)  # nothing stored yet: every figure from the source tables
    assert live[0][0].redeemed == 5 and live[0][0].refunded_fen > 0
    assert live[0][0].claimants == 6  # six residents, a coupon each
    # Now is 2026-06-26 01:00 UTC: the hours from the first redemption to 23:00 are over.
    assert close_hours(app) == 23
    assert close_hours(app) == 0  # done once
    assert figures(app) == live  # a day stored, a day live
    clock.shift(timedelta(hours=1, minutes=11))
    assert close_hours(app) == 2
    assert figures(app) == live

    # What is read for a stored hour is the stored row: alter it and the dashboard shows it.
    with app.app_context():
        db.session.execute(sa.update(HourRedemptions).where(HourRedemptions.hour == T0).values(redeemed=99))
        db.session.commit()
    assert figures(app)[0][0].redeemed > 90

    # A refund of a redemption of that stored hour marks it stale: the figures are true at once.
    made, staff = redemptions["made"], redemptions["staff"]["hotel"]
    answer = client.post(
        f"/api/v1/merchant/redemptions/{made[0][1]}/refund", json={"reason": "退货"}, headers=auth(staff)
    )
    assert answer.status_code == 200, answer.get_json()
    with app.app_context():
        assert db.session.get(HourMark, T0).fresh is False
        assert db.session.get(HourMark, T0 + timedelta(days=1)).fresh is True
    after = figures(app)
    assert after[0][0].redeemed == 5 and after[0][0].refunded_fen > live[0][0].refunded_fen
    assert after[1] != live[1] and after[2] != live[2]  # the hotel is owed less, on 2026-06-25
    assert close_hours(app) == 1
    assert figures(app) == after


def test_the_scheduler_stores_the_hours_as_one_of_its_jobs(app, redemptions, clock):
    from server.pool import jobs as scheduler

    live = figures(app)
    clock.shift(timedelta(days=2))
    assert scheduler.run_all(app)["close_hours"] > 48
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(HourRedemptions)) == 4  # 2 shops, 2 hours
    assert figures(app) == live


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks between connections: PostgreSQL (SQLite has one writer)")
def test_a_refund_in_flight_while_the_hour_is_stored_is_waited_for(app, redemptions, clock):
    """The job locks the hour's mark before reading it; a refund marking it holds the lock until
    it commits, so the job reads the refund, never the hour as it was before."""
    made = redemptions["made"]
    marked = threading.Event()

    def refund_slowly():
        with app.app_context():
            redemption = db.session.get(Redemption, made[1][1])
            redemption.refunded_at, redemption.refund_policy = utcnow(), "return"
            rollup.mark_stale(redemption.created_at)
            db.session.flush()
            marked.set()
            time.sleep(1.5)  # the job runs meanwhile
            db.session.commit()

    writer = threading.Thread(target=refund_slowly)
    writer.start()
    assert marked.wait(10)
    assert close_hours(app) == 23
    writer.join(10)
    with app.app_context():
        assert db.session.get(HourMark, T0).fresh is True
        stored = db.session.scalar(sa.select(sa.func.sum(HourRedemptions.refunded)))
    assert stored == 1  # the refund in flight (the fixture's own is in the hour still open)
    stored_figures = figures(app)
    with app.app_context():
        db.session.execute(sa.delete(HourMark))
        db.session.commit()
    assert figures(app) == stored_figures  # the same from the source tables


def test_a_scattered_backlog_is_worked_off_run_by_run(app, redemptions, clock):
    """Every other hour of three months stale (revokes and refunds all over it): each run stores
    a week of them at most, in statements SQLite and PostgreSQL both take, until all are fresh."""
    live = figures(app)
    first = rollup.truncate(T0) - timedelta(days=90)
    with app.app_context():
        fresh = [{"hour": first + rollup.HOUR * 2 * n, "fresh": True} for n in range(90 * 12)]
        db.session.execute(sa.insert(HourMark), fresh)
        # The budget came in three months ago, in an hour not stored yet.
        db.session.execute(
            sa.update(LedgerEntry).where(LedgerEntry.kind == "budget").values(created_at=first + rollup.HOUR)
        )
        db.session.commit()
    clock.shift(timedelta(days=2))
    runs = []
    while closed := close_hours(app):
        runs.append(closed)
    assert max(runs) <= rollup.RUN_LIMIT and len(runs) > 1
    with app.app_context():
        stale = db.session.scalar(sa.select(sa.func.count()).select_from(HourMark).where(HourMark.fresh.is_(False)))
    assert stale == 0
    assert figures(app) == live
