"""Merchants' enrolment (报名) and the bureau's review: an application waits, is approved (with a
one-time binding code for its staff) or rejected, and an approved merchant may be suspended,
blacklisted or reinstated. Binding codes are kept only as keyed hashes: the bureau sees a code
once, when it is issued.

Services change and flush; the request or command commits once.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..core.errors import BindingCodeInvalid, MerchantExists, MerchantSuspended, ReviewRefused
from ..core.signing import keyed_digest
from ..extensions import db
from ..models import BindingCode, Category, Merchant

# Codes are read out over the phone and typed at a till: no 0/O, 1/I/L.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
CODE_TTL = timedelta(days=30)

STATUS_NAMES = {
    "applied": "待审核",
    "approved": "已通过",
    "rejected": "已驳回",
    "suspended": "已暂停",
    "blacklisted": "已列入黑名单",
}


def enrol(application: dict, category_ids: list[int], now: datetime) -> Merchant:
    """A merchant's application, waiting for the bureau's review; one per credit code
    (MERCHANT_EXISTS: the unique key decides a race)."""
    if db.session.scalar(sa.select(Merchant.id).where(Merchant.credit_code == application["credit_code"])):
        raise MerchantExists()
    merchant = Merchant(
        **application,
        status="applied",
        commitment_accepted_at=now,
        categories=list(db.session.scalars(sa.select(Category).where(Category.id.in_(category_ids)))),
    )
    db.session.add(merchant)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except sa.exc.IntegrityError as exc:  # the same code applied twice at once
        raise MerchantExists() from exc
    return merchant


def _hash(code: str) -> str:
    return keyed_digest(f"binding:{code}")


def issue_binding_code(merchant: Merchant, now: datetime) -> str:
    """A fresh one-time code for an approved merchant; earlier unused codes stop working."""
    if merchant.status != "approved":
        raise ReviewRefused(
            f"商户当前状态为「{STATUS_NAMES[merchant.status]}」，只有已通过审核的商户可以发放绑定码",
            subject=merchant.name,
        )
    db.session.execute(
        sa.update(BindingCode)
        .where(BindingCode.merchant_id == merchant.id, BindingCode.used_at.is_(None), BindingCode.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    db.session.add(
        BindingCode(merchant_id=merchant.id, code_hash=_hash(code), created_at=now, expires_at=now + CODE_TTL)
    )
    db.session.flush()
    return code


def approve(merchant: Merchant, now: datetime, note: str | None = None) -> str:
    """Approve an application and issue its first binding code."""
    if merchant.status not in ("applied", "rejected"):
        raise ReviewRefused(f"商户当前状态为「{STATUS_NAMES[merchant.status]}」，无需审核", subject=merchant.name)
    merchant.status, merchant.reviewed_at, merchant.review_note = "approved", now, note
    return issue_binding_code(merchant, now)


def reject(merchant: Merchant, now: datetime, reason: str) -> None:
    if merchant.status != "applied":
        raise ReviewRefused(f"商户当前状态为「{STATUS_NAMES[merchant.status]}」，不能驳回", subject=merchant.name)
    if not reason.strip():
        raise ReviewRefused("驳回须写明原因", subject=merchant.name)
    merchant.status, merchant.reviewed_at, merchant.review_note = "rejected", now, reason.strip()


def set_standing(merchant: Merchant, status: str, now: datetime, reason: str) -> None:
    """Suspend, blacklist or reinstate an approved merchant; a blacklisted one stays out."""
    allowed = {
        "suspended": ("approved",),
        "blacklisted": ("approved", "suspended", "applied", "rejected"),
        "approved": ("suspended",),
    }
    if merchant.status not in allowed[status]:
        raise ReviewRefused(
            f"商户当前状态为「{STATUS_NAMES[merchant.status]}」，不能改为「{STATUS_NAMES[status]}」",
            subject=merchant.name,
        )
    if not reason.strip():
        raise ReviewRefused("须写明原因", subject=merchant.name)
    merchant.status, merchant.reviewed_at, merchant.review_note = status, now, reason.strip()
    if status == "blacklisted":
        db.session.execute(
            sa.update(BindingCode)
            .where(BindingCode.merchant_id == merchant.id, BindingCode.used_at.is_(None))
            .values(revoked_at=now)
        )


def binding_code_merchant(code: str, now: datetime) -> tuple[BindingCode, Merchant]:
    """The live binding code and its merchant, or BINDING_CODE_INVALID; MERCHANT_SUSPENDED when the
    merchant may not take part."""
    found = db.session.scalar(sa.select(BindingCode).where(BindingCode.code_hash == _hash(code.strip().upper())))
    if found is None or found.used_at or found.revoked_at or now >= found.expires_at:
        raise BindingCodeInvalid()
    merchant = db.session.get(Merchant, found.merchant_id)
    if merchant.status != "approved":
        raise MerchantSuspended("该商户当前不能参加活动，请联系商务局")
    return found, merchant


def mark_used(binding: BindingCode, now: datetime) -> None:
    """The code binds once: of two tills using it at once, one gets it."""
    taken = db.session.execute(
        sa.update(BindingCode).where(BindingCode.id == binding.id, BindingCode.used_at.is_(None)).values(used_at=now)
    ).rowcount
    if taken != 1:
        raise BindingCodeInvalid()
