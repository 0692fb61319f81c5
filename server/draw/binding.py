"""Who the resident is: the mini-program's WeChat login, and binding name and phone by SMS code.

Services validate, change and flush; the request commits once.
"""

from __future__ import annotations

import re
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..adapters import wechat
from ..auth import sms_codes, tokens
from ..core.errors import AlreadyBound, InvalidInput, NotBound, PhoneTaken, Unauthorized
from ..core.phone import check_phone, mask_phone
from ..extensions import db
from ..models import Resident

NAME_RE = re.compile(r"^[\u4e00-\u9fa5·A-Za-z .]{2,20}$")
BIND_PURPOSE = "bind"


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
        raise InvalidInput("请输入真实姓名（2至20个字）")
    check_phone(phone)
    sms_codes.verify(phone, code, BIND_PURPOSE, now)
    owner = db.session.scalar(sa.select(Resident).where(Resident.phone == phone))
    if bearer is None:
        resident = owner or Resident()
    else:
        resident = db.session.get(Resident, bearer.id)
        if resident is None:
            raise Unauthorized("登录已失效，请重新登录")
        if owner is not None and owner.id != resident.id:
            raise PhoneTaken()
        if resident.phone is not None and resident.phone != phone:
            raise AlreadyBound(f"您已绑定手机号 {mask_phone(resident.phone)}")
    if resident.phone is None:
        resident.name, resident.phone, resident.bound_at = name, phone, now
        resident.bound_address, resident.bound_device = address, (device or "")[:64] or None
    db.session.add(resident)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:  # another resident took the phone in the meantime
        raise PhoneTaken() from exc
    return resident


def resident_json(resident: Resident) -> dict:
    return {"id": resident.id, "name": resident.name, "phone_masked": mask_phone(resident.phone)}


def ensure_bound(bearer: tokens.Bearer) -> None:
    """A resident takes part only once bound: the token says so, or the database does."""
    if bearer.bound:
        return
    phone = db.session.scalar(sa.select(Resident.phone).where(Resident.id == bearer.id))
    if phone is None:
        raise NotBound()
