"""Resident identity cards (居民身份证, GB 11643-1999): checked where typed, never kept in clear.

A campaign may ask for the ID card beside the phone (Youhao: 一个用户 = 手机号 + 身份证 + 设备).
The number is checked (a real birth date, the ISO 7064 MOD 11-2 check character), then kept only as
a keyed digest, which the unique index compares so that one card binds one resident, and in a
masked form for people to recognise (110***********123X). Nothing can show or export it whole.
"""

from __future__ import annotations

import re
from datetime import date

from .errors import InvalidInput
from .signing import keyed_digest

ID_RE = re.compile(r"^\d{17}[\dX]$")
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK = "10X98765432"  # the check character for each remainder of the weighted sum mod 11


def check_character(first17: str) -> str:
    return CHECK[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def check_id_number(text: str | None) -> str:
    """The number, upper-cased, if it is a valid 18-character ID number; else a refusal."""
    number = (text or "").strip().upper()
    if not ID_RE.match(number):
        raise InvalidInput("请输入18位身份证号码（最后一位可以是X）")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        born = None
    if born is None or born.year < 1900 or born > date.today():
        raise InvalidInput("身份证号码中的出生日期有误，请核对")
    if check_character(number[:17]) != number[17]:
        raise InvalidInput("身份证号码校验不通过，请核对后重新输入")
    return number


def id_digest(number: str) -> str:
    """The keyed digest the resident's card is kept and compared as."""
    return keyed_digest(f"id-card:{number}")


def mask_id(number: str) -> str:
    """110***********123X: the region's first three digits and the last four."""
    return f"{number[:3]}{'*' * 11}{number[-4:]}"
