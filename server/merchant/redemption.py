"""Redeeming a coupon at the till (核销): every check of SPEC 4.3, then the coupon's guarded move.

The till is loaded once per request, as plain values (`Till`). A coupon is spent only by
pool.coupons.use, so two tills racing for it record one redemption; a retried submission with the
same Idempotency-Key answers with the first one. Every refusal is logged with its reason, and the
log is kept though the request is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa

from ..auth import paycode, tokens
from ..campaign.rules import Hours, short_refusal, spend_choices, spend_refusal, usage_hours
from ..core import db as database
from ..core.errors import (
    BelowThreshold,
    CategoryMismatch,
    CouponExpired,
    CouponUsed,
    Forbidden,
    InvalidInput,
    MerchantSuspended,
    NoQualifyingCoupon,
    NotFound,
    OutsideHours,
    PaycodeExpired,
    Refusal,
    Unauthorized,
)
from ..core.money import yuan
from ..core.time import isoformat
from ..extensions import db
from ..models import (
    Campaign,
    Category,
    Coupon,
    Enrolment,
    Redemption,
    Refund,
    RefusedRedemption,
    Resident,
    Round,
    Staff,
    Tier,
)
from ..models import merchant_categories as categories_of
from ..pool import coupons, ledger, rollup

WALLET_CODE_USED = "这个付款码已用过一次，请让顾客刷新付款码后再扫"
USED_TWICE = "该消费券已使用，不能重复核销"


@dataclass(frozen=True)
class Till:
    """A shop assistant at the till: who, for which merchant, and the categories it takes -- those
    of every campaign the merchant is approved in -- and those of its other enrolments."""

    staff_id: int
    staff_phone: str
    merchant_id: int
    category_ids: frozenset[int]  # of its approved enrolments
    held_back: frozenset[int] = frozenset()  # of its enrolments not approved (applied, suspended...)

    @property
    def merchant_status(self) -> str:
        """ "approved" when it takes part in some campaign; else "suspended"."""
        return "approved" if self.category_ids else "suspended"


_staff, _merchant_categories = Staff.__table__, categories_of
_categories, _enrolments = Category.__table__, Enrolment.__table__

# The till and the coupon are read on every scan and redemption: plain rows from statements built
# once, no ORM objects (core.db.Prepared).
_TILL = database.Prepared(
    sa.select(_staff.c.phone, _staff.c.merchant_id, _merchant_categories.c.category_id, _enrolments.c.status)
    .outerjoin(_merchant_categories, _merchant_categories.c.merchant_id == _staff.c.merchant_id)
    .outerjoin(_categories, _categories.c.id == _merchant_categories.c.category_id)
    .outerjoin(
        _enrolments,
        sa.and_(
            _enrolments.c.merchant_id == _staff.c.merchant_id, _enrolments.c.campaign_id == _categories.c.campaign_id
        ),
    )
    .where(_staff.c.id == sa.bindparam("staff_id"), _staff.c.unbound_at.is_(None))
)


def till(bearer: tokens.Bearer) -> Till:
    """The staff member behind a staff token, with their merchant and its categories by whether
    its enrolment in their campaign is approved: one query."""
    rows = _TILL.all({"staff_id": bearer.id})
    if not rows:
        raise Unauthorized("店员身份已失效，请重新绑定")
    phone, merchant_id, _, _ = rows[0]
    approved = frozenset(r[2] for r in rows if r[2] is not None and r[3] == "approved")
    others = frozenset(r[2] for r in rows if r[2] is not None and r[3] != "approved")
    return Till(bearer.id, phone, merchant_id, approved, others)


class CouponRow(NamedTuple):
    """What the till needs of a coupon."""

    id: int
    state: str
    valid_until: datetime
    category_id: int
    resident_id: int
    face_fen: int
    threshold_fen: int


class CategoryNames(NamedTuple):
    code: str
    name: str


class CampaignTerms(NamedTuple):
    """What the till needs of a coupon's campaign."""

    name: str
    usage_hours: str | None
    spend_categories: dict | None
    short_sale: str


@dataclass(frozen=True, slots=True)
class Held:
    """A coupon as the till sees it, with its category, its resident's phone, its tier's hours and
    its campaign's terms (one query)."""

    coupon: CouponRow
    category: CategoryNames
    resident_phone: str | None
    tier_hours: str | None
    campaign: CampaignTerms

    @classmethod
    def of(cls, row: sa.Row | tuple) -> Held:
        """From a row of `_HELD_COLUMNS`."""
        cut = len(CouponRow._fields)
        code, name, phone, tier_hours, *campaign = row[cut:]
        return cls(CouponRow(*row[:cut]), CategoryNames(code, name), phone, tier_hours, CampaignTerms(*campaign))

    @property
    def hours(self) -> Hours | None:
        return usage_hours(self.tier_hours, self.campaign.usage_hours)

    @property
    def spend_choices(self) -> list[dict] | None:
        return spend_choices(self.campaign.spend_categories, self.category.code)


_coupons, _tiers, _campaigns = Coupon.__table__, Tier.__table__, Campaign.__table__
_HELD_FROM = (
    _coupons.join(_categories, _categories.c.id == _coupons.c.category_id)
    .join(Resident.__table__, Resident.__table__.c.id == _coupons.c.resident_id)
    .join(_tiers, _tiers.c.id == _coupons.c.tier_id)
    .join(_campaigns, _campaigns.c.id == _tiers.c.campaign_id)
)
_HELD_COLUMNS = (
    *(_coupons.c[name] for name in CouponRow._fields),
    _categories.c.code,
    _categories.c.name,
    Resident.__table__.c.phone,
    _tiers.c.usage_hours,
    _campaigns.c.name,
    _campaigns.c.usage_hours,
    _campaigns.c.spend_categories,
    _campaigns.c.short_sale,
)


def _held():
    return sa.select(*_HELD_COLUMNS).select_from(_HELD_FROM)


_ONE_HELD = database.Prepared(
    _held().where(_coupons.c.id == sa.bindparam("coupon_id"), _coupons.c.resident_id == sa.bindparam("resident_id"))
)


def _coupon_of(code: paycode.PayCode) -> Held | None:
    found = _ONE_HELD.first({"coupon_id": code.coupon_id, "resident_id": code.resident_id})
    return Held.of(found) if found else None


def _refusal(
    till_: Till, held: Held | None, now: datetime, spend_fen: int | None, spend_category: str | None = None
) -> Refusal | None:
    """Why this till may not take this coupon now (for this spend, when it is given), or None."""
    coupon = held.coupon if held else None
    if till_.merchant_status != "approved":
        return MerchantSuspended("本店已被暂停参加活动，不能核销，请联系商务局")
    if coupon is None:
        return NotFound("找不到这张消费券")
    status = coupons.status(coupon, now)
    if status == coupons.Status.USED:
        return CouponUsed(USED_TWICE)
    if status == coupons.Status.EXPIRED:
        return CouponExpired("该消费券已过期")
    if status == coupons.Status.VOID:
        return CouponUsed("该消费券已作废")
    if coupon.category_id in till_.held_back:
        return MerchantSuspended(f"本店参加「{held.campaign.name}」的报名未获通过或已暂停，不能核销该活动的券")
    if coupon.category_id not in till_.category_ids:
        return CategoryMismatch(f"这是{held.category.name}券，本店不能使用")
    if held.resident_phone == till_.staff_phone:
        return Forbidden("店员不能核销自己的消费券")
    hours = held.hours
    if hours is not None and not hours.allow(now):
        return OutsideHours(f"这张消费券仅限每日{hours}使用，现在不在使用时段内")
    if spend_fen is not None and spend_fen < coupon.threshold_fen:
        return BelowThreshold(
            f"消费满{yuan(coupon.threshold_fen)}元才能使用这张券，本次消费{yuan(spend_fen, cents=True)}元"
        )
    if spend_fen is not None and (short := short_refusal(coupon.face_fen, spend_fen, held.campaign.short_sale)):
        return short
    if spend_category is not None:
        return spend_refusal(held.spend_choices, spend_category)
    return None


def coupon_for_till(held: Held) -> dict:
    coupon = held.coupon
    return {
        "id": coupon.id,
        "category": {"code": held.category.code, "name": held.category.name},
        "face_fen": coupon.face_fen,
        "threshold_fen": coupon.threshold_fen,
        "valid_until": isoformat(coupon.valid_until),
        "usable_hours": str(held.hours) if held.hours else None,
        "spend_categories": held.spend_choices,
        "short_sale": held.campaign.short_sale,
    }


def _answer(refusal: Refusal | None) -> dict | None:
    return None if refusal is None else {"code": refusal.code, "message": refusal.message}


def scan(till_: Till, token: str, now: datetime) -> dict:
    """What the till shows after scanning: the coupon, and whether this shop may take it; for a
    wallet pay code, the coupons of the resident this shop takes."""
    code = paycode.read(token, now)
    if code.wallet:
        return _scan_wallet(till_, code, now)
    held = _coupon_of(code)
    if held is None:
        raise NotFound("找不到这张消费券")
    refusal = _refusal(till_, held, now, None)
    return {"coupon": coupon_for_till(held), "accepted": refusal is None, "refusal": _answer(refusal)}


def _wallet(till_: Till, resident_id: int, now: datetime):
    """The resident's unused coupons that this shop takes, of the campaigns paid by the wallet pay
    code (Campaign.wallet), with category and phone (as `Held`)."""
    return _held().where(
        Coupon.resident_id == resident_id,
        coupons.status_clause(coupons.Status.UNUSED, now, keyed=True),
        Coupon.category_id.in_(till_.category_ids),
        Campaign.wallet.is_(True),
    )


# The wallet's order of preference: the largest coupon, and between equals the one expiring first.
BEST_FIRST = (Coupon.face_fen.desc(), Coupon.valid_until, Coupon.id)


def _scan_wallet(till_: Till, code: paycode.PayCode, now: datetime) -> dict:
    found = db.session.execute(_wallet(till_, code.resident_id, now).order_by(*BEST_FIRST).limit(50)).all()
    held = [Held.of(row) for row in found]
    refusal = _refusal(till_, held[0], now, None) if held else NoQualifyingCoupon("顾客没有可在本店使用的消费券")
    if refusal is None and _wallet_code_used(code):
        refusal = PaycodeExpired(WALLET_CODE_USED)  # paid once already: the till is told before the spend
    return {
        "coupon": coupon_for_till(held[0]) if held else None,
        "accepted": refusal is None,
        "refusal": _answer(refusal),
        "wallet": [coupon_for_till(h) for h in held],
    }


@dataclass(frozen=True)
class Redeemed:
    redemption: Redemption
    category: tuple[str, str]  # code, name


def redeem(
    till_: Till,
    token: str,
    spend_fen: int,
    spend_category: str,
    note: str | None,
    key: str | None,
    now: datetime,
    location: dict | None = None,
) -> Redeemed:
    """Spend the coupon at this till, or refuse (and log why).

    A retry with the same Idempotency-Key is refused on its own (coupon used, pay code stale):
    only then is the key looked up, so a first submission costs no extra query.
    """
    held = named = raced = None  # named: the coupon the attempt is about, for the refusal's log
    try:
        code = paycode.read(token, now)
        if code.wallet and key:  # a retry of a wallet payment: its coupon was chosen by the first
            earlier = _earlier(till_, key, resident_id=code.resident_id)
            if earlier is not None:
                return earlier
        if code.wallet and _wallet_code_used(code):
            raise PaycodeExpired(WALLET_CODE_USED)
        for _ in range(5):  # a wallet's choice lost to another till: choose again
            held = _best_coupon(till_, code.resident_id, spend_fen, now) if code.wallet else _coupon_of(code)
            named = held.coupon.id if held else code.coupon_id or None
            refusal = _refusal(till_, held, now, spend_fen, spend_category)
            if refusal:
                raise refusal
            coupon = held.coupon
            values = {
                "coupon_id": coupon.id,
                "category_id": coupon.category_id,
                "merchant_id": till_.merchant_id,
                "staff_id": till_.staff_id,
                "resident_id": coupon.resident_id,
                "face_fen": coupon.face_fen,
                "threshold_fen": coupon.threshold_fen,
                "spend_fen": spend_fen,
                "spend_category": spend_category.strip(),
                "note": (note or "").strip() or None,
                "idempotency_key": key,
                "paycode_nonce": code.nonce if code.wallet else None,
                "lat": location["lat"] if location else None,
                "lng": location["lng"] if location else None,
            }
            try:
                done = coupons.use(values, now)
            except coupons.KeyTaken:
                raced = coupon.id
                break
            if done is not None:
                return Redeemed(done, (held.category.code, held.category.name))
            if not code.wallet:
                raise CouponUsed(USED_TWICE)
        else:
            raise CouponUsed(USED_TWICE)
    except Refusal as refused:
        # A retry (its coupon used by the first attempt, or its pay code stale by now).
        earlier = _retried(till_, key, token, named) if key else None
        if earlier is not None:
            return earlier
        # A code may name a coupon its holder does not hold, or none there is: the log names it
        # only if it is there (the key to coupons).
        if named is not None and held is None:
            named = db.session.scalar(sa.select(Coupon.id).where(Coupon.id == named))
        db.session.add(
            RefusedRedemption(
                staff_id=till_.staff_id,
                merchant_id=till_.merchant_id,
                coupon_id=named,
                code=refused.code,
                message=refused.message[:200],
                spend_fen=spend_fen,
                created_at=now,
            )
        )
        refused.keep_changes = True
        raise
    # Only a race is left: the same key raced itself (the other submission recorded it: answer with
    # that one), or the same wallet code paid at another till meanwhile. Not the till's mistake: no log.
    earlier = _retried(till_, key, token, raced) if key else None
    if earlier is not None:
        return earlier
    raise PaycodeExpired(WALLET_CODE_USED) if code.wallet else CouponUsed(USED_TWICE)


def _best_coupon(till_: Till, resident_id: int, spend_fen: int, now: datetime) -> Held | None:
    """The wallet's choice (Youhao: 系统默认优先抵扣符合条件的最大面值消费券): of the resident's
    unused coupons that this shop takes and this spend reaches, the largest; between equals, the
    one that expires first. None when the merchant may not redeem at all (the refusal says so);
    NO_QUALIFYING_COUPON when no coupon qualifies, saying what would."""
    if till_.merchant_status != "approved":
        return None
    usable = _wallet(till_, resident_id, now)
    reaches = sa.and_(
        Coupon.threshold_fen <= spend_fen, sa.or_(Coupon.face_fen <= spend_fen, Campaign.short_sale == "settle")
    )
    found = db.session.execute(usable.where(reaches).order_by(*BEST_FIRST).limit(1)).first()
    if found is not None:
        return Held.of(found)
    nearest = db.session.execute(usable.order_by(Coupon.threshold_fen, Coupon.face_fen.desc()).limit(1)).first()
    if nearest is None:
        raise NoQualifyingCoupon("顾客没有可在本店使用的消费券")
    nearest = Held.of(nearest)
    coupon, settles = nearest.coupon, nearest.campaign.short_sale == "settle"
    need = coupon.threshold_fen if settles else max(coupon.threshold_fen, coupon.face_fen)
    raise NoQualifyingCoupon(
        f"本次消费{yuan(spend_fen, cents=True)}元，未达到顾客消费券的使用门槛：最低消费满{yuan(need)}元可用"
        f"{yuan(coupon.face_fen)}元券",
    )


def _retried(till_: Till, key: str, token: str, coupon_id: int | None) -> Redeemed | None:
    """This till's earlier redemption under this key for the same pay code, if this is a retry."""
    wallet_of = paycode.named_wallet(token)
    if wallet_of is not None:
        return _earlier(till_, key, resident_id=wallet_of)
    return _earlier(till_, key, coupon_id=coupon_id or paycode.named_coupon(token))


def _earlier(till_: Till, key: str, *, coupon_id: int | None = None, resident_id: int | None = None) -> Redeemed | None:
    """This till's redemption under this key, if this is a retry of it: of the same coupon, or for
    a wallet pay code, of the same resident. A key reused for another coupon or another resident
    is refused: answering with the other's redemption would show success while this one stays
    unpaid. A code naming neither is no retry."""
    if coupon_id is None and resident_id is None:
        return None
    found = db.session.execute(
        sa.select(Redemption, Category.code, Category.name)
        .join(Category, Category.id == Redemption.category_id)
        .where(Redemption.staff_id == till_.staff_id, Redemption.idempotency_key == key)
    ).first()
    if found is None:
        return None
    earlier, *category = found
    if resident_id is not None and earlier.resident_id != resident_id:
        raise InvalidInput("这个 Idempotency-Key 已用于另一位顾客，请为每笔消费使用新的编号")
    if coupon_id is not None and earlier.coupon_id != coupon_id:
        raise InvalidInput("这个 Idempotency-Key 已用于另一张消费券，请为每张券使用新的编号")
    if earlier.revoked_at is not None:  # answering it would show a sale the coupon no longer paid
        raise InvalidInput("这个 Idempotency-Key 的核销已撤回，请用新的编号重新核销")
    return Redeemed(earlier, tuple(category))


def _wallet_code_used(code: paycode.PayCode) -> bool:
    """Whether this wallet pay code has paid already (it pays once)."""
    used = sa.select(Redemption.id).where(
        Redemption.resident_id == code.resident_id, Redemption.paycode_nonce == code.nonce
    )
    return db.session.scalar(used) is not None


def redemption_json(done: Redeemed) -> dict:
    redemption = done.redemption
    code, name = done.category
    return {
        "id": redemption.id,
        "coupon_id": redemption.coupon_id,
        "category": {"code": code, "name": name},
        "face_fen": redemption.face_fen,
        "threshold_fen": redemption.threshold_fen,
        "spend_fen": redemption.spend_fen,
        "paid_fen": redemption.paid_fen,
        "refunded_spend_fen": redemption.refunded_spend_fen,
        "returned_fen": redemption.returned_fen,
        "withheld_fen": redemption.withheld_fen,
        "owed_fen": redemption.owed_fen,
        "spend_category": redemption.spend_category,
        "note": redemption.note,
        "created_at": isoformat(redemption.created_at),
        "revoked_at": isoformat(redemption.revoked_at),
        "refunded_at": isoformat(redemption.refunded_at),
    }


def _own(till_: Till, redemption_id: int) -> Redeemed:
    """A redemption of this merchant, locked; another merchant's is not found (no hint it exists)."""
    found = db.session.execute(
        sa.select(Redemption, Category.code, Category.name)
        .join(Category, Category.id == Redemption.category_id)
        .where(Redemption.id == redemption_id, Redemption.merchant_id == till_.merchant_id)
        .with_for_update(of=Redemption)
        .execution_options(populate_existing=True)
    ).first()
    if found is None:
        raise NotFound("找不到这笔核销记录")
    redemption, *category = found
    if redemption.revoked_at or redemption.refunded_at:
        raise CouponUsed("这笔核销已撤回或已全部退货")
    return Redeemed(redemption, tuple(category))


def revoke(till_: Till, redemption_id: int, reason: str, now: datetime, window_s: int) -> Redeemed:
    """Undo a mistaken redemption within the window: the coupon is the resident's to use again."""
    done = _own(till_, redemption_id)
    redemption = done.redemption
    if (now - redemption.created_at).total_seconds() > window_s:
        raise Forbidden(f"核销超过{window_s // 60}分钟，不能撤回；如顾客退货请办理退货")
    if redemption.refunded_spend_fen:
        raise Forbidden("这笔核销已部分退货，不能撤回；请为其余商品办理退货")
    rest = redemption.face_fen - redemption.paid_fen
    if rest and ledger.pool_fen(_campaign_of(redemption).id) < rest:  # its rest has gone to the treasury
        raise Forbidden("这张券找零部分的余额已返还财政，不能撤回，请联系商务局")
    redemption.revoked_at, redemption.revoke_reason = now, reason.strip()
    if not coupons.unuse(redemption, now):
        raise CouponUsed("这张消费券已不是已核销状态，不能撤回")
    rollup.mark_stale(redemption.created_at)
    return done


def _campaign_of(redemption: Redemption) -> Campaign:
    return db.session.scalars(
        sa.select(Campaign)
        .join(Round, Round.campaign_id == Campaign.id)
        .join(Coupon, Coupon.round_id == Round.id)
        .where(Coupon.id == redemption.coupon_id)
    ).one()


def refund(till_: Till, redemption_id: int, reason: str, now: datetime, spend_fen: int | None = None) -> Redeemed:
    """Goods returned (退货), the whole sale or `spend_fen` of it: the coupon's share of the refund is
    returned to the pool or withheld from the merchant, by the campaign's policy (pool.coupons.refund)."""
    done = _own(till_, redemption_id)
    redemption = done.redemption
    left = redemption.spend_fen - redemption.refunded_spend_fen
    amount = left if spend_fen is None else spend_fen
    if left and not 0 < amount <= left:
        raise InvalidInput(f"退货金额应大于0，且不超过尚未退货的{yuan(left, cents=True)}元")
    policy = _campaign_of(redemption).refund_policy
    share = coupons.refund(redemption, amount, policy, now)
    if share is None:
        raise CouponUsed("这张消费券已不是已核销状态，不能退货")
    db.session.add(
        Refund(
            redemption_id=redemption.id,
            merchant_id=till_.merchant_id,
            staff_id=till_.staff_id,
            spend_fen=amount,
            share_fen=share,
            policy=policy,
            reason=reason.strip(),
            created_at=now,
        )
    )
    redemption.refund_reason = reason.strip()
    rollup.mark_stale(redemption.created_at)
    return done


def own_redemptions(till_: Till, start: datetime | None, end: datetime | None, page: int, per_page: int):
    """The merchant's redemptions, newest first, in the UTC range: (page of Redeemed, total)."""
    query = sa.select(Redemption).where(Redemption.merchant_id == till_.merchant_id)
    if start:
        query = query.where(Redemption.created_at >= start)
    if end:
        query = query.where(Redemption.created_at < end)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = db.session.execute(
        query.add_columns(Category.code, Category.name)
        .join(Category, Category.id == Redemption.category_id)
        .order_by(Redemption.created_at.desc(), Redemption.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return [Redeemed(redemption, (code, name)) for redemption, code, name in rows], total
