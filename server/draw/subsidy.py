"""Purchase subsidies (Jincheng's car and motorcycle coupons): a resident applies and follows
the application.

A resident who bought a vehicle applies with the invoice (amount, number, a photo), the vehicle
(kind, VIN, plate) and its registration date. The subsidy is read from the campaign's bracket
table at application (campaign/subsidy.py): an invoice amount in [from, to) of the vehicle kind's
bracket. The bureau reviews each application in the console (admin/subsidies.py).

One live application per invoice, per vehicle and per resident and vehicle class: the partial
unique indexes of `SubsidyApplication` decide races. A rejected application frees them, so a
resident may apply again with a clearer photo.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from flask import current_app
from PIL import Image, UnidentifiedImageError
from sqlalchemy.exc import IntegrityError

from ..campaign.subsidy import STATUS_NAMES, bracket_for, vehicle_class
from ..core.errors import AlreadyApplied, ImageInvalid, InvalidInput, NotEligible, NotFound, RoundClosed, RoundNotOpen
from ..core.money import yuan
from ..core.time import isoformat, zone
from ..extensions import db
from ..models import VEHICLE_KINDS, Campaign, SubsidyApplication

IMAGE_TYPES = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}
MAX_PIXELS = 40_000_000  # a phone photo is 12-50 MP; beyond this Pillow would be asked to decode a bomb
# 全电发票 20 digits; paper invoices 8-digit number with a 10-12 digit code: letters and digits.
INVOICE_RE = re.compile(r"^[0-9A-Z]{8,40}$")
VIN_RE = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")  # ISO 3779: no I, O or Q
PLATE_RE = re.compile(r"^[\u4e00-\u9fa5][A-Z][A-Z0-9]{4,6}[\u4e00-\u9fa5]?$")  # 晋E12345, 晋ED12345, 晋E1234学


@dataclass(frozen=True)
class Invoice:
    data: bytes
    image_type: str


def check_image(data: bytes) -> Invoice:
    """The uploaded invoice photo, if Pillow reads it as a JPEG, PNG or WEBP of sane size."""
    limit = current_app.config["INVOICE_IMAGE_MAX_BYTES"]
    if not data:
        raise ImageInvalid("请上传发票照片")
    if len(data) > limit:
        raise ImageInvalid(f"发票照片不能超过{limit // (1024 * 1024)}MB，请压缩后重新上传")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind = image.format
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageInvalid("发票照片像素过大，请压缩后重新上传")
                image.verify()  # the whole file is read and checked, not only the header
    except ImageInvalid:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:  # fmt: skip
        raise ImageInvalid("无法识别发票照片，请上传清晰的 JPG、PNG 或 WEBP 图片") from exc
    if kind not in IMAGE_TYPES:
        raise ImageInvalid("发票照片须为 JPG、PNG 或 WEBP 格式")
    if min(width, height) < 200:
        raise ImageInvalid("发票照片太小，看不清内容，请重新拍摄")
    return Invoice(data, IMAGE_TYPES[kind])


def subsidy_campaign(code: str | None, now: datetime) -> Campaign:
    """The active subsidy campaign of that code (or the newest), open for applications now."""
    query = sa.select(Campaign).where(Campaign.status == "active", Campaign.kind == "subsidy")
    if code:
        query = query.where(Campaign.code == code)
    campaign = db.session.scalar(query.order_by(Campaign.id.desc()).limit(1))
    if campaign is None:
        raise NotFound("没有正在受理的购车补贴活动")
    if not any(r.opens_at <= now < r.closes_at for r in campaign.rounds):
        upcoming = [r for r in campaign.rounds if r.opens_at > now]
        if upcoming:
            when = upcoming[0].opens_at.astimezone(zone()).strftime("%Y年%-m月%-d日 %H:%M")
            raise RoundNotOpen(f"购车补贴将于{when}开始受理")
        raise RoundClosed("本期购车补贴已停止受理")
    return campaign


def apply(
    resident_id: int,
    campaign_code: str | None,
    *,
    vehicle_kind: str,
    invoice_no: str,
    invoice_fen: int,
    vin: str,
    plate: str,
    registered_on: date,
    image: bytes,
    now: datetime,
) -> SubsidyApplication:
    """Record an application, with the subsidy its bracket gives, or refuse with the reason."""
    campaign = subsidy_campaign(campaign_code, now)
    if vehicle_kind not in VEHICLE_KINDS:
        raise InvalidInput("车辆类型应为新能源汽车、燃油汽车、二手车或摩托车")
    invoice_no, vin, plate = (re.sub(r"\s", "", v).upper() for v in (invoice_no, vin, plate))
    if not INVOICE_RE.match(invoice_no):
        raise InvalidInput("发票号码应为8至40位数字或字母，请按发票上的号码填写")
    if not VIN_RE.match(vin):
        raise InvalidInput("车辆识别代号（VIN）应为17位，不含字母I、O、Q，请按行驶证填写")
    if not PLATE_RE.match(plate):
        raise InvalidInput("号牌号码格式不正确，例如 晋E12345")
    local_today = now.astimezone(zone()).date()
    if registered_on > local_today:
        raise InvalidInput("上户登记日期不能晚于今天")
    starts = min(r.opens_at for r in campaign.rounds).astimezone(zone()).date()
    if registered_on < starts:
        raise NotEligible(f"本活动补贴{starts.year}年{starts.month}月{starts.day}日（含）以后上户登记的车辆")
    subsidy = bracket_for(campaign.subsidy_brackets, vehicle_kind, invoice_fen)
    if subsidy is None:
        kinds = [b for b in campaign.subsidy_brackets or () if b["vehicle"] == vehicle_kind]
        name = VEHICLE_KINDS[vehicle_kind]
        if not kinds:
            raise NotEligible(f"本活动不补贴{name}")
        least = min(b["from_fen"] for b in kinds)
        raise NotEligible(
            f"{name}发票金额须在{yuan(least, grouped=True)}元（含）以上才能申请补贴，"
            f"本次发票金额{yuan(invoice_fen, grouped=True)}元",
        )
    invoice = check_image(image)
    application = SubsidyApplication(
        campaign_id=campaign.id,
        resident_id=resident_id,
        vehicle_kind=vehicle_kind,
        vehicle_class=vehicle_class(vehicle_kind),
        invoice_no=invoice_no,
        invoice_fen=invoice_fen,
        vin=vin,
        plate=plate,
        registered_on=registered_on,
        image=invoice.data,
        image_type=invoice.image_type,
        subsidy_fen=subsidy,
        status="pending",
        created_at=now,
    )
    try:
        with db.session.begin_nested():  # a refusal takes the application out of the session again
            db.session.add(application)
            db.session.flush()
    except IntegrityError as exc:
        raise _already(campaign.id, resident_id, invoice_no, vin, vehicle_class(vehicle_kind)) from exc
    return application


def _already(campaign_id: int, resident_id: int, invoice_no: str, vin: str, klass: str) -> AlreadyApplied:
    """Which rule a refused application ran into, said without naming anyone else's details."""
    live = sa.select(SubsidyApplication.id).where(
        SubsidyApplication.campaign_id == campaign_id, SubsidyApplication.status != "rejected"
    )
    if db.session.scalar(live.where(SubsidyApplication.invoice_no == invoice_no)):
        return AlreadyApplied("这张发票已申请过补贴，每张发票只能申请一次")
    if db.session.scalar(live.where(SubsidyApplication.vin == vin)):
        return AlreadyApplied("这辆车已申请过补贴，每辆车只能补贴一次")
    name = "摩托车" if klass == "motorcycle" else "汽车"
    return AlreadyApplied(f"您已申请过{name}补贴，每人限补贴一次")


def application_json(application: SubsidyApplication) -> dict:
    return {
        "id": application.id,
        "vehicle_kind": application.vehicle_kind,
        "vehicle_name": VEHICLE_KINDS[application.vehicle_kind],
        "invoice_no": application.invoice_no,
        "invoice_fen": application.invoice_fen,
        "vin": application.vin,
        "plate": application.plate,
        "registered_on": application.registered_on.isoformat(),
        "subsidy_fen": application.subsidy_fen,
        "status": application.status,
        "status_name": STATUS_NAMES[application.status],
        "review_note": application.review_note,
        "created_at": isoformat(application.created_at),
        "reviewed_at": isoformat(application.reviewed_at),
    }


def mine(resident_id: int) -> list[SubsidyApplication]:
    return list(
        db.session.scalars(
            sa.select(SubsidyApplication)
            .where(SubsidyApplication.resident_id == resident_id)
            .order_by(SubsidyApplication.created_at.desc(), SubsidyApplication.id.desc())
        )
    )
