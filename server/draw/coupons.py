"""A resident's coupons: the list by status, the pay code of one, and where it can be spent."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm

from ..auth import paycode
from ..campaign import enrolment
from ..campaign.rules import usage_hours_text
from ..campaign.snapshot import Snapshot
from ..core.errors import CouponExpired, CouponUsed, NotFound, WrongCampaignKind
from ..extensions import db
from ..models import AuditEntry, Campaign, Coupon, Merchant, Redemption, Round, merchant_categories
from ..pool import coupons
from ..pool.coupons import Status
from .claim import category_code_or_404


def my_coupons(resident_id: int, wanted: str | None, now: datetime) -> list[dict]:
    """The resident's coupons, newest first, optionally of one status, each with where to spend it."""
    query = (
        sa.select(Coupon)
        .where(Coupon.resident_id == resident_id)
        .options(
            sa.orm.joinedload(Coupon.category),
            sa.orm.joinedload(Coupon.tier),
            sa.orm.joinedload(Coupon.round).joinedload(Round.campaign),
        )
        .order_by(Coupon.claimed_at.desc(), Coupon.id.desc())
    )
    if wanted in (Status.USED, Status.UNUSED, Status.EXPIRED, Status.VOID):
        query = query.where(coupons.status_clause(wanted, now, keyed=True))
    held = [(c, coupons.status(c, now)) for c in db.session.scalars(query).unique()]
    reasons = void_reasons([c.id for c, status in held if status == Status.VOID])
    return [
        coupons.coupon_json(
            c.id,
            (c.category.code, c.category.name),
            c.face_fen,
            c.threshold_fen,
            c.round.number,
            status,
            c.valid_until,
            c.claimed_at,
            usage_hours_text(c.tier.usage_hours, c.round.campaign.usage_hours),
            merchants=f"/api/v1/categories/{c.category.code}/merchants?code={c.round.campaign.code}",
            **({"void_reason": reasons.get(c.id, "该券已作废")} if status == Status.VOID else {}),
        )
        for c, status in held
    ]


def ensure_wallet_coupons(resident_id: int, now: datetime) -> None:
    """The wallet pay code is for the coupons of campaigns paid by it (Campaign.wallet): a resident
    who never held one is told to show a coupon's own pay code (one whose coupons are all spent
    gets the code, and the till says there is none left)."""
    held = db.session.scalar(
        sa.select(Coupon.id)
        .join(Round, Round.id == Coupon.round_id)
        .join(Campaign, Campaign.id == Round.campaign_id)
        .where(Coupon.resident_id == resident_id, Campaign.wallet.is_(True))
        .limit(1)
    )
    if held is None:
        raise WrongCampaignKind("您的消费券不用钱包付款码支付，请在“我的券”中出示要用的那张券的付款码")


def void_reasons(coupon_ids: list[int]) -> dict[int, str]:
    """Why each of these void coupons is void, as its holder should read it: the bureau revoked it
    (with the reason it recorded), or the shop took the goods back under the "return" policy."""
    if not coupon_ids:
        return {}
    reasons: dict[int, str] = {}
    for coupon_id, reason in db.session.execute(
        sa.select(Redemption.coupon_id, Redemption.refund_reason).where(
            Redemption.coupon_id.in_(coupon_ids),
            Redemption.refunded_at.is_not(None),
            Redemption.refund_policy == "return",
        )
    ):
        reasons[coupon_id] = "商户已办理退货，券随之作废" + (f"（{reason}）" if reason else "")
    for target_id, after in db.session.execute(
        sa.select(AuditEntry.target_id, AuditEntry.after).where(
            AuditEntry.action == "claim_revoke",
            AuditEntry.target_type == Coupon.__tablename__,
            AuditEntry.target_id.in_([str(i) for i in coupon_ids]),
        )
    ):
        why = (after or {}).get("reason")
        reasons[int(target_id)] = "商务局已撤销此券" + (f"：{why}" if why else "") + "。如有疑问请联系商务局。"
    return reasons


def merchants_of(snap: Snapshot, code: str) -> list[dict]:
    """The approved merchants that take the category's coupons."""
    code = category_code_or_404(snap, code)
    query = (
        sa.select(Merchant)
        .join(merchant_categories, merchant_categories.c.merchant_id == Merchant.id)
        .where(
            merchant_categories.c.category_id == snap.category_ids[code], enrolment.approved_in(Merchant.id, snap.id)
        )
        .order_by(Merchant.name)
    )
    return [{"id": m.id, "name": m.name, "address": m.address} for m in db.session.scalars(query)]


def paycode_for(resident_id: int, coupon_id: int, now: datetime) -> tuple[str, datetime]:
    """A fresh pay code for the resident's own unused coupon."""
    coupon = db.session.get(Coupon, coupon_id)
    if coupon is None or coupon.resident_id != resident_id:
        raise NotFound("找不到这张消费券")
    status = coupons.status(coupon, now)
    if status in (Status.USED, Status.VOID):
        raise CouponUsed("该消费券已使用")
    if status == Status.EXPIRED:
        raise CouponExpired()
    return paycode.issue(coupon.id, resident_id, now)
