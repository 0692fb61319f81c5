"""Figures per hour, stored for the hours that are over, so that the dashboard and the settlement
page add up a few thousand rows instead of every claim, redemption and ledger entry.

For each UTC hour (local days are whole hours: China has one offset, +8), the `close_hours` job
stores, once the hour has ended and MARGIN has passed (a till or a draw stamps its row when it
begins and commits within seconds): claims per (campaign, round, category), redemptions that
stand per (campaign, round, category, merchant), and ledger entries per (campaign, round, tier,
kind). The hour's HourMark then says "fresh". Whatever later changes a redemption of that hour
(a revocation, a refund) marks the hour stale in its own transaction; ledger entries and claims
are never changed. Readers take fresh hours from the stored rows and everything else from the
source tables: what is read is always what the source tables say, and at most an hour and
MARGIN of it is read row by row.

The job and the writers meet on the hour's mark row. A writer upserts it (stale) and holds its
lock until it commits; the job inserts-or-locks the same row before it reads the hour, so it
waits for any writer in flight and then reads what that writer committed, and a writer that
comes after waits for the job and marks the hour stale again. Readers take every figure from one
snapshot (REPEATABLE READ on PostgreSQL), so an hour is never counted twice or not at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from .extensions import db
from .models import Coupon, HourClaims, HourLedger, HourMark, HourRedemptions, LedgerEntry, Redemption, Round
from .timeutil import UTCDateTime, local_midnight, zone

ZONE = "Asia/Shanghai"  # the console's reporting days
MARGIN = timedelta(minutes=10)
HOUR = timedelta(hours=1)


class hour_of(FunctionElement):  # noqa: N801 - reads as the SQL function it stands for
    """The UTC hour a timestamp falls in."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(hour_of, "postgresql")
def _hour_of_pg(element, compiler, **kw):
    (column,) = element.clauses
    return f"date_trunc('hour', {compiler.process(column, **kw)}, 'UTC')"


@compiles(hour_of, "sqlite")
def _hour_of_sqlite(element, compiler, **kw):
    (column,) = element.clauses  # the text SQLAlchemy stores for a datetime, to the hour
    return f"strftime('%Y-%m-%d %H:00:00.000000', {compiler.process(column, **kw)})"


def truncate(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def local_date(hour: datetime) -> date:
    return hour.astimezone(zone(ZONE)).date()


def day_start(day: date) -> datetime:
    return local_midnight(day, zone(ZONE))


def _insert(table, dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


# ---------------------------------------------------------------- the source figures, per hour


def claim_grain(where) -> sa.Select:
    hour = hour_of(Coupon.claimed_at)
    return (
        sa.select(
            hour.label("hour"),
            Coupon.round_id.label("round_id"),
            Coupon.category_id.label("category_id"),
            Round.campaign_id.label("campaign_id"),
            sa.func.count().label("claimed"),
        )
        .join(Round, Round.id == Coupon.round_id)
        .where(Coupon.claimed_at.is_not(None), where)
        .group_by(hour, Coupon.round_id, Coupon.category_id, Round.campaign_id)
    )


def redemption_grain(where) -> sa.Select:
    from .merchant.redemption import settled_clause

    hour = hour_of(Redemption.created_at)
    settled = settled_clause()
    refunded = Redemption.refunded_at.is_not(None)
    return (
        sa.select(
            hour.label("hour"),
            Coupon.round_id.label("round_id"),
            Redemption.category_id.label("category_id"),
            Redemption.merchant_id.label("merchant_id"),
            Round.campaign_id.label("campaign_id"),
            sa.func.count().label("redeemed"),
            sa.func.sum(Redemption.spend_fen).label("order_fen"),
            sa.func.sum(Redemption.face_fen).label("redeemed_fen"),
            sa.func.count(Redemption.refunded_at).label("refunded"),
            sa.func.sum(sa.case((refunded, Redemption.face_fen), else_=0)).label("refunded_fen"),
            sa.func.sum(sa.case((settled, 1), else_=0)).label("settled"),
            sa.func.sum(sa.case((settled, Redemption.face_fen), else_=0)).label("owed_fen"),
        )
        .join(Coupon, Coupon.id == Redemption.coupon_id)
        .join(Round, Round.id == Coupon.round_id)
        .where(Redemption.revoked_at.is_(None), where)
        .group_by(hour, Coupon.round_id, Redemption.category_id, Redemption.merchant_id, Round.campaign_id)
    )


def ledger_grain(where) -> sa.Select:
    hour = hour_of(LedgerEntry.created_at)
    keys = (LedgerEntry.campaign_id, LedgerEntry.round_id, LedgerEntry.tier_id, LedgerEntry.kind)
    return (
        sa.select(
            hour.label("hour"),
            *(key.label(key.key) for key in keys),
            sa.func.sum(LedgerEntry.amount_fen).label("amount_fen"),
            sa.func.sum(LedgerEntry.coupons).label("coupons"),
        )
        .where(where)
        .group_by(hour, *keys)
    )


# (stored table, the grain it stores, the source column its hours are of)
KINDS = {
    "claims": (HourClaims, claim_grain, Coupon.claimed_at),
    "redemptions": (HourRedemptions, redemption_grain, Redemption.created_at),
    "ledger": (HourLedger, ledger_grain, LedgerEntry.created_at),
}


# ---------------------------------------------------------------- the job


def close_hours(now: datetime) -> int:
    """Store the figures of every hour that is over and not stored fresh; returns how many."""
    dialect = db.session.get_bind().dialect.name
    last = truncate(now - MARGIN) - HOUR  # the last hour that is over, with the margin
    firsts = [db.session.scalar(sa.select(sa.func.min(column))) for _, _, column in KINDS.values()]
    firsts = [truncate(f) for f in firsts if f is not None]
    if not firsts:
        return 0
    hour = min(firsts)
    fresh = set(db.session.scalars(sa.select(HourMark.hour).where(HourMark.fresh, HourMark.hour >= hour)))
    closed = 0
    while hour <= last:
        if hour not in fresh:
            close_hour(hour, now, dialect)
            db.session.commit()
            closed += 1
        hour += HOUR
    return closed


def close_hour(hour: datetime, now: datetime, dialect: str) -> None:
    """Store one hour's figures; the caller commits."""
    db.session.execute(
        _insert(HourMark, dialect).values(hour=hour, fresh=False).on_conflict_do_nothing(index_elements=["hour"])
    )
    # Wait for any writer holding the mark; the statements below then see what it committed.
    db.session.execute(sa.select(HourMark.hour).where(HourMark.hour == hour).with_for_update())
    for table, grain, column in KINDS.values():
        db.session.execute(sa.delete(table).where(table.hour == hour))
        rows = grain(sa.and_(column >= hour, column < hour + HOUR))
        db.session.execute(sa.insert(table).from_select([c.name for c in rows.selected_columns], rows))
    db.session.execute(sa.update(HourMark).where(HourMark.hour == hour).values(fresh=True, computed_at=now))


def mark_stale(instant: datetime) -> None:
    """A redemption made at `instant` changed: its hour's stored figures no longer hold.

    Called in the changing transaction; its lock on the mark orders it with the job.
    """
    dialect = db.session.get_bind().dialect.name
    db.session.execute(
        _insert(HourMark, dialect)
        .values(hour=truncate(instant), fresh=False)
        .on_conflict_do_update(index_elements=["hour"], set_={"fresh": False})
    )


# ---------------------------------------------------------------- reading


@contextlib.contextmanager
def snapshot() -> Iterator[sa.Connection]:
    """A connection whose reads all see one moment (the marks and the figures they select)."""
    engine = db.engine
    level = "REPEATABLE READ" if engine.dialect.name == "postgresql" else "SERIALIZABLE"
    with engine.connect().execution_options(isolation_level=level) as connection, connection.begin():
        yield connection


@dataclass(frozen=True)
class Period:
    """Local days, both ends included; None for open ends."""

    first: date | None = None
    last: date | None = None

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        return (
            day_start(self.first) if self.first else None,
            day_start(self.last + timedelta(days=1)) if self.last else None,
        )


def _runs(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Sorted hours as half-open ranges of consecutive hours."""
    runs: list[list[datetime]] = []
    for hour in hours:
        if runs and runs[-1][1] == hour:
            runs[-1][1] = hour + HOUR
        else:
            runs.append([hour, hour + HOUR])
    return [(a, b) for a, b in runs]


def _gaps(runs, start: datetime | None, end: datetime | None) -> list[tuple[datetime | None, datetime | None]]:
    """The parts of [start, end) outside the runs."""
    gaps = []
    for a, b in runs:
        if start is None or a > start:
            gaps.append((start, a))
        start = b
    if end is None or start is None or start < end:
        gaps.append((start, end))
    return gaps


def _within(column, ranges) -> sa.ColumnElement:
    terms = []
    for start, end in ranges:
        parts = ([column >= start] if start else []) + ([column < end] if end else [])
        terms.append(sa.and_(*parts) if parts else sa.true())
    return sa.or_(*terms) if terms else sa.false()


def figures(connection: sa.Connection, kind: str, period: Period = Period(), campaign_id: int | None = None):
    """A subquery with one row per hour and grain of `kind` ("claims", "redemptions", "ledger"):
    the stored rows of fresh hours and the source rows of the others, for the period and
    campaign. Read it through `connection`, a snapshot."""
    table, grain, column = KINDS[kind]
    start, end = period.bounds()
    marks = sa.select(HourMark.hour).where(HourMark.fresh).order_by(HourMark.hour)
    if start:
        marks = marks.where(HourMark.hour >= start)
    if end:
        marks = marks.where(HourMark.hour < end)
    runs = _runs(list(connection.scalars(marks)))
    live = grain(_within(column, _gaps(runs, start, end)))
    stored = sa.select(*(table.__table__.c[c.name] for c in live.selected_columns)).where(_within(table.hour, runs))
    if campaign_id is not None:
        campaign_of = LedgerEntry.campaign_id if kind == "ledger" else Round.campaign_id
        live = live.where(campaign_of == campaign_id)
        stored = stored.where(table.campaign_id == campaign_id)
    return sa.union_all(stored, live).subquery()
