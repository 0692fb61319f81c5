"""Merchant rules: enrolment, the bureau's review, and one-time binding codes.

Services validate, change and flush; the request or command commits once.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa

from .. import campaigns, credit_code, sms, tokens
from ..errors import ApiError
from ..extensions import db
from ..models import BindingCode, Category, Merchant, Staff

# Codes are read out over the phone and typed at a till: no 0/O, 1/I/L.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
CODE_TTL = timedelta(days=30)


class ReviewError(ValueError):
    """A review the merchant's state does not allow (told to the operator in Chinese)."""


def apply(data: dict, now: datetime) -> Merchant:
    """A merchant's application (报名); it waits for the bureau's review."""
    if data.get("accept_commitment") is not True:
        raise ApiError("INVALID_INPUT", "请阅读并同意《诚信承诺书》后再提交")
    code = data["credit_code"].strip().upper()
    if not credit_code.is_valid(code):
        raise ApiError("INVALID_INPUT", "统一社会信用代码不正确，请核对18位代码")
    sms.check_phone(data["contact_phone"])
    snap = campaigns.snapshot(data.get("campaign"))
    if snap is None:
        raise ApiError("NO_CAMPAIGN") if data.get("campaign") is None else ApiError("NOT_FOUND", "没有这个进行中的活动")
    wanted = list(dict.fromkeys(data["categories"]))
    unknown = [c for c in wanted if c not in snap.category_ids]
    if not wanted or unknown:
        raise ApiError("INVALID_INPUT", f"经营品类不在本次活动范围内：{'、'.join(unknown) or '未选择'}")
    if db.session.scalar(sa.select(Merchant.id).where(Merchant.credit_code == code)):
        raise ApiError("MERCHANT_EXISTS")
    location = data.get("location") or {}
    merchant = Merchant(
        name=data["name"].strip(),
        credit_code=code,
        address=data["address"].strip(),
        contact_name=data["contact_name"].strip(),
        contact_phone=data["contact_phone"],
        lat=location.get("lat"),
        lng=location.get("lng"),
        status="applied",
        commitment_accepted_at=now,
        categories=list(
            db.session.scalars(sa.select(Category).where(Category.id.in_(snap.category_ids[c] for c in wanted)))
        ),
    )
    db.session.add(merchant)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except sa.exc.IntegrityError as exc:  # the same code applied twice at once
        raise ApiError("MERCHANT_EXISTS") from exc
    return merchant


def _hash(code: str) -> str:
    return tokens.keyed_digest(f"binding:{code}")


def issue_binding_code(merchant: Merchant, now: datetime) -> str:
    """A fresh one-time code for an approved merchant; earlier unused codes stop working."""
    if merchant.status != "approved":
        raise ReviewError(f"商户当前状态为「{STATUS_NAMES[merchant.status]}」，只有已通过审核的商户可以发放绑定码")
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
        raise ReviewError(f"商户当前状态为「{STATUS_NAMES[merchant.status]}」，无需审核")
    merchant.status, merchant.reviewed_at, merchant.review_note = "approved", now, note
    return issue_binding_code(merchant, now)


def reject(merchant: Merchant, now: datetime, reason: str) -> None:
    if merchant.status != "applied":
        raise ReviewError(f"商户当前状态为「{STATUS_NAMES[merchant.status]}」，不能驳回")
    if not reason.strip():
        raise ReviewError("驳回须写明原因")
    merchant.status, merchant.reviewed_at, merchant.review_note = "rejected", now, reason.strip()


def set_standing(merchant: Merchant, status: str, now: datetime, reason: str) -> None:
    """Suspend, blacklist or reinstate an approved merchant; a blacklisted one stays out."""
    allowed = {
        "suspended": ("approved",),
        "blacklisted": ("approved", "suspended", "applied", "rejected"),
        "approved": ("suspended",),
    }
    if merchant.status not in allowed[status]:
        raise ReviewError(f"商户当前状态为「{STATUS_NAMES[merchant.status]}」，不能改为「{STATUS_NAMES[status]}」")
    if not reason.strip():
        raise ReviewError("须写明原因")
    merchant.status, merchant.reviewed_at, merchant.review_note = status, now, reason.strip()
    if status == "blacklisted":
        db.session.execute(
            sa.update(BindingCode)
            .where(BindingCode.merchant_id == merchant.id, BindingCode.used_at.is_(None))
            .values(revoked_at=now)
        )


def binding_code_merchant(code: str, now: datetime) -> tuple[BindingCode, Merchant]:
    """The live binding code and its merchant, or BINDING_CODE_INVALID."""
    found = db.session.scalar(sa.select(BindingCode).where(BindingCode.code_hash == _hash(code.strip().upper())))
    if found is None or found.used_at or found.revoked_at or now >= found.expires_at:
        raise ApiError("BINDING_CODE_INVALID")
    merchant = db.session.get(Merchant, found.merchant_id)
    if merchant.status != "approved":
        raise ApiError("MERCHANT_SUSPENDED", "该商户当前不能参加活动，请联系商务局")
    return found, merchant


STAFF_PURPOSE = "staff"


def bind_staff(code: str, name: str, phone: str, sms_code: str, now: datetime) -> tuple[str, Merchant]:
    """Bind a shop assistant's phone to the merchant of a binding code; returns a staff token."""
    name = name.strip()
    if not 2 <= len(name) <= 20:
        raise ApiError("INVALID_INPUT", "请输入店员姓名（2至20个字）")
    sms.check_phone(phone)
    binding, merchant = binding_code_merchant(code, now)
    sms.verify_code(phone, sms_code, STAFF_PURPOSE, now)
    existing = db.session.scalar(sa.select(Staff).where(Staff.phone == phone))
    if existing is not None:
        raise ApiError("PHONE_TAKEN", "该手机号已绑定为商户店员")
    # The code is single-use: of two tills using it at once, one binds.
    taken = db.session.execute(
        sa.update(BindingCode).where(BindingCode.id == binding.id, BindingCode.used_at.is_(None)).values(used_at=now)
    ).rowcount
    if taken != 1:
        raise ApiError("BINDING_CODE_INVALID")
    staff = Staff(merchant_id=merchant.id, name=name, phone=phone, binding_code_id=binding.id, bound_at=now)
    db.session.add(staff)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except sa.exc.IntegrityError as exc:
        raise ApiError("PHONE_TAKEN", "该手机号已绑定为商户店员") from exc
    return tokens.issue("staff", staff.id, bound=True), merchant


STATUS_NAMES = {
    "applied": "待审核",
    "approved": "已通过",
    "rejected": "已驳回",
    "suspended": "已暂停",
    "blacklisted": "已列入黑名单",
}


def merchant_json(merchant: Merchant) -> dict:
    return {
        "id": merchant.id,
        "name": merchant.name,
        "status": merchant.status,
        "status_name": STATUS_NAMES[merchant.status],
        "categories": [{"code": c.code, "name": c.name} for c in merchant.categories],
    }
