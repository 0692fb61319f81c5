"""Pay codes: short-lived signed tokens bound to a coupon and its resident, and their QR images.

A code is valid PAYCODE_TTL_S seconds (60 by default); the page asks for a fresh one before
that, so a screenshot sent around goes stale. Making one reads nothing on the draw's hot path.

Beside the QR's token a coupon has a short code a shop assistant can type when the camera fails:
the coupon's number and eight digits, an HMAC of coupon, holder and the current PAYCODE_TTL_S
window under the app's secret ("1234-05817263"). It is accepted in its window and the next one,
and guessing it is one chance in 10^8 per coupon and window. A wallet pay code has one too: "W",
the resident's number and eight digits ("W4711-30592817"); it pays once in its window (its nonce
is the window), so a resident paying twice within a minute by hand waits for the next code.
"""

from __future__ import annotations

import io
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import qrcode
import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired

from ..core.errors import PaycodeExpired
from ..core.signing import keyed_digest, serializer
from ..core.time import utcnow
from ..extensions import db
from ..models import Coupon

SHORT = re.compile(r"^([Ww]?)(\d{1,12})-(\d{8})$")


WALLET = 0  # the coupon a wallet pay code names: none, the till's spend chooses one


@dataclass(frozen=True)
class PayCode:
    coupon_id: int  # WALLET for a wallet pay code
    resident_id: int
    nonce: str | None = None  # the QR token's own random part: a wallet code pays once

    @property
    def wallet(self) -> bool:
        return self.coupon_id == WALLET


def issue(coupon_id: int, resident_id: int, now: datetime) -> tuple[str, datetime]:
    """A fresh pay code and when it stops working."""
    nonce = secrets.token_hex(8)  # 64 bits: a wallet code pays once, and a fresh one is never taken for it
    token = serializer("huigou-paycode").dumps({"c": coupon_id, "r": resident_id, "n": nonce})
    return token, now + timedelta(seconds=current_app.config["PAYCODE_TTL_S"])


def issue_wallet(resident_id: int, now: datetime) -> tuple[str, datetime]:
    """A wallet pay code (钱包付款码, Youhao): names the resident, not a coupon; QR only. It pays
    once (its nonce is kept with the redemption), so a photo of it cannot empty the wallet."""
    return issue(WALLET, resident_id, now)


def _window(now: datetime) -> int:
    return int(now.timestamp()) // current_app.config["PAYCODE_TTL_S"]


def _digits(coupon_id: int, resident_id: int, window: int) -> str:
    return f"{int(keyed_digest(f'paycode-short:{coupon_id}:{resident_id}:{window}')[:15], 16) % 10**8:08d}"


def short_code(coupon_id: int, resident_id: int, now: datetime) -> str:
    """The code to type by hand: the coupon's number and eight digits for this window."""
    return f"{coupon_id}-{_digits(coupon_id, resident_id, _window(now))}"


def wallet_short_code(resident_id: int, now: datetime) -> str:
    """The wallet pay code to type by hand: "W", the resident's number and eight digits."""
    return f"W{resident_id}-{_digits(WALLET, resident_id, _window(now))}"


def _read_short(found: re.Match, now: datetime) -> PayCode:
    wallet, number, digits = found.group(1), int(found.group(2)), found.group(3)
    window = _window(now)
    if wallet:
        for w in (window, window - 1):
            if secrets.compare_digest(digits, _digits(WALLET, number, w)):
                return PayCode(WALLET, number, f"w{w}")  # pays once in its window
        raise PaycodeExpired("券码不正确或已过期，请让顾客刷新付款码后重新输入")
    resident_id = db.session.scalar(sa.select(Coupon.resident_id).where(Coupon.id == number))
    if resident_id is not None and any(
        secrets.compare_digest(digits, _digits(number, resident_id, w)) for w in (window, window - 1)
    ):
        return PayCode(number, resident_id)
    raise PaycodeExpired("券码不正确或已过期，请让顾客刷新付款码后重新输入")


def _typed_short(token: str) -> re.Match | None:
    """A short code as typed (spaces allowed), or None for a QR token."""
    return SHORT.match(re.sub(r"\s", "", token))


def read(token: str, now: datetime | None = None) -> PayCode:
    """The coupon a pay code names, or PAYCODE_EXPIRED for a stale, forged or garbled one."""
    found = _typed_short(token)
    if found:
        return _read_short(found, now or utcnow())
    try:
        data = serializer("huigou-paycode").loads(token.strip(), max_age=current_app.config["PAYCODE_TTL_S"])
        return PayCode(int(data["c"]), int(data["r"]), str(data.get("n", ""))[:16] or None)
    except SignatureExpired as exc:
        raise PaycodeExpired("付款码已过期，请让顾客刷新付款码") from exc
    except (BadSignature, KeyError, TypeError, ValueError) as exc:
        raise PaycodeExpired("无法识别的付款码，请重新扫描") from exc


def _unaged(token: str) -> dict | None:
    """A QR token's content with its signature checked but not its age (a retry's code may be
    stale by then); None for a typed short code, a garbled or a forged token."""
    if _typed_short(token):
        return None
    try:
        data = serializer("huigou-paycode").loads(token.strip())
        return {"c": int(data["c"]), "r": int(data["r"])}
    except (BadSignature, KeyError, TypeError, ValueError):
        return None


def named_coupon(token: str) -> int | None:
    """The coupon a pay code names even when it is stale (its signature checked, not its age): a
    till's retry is matched to its first attempt by it. None for a garbled or forged code."""
    found = _typed_short(token)
    if found:
        return None if found.group(1) else int(found.group(2))
    data = _unaged(token)
    return data["c"] if data else None


def named_wallet(token: str) -> int | None:
    """The resident of a wallet pay code even when it is stale, for matching a till's retry;
    None for any other code."""
    found = _typed_short(token)
    if found:
        return int(found.group(2)) if found.group(1) else None
    data = _unaged(token)
    return data["r"] if data and data["c"] == WALLET else None


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
