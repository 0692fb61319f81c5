"""A resident's coupons: the list by status, the pay code of one, and where it can be spent."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm

from ..auth import paycode
from ..campaign import enrolment
from ..campaign.rules import usage_hours_text
from ..campaign.snapshot import Snapshot
from ..core.errors import CouponExpired, CouponUsed, NotFound
from ..extensions import db
from ..models import Coupon, Merchant, Round, merchant_categories
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
    if wanted in (Status.USED, Status.UNUSED, Status.EXPIRED):
        query = query.where(coupons.status_clause(wanted, now))
    return [
        coupons.coupon_json(
            c.id,
            (c.category.code, c.category.name),
            c.face_fen,
            c.threshold_fen,
            c.round.number,
            coupons.status(c, now),
            c.valid_until,
            c.claimed_at,
            usage_hours_text(c.tier.usage_hours, c.round.campaign.usage_hours),
            merchants=f"/api/v1/categories/{c.category.code}/merchants?code={c.round.campaign.code}",
        )
        for c in db.session.scalars(query).unique()
    ]


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
