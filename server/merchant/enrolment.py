"""A merchant's own steps: applying to take part (报名), and binding shop assistants' phones with
the one-time code the bureau issued. The bureau's side is campaign/enrolment.py.

Services validate, change and flush; the request commits once.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from ..auth import sms_codes, tokens
from ..campaign import enrolment
from ..campaign.snapshot import snapshot
from ..core.bank import check_details
from ..core.errors import BindingCodeInvalid, InvalidInput, NoCampaign, NotFound, PhoneTaken
from ..core.phone import check_phone
from ..extensions import db
from ..models import Enrolment, Staff
from . import credit_code

STAFF_PURPOSE = "staff"
APPLY_PURPOSE = "apply"


def apply(data: dict, now: datetime) -> Enrolment:
    """A merchant's application (报名) to a campaign (the default one unless named); it waits for
    the bureau's review. A merchant known by its credit code is enrolled in one more campaign."""
    if data.get("accept_commitment") is not True:
        raise InvalidInput("请阅读并同意《诚信承诺书》后再提交")
    code = data["credit_code"].strip().upper()
    if not credit_code.is_valid(code):
        raise InvalidInput("统一社会信用代码不正确，请核对18位代码")
    check_phone(data["contact_phone"])
    snap = snapshot(data.get("campaign"))
    if snap is None:
        raise NoCampaign() if data.get("campaign") is None else NotFound("没有这个进行中的活动")
    wanted = list(dict.fromkeys(data["categories"]))
    unknown = [c for c in wanted if c not in snap.category_ids]
    if not wanted or unknown:
        raise InvalidInput(f"经营品类不在本次活动范围内：{'、'.join(unknown) or '未选择'}")
    # The contact phone is proven, as a resident's or an assistant's is: no application from a
    # number nobody answers, and no flood of them from one script (the limits of POST /apply).
    sms_codes.verify(data["contact_phone"], data["sms_code"], APPLY_PURPOSE, now)
    bank_details = check_details(data.get("bank_payee"), data.get("bank_name"), data.get("bank_account"))
    location = data.get("location") or {}
    application = {
        "name": data["name"].strip(),
        "credit_code": code,
        "address": data["address"].strip(),
        "contact_name": data["contact_name"].strip(),
        "contact_phone": data["contact_phone"],
        "lat": location.get("lat"),
        "lng": location.get("lng"),
        **(bank_details or {}),
    }
    return enrolment.enrol(application, snap.id, [snap.category_ids[c] for c in wanted], now)


def bind_staff(code: str, name: str, phone: str, sms_code: str, now: datetime) -> tuple[str, Enrolment]:
    """Bind a shop assistant's phone to the merchant of a binding code; returns a staff token."""
    name = name.strip()
    if not 2 <= len(name) <= 20:
        raise InvalidInput("请输入店员姓名（2至20个字）")
    check_phone(phone)
    # The phone first: without its SMS code nothing is said of the binding code. A wrong binding
    # code then uses the SMS code up, so each guess costs a fresh code (a minute apart, ten a day).
    sms_codes.verify(phone, sms_code, STAFF_PURPOSE, now)
    try:
        binding, merchant = enrolment.binding_code_merchant(code, now)
    except BindingCodeInvalid as exc:
        raise BindingCodeInvalid(keep_changes=True) from exc
    existing = db.session.scalar(sa.select(Staff).where(Staff.phone == phone, Staff.unbound_at.is_(None)))
    if existing is not None:
        raise PhoneTaken("该手机号已绑定为商户店员")
    enrolment.mark_used(binding, now)
    staff = Staff(merchant_id=merchant.id, name=name, phone=phone, binding_code_id=binding.id, bound_at=now)
    db.session.add(staff)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except sa.exc.IntegrityError as exc:
        raise PhoneTaken("该手机号已绑定为商户店员") from exc
    return tokens.issue("staff", staff.id, bound=True), db.session.get(Enrolment, binding.enrolment_id)


def unbind_self(staff_id: int, now: datetime) -> Staff:
    """A shop assistant unbinds their own phone (leaving, or handing the phone on), by the rule the
    bureau's console unbinds others with (campaign/enrolment.unbind)."""
    staff = db.session.get(Staff, staff_id)
    if staff is None or staff.unbound_at is not None:
        raise NotFound("店员身份已失效")
    enrolment.unbind(staff, now)
    return staff


def merchant_json(focus: Enrolment) -> dict:
    """The merchant as an application or a binding answers it: the enrolment in question (its
    campaign, status and categories) and every enrolment of the merchant."""
    merchant = focus.merchant

    def part(e: Enrolment) -> dict:
        return {
            "campaign": {"code": e.campaign.code, "name": e.campaign.name},
            "status": e.status,
            "status_name": enrolment.STATUS_NAMES[e.status],
            "categories": [{"code": c.code, "name": c.name} for c in e.categories],
        }

    return {
        "id": merchant.id,
        "name": merchant.name,
        **part(focus),
        "enrolments": [part(e) for e in merchant.enrolments],
    }
