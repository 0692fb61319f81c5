"""Figures per hour, stored for the hours that are over, so that the dashboard and the settlement
page add up a few thousand rows instead of every claim, redemption and ledger entry.

For each UTC hour (local days are whole hours: China has one offset, +8), the `close_hours` job
stores, once the hour has ended and MARGIN has passed (a till or a draw stamps its row when it
begins and commits within seconds): claims per (campaign, round, category), redemptions that
stand per (campaign, round, category, merchant), ledger entries per (campaign, round, tier,
kind), and what the risk flags count (pool/risk.py). The hour's HourMark then says "fresh".
Whatever later changes a redemption of that hour (a revocation, a refund) marks the hour stale in
its own transaction; ledger entries, claims and refunds are never changed. Readers take fresh
hours from the stored rows and everything else from the source tables: what is read is always
what the source tables say, and at most an hour and MARGIN of it is read row by row.

The job and the writers meet on the hour's mark row. A writer upserts it (stale) and holds its
lock until it commits; the job inserts-or-locks the same row before it reads the hour, so it
waits for any writer in flight and then reads what that writer committed, and a writer that
comes after waits for the job and marks the hour stale again. Readers take every figure from one
snapshot (REPEATABLE READ on PostgreSQL), so an hour is never counted twice or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from ..core import db as database
from ..core.db import hour_of
from ..core.time import local_day, local_midnight
from ..extensions import db
from ..models import (
    Campaign,
    Coupon,
    HourClaims,
    HourLedger,
    HourMark,
    HourRedemptions,
    LedgerEntry,
    Redemption,
    Round,
)
from . import ledger, risk
from .coupons import settled_clause
from .hours import HOUR, gaps, truncate, within
from .hours import runs as runs_of

MARGIN = timedelta(minutes=10)
# Hours a run stores at most, oldest first: a backlog (after a downtime, or a campaign's first run)
# is worked off run by run, each run's transaction short, and what writers of those hours may wait
# for bounded.
RUN_LIMIT = 168


def local_date(hour: datetime) -> date:
    """The reporting day an hour belongs to."""
    return local_day(hour)


# ---------------------------------------------------------------- the source figures, per hour


def _first_claim(same_scope) -> sa.ColumnElement:
    """1 when the coupon is its resident's first claim in the scope (`same_scope` compares an
    earlier coupon, `Earlier`, with this one), else 0: first claims add up over hours to the
    residents who claimed, where a count of distinct residents would not."""
    earlier = (
        sa.select(sa.literal(1))
        .where(
            Earlier.resident_id == Coupon.resident_id,
            sa.or_(
                Earlier.claimed_at < Coupon.claimed_at,
                sa.and_(Earlier.claimed_at == Coupon.claimed_at, Earlier.id < Coupon.id),
            ),
            same_scope,
        )
        .exists()
    )
    return sa.case((earlier, 0), else_=1)


Earlier = aliased(Coupon, name="earlier")
EarlierRound = aliased(Round, name="earlier_round")


def claim_grain(where) -> sa.Select:
    hour = hour_of(Coupon.claimed_at)
    in_campaign = Earlier.round_id.in_(
        sa.select(EarlierRound.id).where(EarlierRound.campaign_id == Round.campaign_id).scalar_subquery()
    )
    return (
        sa.select(
            hour.label("hour"),
            Coupon.round_id.label("round_id"),
            Coupon.category_id.label("category_id"),
            Round.campaign_id.label("campaign_id"),
            sa.func.count().label("claimed"),
            sa.func.sum(_first_claim(in_campaign)).label("first_in_campaign"),
            sa.func.sum(_first_claim(Earlier.category_id == Coupon.category_id)).label("first_in_category"),
        )
        .join(Round, Round.id == Coupon.round_id)
        .where(Coupon.claimed_at.is_not(None), where)
        .group_by(hour, Coupon.round_id, Coupon.category_id, Round.campaign_id)
    )


def redemption_grain(where) -> sa.Select:
    hour = hour_of(Redemption.created_at)
    settled = settled_clause()
    return (
        sa.select(
            hour.label("hour"),
            Coupon.round_id.label("round_id"),
            Redemption.category_id.label("category_id"),
            Redemption.merchant_id.label("merchant_id"),
            Round.campaign_id.label("campaign_id"),
            sa.func.count().label("redeemed"),
            sa.func.sum(Redemption.spend_fen).label("order_fen"),
            sa.func.sum(Redemption.paid_fen).label("redeemed_fen"),
            sa.func.count(Redemption.refunded_at).label("refunded"),
            sa.func.sum(Redemption.returned_fen + Redemption.withheld_fen).label("refunded_fen"),
            sa.func.sum(sa.case((settled, 1), else_=0)).label("settled"),
            sa.func.sum(sa.case((settled, Redemption.owed_fen), else_=0)).label("owed_fen"),
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
    """Store the figures of the hours that are over and not stored fresh, RUN_LIMIT at most, oldest
    first; returns how many.

    All of them at once, in a fixed number of statements however many hours are due: their marks
    are inserted and locked together, which waits for any writer in flight, then each kind's grain,
    grouped by hour, is stored for them all, and the risk flags' figures (pool/risk.py). Hours
    without a claim, a redemption or a ledger entry are stored empty (a mark and no rows).
    """
    last = truncate(now - MARGIN) - HOUR  # the last hour that is over, with the margin
    firsts = [db.session.scalar(sa.select(sa.func.min(column))) for _, _, column in KINDS.values()]
    firsts = [truncate(f) for f in firsts if f is not None]
    if not firsts:
        return 0
    first = min(firsts)
    fresh = set(db.session.scalars(sa.select(HourMark.hour).where(HourMark.fresh, HourMark.hour >= first)))
    due = []
    hour = first
    while hour <= last and len(due) < RUN_LIMIT:
        if hour not in fresh:
            due.append(hour)
        hour += HOUR
    if not due:
        return 0
    runs = runs_of(due)
    db.session.execute(
        database.insert(HourMark).on_conflict_do_nothing(index_elements=["hour"]),
        [{"hour": hour, "fresh": False} for hour in due],
    )
    # The risk figures of an hour look back on earlier hours (pool/risk.py): the fresh hours that
    # look back on a due one are counted again with it.
    counted = runs_of(sorted(set(due) | risk.looking_back(due, fresh, last)))
    # Wait for the writers holding any of these marks; the statements below see what they committed.
    db.session.execute(sa.select(HourMark.hour).where(within(HourMark.hour, counted)).with_for_update())
    for table, grain, column in KINDS.values():
        db.session.execute(sa.delete(table).where(within(table.hour, runs)))
        rows = grain(within(column, runs))
        db.session.execute(sa.insert(table).from_select([c.name for c in rows.selected_columns], rows))
    risk.store(counted)
    db.session.execute(sa.update(HourMark).where(within(HourMark.hour, runs)).values(fresh=True, computed_at=now))
    return len(due)


def mark_stale(instant: datetime) -> None:
    """A redemption made at `instant` changed: its hour's stored figures no longer hold.

    Called in the changing transaction; its lock on the mark orders it with the job.
    """
    db.session.execute(
        database.insert(HourMark)
        .values(hour=truncate(instant), fresh=False)
        .on_conflict_do_update(index_elements=["hour"], set_={"fresh": False})
    )


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Period:
    """Local days, both ends included; None for open ends."""

    first: date | None = None
    last: date | None = None

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        return (
            local_midnight(self.first) if self.first else None,
            local_midnight(self.last + timedelta(days=1)) if self.last else None,
        )


def figures(connection: sa.Connection, kind: str, period: Period = Period(), campaign_id: int | None = None):
    """A subquery with one row per hour and grain of `kind` ("claims", "redemptions", "ledger"):
    the stored rows of fresh hours and the source rows of the others, for the period and
    campaign. Read it through `connection`, a snapshot (core.db.snapshot) that the marks and the
    figures they select are read in."""
    table, grain, column = KINDS[kind]
    start, end = period.bounds()
    marks = sa.select(HourMark.hour).where(HourMark.fresh).order_by(HourMark.hour)
    if start:
        marks = marks.where(HourMark.hour >= start)
    if end:
        marks = marks.where(HourMark.hour < end)
    runs = runs_of(list(connection.scalars(marks)))
    live = grain(within(column, gaps(runs, start, end)))
    stored = sa.select(*(table.__table__.c[c.name] for c in live.selected_columns)).where(within(table.hour, runs))
    if campaign_id is not None:
        campaign_of = LedgerEntry.campaign_id if kind == "ledger" else Round.campaign_id
        live = live.where(campaign_of == campaign_id)
        stored = stored.where(table.campaign_id == campaign_id)
    return sa.union_all(stored, live).subquery()


# ---------------------------------------------------------------- the balances, from the stored hours


@dataclass(frozen=True)
class StoredBalances:
    """Each campaign's accounts (pool/ledger.py) through `through`, the end of the last stored hour."""

    through: datetime | None
    fen: dict[str, dict[str, int]]  # campaign code -> account -> fen


def stored_balances() -> StoredBalances:
    """The campaigns' balances from the stored hourly figures alone: a few thousand rows however
    many coupons, for a scrape every few seconds (core/metrics.py). Ledger entries are never
    changed, so the stored rows of every hour ever stored hold, whatever hour was marked stale
    since; what is later than the last stored hour (an hour and MARGIN at most, when the job
    runs) is not in them, and `through` says so."""
    rows = db.session.execute(
        sa.select(Campaign.code, HourLedger.kind, sa.func.sum(HourLedger.amount_fen))
        .join(Campaign, Campaign.id == HourLedger.campaign_id)
        .group_by(Campaign.code, HourLedger.kind)
    )
    fen: dict[str, dict[str, int]] = {}
    for code, kind, amount in rows:
        ledger.moved([(kind, amount)], fen.setdefault(code, dict.fromkeys(ledger.ACCOUNTS, 0)))
    last = db.session.scalar(sa.select(sa.func.max(HourMark.hour)).where(HourMark.fresh))
    return StoredBalances(last + HOUR if last is not None else None, fen)
