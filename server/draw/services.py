"""Resident rules: login, binding, the draw, and what a resident may see.

Services validate, change and flush; the view commits once. The draw is the flash-crowd hot
path: it reads the campaign from the in-process snapshot and touches the database with two
statements (insert the draw, claim one stock coupon), both guarded by the database itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from .. import campaign_file, campaigns, geo, ledger, paycode, screen, sms, subsidy, tokens, wechat
from ..campaigns import Segment, Snapshot
from ..errors import ApiError
from ..extensions import db
from ..models import Coupon, Draw, Merchant, Resident, Round, merchant_categories
from ..timeutil import UTCDateTime, isoformat, zone

NAME_RE = re.compile(r"^[\u4e00-\u9fa5·A-Za-z .]{2,20}$")
BIND_PURPOSE = "bind"


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


def send_bind_code(phone: str, purpose: str, now: datetime) -> int:
    """A code for binding a resident (`bind`) or a shop assistant (`staff`)."""
    return sms.send_code(phone, purpose, now)


def bind(
    bearer: tokens.Bearer | None,
    name: str,
    phone: str,
    code: str,
    now: datetime,
    address: str | None = None,
    device: str | None = None,
) -> Resident:
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
        resident.bound_address, resident.bound_device = address, (device or "")[:64] or None
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


def current_snapshot(code: str | None = None) -> Snapshot:
    """The default campaign residents see, or the active campaign of that code."""
    snap = campaigns.snapshot(code)
    if snap is None:
        raise ApiError("NO_CAMPAIGN") if code is None else ApiError("NOT_FOUND", "没有这个进行中的活动")
    return snap


_remaining = campaigns.ShortCache()


def _remaining_now(current) -> dict[int, int]:
    """Stock left per tier in the open round (none between rounds), counted at most once per
    CAMPAIGN_CACHE_SECONDS."""
    if current is None:
        return {}
    return _remaining.get(current.id, lambda: campaigns.remaining_by_tier(current.id))


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
        "release": [{"seconds": seconds, "percent": percent} for seconds, percent in snap.release],
        "subsidy_brackets": subsidy.bracket_rows(list(snap.brackets)),
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
    remaining = _remaining_now(current)
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
    period, act = ("期", "抢券") if snap.kind == "grab" else ("轮", "抽奖")
    upcoming = snap.next_round(now)
    if upcoming is not None:
        raise ApiError(
            "ROUND_NOT_OPEN",
            f"第{upcoming.number}{period}{act}将于{snap.local(upcoming.opens_at)}开始，请届时再来",
            opens_at=isoformat(upcoming.opens_at, snap.tz),
        )
    raise ApiError("ROUND_CLOSED", f"本期活动{act}已全部结束，感谢参与")


def _check_location(snap: Snapshot, location: dict | None) -> None:
    if snap.geofence is None:
        return
    if not location:
        raise ApiError("LOCATION_REQUIRED", f"本活动限{snap.region}范围内参与，请允许获取位置后重试")
    if not geo.contains(snap.geofence, location["lat"], location["lng"]):
        raise ApiError("OUTSIDE_REGION", f"您当前不在{snap.region}活动范围内，无法参与")


def ensure_bound(bearer: tokens.Bearer) -> None:
    if bearer.bound:
        return
    phone = db.session.scalar(sa.select(Resident.phone).where(Resident.id == bearer.id))
    if phone is None:
        raise ApiError("NOT_BOUND")


# The hot path's SQL, written once: building SQLAlchemy constructs per request costs more
# CPU than the database spends on the statements. The insert and the claims run on both
# backends; on PostgreSQL the common case is the single statement of `_draw_and_claim_sql`.
_INSERT_DRAW = sa.text(
    "INSERT INTO draws (resident_id, round_id, category_id, slot, outcome, created_at)"
    " VALUES (:resident_id, :round_id, :category_id, :slot, :outcome, :created_at)"
    " ON CONFLICT DO NOTHING RETURNING id"
).bindparams(sa.bindparam("created_at", type_=UTCDateTime))


def _claim_sql(column: str, lock: str) -> sa.TextClause:
    return sa.text(
        "UPDATE coupons SET state = 'claimed', resident_id = :resident_id, draw_id = :draw_id,"
        " claimed_at = :claimed_at, valid_until = :valid_until"
        " WHERE state = 'stock' AND id = (SELECT id FROM coupons"
        f" WHERE round_id = :round_id AND {column} = :key AND state = 'stock' AND seq <= :max_seq"
        f" ORDER BY seq LIMIT 1 {lock})"
        " RETURNING id, tier_id, face_fen, threshold_fen"
    ).bindparams(sa.bindparam("claimed_at", type_=UTCDateTime), sa.bindparam("valid_until", type_=UTCDateTime))


def _draw_and_claim_sql(column: str) -> sa.TextClause:
    """PostgreSQL: insert the draw, claim a coupon and record the claim in the ledger in one
    statement, one round trip.

    No draw row (already drawn) means no claim; no coupon claimed leaves the draw for the
    caller to complete through `_claim_any` or roll back as sold out.
    """
    return sa.text(
        "WITH d AS (INSERT INTO draws (resident_id, round_id, category_id, slot, outcome, created_at)"
        " VALUES (:resident_id, :round_id, :category_id, :slot, 'won', :claimed_at)"
        " ON CONFLICT DO NOTHING RETURNING id),"
        " c AS (UPDATE coupons SET state = 'claimed', resident_id = :resident_id,"
        " draw_id = (SELECT id FROM d), claimed_at = :claimed_at, valid_until = :valid_until"
        " WHERE state = 'stock' AND EXISTS (SELECT 1 FROM d) AND id = (SELECT id FROM coupons"
        f" WHERE round_id = :round_id AND {column} = :key AND state = 'stock' AND seq <= :max_seq"
        " ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, tier_id, category_id, face_fen, threshold_fen),"
        " l AS (INSERT INTO ledger_entries (campaign_id, round_id, category_id, tier_id, kind, source, target,"
        " amount_fen, coupons, coupon_id, created_at)"
        " SELECT :campaign_id, :round_id, c.category_id, c.tier_id, 'claim', 'stock', 'claimed', c.face_fen, 1,"
        " c.id, :claimed_at FROM c)"
        " SELECT (SELECT id FROM d) AS draw_id, c.id, c.tier_id, c.face_fen, c.threshold_fen"
        " FROM (SELECT 1) AS one LEFT JOIN c ON true"
    ).bindparams(sa.bindparam("claimed_at", type_=UTCDateTime), sa.bindparam("valid_until", type_=UTCDateTime))


_DRAW_AND_CLAIM = {column: _draw_and_claim_sql(column) for column in ("category_id", "tier_id")}
_CLAIM = {
    (column, lock): _claim_sql(column, sql)
    for column in ("category_id", "tier_id")
    for lock, sql in (("skip", "FOR UPDATE SKIP LOCKED"), ("wait", "FOR UPDATE"), ("none", ""))
}
_STOCK_LEFT = {
    column: sa.text(
        f"SELECT id FROM coupons WHERE round_id = :round_id AND {column} = :key AND state = 'stock'"
        " AND seq <= :max_seq LIMIT 1"
    )
    for column in ("category_id", "tier_id")
}
ALL_RELEASED = 2**31 - 1  # `seq` is below it: no staged release holds anything back
# The staged release's cap, from the round's quota (allocations: withdrawn coupons are not in
# it) and its stock (the partial stock index), never from a scan of the coupons drawn; one
# statement, so that quota and stock are read in one snapshot.
_RELEASE_CAP = sa.text(
    "WITH f AS (SELECT"
    " (SELECT count(*) FROM coupons WHERE round_id = :round_id AND category_id = :key AND state = 'stock')"
    " - (SELECT coalesce(sum(a.quantity), 0) - coalesce(sum(a.quantity), 0) * :percent / 100"
    " FROM allocations a JOIN tiers t ON t.id = a.tier_id WHERE a.round_id = :round_id AND t.category_id = :key)"
    " AS free)"
    " SELECT f.free, (SELECT seq FROM coupons WHERE round_id = :round_id AND category_id = :key AND state = 'stock'"
    " ORDER BY seq LIMIT 1 OFFSET (SELECT CASE WHEN free > 0 THEN free - 1 ELSE 0 END FROM f)) AS cap FROM f"
)
_release_caps = campaigns.ShortCache()


def release_cap(snap: Snapshot, current, category_id: int, now: datetime) -> int:
    """The largest `seq` a draw may take now from this category of the round.

    At P% the stage must keep total - floor(P% x total) coupons in stock. Of the stock there is
    now, the first `stock - that` in `seq` order may go: the cap is the seq of the last of them
    (-1: none). Draws take only stock at or below the cap, so however they pick (in seq order,
    or by tier under fixed odds), no more than the stage's share is ever drawn. Read once per
    stage and cache period; stock added to an open round gets seqs above all others (see
    campaigns.generate_stock), so a cap read before it still means what it meant.
    """
    stage = snap.released_percent(current, now)
    if stage is None:
        return ALL_RELEASED
    percent = stage[0]

    def compute() -> int:
        found = db.session.execute(_RELEASE_CAP, {"round_id": current.id, "key": category_id, "percent": percent})
        free, cap = found.one()
        return cap if free > 0 else -1

    return _release_caps.get((current.id, category_id, percent), compute)


def _on_postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _claim_any(column: str, params: dict):
    """Claim one stock coupon in `seq` order, or None when there is none left.

    SKIP LOCKED lets concurrent draws take different rows instead of queueing on one; a row it
    skipped may yet be released by a draw that rolls back, so an apparent sell-out is
    confirmed by waiting for those rows before answering SOLD_OUT.
    """
    execute = db.session.execute
    if not _on_postgres():  # SQLite writes one transaction at a time: nothing to skip
        return execute(_CLAIM[column, "none"], params).first()
    for _ in range(10):  # each pass waits for the draws holding rows; ten is far beyond any seen
        row = execute(_CLAIM[column, "skip"], params).first() or execute(_CLAIM[column, "wait"], params).first()
        if row is not None:
            return row
        if execute(_STOCK_LEFT[column], params).first() is None:
            return None
    return None


def tier_label(face_fen: int, threshold_fen: int) -> str:
    """满300减80, or 20元 for a coupon without a threshold."""
    face = campaign_file.yuan(face_fen)
    return f"满{campaign_file.yuan(threshold_fen)}减{face}" if threshold_fen else f"{face}元"


def _refuse_second_draw(snap: Snapshot, current, resident_id: int, code: str, slot: int = 0) -> None:
    """ALREADY_DRAWN, naming the coupon that draw (or grab) won: a retry whose first answer was
    lost (a dropped connection, a worker killed after its commit) still tells the resident."""
    held = db.session.scalar(
        sa.select(Coupon.id)
        .join(Draw, Draw.id == Coupon.draw_id)
        .where(
            Draw.resident_id == resident_id,
            Draw.round_id == current.id,
            Draw.category_id == snap.category_ids[code],
            Draw.slot == slot,
        )
    )
    name = snap.category_names[code]
    if snap.kind == "grab" and slot:
        tier = snap.tier(slot)
        message = f"您已领过第{current.number}期{tier_label(tier.face_fen, tier.threshold_fen)}券，每期每档限领一张"
    elif snap.kind == "grab":
        message = f"您已领过第{current.number}期{name}券，每期限领一张"
    else:
        message = f"您已参加过第{current.number}轮{name}抽奖，每轮每个品类限抽一次"
    if held is not None:
        raise ApiError("ALREADY_DRAWN", f"{message}。领到的券已放入“我的券”", coupon_id=held)
    raise ApiError("ALREADY_DRAWN", message)


def _refuse_sold_out(snap: Snapshot, current, code: str, now: datetime, what: str | None = None) -> None:
    """SOLD_OUT, or STOCK_NOT_RELEASED when the staged release still holds some of it back."""
    name = what or snap.category_names[code]
    period = "期" if snap.kind == "grab" else "轮"
    stage = snap.released_percent(current, now)
    if stage is not None:
        held = db.session.execute(
            _STOCK_LEFT["category_id"],
            {"round_id": current.id, "key": snap.category_ids[code], "max_seq": ALL_RELEASED},
        ).first()
        if held is not None:
            raise ApiError(
                "STOCK_NOT_RELEASED",
                f"第{current.number}{period}{name}券分批发放，本批已抢完，下一批将于{snap.local_time(stage[1])}放出",
                next_release_at=isoformat(stage[1], snap.tz),
            )
    raise ApiError("SOLD_OUT", f"第{current.number}{period}{name}券已被抢完，请关注下一{period}")


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


def _open_round(snap: Snapshot, now: datetime):
    current = snap.round_at(now)
    if current is None:
        _refuse_outside_round(snap, now)
    return current


def _valid_until(snap: Snapshot, current, now: datetime) -> datetime:
    if snap.validity_kind == "days_from_claim":
        return min(now + timedelta(days=snap.validity_days), snap.rounds[-1].valid_until)
    return current.valid_until


def _take(snap: Snapshot, current, resident_id: int, category_id: int, slot: int, chosen_tier: int | None, now):
    """Record the draw (the database's unique key is the once-only rule) and claim one stock
    coupon of the category, or of the chosen tier: (draw id, coupon row, valid until). No draw
    id: already taken. No row: none left, and the caller refuses, which rolls the draw back.
    """
    valid_until = _valid_until(snap, current, now)
    claim = {"resident_id": resident_id, "round_id": current.id, "claimed_at": now, "valid_until": valid_until}
    column, key = ("tier_id", chosen_tier) if chosen_tier else ("category_id", category_id)
    max_seq = release_cap(snap, current, category_id, now)
    row = None
    if _on_postgres():
        found = db.session.execute(
            _DRAW_AND_CLAIM[column],
            {**claim, "campaign_id": snap.id, "category_id": category_id, "slot": slot, "key": key, "max_seq": max_seq},
        ).one()
        draw_id, row = found.draw_id, (found if found.id is not None else None)
    else:
        draw_id = db.session.execute(
            _INSERT_DRAW,
            {
                "resident_id": resident_id,
                "round_id": current.id,
                "category_id": category_id,
                "slot": slot,
                "outcome": "won",
                "created_at": now,
            },
        ).scalar()
    if draw_id is None:
        return None, None, valid_until
    claim["draw_id"] = draw_id
    if row is None:
        row = _claim_any(column, {**claim, "key": key, "max_seq": max_seq})
        if row is None and column == "tier_id" and snap.kind == "wheel":  # fixed odds: take what is left
            row = _claim_any("category_id", {**claim, "key": category_id, "max_seq": max_seq})
        if row is not None:
            ledger.coupon_moved("claim", row.id, now)
    return draw_id, row, valid_until


def _coupon_json(snap: Snapshot, code: str, row, current, now: datetime, valid_until: datetime) -> dict:
    return {
        "id": row.id,
        "category": category_json(snap, code),
        "face_fen": row.face_fen,
        "threshold_fen": row.threshold_fen,
        "round": current.number,
        "status": "unused",
        "valid_until": isoformat(valid_until, snap.tz),
        "claimed_at": isoformat(now, snap.tz),
    }


def _refuse_kind(snap: Snapshot, wanted: str) -> None:
    if snap.kind == wanted:
        return
    if snap.kind == "grab":
        raise ApiError("WRONG_CAMPAIGN_KIND", "本活动为抢券活动，请选择券种领取")
    if snap.kind == "wheel":
        raise ApiError("WRONG_CAMPAIGN_KIND", "本活动为幸运大转盘抽奖，请到转盘页参与")
    raise ApiError("WRONG_CAMPAIGN_KIND", "本活动为购车补贴，请提交补贴申请")


def draw(
    bearer: tokens.Bearer, code: str, location: dict | None, now: datetime, campaign: str | None = None
) -> DrawResult:
    """Spin the wheel of a category once for this round: a coupon, or "thanks", or a refusal."""
    snap = current_snapshot(campaign)
    _refuse_kind(snap, "wheel")
    code = category_code_or_404(snap, code)
    current = _open_round(snap, now)
    ensure_bound(bearer)
    _check_location(snap, location)

    category_id = snap.category_ids[code]
    chosen = _fixed_odds_segment(snap, code) if snap.draw_strategy == "fixed_odds" else None
    if chosen is not None and chosen.tier_id is None:  # "thanks for taking part": no coupon
        params = {"resident_id": bearer.id, "round_id": current.id, "category_id": category_id, "slot": 0}
        if db.session.execute(_INSERT_DRAW, {**params, "outcome": "thanks", "created_at": now}).scalar() is None:
            _refuse_second_draw(snap, current, bearer.id, code)
        return DrawResult(chosen.index, None)

    draw_id, row, valid_until = _take(snap, current, bearer.id, category_id, 0, chosen and chosen.tier_id, now)
    if draw_id is None:
        _refuse_second_draw(snap, current, bearer.id, code)
    if row is None:
        _refuse_sold_out(snap, current, code, now)
    # The wheel lands on the segment of the tier won (the coupon records the tier).
    segment = next(s for s in snap.segments[code] if s.tier_id == row.tier_id)
    return DrawResult(segment.index, _coupon_json(snap, code, row, current, now, valid_until))


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
    snap = current_snapshot(campaign)
    _refuse_kind(snap, "grab")
    tier = snap.tier(tier_id)
    if tier is None:
        raise ApiError("NOT_FOUND", "没有这个券种")
    current = _open_round(snap, now)
    ensure_bound(bearer)
    if snap.screen_qr:
        screen.check_pass(screen_pass, snap.id, bearer.id, now)
    _check_location(snap, location)

    code = tier.category_code
    slot = tier.id if snap.grab_limit == "tier" else 0
    draw_id, row, valid_until = _take(snap, current, bearer.id, snap.category_ids[code], slot, tier.id, now)
    if draw_id is None:
        _refuse_second_draw(snap, current, bearer.id, code, slot)
    if row is None:
        _refuse_sold_out(snap, current, code, now, tier_label(tier.face_fen, tier.threshold_fen))
    return _coupon_json(snap, code, row, current, now, valid_until)


# ---------------------------------------------------------------- my coupons, merchants


def coupon_status(coupon: Coupon, now: datetime) -> str:
    """Validity is judged against the clock, so correctness never waits for an expiry job."""
    if coupon.state == "used":
        return "used"
    if coupon.state == "void":
        return "void"
    if coupon.state == "expired":
        return "expired"
    return "unused" if now < coupon.valid_until else "expired"


def status_clause(status: str, now: datetime):
    """The SQL twin of `coupon_status`: the coupons whose status is `status` at `now`."""
    if status == "unused":
        return sa.and_(Coupon.state == "claimed", Coupon.valid_until > now)
    if status == "expired":
        return sa.or_(Coupon.state == "expired", sa.and_(Coupon.state == "claimed", Coupon.valid_until <= now))
    return Coupon.state == status  # used, void


def my_coupons(resident_id: int, status: str | None, now: datetime) -> list[dict]:
    query = (
        sa.select(Coupon)
        .where(Coupon.resident_id == resident_id)
        .options(sa.orm.joinedload(Coupon.category), sa.orm.joinedload(Coupon.round).joinedload(Round.campaign))
        .order_by(Coupon.claimed_at.desc(), Coupon.id.desc())
    )
    if status in ("used", "unused", "expired"):
        query = query.where(status_clause(status, now))
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
            "merchants": f"/api/v1/categories/{c.category.code}/merchants?code={c.round.campaign.code}",
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


def paycode_for(resident_id: int, coupon_id: int, now: datetime) -> tuple[str, datetime]:
    """A fresh pay code for the resident's own unused coupon."""
    coupon = db.session.get(Coupon, coupon_id)
    if coupon is None or coupon.resident_id != resident_id:
        raise ApiError("NOT_FOUND", "找不到这张消费券")
    status = coupon_status(coupon, now)
    if status == "used" or status == "void":
        raise ApiError("COUPON_USED", "该消费券已使用")
    if status == "expired":
        raise ApiError("COUPON_EXPIRED")
    return paycode.issue(coupon.id, resident_id, now)
