"""Resident rules: login, binding, the draw, and what a resident may see.

Services validate, change and flush; the view commits once. The draw is the flash-crowd hot
path: it reads the campaign from the in-process snapshot and touches the database with two
statements (insert the draw, claim one stock coupon), both guarded by the database itself.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from .. import campaigns, geo, sms, tokens, wechat
from ..campaigns import Segment, Snapshot
from ..errors import ApiError
from ..extensions import db
from ..models import Coupon, Draw, Merchant, Resident, merchant_categories
from ..timeutil import isoformat, zone

NAME_RE = re.compile(r"^[\u4e00-\u9fa5·A-Za-z .]{2,20}$")
BIND_PURPOSE = "bind"

_coupons = Coupon.__table__
_draws = Draw.__table__


# ---------------------------------------------------------------- login and binding


def wechat_login(code: str) -> tuple[str, bool]:
    """Exchange a `wx.login` code for a resident token (creating the resident on first login)."""
    openid = wechat.login().openid_for(code)
    resident = db.session.scalar(sa.select(Resident).where(Resident.openid == openid))
    if resident is None:
        resident = Resident(openid=openid)
        db.session.add(resident)
        try:
            with db.session.begin_nested():
                db.session.flush()
        except IntegrityError:  # the same openid logged in twice at once
            resident = db.session.scalar(sa.select(Resident).where(Resident.openid == openid))
    bound = resident.phone is not None
    return tokens.issue("resident", resident.id, bound=bound), bound


def send_bind_code(phone: str, now: datetime) -> int:
    return sms.send_code(phone, BIND_PURPOSE, now)


def bind(bearer: tokens.Bearer | None, name: str, phone: str, code: str, now: datetime) -> Resident:
    """Bind name + phone to the resident, proven by the SMS code.

    With a WeChat token the phone is bound to that resident; without one (the H5 page) the
    phone's resident is found or created, so that a resident can sign in again on a new device.
    """
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise ApiError("INVALID_INPUT", "请输入真实姓名（2至20个字）")
    sms.check_phone(phone)
    sms.verify_code(phone, code, BIND_PURPOSE, now)
    owner = db.session.scalar(sa.select(Resident).where(Resident.phone == phone))
    if bearer is None:
        resident = owner or Resident()
    else:
        resident = db.session.get(Resident, bearer.id)
        if resident is None:
            raise ApiError("UNAUTHORIZED", "登录已失效，请重新登录")
        if owner is not None and owner.id != resident.id:
            raise ApiError("PHONE_TAKEN")
        if resident.phone is not None and resident.phone != phone:
            raise ApiError("ALREADY_BOUND", f"您已绑定手机号 {mask_phone(resident.phone)}")
    if resident.phone is None:
        resident.name, resident.phone, resident.bound_at = name, phone, now
    db.session.add(resident)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:  # another resident took the phone in the meantime
        raise ApiError("PHONE_TAKEN") from exc
    return resident


def mask_phone(phone: str | None) -> str | None:
    return None if phone is None else f"{phone[:3]}****{phone[-4:]}"


def resident_json(resident: Resident) -> dict:
    return {"id": resident.id, "name": resident.name, "phone_masked": mask_phone(resident.phone)}


# ---------------------------------------------------------------- the campaign as residents see it


def current_snapshot() -> Snapshot:
    snap = campaigns.snapshot()
    if snap is None:
        raise ApiError("NO_CAMPAIGN")
    return snap


class _RemainingCache:
    """Stock left per tier, per round, counted at most once per CAMPAIGN_CACHE_SECONDS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[int, tuple[float, dict[int, int]]] = {}

    def get(self, round_id: int) -> dict[int, int]:
        ttl = current_app.config["CAMPAIGN_CACHE_SECONDS"]
        hit = self._values.get(round_id)
        if ttl > 0 and hit and time.monotonic() < hit[0]:
            return hit[1]
        counts = campaigns.remaining_by_tier(round_id)
        with self._lock:
            self._values[round_id] = (time.monotonic() + ttl, counts)
        return counts


_remaining = _RemainingCache()


def campaign_json(snap: Snapshot, now: datetime) -> dict:
    current = snap.round_at(now)
    remaining = _remaining.get(current.id) if current else {}
    shown = current or snap.next_round(now) or (snap.rounds[-1] if snap.rounds else None)
    tiers = [
        {
            "id": tier.id,
            "category": category_json(snap, code),
            "face_fen": tier.face_fen,
            "threshold_fen": tier.threshold_fen,
            "quantity": shown.quantities.get(tier.id, 0) if shown else 0,
            "remaining": remaining.get(tier.id, 0),
        }
        for code, views in snap.tiers.items()
        for tier in views
    ]
    return {
        "id": snap.id,
        "code": snap.code,
        "name": snap.name,
        "region": snap.region,
        "draw_strategy": snap.draw_strategy,
        "geofence_required": snap.geofence is not None,
        "categories": [category_json(snap, code) for code in snap.category_ids],
        "tiers": tiers,
        "rounds": [
            {
                "number": r.number,
                "opens_at": isoformat(r.opens_at, snap.tz),
                "closes_at": isoformat(r.closes_at, snap.tz),
                "valid_until": isoformat(r.valid_until, snap.tz),
            }
            for r in snap.rounds
        ],
        "current_round": current.number if current else None,
    }


def category_json(snap: Snapshot, code: str) -> dict:
    return {"code": code, "name": snap.category_names[code]}


def category_code_or_404(snap: Snapshot, code: str) -> str:
    if code not in snap.category_ids:
        raise ApiError("NOT_FOUND", "没有这个品类")
    return code


def wheel(snap: Snapshot, code: str, now: datetime) -> dict:
    code = category_code_or_404(snap, code)
    current = snap.round_at(now)
    remaining = _remaining.get(current.id) if current else {}
    return {
        "category": category_json(snap, code),
        "round": current.number if current else None,
        "segments": [{"index": s.index, "face_fen": s.face_fen, "label": s.label} for s in snap.segments[code]],
        "remaining": sum(remaining.get(t.id, 0) for t in snap.tiers[code]),
    }


# ---------------------------------------------------------------- the draw


@dataclass(frozen=True)
class DrawResult:
    segment_index: int
    coupon: dict | None


def _refuse_outside_round(snap: Snapshot, now: datetime) -> None:
    upcoming = snap.next_round(now)
    if upcoming is not None:
        raise ApiError(
            "ROUND_NOT_OPEN",
            f"第{upcoming.number}轮抽奖将于{snap.local(upcoming.opens_at)}开始，请届时再来",
            opens_at=isoformat(upcoming.opens_at, snap.tz),
        )
    raise ApiError("ROUND_CLOSED", "本期活动抽奖已全部结束，感谢参与")


def _check_location(snap: Snapshot, location: dict | None) -> None:
    if snap.geofence is None:
        return
    if not location:
        raise ApiError("LOCATION_REQUIRED", f"本活动限{snap.region}范围内参与，请允许获取位置后重试")
    if not geo.contains(snap.geofence, location["lat"], location["lng"]):
        raise ApiError("OUTSIDE_REGION", f"您当前不在{snap.region}活动范围内，无法抽奖")


def _ensure_bound(bearer: tokens.Bearer) -> None:
    if bearer.bound:
        return
    phone = db.session.scalar(sa.select(Resident.phone).where(Resident.id == bearer.id))
    if phone is None:
        raise ApiError("NOT_BOUND")


def _insert_draw(values: dict) -> int | None:
    """Insert the draw unless this (resident, round, category) has one; the unique key decides."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(_draws).values(**values).on_conflict_do_nothing().returning(_draws.c.id)
    return db.session.execute(stmt).scalar()


def _claim(where: list, values: dict, *, skip_locked: bool):
    """Take the first stock coupon in `seq` order matching `where`; None if there is none."""
    pick = (
        sa.select(_coupons.c.id)
        .where(*where, _coupons.c.state == "stock")
        .order_by(_coupons.c.seq)
        .limit(1)
        .with_for_update(skip_locked=skip_locked)
        .scalar_subquery()
    )
    stmt = (
        sa.update(_coupons)
        .where(_coupons.c.id == pick, _coupons.c.state == "stock")
        .values(state="claimed", **values)
        .returning(_coupons.c.id, _coupons.c.tier_id, _coupons.c.face_fen, _coupons.c.threshold_fen)
    )
    return db.session.execute(stmt).first()


def _claim_any(where: list, values: dict):
    """Claim one coupon, skipping rows other draws hold; only on apparent sell-out, wait for them.

    SKIP LOCKED lets concurrent draws take different rows instead of queueing; but a row it
    skipped may be released by a draw that rolls back, so "none" is confirmed by waiting.
    """
    if db.session.get_bind().dialect.name != "postgresql":
        return _claim(where, values, skip_locked=False)  # SQLite writes one at a time anyway
    for _ in range(3):
        row = _claim(where, values, skip_locked=True) or _claim(where, values, skip_locked=False)
        if row is not None:
            return row
        left = db.session.scalar(sa.select(_coupons.c.id).where(*where, _coupons.c.state == "stock").limit(1))
        if left is None:
            return None
    return None


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
    return campaigns.rng().choices(segments, weights=weights, k=1)[0]


def draw(bearer: tokens.Bearer, code: str, location: dict | None, now: datetime) -> DrawResult:
    """Spin the wheel of a category once for this round: a coupon, or "thanks", or a refusal."""
    snap = current_snapshot()
    code = category_code_or_404(snap, code)
    current = snap.round_at(now)
    if current is None:
        _refuse_outside_round(snap, now)
    _ensure_bound(bearer)
    _check_location(snap, location)

    category_id = snap.category_ids[code]
    chosen = _fixed_odds_segment(snap, code) if snap.draw_strategy == "fixed_odds" else None
    thanks = chosen is not None and chosen.tier_id is None
    draw_id = _insert_draw(
        {
            "resident_id": bearer.id,
            "round_id": current.id,
            "category_id": category_id,
            "outcome": "thanks" if thanks else "won",
            "segment_index": chosen.index if chosen else 0,
            "created_at": now,
        }
    )
    if draw_id is None:
        raise ApiError(
            "ALREADY_DRAWN", f"您已参加过第{current.number}轮{snap.category_names[code]}抽奖，每轮每个品类限抽一次"
        )
    if thanks:
        return DrawResult(chosen.index, None)

    if snap.validity_kind == "days_from_claim":
        valid_until = min(now + timedelta(days=snap.validity_days), snap.rounds[-1].valid_until)
    else:
        valid_until = current.valid_until
    values = {"resident_id": bearer.id, "draw_id": draw_id, "claimed_at": now, "valid_until": valid_until}
    in_category = [_coupons.c.round_id == current.id, _coupons.c.category_id == category_id]
    row = None
    if chosen is not None:
        row = _claim_any([_coupons.c.round_id == current.id, _coupons.c.tier_id == chosen.tier_id], values)
    if row is None:
        row = _claim_any(in_category, values)
    if row is None:
        raise ApiError("SOLD_OUT", f"第{current.number}轮{snap.category_names[code]}券已被抢完，请关注下一轮")

    segment = next(s for s in snap.segments[code] if s.tier_id == row.tier_id)
    if segment.index != (chosen.index if chosen else 0):
        db.session.execute(sa.update(_draws).where(_draws.c.id == draw_id).values(segment_index=segment.index))
    coupon = {
        "id": row.id,
        "category": category_json(snap, code),
        "face_fen": row.face_fen,
        "threshold_fen": row.threshold_fen,
        "round": current.number,
        "status": "unused",
        "valid_until": isoformat(valid_until, snap.tz),
        "claimed_at": isoformat(now, snap.tz),
    }
    return DrawResult(segment.index, coupon)


# ---------------------------------------------------------------- my coupons, merchants


def coupon_status(coupon: Coupon, now: datetime) -> str:
    """Validity is judged against the clock, so correctness never waits for an expiry job."""
    if coupon.state == "used":
        return "used"
    if coupon.state == "void":
        return "void"
    return "unused" if now < coupon.valid_until else "expired"


def my_coupons(resident_id: int, status: str | None, now: datetime) -> list[dict]:
    query = (
        sa.select(Coupon)
        .where(Coupon.resident_id == resident_id)
        .options(sa.orm.joinedload(Coupon.category), sa.orm.joinedload(Coupon.round))
        .order_by(Coupon.claimed_at.desc(), Coupon.id.desc())
    )
    if status == "used":
        query = query.where(Coupon.state == "used")
    elif status == "unused":
        query = query.where(Coupon.state == "claimed", Coupon.valid_until > now)
    elif status == "expired":
        query = query.where(Coupon.state == "claimed", Coupon.valid_until <= now)
    snap = campaigns.snapshot()
    tz = snap.tz if snap else zone(current_app.config["TIMEZONE"])
    return [
        {
            "id": c.id,
            "category": {"code": c.category.code, "name": c.category.name},
            "face_fen": c.face_fen,
            "threshold_fen": c.threshold_fen,
            "round": c.round.number,
            "status": coupon_status(c, now),
            "valid_until": isoformat(c.valid_until, tz),
            "claimed_at": isoformat(c.claimed_at, tz),
            "merchants": f"/api/v1/categories/{c.category.code}/merchants",
        }
        for c in db.session.scalars(query).unique()
    ]


def merchants_of(snap: Snapshot, code: str) -> list[dict]:
    code = category_code_or_404(snap, code)
    query = (
        sa.select(Merchant)
        .join(merchant_categories, merchant_categories.c.merchant_id == Merchant.id)
        .where(merchant_categories.c.category_id == snap.category_ids[code], Merchant.status == "approved")
        .order_by(Merchant.name)
    )
    return [{"id": m.id, "name": m.name, "address": m.address} for m in db.session.scalars(query)]
