"""The campaign model's rules: the categories people write, thresholds and minimum leverage."""

from __future__ import annotations

import math
from decimal import Decimal

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
