"""Time: stored in UTC, shown in the campaign's zone (Asia/Shanghai by default)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


def zone(name: str = "Asia/Shanghai") -> ZoneInfo:
    return ZoneInfo(name)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant at which `day` begins in `tz`."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def local_day(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def day_bounds(instant: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC start and end of the local day that contains `instant`."""
    day = local_day(instant, tz)
    return local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz)


def isoformat(instant: datetime | None, tz: ZoneInfo) -> str | None:
    """ISO 8601 with the local offset, as the API shows times."""
    return None if instant is None else instant.astimezone(tz).isoformat(timespec="seconds")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC instant is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
