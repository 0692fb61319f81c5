"""Time: stored in UTC, shown in the one reporting zone (setting TIMEZONE, Asia/Shanghai).

A campaign's file may write its rounds in a zone of its own (`Campaign.timezone`); that zone
only reads the file. Everything shown to people, and every local day the console and the
settlement count by, is in the reporting zone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.types import TypeDecorator

DEFAULT_ZONE = "Asia/Shanghai"


def utcnow() -> datetime:
    return datetime.now(UTC)


def zone() -> ZoneInfo:
    """The reporting zone: the app's TIMEZONE setting (outside an app, Asia/Shanghai)."""
    name = current_app.config.get("TIMEZONE") if has_app_context() else None
    return ZoneInfo(name or DEFAULT_ZONE)


def local_midnight(day: date, tz: ZoneInfo | None = None) -> datetime:
    """The UTC instant at which `day` begins in `tz` (the reporting zone by default)."""
    return datetime.combine(day, time(0), tzinfo=tz or zone()).astimezone(UTC)


def local_day(instant: datetime, tz: ZoneInfo | None = None) -> date:
    return instant.astimezone(tz or zone()).date()


def day_bounds(instant: datetime) -> tuple[datetime, datetime]:
    """UTC start and end of the local day that contains `instant`."""
    day = local_day(instant)
    return local_midnight(day), local_midnight(day + timedelta(days=1))


def isoformat(instant: datetime | None) -> str | None:
    """ISO 8601 with the local offset, as the API shows times."""
    return None if instant is None else instant.astimezone(zone()).isoformat(timespec="seconds")


def local(instant: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A time as the console and the pages print it ('' for none)."""
    return instant.astimezone(zone()).strftime(fmt) if instant else ""


def _as_written(instant: datetime) -> tuple[date, str]:
    """A moment's local day and clock as the plans write them: a deadline at midnight is 24:00 of
    the day before (Qian'an: "第五天24:00"), so its day is the last one it still counts for."""
    moment_ = instant.astimezone(zone())
    if (moment_.hour, moment_.minute, moment_.second) == (0, 0, 0):
        return (moment_ - timedelta(days=1)).date(), "24:00"
    return moment_.date(), moment_.strftime("%H:%M")


def moment(instant: datetime) -> str:
    """6月25日 09:00; a midnight deadline is 3月31日 24:00."""
    day_, clock = _as_written(instant)
    return f"{day_.month}月{day_.day}日 {clock}"


def day(instant: datetime) -> str:
    """2026年6月25日 (a midnight deadline counts for the day before)."""
    day_, _ = _as_written(instant)
    return f"{day_.year}年{day_.month}月{day_.day}日"


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
