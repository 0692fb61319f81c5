"""Pay codes: short-lived signed tokens bound to a coupon and its resident, and their QR images.

A code is valid PAYCODE_TTL_S seconds (60 by default); the page asks for a fresh one before
that, so a screenshot sent around goes stale. Making one reads nothing on the draw's hot path.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import qrcode
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired

from .errors import ApiError
from .tokens import serializer


@dataclass(frozen=True)
class PayCode:
    coupon_id: int
    resident_id: int


def issue(coupon_id: int, resident_id: int, now: datetime) -> tuple[str, datetime]:
    """A fresh pay code and when it stops working."""
    token = serializer("huigou-paycode").dumps({"c": coupon_id, "r": resident_id, "n": secrets.token_hex(4)})
    return token, now + timedelta(seconds=current_app.config["PAYCODE_TTL_S"])


def read(token: str) -> PayCode:
    """The coupon a pay code names, or PAYCODE_EXPIRED for a stale, forged or garbled one."""
    try:
        data = serializer("huigou-paycode").loads(token.strip(), max_age=current_app.config["PAYCODE_TTL_S"])
        return PayCode(int(data["c"]), int(data["r"]))
    except SignatureExpired as exc:
        raise ApiError("PAYCODE_EXPIRED", "付款码已过期，请让顾客刷新付款码") from exc
    except (BadSignature, KeyError, TypeError, ValueError) as exc:
        raise ApiError("PAYCODE_EXPIRED", "无法识别的付款码，请重新扫描") from exc


def svg(token: str) -> bytes:
    """The pay code as a QR in SVG, sharp at any size (for pages that prefer vectors)."""
    from qrcode.image.svg import SvgPathImage

    image = qrcode.make(token, image_factory=SvgPathImage, error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue()


def png(token: str) -> bytes:
    """The pay code as a QR image (medium error correction survives a scratched phone screen)."""
    image = qrcode.make(token, error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
