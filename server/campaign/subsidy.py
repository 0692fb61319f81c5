"""A purchase subsidy's bracket table (Jincheng: 新能源汽车 10万（含）—20万以下 → 3000元): per vehicle
kind, invoice amounts from `from_fen` (inclusive) to `to_fen` (exclusive; None: and above)."""

from __future__ import annotations

from ..core.money import yuan
from ..models import VEHICLE_KINDS

STATUS_NAMES = {"pending": "待审核", "approved": "已批准", "rejected": "已驳回"}


def vehicle_class(kind: str) -> str:
    return "motorcycle" if kind == "motorcycle" else "car"


def bracket_of(brackets: list[dict], vehicle_kind: str, invoice_fen: int) -> dict | None:
    """The bracket an invoice of this amount and vehicle kind falls in (from inclusive, to
    exclusive); None: none."""
    for bracket in brackets or ():
        high = bracket["to_fen"]
        if (
            bracket["vehicle"] == vehicle_kind
            and bracket["from_fen"] <= invoice_fen
            and (high is None or invoice_fen < high)
        ):
            return bracket
    return None


def bracket_for(brackets: list[dict], vehicle_kind: str, invoice_fen: int) -> int | None:
    """The subsidy in fen for an invoice of this amount and vehicle kind; None: no bracket."""
    bracket = bracket_of(brackets, vehicle_kind, invoice_fen)
    return bracket["subsidy_fen"] if bracket else None


def bracket_rows(brackets: list[dict]) -> list[dict]:
    """The table as people read it: 新能源汽车 | 10万（含）—20万以下 | 3000元."""
    rows = []
    for bracket in sorted(brackets or (), key=lambda b: (list(VEHICLE_KINDS).index(b["vehicle"]), b["from_fen"])):
        low, high = bracket["from_fen"], bracket["to_fen"]
        span = f"{_wan(low)}（含）—{_wan(high)}以下" if high is not None else f"{_wan(low)}（含）以上"
        if high is None and not low:
            span = "不限"
        rows.append(
            {
                "vehicle": bracket["vehicle"],
                "vehicle_name": VEHICLE_KINDS[bracket["vehicle"]],
                "from_fen": low,
                "to_fen": high,
                "span": span,
                "subsidy_fen": bracket["subsidy_fen"],
            }
        )
    return rows


def _wan(fen: int) -> str:
    yuan_ = fen // 100
    return f"{yuan_ // 10000}万" if yuan_ % 10000 == 0 and yuan_ else f"{yuan(fen, grouped=True)}元"
