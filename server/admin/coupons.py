"""Coupon management (消费券管理): per round and tier, how many were put out, held, used, expired."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from flask import render_template

from ..core.db import snapshot
from ..extensions import db
from ..models import Allocation, Campaign, Category, Round, Tier
from ..pool import ledger, rollup
from ..pool.coupons import State
from . import bp
from .access import READ, role_required
from .console import campaign_choice, message


@dataclass
class TierRound:
    round_number: int
    category: str
    face_fen: int
    threshold_fen: int
    quantity: int = 0  # put on the wheel (plan, rollovers, quota changes)
    states: dict[str, int] = field(default_factory=dict)

    @property
    def claimed(self) -> int:
        return sum(self.states.get(s, 0) for s in (State.CLAIMED, State.USED, State.EXPIRED, State.VOID))


def coupon_table(campaign: Campaign) -> list[TierRound]:
    """Per round and tier: quantity, and how many coupons are in each state, counted from the
    books (every change of a coupon's state is a ledger entry: ledger.COUPON_MOVES), so a
    million coupons cost a few thousand stored rows (pool/rollup.py)."""
    rows: dict[tuple[int, int], TierRound] = {}
    allocations = db.session.execute(
        sa.select(
            Round.id, Round.number, Tier.id, Category.name, Tier.face_fen, Tier.threshold_fen, Allocation.quantity
        )
        .join(Allocation, Allocation.round_id == Round.id)
        .join(Tier, Tier.id == Allocation.tier_id)
        .join(Category, Category.id == Tier.category_id)
        .where(Round.campaign_id == campaign.id)
    )
    for round_id, number, tier_id, category, face, threshold, quantity in allocations:
        rows[round_id, tier_id] = TierRound(number, category, face, threshold, quantity)
    with snapshot() as connection:
        entries = rollup.figures(connection, "ledger", campaign_id=campaign.id)
        moved = connection.execute(
            sa.select(entries.c.round_id, entries.c.tier_id, entries.c.kind, sa.func.sum(entries.c.coupons))
            .where(entries.c.kind.in_(ledger.COUPON_MOVES))
            .group_by(entries.c.round_id, entries.c.tier_id, entries.c.kind)
        ).all()
    for round_id, tier_id, kind, count in moved:
        row = rows.get((round_id, tier_id))
        if row is None:
            continue
        leaves, enters = ledger.COUPON_MOVES[kind]
        for state, sign in ((leaves, -1), (enters, 1)):
            if state:
                row.states[state] = row.states.get(state, 0) + sign * int(count)
    return sorted(rows.values(), key=lambda r: (r.round_number, r.category, r.face_fen))


@bp.get("/coupons")
@role_required(*READ)
def coupons():
    """Coupon management: per round and tier, how many were put out, held, used, expired."""
    campaign, choices = campaign_choice()
    if campaign is None:
        return message("消费券管理", "还没有活动。")
    return render_template("admin/coupons.html", campaign=campaign, choices=choices, rows=coupon_table(campaign))
