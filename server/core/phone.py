"""Mainland mobile numbers: checked where typed, masked where shown to those who need not see them."""

from __future__ import annotations

import re

from .errors import InvalidInput

PHONE_RE = re.compile(r"^1[3-9]\d{9}$")


def check_phone(phone: str) -> str:
    if not PHONE_RE.match(phone or ""):
        raise InvalidInput("请输入正确的11位手机号")
    return phone


def mask_phone(phone: str | None) -> str | None:
    """138****5678; a number too short to mask is shown as it is."""
    if phone is None:
        return None
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 7 else phone
