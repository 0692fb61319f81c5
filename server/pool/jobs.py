"""The scheduler's jobs, declared as data, run by exactly one leader.

Every job is a function of "now" that does what is due and not yet done, so a job that was
missed (the server down at 09:00) catches up on the next run, and every process runs each job
once at start. Leadership is a database lock: a PostgreSQL advisory lock held on a connection
of its own (released by the server if the process dies), or on SQLite a lease row renewed on
every run. Processes that are not the leader skip the work; the jobs are idempotent anyway, so
even two leaders would move money once.

`flask --app server scheduler run` runs the jobs as their own process. Web workers start a
scheduler of their own only with SCHEDULER_IN_WEB=true (each worker then competes for the lock).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import Flask

from ..core import metrics
from ..core.commit import commits
from ..core.db import on_postgres, release_session_lock, try_session_lock
from ..core.time import utcnow
from ..extensions import db
from ..models import SchedulerLease
from . import chain, rollup, rounds

log = logging.getLogger(__name__)

LOCK_NAME = "huigou-scheduler"
# pg_advisory_lock takes a bigint: a fixed one for this application ("huigou" in ASCII).
ADVISORY_KEY = int.from_bytes(b"huigou", "big")


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[datetime], object]
    every_s: int
    description: str


# The jobs, in the order a catch-up runs them: what returns value to the pool first, then what
# spends from it.
JOBS = (
    Job("close_rounds", rounds.close_rounds, 30, "轮次结束：未领取的库存退回资金池"),
    Job("expire_coupons", rounds.expire_coupons, 30, "到期未用的消费券作废，面额退回资金池"),
    Job("roll_over", rounds.roll_over, 30, "下一轮开始前：退回资金池的金额滚动为下一轮库存"),
    Job("return_leftover", rounds.return_leftover, 300, "活动结束：资金池结余返还财政或转入下期活动"),
    Job("seal", chain.seal, 30, "封存：新的领取和核销记录加入防篡改哈希链"),
    Job("close_hours", rollup.close_hours, 60, "整点后：汇总已结束各小时的领取、核销与资金流水，供数据看板与结算使用"),
)


class Leader:
    """Whether this process may run the jobs now; call `holds()` before each run."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._connection = None
        self._lock = threading.Lock()

    def holds(self) -> bool:
        with self._lock, self.app.app_context():
            leads = self._advisory() if on_postgres(db.engine) else self._lease()
        metrics.LEADER.set(1 if leads else 0)
        return leads

    def _advisory(self) -> bool:
        if self._connection is not None:
            try:
                self._connection.execute(sa.text("SELECT 1"))
                return True
            except sa.exc.DBAPIError:  # the connection died, and the lock with it
                self._drop()
        # Autocommit: the lock belongs to the session, and the connection must not sit idle in an
        # open transaction while it holds it.
        connection = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if try_session_lock(connection, ADVISORY_KEY):
            self._connection = connection
            log.info("scheduler leader: %s", self.identity)
            return True
        connection.close()
        return False

    def _drop(self) -> None:
        try:
            self._connection.invalidate()
        finally:
            self._connection = None

    def _lease(self, ttl_s: int = 90) -> bool:
        now = utcnow()
        table = SchedulerLease.__table__
        with db.engine.begin() as connection:
            taken = connection.execute(
                table.update()
                .where(
                    table.c.name == LOCK_NAME,
                    sa.or_(table.c.holder == self.identity, table.c.expires_at < now),
                )
                .values(holder=self.identity, expires_at=now + timedelta(seconds=ttl_s))
            ).rowcount
            if taken:
                return True
            exists = connection.execute(sa.select(table.c.name).where(table.c.name == LOCK_NAME)).first()
            if exists:
                return False
            try:
                with connection.begin_nested():
                    connection.execute(
                        table.insert().values(
                            name=LOCK_NAME, holder=self.identity, expires_at=now + timedelta(seconds=ttl_s)
                        )
                    )
            except sa.exc.IntegrityError:
                return False
            return True

    def release(self) -> None:
        with self._lock, self.app.app_context():
            if self._connection is not None:
                try:
                    release_session_lock(self._connection, ADVISORY_KEY)
                    self._connection.close()  # back to the pool, without the lock
                except sa.exc.DBAPIError:
                    self._drop()  # a dead connection: the server released the lock with it
                self._connection = None
            elif not on_postgres(db.engine):
                table = SchedulerLease.__table__
                with db.engine.begin() as connection:
                    connection.execute(table.delete().where(table.c.name == LOCK_NAME, table.c.holder == self.identity))
        metrics.LEADER.set(0)


def run_job(app: Flask, job: Job, leader: Leader | None = None, now: datetime | None = None):
    """Run one job if this process leads (or no leader is asked); it commits once, or rolls back."""
    if leader is not None and not leader.holds():
        return None
    started = time.perf_counter()
    with app.app_context():
        try:
            result = commits(job.run)(now or utcnow())
        except Exception:
            metrics.JOB_RUNS.labels(job.name, "failed").inc()
            log.exception("job %s failed; it will run again", job.name)
            raise
        finally:
            db.session.remove()
            metrics.JOB_SECONDS.labels(job.name).observe(time.perf_counter() - started)
    metrics.JOB_RUNS.labels(job.name, "ok").inc()
    if result:
        log.info("job %s: %s", job.name, result)
    return result


def run_all(app: Flask, leader: Leader | None = None, now: datetime | None = None) -> dict[str, object]:
    """Every job once, in order: the catch-up at start, and `scheduler tick`."""
    return {job.name: run_job(app, job, leader, now) for job in JOBS}


def build(app: Flask, *, blocking: bool):
    """An APScheduler with the jobs, each first run at once (the catch-up), then every `every_s`."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    leader = Leader(app)
    scheduler = (BlockingScheduler if blocking else BackgroundScheduler)(timezone="UTC")
    start = datetime.now().astimezone()
    for position, job in enumerate(JOBS):
        scheduler.add_job(
            _quietly(run_job),
            "interval",
            seconds=job.every_s,
            args=(app, job, leader),
            id=job.name,
            name=job.description,
            next_run_time=start + timedelta(milliseconds=100 * position),
            coalesce=True,  # a backlog of missed runs is one run: each run does all that is due
            max_instances=1,
            misfire_grace_time=None,
        )
    return scheduler, leader


def _quietly(function):
    def run(*args):
        with contextlib.suppress(Exception):  # logged by run_job; the next run tries again
            function(*args)

    return run


def start_in_web(app: Flask) -> None:
    """Inside a web worker (SCHEDULER_IN_WEB=true): a background scheduler behind the same lock."""
    scheduler, _ = build(app, blocking=False)
    scheduler.start()
    app.extensions["huigou_scheduler"] = scheduler
