"""The campaign model's rules: categories, thresholds, rounds, stock, and the live snapshot.

The snapshot is an immutable picture of the active campaign's configuration that the hot
path reads instead of querying it on every draw; it is rebuilt after a short time.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import sqlalchemy.orm
from flask import current_app

from .extensions import db
from .models import Campaign, Coupon, Round, Tier

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


def rng() -> random.Random:
    """The draw's randomness: the system's, unless DRAW_SEED makes runs reproducible (tests)."""
    extensions = current_app.extensions
    if "huigou.rng" not in extensions:
        seed = current_app.config.get("DRAW_SEED")
        extensions["huigou.rng"] = random.SystemRandom() if seed is None else random.Random(seed)
    return extensions["huigou.rng"]


def threshold_for(face_fen: int, multiple: Decimal) -> int:
    """Spend needed for a coupon of `face_fen` under "spend >= k x face", rounded up to the fen."""
    return math.ceil(Decimal(face_fen) * multiple)


def leverage_floor(face_fen: int, min_leverage: Decimal | None) -> int:
    """The least threshold the campaign's minimum leverage allows for this face value."""
    return 0 if min_leverage is None else threshold_for(face_fen, min_leverage)


def generate_stock(round_id: int, quantities: list[tuple[Tier, int]]) -> list[dict]:
    """Add stock coupons to a round, shuffled so that taking them in order drains tiers evenly.

    Returns the rows created. A round that holds stock but has not been drawn from is shuffled
    again as a whole, so that new and old coupons interleave uniformly.
    """
    rows = []
    for tier, quantity in quantities:
        rows.extend(
            {
                "round_id": round_id,
                "tier_id": tier.id,
                "category_id": tier.category_id,
                "face_fen": tier.face_fen,
                "threshold_fen": tier.threshold_fen,
                "state": "stock",
            }
            for _ in range(quantity)
        )
    drawn_from = db.session.scalar(
        sa.select(sa.func.max(Coupon.seq)).where(Coupon.round_id == round_id, Coupon.state != "stock")
    )
    if drawn_from is None:
        # One permutation per round; each category's stock is a uniform shuffle of its tiers.
        existing = db.session.scalars(
            sa.select(Coupon.id).where(Coupon.round_id == round_id, Coupon.state == "stock").order_by(Coupon.id)
        ).all()
        order = list(range(len(existing) + len(rows)))
    else:
        # The round is open and drawn from (a rollover landing after 09:00): the stock already
        # there keeps its order and the new coupons follow it, so that `seq` stays unique and a
        # staged release's cap, a `seq` of the old stock, still releases what it did.
        existing = []
        top = db.session.scalar(sa.select(sa.func.max(Coupon.seq)).where(Coupon.round_id == round_id))
        order = list(range(top + 1, top + 1 + len(rows)))
    rng().shuffle(order)
    for row, seq in zip(rows, order[len(existing) :], strict=True):
        row["seq"] = seq
    for start in range(0, len(rows), 5000):
        db.session.execute(sa.insert(Coupon.__table__), rows[start : start + 5000])
    if existing:
        db.session.execute(
            sa.update(Coupon.__table__).where(Coupon.__table__.c.id == sa.bindparam("coupon_id")),
            [{"coupon_id": id_, "seq": seq} for id_, seq in zip(existing, order, strict=False)],
        )
    return rows


@dataclass(frozen=True)
class TierView:
    id: int
    category_code: str
    face_fen: int
    threshold_fen: int
    odds_weight: int | None


@dataclass(frozen=True)
class RoundView:
    id: int
    number: int
    opens_at: datetime
    closes_at: datetime
    valid_until: datetime
    quantities: dict[int, int]  # tier id -> allocated quantity


@dataclass(frozen=True)
class Segment:
    index: int
    tier_id: int | None  # None: "thanks for taking part"
    face_fen: int
    label: str


@dataclass(frozen=True)
class Snapshot:
    """What the resident API needs to know of the active campaign, read once and shared."""

    id: int
    code: str
    name: str
    region: str
    tz: ZoneInfo
    draw_strategy: str
    thanks_weight: int
    validity_kind: str
    validity_days: int | None
    geofence: dict | None
    category_ids: dict[str, int]
    category_names: dict[str, str]
    tiers: dict[str, tuple[TierView, ...]]  # by category code, ascending face value
    rounds: tuple[RoundView, ...]
    segments: dict[str, tuple[Segment, ...]] = field(default_factory=dict)
    release: tuple[tuple[int, int], ...] = ()  # (seconds after opening, percent drawable until then)
    kind: str = "wheel"  # wheel | grab | subsidy (models.Campaign.kind)
    grab_limit: str = "tier"  # a grab campaign's rule: once per tier, or once per round
    screen_qr: bool = False  # an on-site event: claims only through the big screen's QR
    brackets: tuple[dict, ...] = ()  # a purchase subsidy's bracket table (models.Campaign.subsidy_brackets)

    def tier(self, tier_id: int) -> TierView | None:
        return next((t for views in self.tiers.values() for t in views if t.id == tier_id), None)

    def round_at(self, now: datetime) -> RoundView | None:
        for round_ in self.rounds:
            if round_.opens_at <= now < round_.closes_at:
                return round_
        return None

    def next_round(self, now: datetime) -> RoundView | None:
        upcoming = [r for r in self.rounds if r.opens_at > now]
        return upcoming[0] if upcoming else None

    def released_percent(self, round_: RoundView, now: datetime) -> tuple[int, datetime] | None:
        """The share of each category's stock drawable now under the staged release, and when
        the next share opens; None once the whole stock is out."""
        for seconds, percent in self.release:
            until = round_.opens_at + timedelta(seconds=seconds)
            if now < until:
                return percent, until
        return None

    def local(self, instant: datetime) -> str:
        return instant.astimezone(self.tz).strftime("%-m月%-d日 %H:%M")

    def local_time(self, instant: datetime) -> str:
        return instant.astimezone(self.tz).strftime("%H:%M:%S")


def _segments(strategy: str, thanks_weight: int, tiers: tuple[TierView, ...]) -> tuple[Segment, ...]:
    """The wheel: one segment per tier; under fixed odds with thanks, a thanks slot after each."""
    segments: list[Segment] = []
    for tier in tiers:
        yuan = tier.face_fen // 100 if tier.face_fen % 100 == 0 else tier.face_fen / 100
        segments.append(Segment(len(segments), tier.id, tier.face_fen, f"{yuan}元"))
        if strategy == "fixed_odds" and thanks_weight > 0:
            segments.append(Segment(len(segments), None, 0, "谢谢参与"))
    return tuple(segments)


def build_snapshot(campaign: Campaign) -> Snapshot:
    tiers_by_category: dict[str, list[TierView]] = {c.code: [] for c in campaign.categories}
    for tier in sorted(campaign.tiers, key=lambda t: (t.face_fen, t.threshold_fen)):
        tiers_by_category[tier.category.code].append(
            TierView(tier.id, tier.category.code, tier.face_fen, tier.threshold_fen, tier.odds_weight)
        )
    tiers = {code: tuple(views) for code, views in tiers_by_category.items()}
    rounds = tuple(
        RoundView(
            r.id,
            r.number,
            r.opens_at,
            r.closes_at,
            r.valid_until,
            {a.tier_id: a.quantity for a in r.allocations},
        )
        for r in campaign.rounds
    )
    return Snapshot(
        id=campaign.id,
        code=campaign.code,
        name=campaign.name,
        region=campaign.region,
        tz=ZoneInfo(campaign.timezone),
        draw_strategy=campaign.draw_strategy,
        thanks_weight=campaign.thanks_weight,
        validity_kind=campaign.validity_kind,
        validity_days=campaign.validity_days,
        geofence=campaign.geofence,
        category_ids={c.code: c.id for c in campaign.categories},
        category_names={c.code: c.name for c in campaign.categories},
        tiers=tiers,
        rounds=rounds,
        segments={
            code: _segments(campaign.draw_strategy, campaign.thanks_weight, views) for code, views in tiers.items()
        },
        release=tuple((step["seconds"], step["percent"]) for step in campaign.release_schedule or ()),
        kind=campaign.kind,
        grab_limit=campaign.grab_limit,
        screen_qr=campaign.screen_qr,
        brackets=tuple(campaign.subsidy_brackets or ()),
    )


def active_campaign(code: str | None = None) -> Campaign | None:
    """The active campaign of that code; without one, the campaign residents see first: the most
    recent active one that hands out coupons to all (not an on-site event, not a subsidy)."""
    query = sa.select(Campaign).where(Campaign.status == "active")
    if code is None:
        query = query.where(Campaign.kind != "subsidy", Campaign.screen_qr.is_(False))
    else:
        query = query.where(Campaign.code == code)
    return db.session.scalar(
        query.order_by(Campaign.id.desc())
        .limit(1)
        .options(
            sa.orm.selectinload(Campaign.categories),
            sa.orm.selectinload(Campaign.tiers).joinedload(Tier.category),
            sa.orm.selectinload(Campaign.rounds).selectinload(Round.allocations),
        )
    )


class ShortCache:
    """Per-process values kept CAMPAIGN_CACHE_SECONDS (0: always recomputed), by key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict = {}

    def get(self, key, compute):
        ttl = current_app.config["CAMPAIGN_CACHE_SECONDS"]
        hit = self._values.get(key)
        if ttl > 0 and hit and time.monotonic() < hit[0]:
            return hit[1]
        value = compute()
        with self._lock:
            self._values[key] = (time.monotonic() + ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


_cache = ShortCache()


def snapshot(code: str | None = None) -> Snapshot | None:
    """The active campaign's snapshot (that code's, or the default one: `active_campaign`),
    rebuilt at most once per CAMPAIGN_CACHE_SECONDS."""

    def build() -> Snapshot | None:
        campaign = active_campaign(code)
        return build_snapshot(campaign) if campaign else None

    if code is not None:  # cache only the codes that exist: a stranger's guesses are not kept
        active = _cache.get(
            "codes", lambda: frozenset(db.session.scalars(sa.select(Campaign.code).where(Campaign.status == "active")))
        )
        if code not in active:
            return None
    return _cache.get(("snapshot", code), build)


def forget_snapshot() -> None:
    """Call after changing a campaign's configuration so this process sees it at once."""
    _cache.clear()


def remaining_by_tier(round_id: int) -> dict[int, int]:
    """Stock left per tier of a round (index-backed count)."""
    rows = db.session.execute(
        sa.select(Coupon.tier_id, sa.func.count())
        .where(Coupon.round_id == round_id, Coupon.state == "stock")
        .group_by(Coupon.tier_id)
    )
    return {tier_id: count for tier_id, count in rows}
