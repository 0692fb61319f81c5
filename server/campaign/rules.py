"""The campaign model's rules: the categories people write, thresholds and minimum leverage."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal

from ..core.errors import BelowThreshold, InvalidInput, Refusal, SpendExcluded
from ..core.money import yuan
from ..core.time import zone

# Categories the seed plans use, with the Chinese names (and aliases) people write in files.
CATALOGUE: dict[str, tuple[str, ...]] = {
    "hotel": ("住宿", "宾馆", "酒店"),
    "restaurant": ("餐饮", "餐饮企业"),
    "fuel": ("加油", "加油站", "油品"),
    "farm_produce": ("扶贫农产品", "农产品"),
    "bookstore": ("书店",),
    "supermarket": ("超市",),
    "appliance": ("家电", "家电百货"),
    "pharmacy": ("药店",),
    "furniture": ("家居",),
    "department_store": ("百货", "商超百货"),
    "retail": ("零售",),
    "car": ("汽车",),
    "motorcycle": ("摩托车",),
    "culture_tourism": ("文旅", "文化旅游"),
    "fair": ("年货大集",),
}
CATEGORY_BY_NAME = {name: code for code, names in CATALOGUE.items() for name in names}


def category_name(code: str) -> str | None:
    names = CATALOGUE.get(code)
    return names[0] if names else None


def threshold_for(face_fen: int, multiple: Decimal) -> int:
    """Spend needed for a coupon of `face_fen` under "spend >= k x face", rounded up to the fen."""
    return math.ceil(Decimal(face_fen) * multiple)


def leverage_floor(face_fen: int, min_leverage: Decimal | None) -> int:
    """The least threshold the campaign's minimum leverage allows for this face value."""
    return 0 if min_leverage is None else threshold_for(face_fen, min_leverage)


@dataclass(frozen=True)
class Hours:
    """When in the day a coupon may be spent, local time: from `start` (inclusive) to `end`
    (exclusive; 24:00 is the day's end). Written "09:00-22:00", as the plans write 9:00-22:00."""

    start: time
    end: time | None  # None: 24:00

    PATTERN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–—~至到]\s*(\d{1,2}):(\d{2})\s*$")

    @classmethod
    def parse(cls, text: str | None) -> Hours | None:
        """The window a text writes, or None when it writes none (or one that is not a window)."""
        found = cls.PATTERN.match(str(text or ""))
        if not found:
            return None
        h1, m1, h2, m2 = (int(n) for n in found.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            return None
        start, end = time(h1, m1), (None if h2 == 24 else time(h2, m2))
        if end is not None and end <= start:
            return None
        return cls(start, end)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-" + ("24:00" if self.end is None else f"{self.end:%H:%M}")

    def allow(self, instant: datetime) -> bool:
        clock = instant.astimezone(zone()).time()
        return self.start <= clock and (self.end is None or clock < self.end)


def usage_hours(tier_hours: str | None, campaign_hours: str | None) -> Hours | None:
    """The hours a coupon may be spent in: its tier's, else its campaign's, else any time."""
    return Hours.parse(tier_hours or campaign_hours)


def spend_choices(spend_categories: dict | None, category_code: str) -> list[dict] | None:
    """What the till may record a spend of this coupon category as ({"name", "excluded"}), or None
    when the campaign lets it type any words."""
    if not spend_categories:
        return None
    return spend_categories.get(category_code) or spend_categories.get("*")


def spend_refusal(choices: list[dict] | None, name: str) -> Refusal | None:
    """Why a spend of this name may not be paid with the coupon (Geermu: 不得用于交付定金、充值、
    预存), or None."""
    if choices is None:
        return None
    chosen = next((c for c in choices if c["name"] == name.strip()), None)
    excluded = "、".join(c["name"] for c in choices if c["excluded"])
    if chosen is None:
        allowed = "、".join(c["name"] for c in choices if not c["excluded"])
        return InvalidInput(f"消费品类请从本活动的列表中选择：{allowed}")
    if chosen["excluded"]:
        return SpendExcluded(f"消费券不得用于{chosen['name']}（本活动不得用于{excluded}）")
    return None


def usage_hours_text(tier_hours: str | None, campaign_hours: str | None) -> str | None:
    """The same, as a coupon shows it ("09:00-22:00"), or None."""
    hours = usage_hours(tier_hours, campaign_hours)
    return str(hours) if hours else None


def short_refusal(face_fen: int, spend_fen: int, short_sale: str) -> Refusal | None:
    """不得找零: a spend below the coupon's face is refused, unless the campaign settles it at the
    spend (then the coupon pays the spend and the rest of its face goes back to the pool)."""
    if spend_fen >= face_fen or short_sale == "settle":
        return None
    return BelowThreshold(
        f"消费金额不足券面额，本券不找零（券面{yuan(face_fen)}元，本次消费{yuan(spend_fen, cents=True)}元）"
    )
