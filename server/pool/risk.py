"""What the risk flags (admin/risk.py) count, stored per hour beside the dashboard's figures
(rollup.py), so that the console's 风险提示 adds up a few thousand rows for any period instead of
analysing every redemption of it.

The page asks about the last 1, 7 or 30 days up to now: a period that starts and ends inside an
hour. For each hour the `close_hours` job stores
- per merchant, the redemptions that stand, those spent exactly at the threshold, and those that
  ended a burst (the RULES["burst"]["count"]th of the merchant's redemptions within its minutes)
  (HourMerchantRisk);
- per assistant, the redemptions per the hour of the same resident's previous one by that
  assistant that local day, none for the day's first (HourStaffRisk);
- per merchant and resident, the redemptions within RULES["repeat"]["minutes"] of the resident's
  previous one there (HourRepeatRisk);
- per merchant, the refunds per the hour of the same redemption's previous refund (HourRefundRisk).
A count of distinct residents (or of redemptions refunded) does not add up over hours; counting
each row whose previous one is not in the period does, and the previous one's hour says that for
every row but those whose previous one is in the hour the period starts in: those few are looked
up in the source rows.

An hour's figures look back on earlier hours: a burst or a repeat on up to REACH before it, an
assistant's residents on the hours of the same local day. So a revocation (which marks its own
hour stale, rollup.mark_stale) also changes hours after it: readers take an hour from the stored
figures only when neither it nor any hour it looks back on is stale, and the job, storing a stale
hour again, stores again the fresh hours that look back on it. What is read is always what the
source tables say, as for the dashboard: stored figures for the hours that hold, source rows for
the rest of the period (its first REACH and hour, its last hour and MARGIN, and any hour that
does not hold).

The thresholds of bursts and repeats are counted into the stored figures: RULES here are the ones
the figures hold for, and a reader asking with others reads the source rows. Changing them here
needs the hours stored again (a migration marking every hour stale, as one adding a figure does).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from ..core.db import epoch_of, hour_of, local_text
from ..core.time import local_day, local_midnight
from ..extensions import db
from ..models import HourMark, HourMerchantRisk, HourRefundRisk, HourRepeatRisk, HourStaffRisk, Redemption, Refund
from .hours import HOUR, gaps, runs, truncate, within

RULES = {
    "burst": {"count": 20, "minutes": 10},
    "exact": {"count": 5, "percent": 50},
    "staff": {"residents": 30},
    "address": {"residents": 20},
    "device": {"residents": 3},
    "far": {"metres": 3000},
    "refund": {"count": 1},
    "repeat": {"minutes": 5},
}
# How far a stored figure looks back: the longer window of bursts and repeats, and a second for
# the floating-point seconds SQLite subtracts them in.
REACH = timedelta(minutes=max(RULES["burst"]["minutes"], RULES["repeat"]["minutes"]), seconds=1)
SLACK = timedelta(seconds=1)

Earlier = aliased(Redemption, name="earlier_redemption")
EarlierRefund = aliased(Refund, name="earlier_refund")


def day_of(column) -> sa.ColumnElement:
    """The local day of a timestamp, "YYYY-MM-DD"."""
    return sa.func.substr(local_text(column), 1, 10)


def _standing(table=Redemption) -> sa.ColumnElement:
    return table.revoked_at.is_(None)


def _neighbour(other, row, same: tuple[str, ...], *, after: bool, where: Iterable = ()) -> sa.ScalarSelect:
    """When `row`'s nearest neighbour in `other` (an alias of its table) sharing the `same`
    columns was made: the one before it, or with `after` the one after it (at the same instant,
    the lower or higher id); NULL when there is none. `where` narrows the neighbours."""
    nearest, reach, beyond = (
        (sa.func.min, operator.ge, operator.gt) if after else (sa.func.max, operator.le, operator.lt)
    )
    return (
        sa.select(nearest(other.created_at))
        .where(
            *(getattr(other, name) == getattr(row, name) for name in same),
            reach(other.created_at, row.created_at),
            sa.or_(beyond(other.created_at, row.created_at), beyond(other.id, row.id)),
            *where,
        )
        .scalar_subquery()
    )


def _same_day(since=None) -> list[sa.ColumnElement]:
    """Which of an assistant's other redemptions for the resident count: standing, the same local
    day, and not before `since`."""
    return [
        _standing(Earlier),
        day_of(Earlier.created_at) == day_of(Redemption.created_at),
        *([Earlier.created_at >= since] if since is not None else []),
    ]


_STAFF_SAME = ("resident_id", "staff_id", "merchant_id")


def _exact(table=Redemption) -> sa.ColumnElement:
    return sa.case((table.spend_fen == table.threshold_fen, 1), else_=0)


# ---------------------------------------------------------------- the grains, stored and live


def _context(ranges, reach: timedelta, since: datetime | None):
    """The ranges, each reaching `reach` further back, not before `since`."""
    found = []
    for start, end in ranges:
        start = start - reach if start is not None else None
        if since is not None and (start is None or start < since):
            start = since
        found.append((start, end))
    return found


def _looking_back(ranges, minutes: int, since, until, earlier, *columns):
    """The redemptions that stand from `since` to `until` (all by default) with `earlier`, a window
    over them, read over the ranges and the `minutes` before each; and the SQL that keeps those in
    the ranges whose `earlier` is within the minutes.

    Within the minutes before a redemption the rows read are all there are, so `earlier` is what a
    window over the whole period gives whenever it is within them; otherwise both are further."""
    where = [_standing(), within(Redemption.created_at, _context(ranges, timedelta(minutes=minutes) + SLACK, since))]
    if until is not None:
        where.append(Redemption.created_at <= until)
    inner = sa.select(*columns, Redemption.created_at.label("at"), earlier.label("earlier")).where(*where).subquery()
    kept = sa.and_(
        within(inner.c.at, ranges),
        inner.c.earlier.is_not(None),
        epoch_of(inner.c.at) - epoch_of(inner.c.earlier) <= minutes * 60,
    )
    return inner, kept


def burst_rows(ranges, count: int, minutes: int, since=None, until=None) -> sa.Select:
    """(merchant_id, at) of each redemption in the ranges that is the `count`th or later of its
    merchant within `minutes` (a window `lag` over the merchant's redemptions in order)."""
    earlier = sa.func.lag(Redemption.created_at, count - 1, type_=Redemption.created_at.type).over(
        partition_by=Redemption.merchant_id, order_by=(Redemption.created_at, Redemption.id)
    )
    inner, kept = _looking_back(ranges, minutes, since, until, earlier, Redemption.merchant_id)
    return sa.select(inner.c.merchant_id, inner.c.at).where(kept)


def repeat_rows(ranges, minutes: int, since=None, until=None) -> sa.Select:
    """(merchant_id, resident_id, earlier, at) of each redemption in the ranges that came within
    `minutes` of the same resident's previous one at the same merchant."""
    earlier = sa.func.lag(Redemption.created_at, type_=Redemption.created_at.type).over(
        partition_by=(Redemption.resident_id, Redemption.merchant_id), order_by=(Redemption.created_at, Redemption.id)
    )
    inner, kept = _looking_back(ranges, minutes, since, until, earlier, Redemption.merchant_id, Redemption.resident_id)
    return sa.select(inner.c.merchant_id, inner.c.resident_id, inner.c.earlier, inner.c.at).where(kept)


def staff_rows(where, since=None) -> sa.Select:
    """An assistant's redemptions per hour, merchant and the hour of the same resident's previous
    one by the assistant that local day (and not before `since`): NULL for the first."""
    previous = _neighbour(Earlier, Redemption, _STAFF_SAME, after=False, where=_same_day(since))
    inner = (
        sa.select(
            hour_of(Redemption.created_at).label("hour"),
            Redemption.staff_id,
            Redemption.merchant_id,
            hour_of(previous).label("previous"),
            Redemption.created_at.label("at"),
        )
        .where(_standing(), where)
        .subquery()
    )
    keys = (inner.c.hour, inner.c.staff_id, inner.c.merchant_id, inner.c.previous)
    return sa.select(
        *keys,
        sa.func.count().label("redeemed"),
        sa.func.min(inner.c.at).label("first_at"),
        sa.func.max(inner.c.at).label("last_at"),
    ).group_by(*keys)


def refund_rows(where, since=None) -> sa.Select:
    """Refunds per hour, merchant and the hour of the same redemption's previous refund (not
    before `since`): NULL for its first."""
    previous = _neighbour(
        EarlierRefund,
        Refund,
        ("redemption_id",),
        after=False,
        where=[EarlierRefund.created_at >= since] if since is not None else [],
    )
    inner = (
        sa.select(
            hour_of(Refund.created_at).label("hour"),
            Refund.merchant_id,
            hour_of(previous).label("previous"),
            Refund.spend_fen,
            Refund.share_fen,
            sa.case((Refund.policy == "forfeit", Refund.share_fen), else_=0).label("withheld_fen"),
            Refund.created_at.label("at"),
        )
        .where(where)
        .subquery()
    )
    keys = (inner.c.hour, inner.c.merchant_id, inner.c.previous)
    return sa.select(
        *keys,
        sa.func.count().label("refunds"),
        sa.func.sum(inner.c.spend_fen).label("spend_fen"),
        sa.func.sum(inner.c.share_fen).label("share_fen"),
        sa.func.sum(inner.c.withheld_fen).label("withheld_fen"),
        sa.func.min(inner.c.at).label("first_at"),
        sa.func.max(inner.c.at).label("last_at"),
    ).group_by(*keys)


def merchant_rows(ranges) -> sa.Select:
    """A merchant's redemptions that stand per hour: how many, at the threshold, ending a burst."""
    hour = hour_of(Redemption.created_at)
    base = (
        sa.select(
            hour.label("hour"),
            Redemption.merchant_id,
            sa.func.count().label("redeemed"),
            sa.func.sum(_exact()).label("exact"),
            sa.func.min(Redemption.created_at).label("first_at"),
            sa.func.max(Redemption.created_at).label("last_at"),
        )
        .where(_standing(), within(Redemption.created_at, ranges))
        .group_by(hour, Redemption.merchant_id)
        .subquery()
    )
    ended = burst_rows(ranges, RULES["burst"]["count"], RULES["burst"]["minutes"]).subquery()
    burst_hour = hour_of(ended.c.at)
    bursts = (
        sa.select(
            burst_hour.label("hour"),
            ended.c.merchant_id,
            sa.func.count().label("bursts"),
            sa.func.min(ended.c.at).label("burst_first"),
            sa.func.max(ended.c.at).label("burst_last"),
        )
        .group_by(burst_hour, ended.c.merchant_id)
        .subquery()
    )
    return sa.select(
        base.c.hour,
        base.c.merchant_id,
        base.c.redeemed,
        base.c.exact,
        base.c.first_at,
        base.c.last_at,
        sa.func.coalesce(bursts.c.bursts, 0).label("bursts"),
        bursts.c.burst_first,
        bursts.c.burst_last,
    ).select_from(
        base.outerjoin(bursts, sa.and_(bursts.c.hour == base.c.hour, bursts.c.merchant_id == base.c.merchant_id))
    )


def _repeats_per_hour(ranges) -> sa.Select:
    found = repeat_rows(ranges, RULES["repeat"]["minutes"]).subquery()
    hour = hour_of(found.c.at)
    return sa.select(
        hour.label("hour"),
        found.c.merchant_id,
        found.c.resident_id,
        sa.func.count().label("repeats"),
        sa.func.min(found.c.earlier).label("first_at"),
        sa.func.max(found.c.at).label("last_at"),
    ).group_by(hour, found.c.merchant_id, found.c.resident_id)


# ---------------------------------------------------------------- the job's part (rollup.close_hours)


def looking_back(due: list[datetime], fresh: set[datetime], last: datetime) -> set[datetime]:
    """The fresh hours, up to `last`, whose risk figures look back on one of the due hours: the hour
    after each and the rest of its local day."""
    found = set()
    for hour in due:
        end = max(local_midnight(local_day(hour)) + timedelta(days=1), hour + 2 * HOUR)
        later = hour + HOUR
        while later < end and later <= last:
            if later in fresh:
                found.add(later)
            later += HOUR
    return found - set(due)


def store(ranges) -> None:
    """Count the risk figures of the hours in `ranges` (runs of whole hours) again."""
    where = within(Redemption.created_at, ranges)
    grains = (
        (HourMerchantRisk, merchant_rows(ranges)),
        (HourStaffRisk, staff_rows(where)),
        (HourRepeatRisk, _repeats_per_hour(ranges)),
        (HourRefundRisk, refund_rows(within(Refund.created_at, ranges))),
    )
    for table, rows in grains:
        db.session.execute(sa.delete(table).where(within(table.hour, ranges)))
        db.session.execute(sa.insert(table).from_select([c.name for c in rows.selected_columns], rows))


# ---------------------------------------------------------------- reading a period


@dataclass(frozen=True)
class Split:
    """A period [since, until] as the hours read from the stored figures and the rest."""

    since: datetime
    until: datetime
    stored: list[tuple[datetime, datetime]]  # runs of whole hours
    live: list[tuple[datetime, datetime | None]]  # the rest, the last open (up to `until`)

    def live_where(self, column) -> sa.ColumnElement:
        return sa.and_(within(column, self.live), column <= self.until)

    def all_live(self) -> Split:
        return Split(self.since, self.until, [], [(self.since, None)])


def split(connection: sa.Connection, since: datetime, until: datetime) -> Split:
    """Which hours of [since, until] the stored figures hold for: those whose look-back stays in
    the period, stored fresh, and looking back on no stale hour."""
    start = truncate(since + REACH)
    if start < since + REACH:
        start += HOUR
    end = truncate(until)  # an hour is read stored only when it is over by `until`
    usable = []
    if start < end:
        lower = _looked_back_from(start)  # and no later hour looks back further
        marks = dict(
            connection.execute(
                sa.select(HourMark.hour, HourMark.fresh).where(HourMark.hour >= lower, HourMark.hour < end)
            ).all()
        )
        last_stale = None
        hour = lower
        while hour < end:
            fresh = marks.get(hour)
            if hour >= start and fresh and (last_stale is None or last_stale < _looked_back_from(hour)):
                usable.append(hour)
            if fresh is False:
                last_stale = hour
            hour += HOUR
    stored = runs(usable)
    return Split(since, until, stored, gaps(stored, since, None))


def _looked_back_from(hour: datetime) -> datetime:
    """The earliest hour the figures of `hour` look back on."""
    return min(local_midnight(local_day(hour)), hour - HOUR)


Merge = dict[tuple, list]


def _add(found: Merge, rows: Iterable, width: int, how: str) -> Merge:
    """Add rows (key of `width` columns, then values) into `found`, each value by its letter in
    `how`: s(um), n (min), x (max); None is no value."""
    for row in rows:
        key, values = tuple(row[:width]), row[width:]
        have = found.get(key)
        if have is None:
            found[key] = [int(v or 0) if h == "s" else v for v, h in zip(values, how, strict=True)]
            continue
        for i, (value, h) in enumerate(zip(values, how, strict=True)):
            if value is None:
                continue
            if h == "s":
                have[i] += int(value)
            elif have[i] is None:
                have[i] = value
            else:
                have[i] = min(have[i], value) if h == "n" else max(have[i], value)
    return found


def merchants(connection: sa.Connection, split: Split) -> Merge:
    """{(merchant,): [redeemed, exact, first, last]} of the redemptions that stand in the period."""
    stored = (
        sa.select(
            HourMerchantRisk.merchant_id,
            sa.func.sum(HourMerchantRisk.redeemed),
            sa.func.sum(HourMerchantRisk.exact),
            sa.func.min(HourMerchantRisk.first_at),
            sa.func.max(HourMerchantRisk.last_at),
        )
        .where(within(HourMerchantRisk.hour, split.stored))
        .group_by(HourMerchantRisk.merchant_id)
    )
    live = (
        sa.select(
            Redemption.merchant_id,
            sa.func.count(),
            sa.func.sum(_exact()),
            sa.func.min(Redemption.created_at),
            sa.func.max(Redemption.created_at),
        )
        .where(_standing(), split.live_where(Redemption.created_at))
        .group_by(Redemption.merchant_id)
    )
    found = _add({}, connection.execute(stored), 1, "ssnx")
    return _add(found, connection.execute(live), 1, "ssnx")


def bursts(connection: sa.Connection, split: Split, count: int, minutes: int) -> Merge:
    """{(merchant,): [bursts, first, last]}: the redemptions in the period that were the `count`th
    or later of their merchant's within `minutes`, counting those of the period only."""
    if (count, minutes) != (RULES["burst"]["count"], RULES["burst"]["minutes"]):
        split = split.all_live()
    stored = (
        sa.select(
            HourMerchantRisk.merchant_id,
            sa.func.sum(HourMerchantRisk.bursts),
            sa.func.min(HourMerchantRisk.burst_first),
            sa.func.max(HourMerchantRisk.burst_last),
        )
        .where(within(HourMerchantRisk.hour, split.stored), HourMerchantRisk.bursts > 0)
        .group_by(HourMerchantRisk.merchant_id)
    )
    ended = burst_rows(split.live, count, minutes, split.since, split.until).subquery()
    live = sa.select(ended.c.merchant_id, sa.func.count(), sa.func.min(ended.c.at), sa.func.max(ended.c.at)).group_by(
        ended.c.merchant_id
    )
    found = _add({}, connection.execute(stored), 1, "snx")
    return _add(found, connection.execute(live), 1, "snx")


def repeats(connection: sa.Connection, split: Split, minutes: int) -> Merge:
    """{(merchant, resident): [repeats, first, last]}: the resident's redemptions at the merchant in
    the period within `minutes` of their previous one there (of the period); first is the earliest
    such previous one."""
    if minutes != RULES["repeat"]["minutes"]:
        split = split.all_live()
    stored = (
        sa.select(
            HourRepeatRisk.merchant_id,
            HourRepeatRisk.resident_id,
            sa.func.sum(HourRepeatRisk.repeats),
            sa.func.min(HourRepeatRisk.first_at),
            sa.func.max(HourRepeatRisk.last_at),
        )
        .where(within(HourRepeatRisk.hour, split.stored))
        .group_by(HourRepeatRisk.merchant_id, HourRepeatRisk.resident_id)
    )
    found_rows = repeat_rows(split.live, minutes, split.since, split.until).subquery()
    live = sa.select(
        found_rows.c.merchant_id,
        found_rows.c.resident_id,
        sa.func.count(),
        sa.func.min(found_rows.c.earlier),
        sa.func.max(found_rows.c.at),
    ).group_by(found_rows.c.merchant_id, found_rows.c.resident_id)
    found = _add({}, connection.execute(stored), 2, "snx")
    return _add(found, connection.execute(live), 2, "snx")


def _firsts(table, rows, split: Split) -> tuple[sa.ColumnElement, sa.ColumnElement]:
    """Of a stored grain's `rows`, those whose previous one is before the period (or none); and
    those whose previous one is in the hour the period starts in, before or after its start: the
    stored hour does not say which, the source rows do (`_carried`)."""
    first = sa.or_(table.previous.is_(None), table.previous < truncate(split.since))
    unsure = table.previous == truncate(split.since)
    return sa.func.sum(sa.case((first, rows), else_=0)), sa.func.sum(sa.case((unsure, 1), else_=0))


def staff_days(connection: sa.Connection, split: Split) -> Merge:
    """{(staff, merchant, local day): [residents, first, last]} of the redemptions that stand in the
    period: the residents each assistant redeemed for on each day (the part of it in the period)."""
    day = day_of(HourStaffRisk.hour)
    firsts, unsure = _firsts(HourStaffRisk, HourStaffRisk.redeemed, split)
    stored = (
        sa.select(
            HourStaffRisk.staff_id,
            HourStaffRisk.merchant_id,
            day,
            firsts,
            sa.func.min(HourStaffRisk.first_at),
            sa.func.max(HourStaffRisk.last_at),
            unsure,
        )
        .where(within(HourStaffRisk.hour, split.stored))
        .group_by(HourStaffRisk.staff_id, HourStaffRisk.merchant_id, day)
    )
    rows = connection.execute(stored).all()
    found = _add({}, (row[:-1] for row in rows), 3, "snx")
    grain = staff_rows(split.live_where(Redemption.created_at), split.since).subquery()
    live_day = day_of(grain.c.hour)
    live = sa.select(
        grain.c.staff_id,
        grain.c.merchant_id,
        live_day,
        sa.func.sum(sa.case((grain.c.previous.is_(None), grain.c.redeemed), else_=0)),
        sa.func.min(grain.c.first_at),
        sa.func.max(grain.c.last_at),
    ).group_by(grain.c.staff_id, grain.c.merchant_id, live_day)
    _add(found, connection.execute(live), 3, "snx")
    if any(row[-1] for row in rows):
        carried = connection.execute(_staff_carried(split))
        _add(found, ((*key, n, None, None) for *key, n in carried), 3, "snx")
    return found


def _staff_carried(split: Split) -> sa.Select:
    """(staff, merchant, day, residents) of the stored rows whose previous redemption is in the
    hour the period starts in but before the period: each is its resident's first of the period.
    Found from the other end, the previous one (the next after it is the stored row)."""
    after = _neighbour(Earlier, Redemption, _STAFF_SAME, after=True, where=_same_day())
    inner = (
        sa.select(
            Redemption.staff_id,
            Redemption.merchant_id,
            day_of(Redemption.created_at).label("day"),
            after.label("next_at"),
        )
        .where(_standing(), Redemption.created_at >= truncate(split.since), Redemption.created_at < split.since)
        .subquery()
    )
    return (
        sa.select(inner.c.staff_id, inner.c.merchant_id, inner.c.day, sa.func.count())
        .where(within(inner.c.next_at, split.stored))
        .group_by(inner.c.staff_id, inner.c.merchant_id, inner.c.day)
    )


def refunds(connection: sa.Connection, split: Split) -> Merge:
    """{(merchant,): [refunds, redemptions refunded, spend, share, withheld, first, last]} of the
    refunds made in the period."""
    firsts, unsure = _firsts(HourRefundRisk, HourRefundRisk.refunds, split)
    stored = (
        sa.select(
            HourRefundRisk.merchant_id,
            sa.func.sum(HourRefundRisk.refunds),
            firsts,
            sa.func.sum(HourRefundRisk.spend_fen),
            sa.func.sum(HourRefundRisk.share_fen),
            sa.func.sum(HourRefundRisk.withheld_fen),
            sa.func.min(HourRefundRisk.first_at),
            sa.func.max(HourRefundRisk.last_at),
            unsure,
        )
        .where(within(HourRefundRisk.hour, split.stored))
        .group_by(HourRefundRisk.merchant_id)
    )
    rows = connection.execute(stored).all()
    found = _add({}, (row[:-1] for row in rows), 1, "sssssnx")
    grain = refund_rows(split.live_where(Refund.created_at), split.since).subquery()
    live = sa.select(
        grain.c.merchant_id,
        sa.func.sum(grain.c.refunds),
        sa.func.sum(sa.case((grain.c.previous.is_(None), grain.c.refunds), else_=0)),
        sa.func.sum(grain.c.spend_fen),
        sa.func.sum(grain.c.share_fen),
        sa.func.sum(grain.c.withheld_fen),
        sa.func.min(grain.c.first_at),
        sa.func.max(grain.c.last_at),
    ).group_by(grain.c.merchant_id)
    _add(found, connection.execute(live), 1, "sssssnx")
    if any(row[-1] for row in rows):
        after = _neighbour(EarlierRefund, Refund, ("redemption_id",), after=True)
        inner = (
            sa.select(Refund.merchant_id, after.label("next_at"))
            .where(Refund.created_at >= truncate(split.since), Refund.created_at < split.since)
            .subquery()
        )
        carried = (
            sa.select(inner.c.merchant_id, sa.func.count())
            .where(within(inner.c.next_at, split.stored))
            .group_by(inner.c.merchant_id)
        )
        _add(found, ((m, 0, n, 0, 0, 0, None, None) for m, n in connection.execute(carried)), 1, "sssssnx")
    return found
