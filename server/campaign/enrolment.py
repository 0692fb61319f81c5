"""Merchants' enrolment (报名) and the bureau's review: a merchant is one legal entity (credit code)
with an enrolment per campaign; an application waits, is approved (with a one-time binding code
for its staff) or rejected, and an approved enrolment may be suspended, blacklisted or reinstated.
Blacklisting (失信名单) is of the entity: every enrolment of the merchant, and any it asks for later.
Binding codes are kept only as keyed hashes: the bureau sees a code once, when it is issued.

Services change and flush; the request or command commits once.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..core.errors import BindingCodeInvalid, Forbidden, MerchantExists, MerchantSuspended, ReviewRefused
from ..core.signing import keyed_digest
from ..extensions import db
from ..models import BindingCode, Category, Enrolment, Merchant, Staff
from ..pool import settlement

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


def enrol(application: dict, campaign_id: int, category_ids: list[int], now: datetime) -> Enrolment:
    """A merchant's application to a campaign, waiting for the bureau's review. A credit code seen
    before is the same merchant, enrolled in one more campaign; the same campaign twice is
    MERCHANT_EXISTS (the unique keys decide a race)."""
    merchant = db.session.scalar(sa.select(Merchant).where(Merchant.credit_code == application["credit_code"]))
    if merchant is not None:
        if any(e.campaign_id == campaign_id for e in merchant.enrolments):
            raise MerchantExists()
        if any(e.status == "blacklisted" for e in merchant.enrolments):
            raise Forbidden("该商户已被列入黑名单，不能报名参加活动")
        if merchant.bank_account is None and application.get("bank_account"):
            # A known merchant's account is filled in once here; changing it is the bureau's
            # (`flask settlement bank`): an application cannot redirect a merchant's money.
            for name in ("bank_payee", "bank_name", "bank_account"):
                setattr(merchant, name, application[name])
    else:
        merchant = Merchant(**application)
        db.session.add(merchant)
    categories = db.session.scalars(sa.select(Category).where(Category.id.in_(category_ids)))
    merchant.categories.extend(c for c in categories if c not in merchant.categories)
    enrolment = Enrolment(
        merchant=merchant, campaign_id=campaign_id, status="applied", commitment_accepted_at=now, created_at=now
    )
    db.session.add(enrolment)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except sa.exc.IntegrityError as exc:  # the same code applied twice at once
        raise MerchantExists() from exc
    return enrolment


def approved_in(merchant_id, campaign_id):
    """SQL: the merchant is approved in the campaign (both as columns or values)."""
    return (
        sa.exists()
        .where(Enrolment.merchant_id == merchant_id, Enrolment.campaign_id == campaign_id)
        .where(Enrolment.status == "approved")
    )


def label(enrolment: Enrolment) -> str:
    """How the console and the command line name an enrolment: the merchant, and the campaign."""
    return f"{enrolment.merchant.name}（{enrolment.campaign.name}）"


def _hash(code: str) -> str:
    return keyed_digest(f"binding:{code}")


def issue_binding_code(enrolment: Enrolment, now: datetime) -> str:
    """A fresh one-time code for an approved enrolment; its earlier unused codes stop working."""
    if enrolment.status != "approved":
        raise ReviewRefused(
            f"报名当前状态为「{STATUS_NAMES[enrolment.status]}」，只有已通过审核的商户可以发放绑定码",
            subject=label(enrolment),
        )
    db.session.execute(
        sa.update(BindingCode)
        .where(
            BindingCode.enrolment_id == enrolment.id, BindingCode.used_at.is_(None), BindingCode.revoked_at.is_(None)
        )
        .values(revoked_at=now)
    )
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    db.session.add(
        BindingCode(
            merchant_id=enrolment.merchant_id,
            enrolment_id=enrolment.id,
            code_hash=_hash(code),
            created_at=now,
            expires_at=now + CODE_TTL,
        )
    )
    db.session.flush()
    return code


def approve(enrolment: Enrolment, now: datetime, note: str | None = None) -> str:
    """Approve an application and issue its first binding code."""
    if enrolment.status not in ("applied", "rejected"):
        raise ReviewRefused(f"报名当前状态为「{STATUS_NAMES[enrolment.status]}」，无需审核", subject=label(enrolment))
    enrolment.status, enrolment.reviewed_at, enrolment.review_note = "approved", now, note
    return issue_binding_code(enrolment, now)


def reject(enrolment: Enrolment, now: datetime, reason: str) -> None:
    if enrolment.status != "applied":
        raise ReviewRefused(f"报名当前状态为「{STATUS_NAMES[enrolment.status]}」，不能驳回", subject=label(enrolment))
    if not reason.strip():
        raise ReviewRefused("驳回须写明原因", subject=label(enrolment))
    enrolment.status, enrolment.reviewed_at, enrolment.review_note = "rejected", now, reason.strip()


def set_standing(enrolment: Enrolment, status: str, now: datetime, reason: str, *, lifting: bool = False) -> None:
    """Suspend, blacklist or reinstate an enrolment. A blacklisted merchant stays out: all its
    enrolments are blacklisted, and its unused binding codes stop working. Only `lifting` (the
    bureau reversing a blacklisting, with its reason) takes an enrolment off the blacklist, back
    to approved: this one enrolment (the codes revoked stay revoked; the bureau issues a new one)."""
    allowed = {
        "suspended": ("approved",),
        "blacklisted": ("approved", "suspended", "applied", "rejected"),
        "approved": ("blacklisted",) if lifting else ("suspended",),
    }
    if enrolment.status not in allowed[status]:
        raise ReviewRefused(
            f"报名当前状态为「{STATUS_NAMES[enrolment.status]}」，不能改为「{STATUS_NAMES[status]}」",
            subject=label(enrolment),
        )
    if not reason.strip():
        raise ReviewRefused("须写明原因", subject=label(enrolment))
    affected = enrolment.merchant.enrolments if status == "blacklisted" else [enrolment]
    for each in affected:
        each.status, each.reviewed_at, each.review_note = status, now, reason.strip()
    db.session.flush()
    settlement.standing_changed(enrolment.merchant_id, [each.campaign_id for each in affected], now, None)
    if status == "blacklisted":
        db.session.execute(
            sa.update(BindingCode)
            .where(BindingCode.merchant_id == enrolment.merchant_id, BindingCode.used_at.is_(None))
            .values(revoked_at=now)
        )


def binding_code_merchant(code: str, now: datetime) -> tuple[BindingCode, Merchant]:
    """The live binding code and its merchant, or BINDING_CODE_INVALID; MERCHANT_SUSPENDED when the
    enrolment it was issued for may not take part."""
    found = db.session.scalar(sa.select(BindingCode).where(BindingCode.code_hash == _hash(code.strip().upper())))
    if found is None or found.used_at or found.revoked_at or now >= found.expires_at:
        raise BindingCodeInvalid()
    if db.session.get(Enrolment, found.enrolment_id).status != "approved":
        raise MerchantSuspended("该商户当前不能参加活动，请联系商务局")
    return found, db.session.get(Merchant, found.merchant_id)


def unbind(staff: Staff, now: datetime) -> None:
    """A shop assistant unbound (a phone lost, a person gone, or handed on): their token stops
    working at once (the till loads only bound staff), their redemptions stay theirs, and their
    phone may bind again with a new binding code. The bureau's console and the till both call it."""
    if staff.unbound_at is not None:
        raise ReviewRefused("该店员已解绑", subject=staff.name)
    staff.unbound_at = now
    db.session.flush()


def mark_used(binding: BindingCode, now: datetime) -> None:
    """The code binds once: of two tills using it at once, one gets it."""
    taken = db.session.execute(
        sa.update(BindingCode).where(BindingCode.id == binding.id, BindingCode.used_at.is_(None)).values(used_at=now)
    ).rowcount
    if taken != 1:
        raise BindingCodeInvalid()
