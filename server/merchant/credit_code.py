"""Unified social credit codes (统一社会信用代码, GB 32100-2015): check digits and validation."""

from __future__ import annotations

import re

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)  # GB 11714 organisation code, characters 9-17
PATTERN = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")


def check_char(first17: str) -> str:
    total = sum(CHARSET.index(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    return CHARSET[(31 - total % 31) % 31]


def org_check_char(body8: str) -> str:
    total = sum(int(c, 36) * w for c, w in zip(body8, ORG_WEIGHTS, strict=True))
    value = 11 - total % 11
    return "X" if value == 10 else "0" if value == 11 else str(value)


def is_valid(code: str) -> bool:
    code = (code or "").strip().upper()
    return bool(PATTERN.match(code)) and code[17] == check_char(code[:17])


def make(division: str, org_body: str, kind: str = "91") -> str:
    """A well-formed code from an administrative division and an 8-character organisation body."""
    first17 = kind + division + org_body + org_check_char(org_body)
    return first17 + check_char(first17)
