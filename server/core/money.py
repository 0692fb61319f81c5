"""Money: integer fen everywhere, yuan only in words. One formatter, and the coupon's labels.

yuan(123456)               "1234.56"   (labels: 满1200减300, 50元)
yuan(123456, grouped=True) "1,234.56"  (amounts in reports and sentences)
yuan(5000, cents=True)     "50.00"     (a till's receipt: always two decimals)
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any


def yuan(fen: int, *, grouped: bool = False, cents: bool = False) -> str:
    """Fen as yuan: the cents only when there are some (or always, with `cents`)."""
    sign = "-" if fen < 0 else ""
    whole, rest = divmod(abs(int(fen)), 100)
    text = f"{whole:,}" if grouped else str(whole)
    return sign + text + (f".{rest:02d}" if rest or cents else "")


def fen(value: Any) -> int | None:
    """Yuan (int, float from a workbook, or a decimal string) to integer fen, exactly; None if it
    is not an amount of money (negative, below a fen, not a number)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = Decimal(str(value)) * 100
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount != amount.to_integral_value() or amount < 0:
        return None
    return int(amount)


def coupon_label(face_fen: int, threshold_fen: int) -> str:
    """A coupon as the plans write it: 满300减80, or 20元 for one without a threshold."""
    face = yuan(face_fen)
    return f"满{yuan(threshold_fen)}减{face}" if threshold_fen else f"{face}元"


def tier_name(category_name: str, face_fen: int) -> str:
    """A tier as the ledger and the quota pages name it: 宾馆100元券."""
    return f"{category_name}{yuan(face_fen, grouped=True)}元券"
