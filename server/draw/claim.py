"""A resident takes a coupon: a spin of the wheel, or a grab of a chosen tier (抢券).

This is the flash-crowd hot path. It reads the campaign from the in-process snapshot, checks the
draw's own rules (the round is open, the resident is bound and in the region, the staged release)
and leaves the guarantees to the claim of pool/coupons.py: one statement on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from ..auth import screen, tokens
from ..campaign import geo
from ..campaign.snapshot import Segment, Snapshot, snapshot
from ..campaign.subsidy import bracket_rows
from ..core import cache, metrics
from ..core.errors import (
    AlreadyDrawn,
    LocationRequired,
    NoCampaign,
    NotFound,
    OutsideRegion,
    RoundClosed,
    RoundNotOpen,
    SoldOut,
    StockNotReleased,
    WrongCampaignKind,
)
from ..core.money import coupon_label
from ..core.time import isoformat
from ..extensions import db
from ..models import Draw
from ..pool import coupons
from ..pool.coupons import ALL_RELEASED, Status
from .binding import ensure_bound, ensure_identified

# ---------------------------------------------------------------- the campaign as residents see it


def current_snapshot(code: str | None = None) -> Snapshot:
    """The default campaign residents see, or the active campaign of that code."""
    snap = snapshot(code)
    if snap is None:
        raise NoCampaign() if code is None else NotFound("没有这个进行中的活动")
    return snap


_remaining = cache.ShortCache()


def _remaining_now(current) -> dict[int, int]:
    """Stock left per tier in the open round (none between rounds), counted at most once per
    CAMPAIGN_CACHE_SECONDS."""
    if current is None:
        return {}
    return _remaining.get(current.id, lambda: coupons.remaining_by_tier(current.id))


def campaign_json(snap: Snapshot, now: datetime) -> dict:
    current = snap.round_at(now)
    remaining = _remaining_now(current)
    shown = current or snap.next_round(now) or (snap.rounds[-1] if snap.rounds else None)
    tiers = [
        {
            "id": tier.id,
            "category": category_json(snap, code),
            "face_fen": tier.face_fen,
            "threshold_fen": tier.threshold_fen,
            "quantity": shown.quantities.get(tier.id, 0) if shown else 0,
            "remaining": remaining.get(tier.id, 0),
            "usable_hours": tier.hours,
        }
        for code, views in snap.tiers.items()
        for tier in views
    ]
    return {
        "id": snap.id,
        "code": snap.code,
        "name": snap.name,
        "region": snap.region,
        "kind": snap.kind,
        "grab_limit": snap.grab_limit,
        "screen_qr": snap.screen_qr,
        "wallet": snap.wallet,
        "draw_strategy": snap.draw_strategy,
        "geofence_required": snap.geofence is not None,
        "identity": snap.identity,
        "categories": [category_json(snap, code) for code in snap.category_ids],
        "tiers": tiers,
        "rounds": [
            {
                "number": r.number,
                "opens_at": isoformat(r.opens_at),
                "closes_at": isoformat(r.closes_at),
                "valid_until": isoformat(r.valid_until),
            }
            for r in snap.rounds
        ],
        "current_round": current.number if current else None,
        "release": [{"seconds": seconds, "percent": percent} for seconds, percent in snap.release],
        "subsidy_brackets": bracket_rows(list(snap.brackets)),
        "ends_at": isoformat(snap.ends_at),
    }


def category_json(snap: Snapshot, code: str) -> dict:
    return {"code": code, "name": snap.category_names[code]}


def category_code_or_404(snap: Snapshot, code: str) -> str:
    if code not in snap.category_ids:
        raise NotFound("没有这个品类")
    return code


def wheel(snap: Snapshot, code: str, now: datetime) -> dict:
    code = category_code_or_404(snap, code)
    current = snap.round_at(now)
    remaining = _remaining_now(current)
    return {
        "category": category_json(snap, code),
        "round": current.number if current else None,
        "segments": [{"index": s.index, "face_fen": s.face_fen, "label": s.label} for s in snap.segments[code]],
        "remaining": sum(remaining.get(t.id, 0) for t in snap.tiers[code]),
    }


def round_draws(snap: Snapshot, resident_id: int, now: datetime) -> dict:
    """The categories this resident has drawn in the open round, so the page marks them before a
    spin is refused."""
    current = snap.round_at(now)
    if current is None:
        return {"round": None, "drawn": []}
    codes = {category_id: code for code, category_id in snap.category_ids.items()}
    rows = db.session.execute(
        sa.select(Draw.category_id, Draw.outcome).where(Draw.resident_id == resident_id, Draw.round_id == current.id)
    )
    drawn = [{"category": codes[c], "outcome": outcome} for c, outcome in rows if c in codes]
    return {"round": current.number, "drawn": sorted(drawn, key=lambda d: d["category"])}


# ---------------------------------------------------------------- the draw's rules


def _refuse_kind(snap: Snapshot, wanted: str) -> None:
    if snap.kind == wanted:
        return
    if snap.kind == "grab":
        raise WrongCampaignKind("本活动为抢券活动，请选择券种领取")
    if snap.kind == "wheel":
        raise WrongCampaignKind("本活动为幸运大转盘抽奖，请到转盘页参与")
    raise WrongCampaignKind("本活动为购车补贴，请提交补贴申请")


def _open_round(snap: Snapshot, now: datetime):
    current = snap.round_at(now)
    if current is not None:
        return current
    period, act = ("期", "抢券") if snap.kind == "grab" else ("轮", "抽奖")
    upcoming = snap.next_round(now)
    if upcoming is not None:
        raise RoundNotOpen(
            f"第{upcoming.number}{period}{act}将于{snap.local(upcoming.opens_at)}开始，请届时再来",
            opens_at=isoformat(upcoming.opens_at),
        )
    if snap.ends_at is not None and now >= snap.ends_at:
        raise RoundClosed(f"本期活动已于{snap.local(snap.ends_at)}结束，感谢参与")
    raise RoundClosed(f"本期活动{act}已全部结束，感谢参与")


def _check_location(snap: Snapshot, location: dict | None) -> None:
    if snap.geofence is None:
        return
    if not location:
        raise LocationRequired(f"本活动限{snap.region}范围内参与，请允许获取位置后重试")
    if not geo.contains(snap.geofence, location["lat"], location["lng"]):
        raise OutsideRegion(f"您当前不在{snap.region}活动范围内，无法参与")


def _valid_until(snap: Snapshot, current, now: datetime) -> datetime:
    if snap.validity_kind == "days_from_claim":
        return min(now + timedelta(days=snap.validity_days), snap.rounds[-1].valid_until)
    return current.valid_until


_release_caps = cache.ShortCache()


def release_cap(snap: Snapshot, current, category_id: int, now: datetime) -> int:
    """The largest `seq` a draw may take now from this category of the round (pool.coupons.release_cap).

    Draws take only stock at or below the cap, so however they pick (in seq order, or by tier under
    fixed odds), no more than the stage's share is ever drawn. Read once per stage and cache period;
    stock added to an open round gets seqs above all others (pool.coupons.generate_stock), so a cap
    read before it still means what it meant.
    """
    stage = snap.released_percent(current, now)
    if stage is None:
        return ALL_RELEASED
    percent = stage[0]

    def compute() -> int:
        return coupons.release_cap(current.id, category_id, percent)

    return _release_caps.get((current.id, category_id, percent), compute)


def _refuse_second_draw(snap: Snapshot, current, resident_id: int, code: str, slot: int = 0) -> None:
    """ALREADY_DRAWN, naming the coupon that draw (or grab) won: a retry whose first answer was
    lost (a dropped connection, a worker killed after its commit) still tells the resident."""
    held = coupons.won_by_draw(resident_id, current.id, snap.category_ids[code], slot)
    name = snap.category_names[code]
    if snap.kind == "grab" and slot:
        tier = snap.tier(slot)
        message = f"您已领过第{current.number}期{coupon_label(tier.face_fen, tier.threshold_fen)}券，每期每档限领一张"
    elif snap.kind == "grab":
        message = f"您已领过第{current.number}期{name}券，每期限领一张"
    else:
        message = f"您已参加过第{current.number}轮{name}抽奖，每轮每个品类限抽一次"
    if held is not None:
        raise AlreadyDrawn(f"{message}。领到的券已放入“我的券”", coupon_id=held)
    raise AlreadyDrawn(message)


def _refuse_sold_out(snap: Snapshot, current, code: str, now: datetime, what: str | None = None) -> None:
    """SOLD_OUT, or STOCK_NOT_RELEASED when the staged release still holds some of it back."""
    name = what or snap.category_names[code]
    period = "期" if snap.kind == "grab" else "轮"
    stage = snap.released_percent(current, now)
    if stage is not None and coupons.stock_left(current.id, snap.category_ids[code]):
        raise StockNotReleased(
            f"第{current.number}{period}{name}券分批发放，本批已抢完，下一批将于{snap.local_time(stage[1])}放出",
            next_release_at=isoformat(stage[1]),
        )
    raise SoldOut(f"第{current.number}{period}{name}券已被抢完，请关注下一{period}")


def _fixed_odds_segment(snap: Snapshot, code: str) -> Segment:
    segments = snap.segments[code]
    weights = []
    thanks = [s for s in segments if s.tier_id is None]
    tier_weight = {t.id: t.odds_weight or 0 for t in snap.tiers[code]}
    for segment in segments:
        if segment.tier_id is None:
            weights.append(snap.thanks_weight / len(thanks))
        else:
            weights.append(tier_weight[segment.tier_id])
    if sum(weights) <= 0:
        return segments[0]
    return coupons.rng().choices(segments, weights=weights, k=1)[0]


def _take(snap: Snapshot, current, resident_id: int, code: str, slot: int, tier_id: int | None, now: datetime):
    """The claim (pool.coupons.claim) under this campaign's rules: (draw id, coupon row, valid until)."""
    category_id = snap.category_ids[code]
    valid_until = _valid_until(snap, current, now)
    claimed = coupons.claim(
        campaign_id=snap.id,
        round_id=current.id,
        category_id=category_id,
        resident_id=resident_id,
        slot=slot,
        tier_id=tier_id,
        max_seq=release_cap(snap, current, category_id, now),
        valid_until=valid_until,
        now=now,
        any_tier_left=snap.kind == "wheel",  # fixed odds landed on a tier that is gone: take what is left
    )
    if claimed.draw_id is None:
        _refuse_second_draw(snap, current, resident_id, code, slot)
    return claimed.coupon, valid_until


def _won(snap: Snapshot, code: str, row, current, now: datetime, valid_until: datetime) -> dict:
    """The coupon just won, in the API's shape."""
    category = (code, snap.category_names[code])
    hours = snap.tier(row.tier_id).hours
    return coupons.coupon_json(
        row.id, category, row.face_fen, row.threshold_fen, current.number, Status.UNUSED, valid_until, now, hours
    )


def draw(
    bearer: tokens.Bearer, code: str, location: dict | None, now: datetime, campaign: str | None = None
) -> tuple[int, dict | None]:
    """Spin the wheel of a category once for this round: (the segment it lands on, the coupon won
    or None for "thanks"), or a refusal."""
    counted = metrics.outcome(metrics.DRAWS, "won", campaign="-", category="-")
    snap = current_snapshot(campaign)
    counted.labels["campaign"] = snap.code
    _refuse_kind(snap, "wheel")
    code = category_code_or_404(snap, code)
    counted.labels["category"] = code
    current = _open_round(snap, now)
    ensure_bound(bearer)
    ensure_identified(bearer, snap.identity)
    _check_location(snap, location)

    chosen = _fixed_odds_segment(snap, code) if snap.draw_strategy == "fixed_odds" else None
    if chosen is not None and chosen.tier_id is None:  # "thanks for taking part": no coupon
        counted.success = "thanks"
        recorded = coupons.record_thanks(
            resident_id=bearer.id, round_id=current.id, category_id=snap.category_ids[code], now=now
        )
        if not recorded:
            _refuse_second_draw(snap, current, bearer.id, code)
        return chosen.index, None

    row, valid_until = _take(snap, current, bearer.id, code, 0, chosen and chosen.tier_id, now)
    if row is None:
        _refuse_sold_out(snap, current, code, now)
    # The wheel lands on the segment of the tier won (the coupon records the tier).
    segment = next(s for s in snap.segments[code] if s.tier_id == row.tier_id)
    return segment.index, _won(snap, code, row, current, now, valid_until)


def grab(
    bearer: tokens.Bearer,
    tier_id: int,
    location: dict | None,
    now: datetime,
    campaign: str | None = None,
    screen_pass: str | None = None,
) -> dict:
    """Take one coupon of the chosen tier (抢券), once per tier -- or once per round -- while
    stock lasts; an on-site event's claims need a pass from its big screen's QR."""
    counted = metrics.outcome(metrics.DRAWS, "won", campaign="-", category="-")
    snap = current_snapshot(campaign)
    counted.labels["campaign"] = snap.code
    _refuse_kind(snap, "grab")
    tier = snap.tier(tier_id)
    if tier is None:
        raise NotFound("没有这个券种")
    counted.labels["category"] = tier.category_code
    current = _open_round(snap, now)
    ensure_bound(bearer)
    ensure_identified(bearer, snap.identity)
    if snap.screen_qr:
        screen.check_pass(screen_pass, snap.id, bearer.id, now)
    _check_location(snap, location)

    code = tier.category_code
    slot = tier.id if snap.grab_limit == "tier" else 0
    row, valid_until = _take(snap, current, bearer.id, code, slot, tier.id, now)
    if row is None:
        _refuse_sold_out(snap, current, code, now, coupon_label(tier.face_fen, tier.threshold_fen))
    return _won(snap, code, row, current, now, valid_until)
