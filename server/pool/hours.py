"""UTC hours and ranges of them: the unit every stored figure is kept in (rollup.py, risk.py).

China keeps one offset all year (+8), so a local day is 24 whole UTC hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

HOUR = timedelta(hours=1)


def truncate(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def runs(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Sorted hours as half-open ranges of consecutive hours."""
    found: list[list[datetime]] = []
    for hour in hours:
        if found and found[-1][1] == hour:
            found[-1][1] = hour + HOUR
        else:
            found.append([hour, hour + HOUR])
    return [(a, b) for a, b in found]


def gaps(ranges, start: datetime | None, end: datetime | None) -> list[tuple[datetime | None, datetime | None]]:
    """The parts of [start, end) outside the (sorted, disjoint) ranges."""
    found = []
    for a, b in ranges:
        if start is None or a > start:
            found.append((start, a))
        start = b
    if end is None or start is None or start < end:
        found.append((start, end))
    return found


def within(column, ranges) -> sa.ColumnElement:
    """SQL: the column falls in one of the half-open ranges (None: open at that end)."""
    terms = []
    for start, end in ranges:
        parts = ([column >= start] if start else []) + ([column < end] if end else [])
        terms.append(sa.and_(*parts) if parts else sa.true())
    return sa.or_(*terms) if terms else sa.false()
