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
from ..core.errors import (
    AlreadyBound,
    AlreadyIdentified,
    IdRequired,
    IdTaken,
    InvalidInput,
    NotBound,
    PhoneTaken,
    Unauthorized,
)
from ..core.idcard import check_id_number, id_digest, mask_id
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
    return token_for(resident), bound


def token_for(resident: Resident) -> str:
    """A resident's token, saying whether it is bound and gave an ID card (checked without a read)."""
    bound, identified = resident.phone is not None, resident.id_hash is not None
    return tokens.issue("resident", resident.id, bound=bound, identified=identified)


def bind(
    bearer: tokens.Bearer | None,
    name: str,
    phone: str,
    code: str,
    now: datetime,
    address: str | None = None,
    device: str | None = None,
    id_number: str | None = None,
) -> Resident:
    """Bind name + phone to the resident, proven by the SMS code, and the ID card if given.

    With a WeChat token the phone is bound to that resident; without one (the H5 page) the
    phone's resident is found or created, so that a resident can sign in again on a new device.
    """
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise InvalidInput("请输入真实姓名（2至20个字）")
    check_phone(phone)
    number = check_id_number(id_number) if id_number else None
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
    if number is not None:
        _give_id_card(resident, number)
    db.session.add(resident)
    _flush(resident)
    return resident


def identify(bearer: tokens.Bearer, name: str, id_number: str) -> Resident:
    """A bound resident gives name and ID card (a campaign asks for it): one card, one resident,
    given once; the name becomes the card's."""
    ensure_bound(bearer)
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise InvalidInput("请输入身份证上的姓名（2至20个字）")
    number = check_id_number(id_number)
    resident = db.session.get(Resident, bearer.id)
    if resident is None:
        raise Unauthorized("登录已失效，请重新登录")
    _give_id_card(resident, number)
    resident.name = name
    _flush(resident)
    return resident


def _give_id_card(resident: Resident, number: str) -> None:
    digest = id_digest(number)
    if resident.id_hash is not None and resident.id_hash != digest:
        raise AlreadyIdentified(f"您已实名认证（身份证 {resident.id_masked}），不能更换")
    owner = db.session.scalar(sa.select(Resident.id).where(Resident.id_hash == digest))
    if owner is not None and owner != resident.id:
        raise IdTaken()
    resident.id_hash, resident.id_masked = digest, mask_id(number)


def _flush(resident: Resident) -> None:
    """Write the binding; the unique indexes decide a race for the same phone or ID card."""
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:  # another resident took the phone or the card in the meantime
        if "id_hash" in str(exc.orig):
            raise IdTaken() from exc
        raise PhoneTaken() from exc


def resident_json(resident: Resident) -> dict:
    return {
        "id": resident.id,
        "name": resident.name,
        "phone_masked": mask_phone(resident.phone),
        "id_card_masked": resident.id_masked,
    }


def ensure_bound(bearer: tokens.Bearer) -> None:
    """A resident takes part only once bound: the token says so, or the database does."""
    if bearer.bound:
        return
    phone = db.session.scalar(sa.select(Resident.phone).where(Resident.id == bearer.id))
    if phone is None:
        raise NotBound()


def ensure_identified(bearer: tokens.Bearer, identity: str) -> None:
    """A campaign that asks for the ID card (identity "id_card") takes residents who gave one:
    the token says so, or the database does."""
    if identity != "id_card" or bearer.identified:
        return
    given = db.session.scalar(sa.select(Resident.id_hash).where(Resident.id == bearer.id))
    if given is None:
        raise IdRequired()
