"""Redeeming a coupon at the till (核销): every check of SPEC 4.3 in one transaction.

The coupon moves unused -> used only by a guarded update, so two tills racing for it record
one redemption; a retried submission with the same Idempotency-Key returns the first one.
Every refusal is logged with its reason (committed even though the request is refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from .. import ledger, paycode, rollup, tokens
from ..errors import ApiError
from ..extensions import db
from ..models import Category, Coupon, Merchant, Redemption, RefusedRedemption, Resident, Staff, merchant_categories
from ..timeutil import isoformat


@dataclass(frozen=True)
class Till:
    staff: Staff
    merchant: Merchant
    category_ids: frozenset[int]


def till(bearer: tokens.Bearer) -> Till:
    """The staff member behind a staff token, with their merchant and the categories it takes."""
    found = db.session.execute(
        sa.select(Staff, Merchant).join(Merchant, Merchant.id == Staff.merchant_id).where(Staff.id == bearer.id)
    ).first()
    if found is None:
        raise ApiError("UNAUTHORIZED", "店员身份已失效，请重新绑定")
    staff, merchant = found
    categories = db.session.scalars(
        sa.select(merchant_categories.c.category_id).where(merchant_categories.c.merchant_id == merchant.id)
    )
    return Till(staff, merchant, frozenset(categories))


@dataclass(frozen=True)
class Held:
    """A coupon as the till sees it, with its category and its resident's phone (one query)."""

    coupon: Coupon
    category: Category
    resident_phone: str | None


def _refusal(till_: Till, held: Held | None, now: datetime, spend_fen: int | None):
    """Why this till may not take this coupon now, as (code, message), or None."""
    merchant = till_.merchant
    coupon = held.coupon if held else None
    if merchant.status != "approved":
        return "MERCHANT_SUSPENDED", "本店已被暂停参加活动，不能核销，请联系商务局"
    if coupon is None:
        return "NOT_FOUND", "找不到这张消费券"
    if coupon.state == "used":
        return "COUPON_USED", "该消费券已使用，不能重复核销"
    if coupon.state == "expired" or (coupon.state == "claimed" and now >= coupon.valid_until):
        return "COUPON_EXPIRED", "该消费券已过期"
    if coupon.state != "claimed":
        return "COUPON_USED", "该消费券已作废"
    if now >= coupon.valid_until:
        return "COUPON_EXPIRED", "该消费券已过期"
    if coupon.category_id not in till_.category_ids:
        return "CATEGORY_MISMATCH", f"这是{held.category.name}券，本店不能使用"
    if held.resident_phone == till_.staff.phone:
        return "FORBIDDEN", "店员不能核销自己的消费券"
    if spend_fen is not None and spend_fen < coupon.threshold_fen:
        need = coupon.threshold_fen
        return "BELOW_THRESHOLD", f"消费满{need // 100}元才能使用这张券，本次消费{spend_fen / 100:.2f}元"
    return None


def _coupon_of(code: paycode.PayCode) -> Held | None:
    found = db.session.execute(
        sa.select(Coupon, Category, Resident.phone)
        .join(Category, Category.id == Coupon.category_id)
        .join(Resident, Resident.id == Coupon.resident_id)
        .where(Coupon.id == code.coupon_id, Coupon.resident_id == code.resident_id)
    ).first()
    return Held(*found) if found else None


def coupon_for_till(held: Held, tz) -> dict:
    coupon = held.coupon
    return {
        "id": coupon.id,
        "category": {"code": held.category.code, "name": held.category.name},
        "face_fen": coupon.face_fen,
        "threshold_fen": coupon.threshold_fen,
        "valid_until": isoformat(coupon.valid_until, tz),
    }


def scan(till_: Till, token: str, now: datetime, tz) -> dict:
    """What the till shows after scanning: the coupon, and whether this shop may take it; for a
    wallet pay code, the coupons of the resident this shop takes."""
    code = paycode.read(token, now)
    if code.wallet:
        return _scan_wallet(till_, code, now, tz)
    held = _coupon_of(code)
    refusal = _refusal(till_, held, now, None)
    if held is None:
        raise ApiError("NOT_FOUND", "找不到这张消费券")
    return {
        "coupon": coupon_for_till(held, tz),
        "accepted": refusal is None,
        "refusal": None if refusal is None else {"code": refusal[0], "message": refusal[1]},
    }


def _wallet(till_: Till, resident_id: int, now: datetime):
    """The resident's unused coupons that this shop takes, with category and phone (as `Held`)."""
    return (
        sa.select(Coupon, Category, Resident.phone)
        .join(Category, Category.id == Coupon.category_id)
        .join(Resident, Resident.id == Coupon.resident_id)
        .where(
            Coupon.resident_id == resident_id,
            Coupon.state == "claimed",
            Coupon.valid_until > now,
            Coupon.category_id.in_(till_.category_ids),
        )
    )


# The wallet's order of preference: the largest coupon, and between equals the one expiring first.
BEST_FIRST = (Coupon.face_fen.desc(), Coupon.valid_until, Coupon.id)


def _scan_wallet(till_: Till, code: paycode.PayCode, now: datetime, tz) -> dict:
    found = db.session.execute(_wallet(till_, code.resident_id, now).order_by(*BEST_FIRST).limit(50)).all()
    held = [Held(*row) for row in found]
    refusal = _refusal(till_, held[0], now, None) if held else ("NO_QUALIFYING_COUPON", "顾客没有可在本店使用的消费券")
    if refusal is None and _wallet_code_used(code):
        refusal = ("PAYCODE_EXPIRED", WALLET_CODE_USED)  # paid once already: the till is told before the spend
    return {
        "coupon": coupon_for_till(held[0], tz) if held else None,
        "accepted": refusal is None,
        "refusal": None if refusal is None else {"code": refusal[0], "message": refusal[1]},
        "wallet": [coupon_for_till(h, tz) for h in held],
    }


def redeem(
    till_: Till,
    token: str,
    spend_fen: int,
    spend_category: str,
    note: str | None,
    key: str | None,
    now: datetime,
    location: dict | None = None,
) -> Redemption:
    """Spend the coupon at this till, or refuse (and log why).

    A retry with the same Idempotency-Key is refused on its own (coupon used, pay code stale):
    only then is the key looked up, so a first submission costs no extra query.
    """
    coupon_id = None
    try:
        code = paycode.read(token, now)
        if code.wallet and key:  # a retry of a wallet payment: its coupon was chosen by the first
            earlier = _earlier(till_, key, resident_id=code.resident_id)
            if earlier is not None:
                return earlier
        if code.wallet and _wallet_code_used(code):
            raise ApiError("PAYCODE_EXPIRED", WALLET_CODE_USED)
        for _ in range(5):  # a wallet's choice lost to another till: choose again
            held = _best_coupon(till_, code.resident_id, spend_fen, now) if code.wallet else _coupon_of(code)
            coupon_id = held.coupon.id if held else code.coupon_id or None
            refusal = _refusal(till_, held, now, spend_fen)
            if refusal:
                raise ApiError(*refusal)
            coupon = held.coupon
            used = db.session.execute(
                sa.update(Coupon)
                .where(Coupon.id == coupon.id, Coupon.state == "claimed", Coupon.valid_until > now)
                .values(state="used")
                .execution_options(synchronize_session=False)
            ).rowcount
            if used == 1:
                break
            if not code.wallet:
                raise ApiError("COUPON_USED", "该消费券已使用，不能重复核销")
        else:
            raise ApiError("COUPON_USED", "该消费券已使用，不能重复核销")
    except ApiError as refused:
        db.session.rollback()
        # A retry (its coupon used by the first attempt, or its pay code stale by now).
        earlier = _retried(till_, key, token, coupon_id) if key else None
        if earlier is not None:
            return earlier
        db.session.add(
            RefusedRedemption(
                staff_id=till_.staff.id,
                merchant_id=till_.merchant.id,
                coupon_id=coupon_id if db.session.get(Coupon, coupon_id or 0) else None,
                code=refused.code,
                message=refused.message[:200],
                spend_fen=spend_fen,
                created_at=now,
            )
        )
        refused.keep_changes = True
        raise
    redemption = Redemption(
        coupon_id=coupon.id,
        category_id=coupon.category_id,
        merchant_id=till_.merchant.id,
        staff_id=till_.staff.id,
        resident_id=coupon.resident_id,
        face_fen=coupon.face_fen,
        threshold_fen=coupon.threshold_fen,
        spend_fen=spend_fen,
        spend_category=spend_category.strip(),
        note=(note or "").strip() or None,
        idempotency_key=key,
        paycode_nonce=code.nonce if code.wallet else None,
        lat=location["lat"] if location else None,
        lng=location["lng"] if location else None,
        created_at=now,
    )
    db.session.add(redemption)
    try:
        db.session.flush()  # no savepoint: on a conflict the whole attempt is rolled back below
        ledger.coupon_moved("redeem", coupon.id, now, redemption.id)
    except sa.exc.IntegrityError:
        # The same key raced itself: the other submission recorded it; answer with that one.
        db.session.rollback()
        earlier = _retried(till_, key, token, coupon_id) if key else None
        if earlier is None and code.wallet:  # the same wallet code paid at another till meanwhile
            raise ApiError("PAYCODE_EXPIRED", WALLET_CODE_USED) from None
        if earlier is None:
            raise ApiError("COUPON_USED", "该消费券已使用，不能重复核销") from None
        return earlier
    return redemption


WALLET_CODE_USED = "这个付款码已用过一次，请让顾客刷新付款码后再扫"


def _best_coupon(till_: Till, resident_id: int, spend_fen: int, now: datetime) -> Held | None:
    """The wallet's choice (Youhao: 系统默认优先抵扣符合条件的最大面值消费券): of the resident's
    unused coupons that this shop takes and this spend reaches, the largest; between equals, the
    one that expires first. None when the merchant may not redeem at all (the refusal says so);
    NO_QUALIFYING_COUPON when no coupon qualifies, saying what would."""
    if till_.merchant.status != "approved":
        return None
    usable = _wallet(till_, resident_id, now)
    found = db.session.execute(usable.where(Coupon.threshold_fen <= spend_fen).order_by(*BEST_FIRST).limit(1)).first()
    if found is not None:
        return Held(*found)
    nearest = db.session.execute(usable.order_by(Coupon.threshold_fen, Coupon.face_fen.desc()).limit(1)).first()
    if nearest is None:
        raise ApiError("NO_QUALIFYING_COUPON", "顾客没有可在本店使用的消费券")
    need = nearest[0].threshold_fen
    raise ApiError(
        "NO_QUALIFYING_COUPON",
        f"本次消费{spend_fen / 100:.2f}元，未达到顾客消费券的使用门槛：最低消费满{need / 100:g}元可用"
        f"{nearest[0].face_fen / 100:g}元券",
    )


def _retried(till_: Till, key: str, token: str, coupon_id: int | None) -> Redemption | None:
    """This till's earlier redemption under this key for the same pay code, if this is a retry."""
    wallet_of = paycode.named_wallet(token)
    if wallet_of is not None:
        return _earlier(till_, key, resident_id=wallet_of)
    return _earlier(till_, key, coupon_id=coupon_id or paycode.named_coupon(token))


def _earlier(
    till_: Till, key: str, *, coupon_id: int | None = None, resident_id: int | None = None
) -> Redemption | None:
    """This till's redemption under this key, if this is a retry of it: of the same coupon, or for
    a wallet pay code, of the same resident. A key reused for another coupon or another resident
    is refused: answering with the other's redemption would show success while this one stays
    unpaid. A code naming neither is no retry."""
    if coupon_id is None and resident_id is None:
        return None
    earlier = db.session.scalar(
        sa.select(Redemption).where(Redemption.staff_id == till_.staff.id, Redemption.idempotency_key == key)
    )
    if earlier is not None and resident_id is not None and earlier.resident_id != resident_id:
        raise ApiError("INVALID_INPUT", "这个 Idempotency-Key 已用于另一位顾客，请为每笔消费使用新的编号")
    if earlier is not None and coupon_id is not None and earlier.coupon_id != coupon_id:
        raise ApiError("INVALID_INPUT", "这个 Idempotency-Key 已用于另一张消费券，请为每张券使用新的编号")
    return earlier


def _wallet_code_used(code: paycode.PayCode) -> bool:
    """Whether this wallet pay code has paid already (it pays once)."""
    return db.session.scalar(sa.select(Redemption.id).where(Redemption.paycode_nonce == code.nonce)) is not None


def redemption_json(redemption: Redemption, tz) -> dict:
    category = db.session.get(Category, redemption.category_id)
    return {
        "id": redemption.id,
        "coupon_id": redemption.coupon_id,
        "category": {"code": category.code, "name": category.name},
        "face_fen": redemption.face_fen,
        "threshold_fen": redemption.threshold_fen,
        "spend_fen": redemption.spend_fen,
        "spend_category": redemption.spend_category,
        "note": redemption.note,
        "created_at": isoformat(redemption.created_at, tz),
        "revoked_at": isoformat(redemption.revoked_at, tz),
        "refunded_at": isoformat(redemption.refunded_at, tz),
    }


def _own(till_: Till, redemption_id: int) -> Redemption:
    """A redemption of this merchant, locked; another merchant's is not found (no hint it exists)."""
    redemption = db.session.scalar(
        sa.select(Redemption)
        .where(Redemption.id == redemption_id, Redemption.merchant_id == till_.merchant.id)
        .with_for_update()
    )
    if redemption is None:
        raise ApiError("NOT_FOUND", "找不到这笔核销记录")
    return redemption


def revoke(till_: Till, redemption_id: int, reason: str, now: datetime, window_s: int) -> Redemption:
    """Undo a mistaken redemption within the window: the coupon is the resident's to use again."""
    redemption = _own(till_, redemption_id)
    if redemption.revoked_at or redemption.refunded_at:
        raise ApiError("COUPON_USED", "这笔核销已撤回或已退货")
    if (now - redemption.created_at).total_seconds() > window_s:
        raise ApiError("FORBIDDEN", f"核销超过{window_s // 60}分钟，不能撤回；如顾客退货请办理退货")
    redemption.revoked_at, redemption.revoke_reason = now, reason.strip()
    db.session.execute(
        sa.update(Coupon)
        .where(Coupon.id == redemption.coupon_id, Coupon.state == "used")
        .values(state="claimed")
        .execution_options(synchronize_session=False)
    )
    ledger.coupon_moved("revoke", redemption.coupon_id, now, redemption.id)
    rollup.mark_stale(redemption.created_at)
    return redemption


def refund(till_: Till, redemption_id: int, reason: str, now: datetime) -> Redemption:
    """Goods returned (退货): per the campaign's policy the coupon is voided, or stays spent."""
    from ..models import Campaign, Round

    redemption = _own(till_, redemption_id)
    if redemption.revoked_at or redemption.refunded_at:
        raise ApiError("COUPON_USED", "这笔核销已撤回或已退货")
    policy = db.session.scalar(
        sa.select(Campaign.refund_policy)
        .join(Round, Round.campaign_id == Campaign.id)
        .join(Coupon, Coupon.round_id == Round.id)
        .where(Coupon.id == redemption.coupon_id)
    )
    redemption.refunded_at, redemption.refund_reason, redemption.refund_policy = now, reason.strip(), policy
    if policy == "return":
        db.session.execute(
            sa.update(Coupon)
            .where(Coupon.id == redemption.coupon_id)
            .values(state="void")
            .execution_options(synchronize_session=False)
        )
    kind = "refund_return" if policy == "return" else "refund_forfeit"
    ledger.coupon_moved(kind, redemption.coupon_id, now, redemption.id)
    rollup.mark_stale(redemption.created_at)
    return redemption


def settled_clause():
    """What the merchant is reimbursed for, as a condition on a redemption.

    Qian'an rule: a redemption without spend amount or category forfeits its subsidy; revoked
    ones and refunds under the "return" policy owe nothing.
    """
    return sa.and_(
        standing_clause(),
        Redemption.spend_fen > 0,
        sa.func.length(sa.func.trim(Redemption.spend_category)) > 0,
    )


def standing_clause():
    """Redemptions that stand: not revoked, and not refunded under the "return" policy (whose
    coupon is voided). Their face value is what the ledger keeps as redeemed or forfeited."""
    return sa.and_(
        Redemption.revoked_at.is_(None),
        sa.or_(Redemption.refunded_at.is_(None), Redemption.refund_policy == "forfeit"),
    )


def settled(query):
    """Restrict a redemption query to what the merchant is reimbursed for."""
    return query.where(settled_clause())


def own_redemptions(till_: Till, start: datetime | None, end: datetime | None, page: int, per_page: int):
    query = sa.select(Redemption).where(Redemption.merchant_id == till_.merchant.id)
    if start:
        query = query.where(Redemption.created_at >= start)
    if end:
        query = query.where(Redemption.created_at < end)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    items = db.session.scalars(
        query.order_by(Redemption.created_at.desc(), Redemption.id.desc()).limit(per_page).offset((page - 1) * per_page)
    ).all()
    return items, total


def settlement(till_: Till, tz, now: datetime) -> dict:
    """What the merchant is owed: 100% of the face value of its valid redemptions, per local day;
    and today by the server's clock (a till's phone may be set wrong)."""
    rows = db.session.execute(
        settled(
            sa.select(Redemption.created_at, Redemption.face_fen).where(Redemption.merchant_id == till_.merchant.id)
        )
    ).all()
    days: dict[str, list[int]] = {}
    for created_at, face in rows:
        day = created_at.astimezone(tz).date().isoformat()
        days.setdefault(day, []).append(face)
    per_day = [{"date": day, "count": len(faces), "owed_fen": sum(faces)} for day, faces in sorted(days.items())]
    today = now.astimezone(tz).date().isoformat()
    return {
        "days": per_day,
        "count": len(rows),
        "owed_fen": sum(face for _, face in rows),
        "today": next((d for d in per_day if d["date"] == today), {"date": today, "count": 0, "owed_fen": 0}),
    }
