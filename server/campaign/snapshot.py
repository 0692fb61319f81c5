"""The active campaigns as the resident API sees them: immutable snapshots of their configuration
that the hot path reads instead of querying the campaign on every draw, rebuilt after a moment
(core.cache)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import sqlalchemy.orm

from ..core import cache
from ..core.money import yuan
from ..core.time import isoformat, local, moment, zone
from ..extensions import db
from ..models import Campaign, Round, Tier
from .rules import usage_hours_text

# ---------------------------------------------------------------- when a campaign is open

Timed = TypeVar("Timed")  # a round: a models.Round or a RoundView (opens_at, closes_at)


def open_round(rounds: Sequence[Timed], now: datetime) -> Timed | None:
    """The round open for claims at `now`: from its opening to its close. The one rule of "in
    progress": the draw and the grab (Snapshot.round_at), the event screen and the console's
    campaign list (phase) all read it."""
    return next((r for r in rounds if r.opens_at <= now < r.closes_at), None)


@dataclass(frozen=True)
class Phase:
    """Where a campaign stands at a moment, in words for the bureau."""

    key: str  # draft | upcoming | open | between | spending | over
    name: str  # 草稿, 未开始, 进行中, 两轮之间, 领取已结束, 已结束
    detail: str  # 第2轮领券中，至7月4日 24:00 ...
    round: Round | None = None  # the open round, else the next one

    @property
    def open(self) -> bool:
        return self.key == "open"


def phase(campaign: Campaign, now: datetime) -> Phase:
    """Where the campaign stands at `now`, by its rounds (open_round) and its status."""
    if campaign.status == "draft":
        return Phase("draft", "草稿", "不对居民公开")
    rounds = list(campaign.rounds)
    act = "受理申请" if campaign.kind == "subsidy" else "领券"

    def named(round_: Round) -> str:
        return f"第{round_.number}轮" if len(rounds) > 1 else ""

    current = open_round(rounds, now)
    if current is not None and campaign.status == "active":
        return Phase("open", "进行中", f"{named(current)}{act}中，至{moment(current.closes_at)}", current)
    upcoming = next((r for r in rounds if now < r.opens_at), None)
    if campaign.status == "active" and upcoming is not None:
        when = f"{named(upcoming)}将于 {local(upcoming.opens_at)} 开始{act}"
        if upcoming is rounds[0]:
            return Phase("upcoming", "未开始", when, upcoming)
        return Phase("between", "两轮之间", when, upcoming)
    deadline = max((max(r.closes_at, r.valid_until) for r in rounds), default=None)
    if campaign.status == "active" and deadline is not None and now < deadline and campaign.kind != "subsidy":
        return Phase("spending", "领取已结束", f"已领的券可用至{moment(deadline)}")
    return Phase("over", "已结束", f"已于{moment(deadline)}结束" if deadline else "")


@dataclass(frozen=True)
class TierView:
    id: int
    category_code: str
    face_fen: int
    threshold_fen: int
    odds_weight: int | None
    hours: str | None = None  # when in the day its coupons may be spent (rules.usage_hours)


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
    wallet: bool = False  # its coupons are paid with the wallet pay code too (models.Campaign.wallet)
    brackets: tuple[dict, ...] = ()  # a purchase subsidy's bracket table (models.Campaign.subsidy_brackets)
    ends_at: datetime | None = None  # the campaign's end, if its file set one (its rounds end by then)
    identity: str = "phone"  # "id_card": residents take part once they gave an ID card (core/idcard.py)

    def tier(self, tier_id: int) -> TierView | None:
        return next((t for views in self.tiers.values() for t in views if t.id == tier_id), None)

    def round_at(self, now: datetime) -> RoundView | None:
        return open_round(self.rounds, now)

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
        return moment(instant)

    def local_time(self, instant: datetime) -> str:
        return instant.astimezone(self.tz).strftime("%H:%M:%S")


def _segments(strategy: str, thanks_weight: int, tiers: tuple[TierView, ...]) -> tuple[Segment, ...]:
    """The wheel: one segment per tier; under fixed odds with thanks, a thanks slot after each."""
    segments: list[Segment] = []
    for tier in tiers:
        segments.append(Segment(len(segments), tier.id, tier.face_fen, f"{yuan(tier.face_fen)}元"))
        if strategy == "fixed_odds" and thanks_weight > 0:
            segments.append(Segment(len(segments), None, 0, "谢谢参与"))
    return tuple(segments)


def build_snapshot(campaign: Campaign) -> Snapshot:
    tiers_by_category: dict[str, list[TierView]] = {c.code: [] for c in campaign.categories}
    for tier in sorted(campaign.tiers, key=lambda t: (t.face_fen, t.threshold_fen)):
        tiers_by_category[tier.category.code].append(
            TierView(
                tier.id,
                tier.category.code,
                tier.face_fen,
                tier.threshold_fen,
                tier.odds_weight,
                usage_hours_text(tier.usage_hours, campaign.usage_hours),
            )
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
        tz=zone(),
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
        wallet=campaign.wallet,
        brackets=tuple(campaign.subsidy_brackets or ()),
        ends_at=campaign.ends_at,
        identity=campaign.identity,
    )


def for_everyone(campaign: Campaign) -> bool:
    """Whether a campaign hands out coupons to all: not an on-site event's, not a subsidy's. Only
    such a campaign is shown without being named, and may be the default."""
    return campaign.kind != "subsidy" and not campaign.screen_qr


def active_campaign(code: str | None = None) -> Campaign | None:
    """The active campaign of that code; without one, the campaign residents see first: the one the
    bureau made the default, or while it has none active, the most recent active one that hands
    out coupons to all."""
    query = sa.select(Campaign).where(Campaign.status == "active")
    if code is None:
        query = query.where(Campaign.kind != "subsidy", Campaign.screen_qr.is_(False))
    else:
        query = query.where(Campaign.code == code)
    return db.session.scalar(
        query.order_by(Campaign.is_default.desc(), Campaign.id.desc())
        .limit(1)
        .options(
            sa.orm.selectinload(Campaign.categories),
            sa.orm.selectinload(Campaign.tiers).joinedload(Tier.category),
            sa.orm.selectinload(Campaign.rounds).selectinload(Round.allocations),
        )
    )


def active_campaigns() -> tuple[dict, ...]:
    """Every active campaign a resident can take part in from the page (an on-site event's only
    through its screen): the default first, then the newest; kept as the snapshots are."""

    def build() -> tuple[dict, ...]:
        found = db.session.scalars(
            sa.select(Campaign)
            .where(Campaign.status == "active", Campaign.screen_qr.is_(False))
            .order_by(Campaign.is_default.desc(), Campaign.id.desc())
        )
        return tuple(
            {
                "code": c.code,
                "name": c.name,
                "region": c.region,
                "kind": c.kind,
                "is_default": c.is_default,
                "ends_at": isoformat(c.ends_at),
            }
            for c in found
        )

    return _cache.get("listed", build)


def make_default(campaign: Campaign) -> None:
    """The campaign residents see without naming one; the one before stops being it. Flushes."""
    db.session.execute(sa.update(Campaign).where(Campaign.is_default.is_(True)).values(is_default=False))
    db.session.flush()
    campaign.is_default = True
    db.session.flush()


_cache = cache.ShortCache()


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
