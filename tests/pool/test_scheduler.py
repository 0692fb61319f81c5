"""The scheduler: jobs that move money once however often or however many run them, one
leader among several processes, and a catch-up after downtime."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine

from server.extensions import db
from server.models import Coupon, LedgerEntry, Round
from server.pool.jobs import JOBS, Leader, build, run_all
from tests.helpers import ON_POSTGRES, auth


def ledger_kinds(app) -> Counter:
    with app.app_context():
        return Counter(db.session.scalars(sa.select(LedgerEntry.kind)))


def moved(app) -> dict[str, int]:
    """Coupons moved per kind of entry (a job writes one entry per round and tier)."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(LedgerEntry.kind, sa.func.sum(LedgerEntry.coupons)).group_by(LedgerEntry.kind)
        )
        return {kind: int(n) for kind, n in rows}


def at_once(app, schedulers: int) -> None:
    """Run every job from several threads at the same moment, each on its own connection."""
    start = threading.Barrier(schedulers)
    errors = []

    def compete():
        start.wait()
        try:
            run_all(app)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=compete) for _ in range(schedulers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


def round_row(app, number):
    with app.app_context():
        return db.session.scalar(sa.select(Round).where(Round.number == number))


def draw_some(client, make_resident, n=5):
    for _ in range(n):
        _, token = make_resident()
        assert client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).status_code == 200


def test_running_every_job_twice_moves_money_once(app, client, make_campaign, make_resident, balanced, clock):
    campaign_id = make_campaign()
    draw_some(client, make_resident)
    clock.move_to(round_row(app, 1).valid_until + timedelta(minutes=1))
    run_all(app)
    after_first = ledger_kinds(app)
    totals = balanced(campaign_id)
    run_all(app)
    assert ledger_kinds(app) == after_first
    assert balanced(campaign_id) == totals
    # Round 1's 100 coupons: 5 claimed then expired, 95 withdrawn, all rolled into round 2.
    counts = moved(app)
    assert (counts["expire"], counts["withdraw"], counts["rollover"]) == (5, 95, 100)
    with app.app_context():
        states = Counter(db.session.scalars(sa.select(Coupon.state).join(Round).where(Round.number == 1)))
        assert states == {"expired": 5, "withdrawn": 95}
        assert (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(Coupon)
                .join(Round)
                .where(Round.number == 2, Coupon.state == "stock")
            )
            == 100
        )
    assert totals["stock"] == 900000 and totals["pool"] == 10000000 - 900000


def test_competing_schedulers_move_money_once(app, client, make_campaign, make_resident, balanced, clock):
    """Four schedulers at once, each on its own connection (PostgreSQL: real row locks)."""
    campaign_id = make_campaign()
    draw_some(client, make_resident, 8)
    clock.move_to(round_row(app, 1).valid_until + timedelta(minutes=1))
    at_once(app, 4)
    counts = moved(app)
    assert (counts["expire"], counts["withdraw"], counts["rollover"]) == (8, 92, 100)
    assert ledger_kinds(app)["rollover"] == 4  # one per tier: the unique key of a rollover
    balanced(campaign_id)

    # After the last round, four at once return the pool to the treasury once.
    clock.move_to(round_row(app, 7).valid_until + timedelta(minutes=1))
    at_once(app, 4)
    assert ledger_kinds(app)["treasury"] == 1
    totals = balanced(campaign_id)
    assert totals["treasury"] == 10000000 and totals["pool"] == 0


def test_one_leader_at_a_time_and_another_takes_over_when_it_goes(app, clock):
    first, second = Leader(app), Leader(app)
    assert first.holds()
    assert first.holds()  # holding is re-entrant for the holder
    assert not second.holds()
    if ON_POSTGRES:
        # The leader's process dies: its connection closes and PostgreSQL drops the lock.
        first._connection.invalidate()
        first._connection = None
    else:
        # The leader stops renewing its lease: after the lease runs out another takes over.
        clock.shift(timedelta(seconds=91))
    # PostgreSQL ends the dead session (and drops its lock) a moment after the socket closes;
    # the next process to try takes over then, as a scheduler does on its next run.
    deadline = time.monotonic() + 10
    while not second.holds() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert second.holds()
    assert not first.holds()
    second.release()
    assert first.holds()
    first.release()


def test_a_scheduler_started_after_downtime_catches_up_at_once(app, client, make_campaign, make_resident, balanced):
    """The server was down from round 1's draws until round 2 had opened: on start the jobs
    close round 1, expire its coupons and feed round 2 without waiting for their interval."""
    campaign_id = make_campaign()
    opens_2 = round_row(app, 2).opens_at
    with time_machine.travel(round_row(app, 1).opens_at + timedelta(minutes=5), tick=False):
        draw_some(client, make_resident, 3)
    with time_machine.travel(opens_2 + timedelta(hours=2), tick=True):
        scheduler, leader = build(app, blocking=False)
        assert [job.id for job in scheduler.get_jobs()] == [job.name for job in JOBS]
        scheduler.start()
        try:
            deadline = time.monotonic() + 20
            while round_row(app, 2).rolled_over_at is None and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            scheduler.shutdown(wait=True)
            leader.release()
    round2 = round_row(app, 2)
    assert round2.rolled_over_at is not None and round_row(app, 1).closed_at is not None
    counts = moved(app)
    assert (counts["expire"], counts["withdraw"], counts["rollover"]) == (3, 97, 100)
    balanced(campaign_id)


def test_the_scheduler_runs_as_its_own_process_and_catches_up_on_start(app, make_campaign, tmp_path):
    """`flask --app server scheduler run` against a campaign whose round 1 ended yesterday (real
    time: no time travel crosses into another process): on start it closes round 1, feeds round
    2, and keeps running until stopped."""
    import os
    import signal
    import subprocess
    import sys
    from datetime import UTC, datetime

    from tests.helpers import ROOT, campaign_doc

    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date()
    first = (today - timedelta(days=6)).isoformat() + "T09:00"
    campaign_id = make_campaign(
        campaign_doc(rounds={"count": 3, "first_draw": first, "every_days": 5, "valid_days": 5})
    )
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "SECRET_KEY": "x", "FLASK_DEBUG": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "server", "scheduler", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while round_row(app, 2).rolled_over_at is None and time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.2)
        assert process.poll() is None  # still running, waiting for the next runs
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert round_row(app, 2).rolled_over_at is not None, output
    assert "调度器已启动" in output and "roll_over" in output
    assert moved(app)["rollover"] == 100
    with app.app_context():
        from server.models import Campaign
        from server.pool import ledger

        assert ledger.verify(db.session.get(Campaign, campaign_id)).problems == []


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks between connections: PostgreSQL (SQLite has one writer)")
def test_a_job_holding_the_pool_does_not_hold_up_draws_or_tills(
    app, client, make_campaign, make_resident, make_till, clock
):
    """Jobs lock the campaign row FOR NO KEY UPDATE; draws and redemptions insert ledger rows
    whose foreign key takes KEY SHARE on the same row. The two must not wait for each other."""
    from server.pool import rounds
    from tests.helpers import paycode, redeem

    campaign_id = make_campaign()
    _, staff = make_till("hotel")
    _, holder = make_resident()
    _, drawer = make_resident()
    won = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(holder)).get_json()["coupon"]
    code = paycode(client, holder, won["id"])
    answers = {}

    def crowd():
        other = app.test_client()
        answers["draw"] = other.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(drawer)).status_code
        answers["redeem"] = redeem(other, staff, code, won["threshold_fen"]).status_code

    with app.app_context():
        rounds.lock_campaign(campaign_id)  # as a job does, and holds it
        thread = threading.Thread(target=crowd)
        thread.start()
        thread.join(10)
        blocked = thread.is_alive()
        db.session.rollback()
    thread.join(30)
    assert not blocked
    assert answers == {"draw": 200, "redeem": 200}
