"""Bank accounts a merchant's settlement is paid to: the account number checked as far as it can
be without asking the bank, and masked for the roles that need not read it whole.

A company's account (对公账户) is 8 to 30 digits in a form each bank chooses, with no check digit
anyone outside the bank can verify; a UnionPay card number (银联卡, 16 to 19 digits beginning 62)
ends in a Luhn check digit, so a mistyped digit there is caught before money is sent.
"""

from __future__ import annotations

import re

from .errors import InvalidInput

DIGITS = re.compile(r"^\d{8,30}$")


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) check over a string of digits, its check digit last."""
    total = 0
    for position, digit in enumerate(reversed(number)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def with_check_digit(body: str) -> str:
    """A card number: its body and the Luhn check digit that makes it valid (for demo data)."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def is_card(number: str) -> bool:
    """A UnionPay card number, which carries a Luhn check digit."""
    return number.startswith("62") and 16 <= len(number) <= 19


def normal_account(number: str) -> str:
    """The account number as kept: digits only, the spaces and hyphens people type removed."""
    return re.sub(r"[\s-]", "", number or "")


def check_account(number: str) -> str:
    """The account number, normalised, or InvalidInput with a sentence saying what is wrong."""
    number = normal_account(number)
    if not DIGITS.match(number):
        raise InvalidInput("银行账号应为8至30位数字，请核对开户许可证或银行卡")
    if is_card(number) and not luhn_valid(number):
        raise InvalidInput("银行卡号校验位不正确，请逐位核对卡号")
    return number


def check_details(payee: str | None, bank: str | None, account: str | None) -> dict | None:
    """A merchant's bank details (户名, 开户行, 账号) checked together: all three or none."""
    given = [(v or "").strip() for v in (payee, bank, account)]
    if not any(given):
        return None
    if not all(given):
        raise InvalidInput("收款账户须同时填写户名、开户银行和账号")
    if not 2 <= len(given[0]) <= 100 or not 2 <= len(given[1]) <= 100:
        raise InvalidInput("户名和开户银行应为2至100个字")
    return {"bank_payee": given[0], "bank_name": given[1], "bank_account": check_account(given[2])}


def mask_account(number: str | None) -> str:
    """An account number as an auditor sees it: the first four and last four digits."""
    if not number:
        return ""
    return number[:4] + "*" * max(len(number) - 8, 0) + number[-4:] if len(number) > 8 else "*" * len(number)
