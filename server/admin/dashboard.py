"""The dashboard (数据看板): a campaign's figures (Jincheng plan, section 10) and charts.

Figures of a campaign, per round, per category and per local day:
issued (投放量), claimed (领取量), redeemed (核销量), redemption rate (核销率 = redeemed / claimed),
order amount (订单金额), redeemed amount (核销金额, face value), refunded amount (核销退款金额),
merchants with redemptions (核销商家数), leverage (直接带动比 = order amount / redeemed amount).
A redemption counts unless it was revoked (撤回); refunds are counted and also shown apart.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask import abort, jsonify, render_template

from ..core.db import snapshot
from ..extensions import db
from ..models import LEDGER_MOVES, Campaign, Category, LedgerEntry, Round
from ..pool import ledger, rollup
from . import api, bp
from .access import READ, role_required
from .console import campaign_choice, message


@dataclass
class Figures:
    issued: int = 0
    claimed: int = 0
    redeemed: int = 0
    order_fen: int = 0
    redeemed_fen: int = 0
    refunded_fen: int = 0
    merchants: int = 0

    @property
    def rate(self) -> float | None:
        return self.redeemed / self.claimed if self.claimed else None

    @property
    def leverage(self) -> float | None:
        return self.order_fen / self.redeemed_fen if self.redeemed_fen else None


@dataclass
class Dashboard:
    campaign: Campaign
    total: Figures
    by_round: dict[int, Figures] = field(default_factory=dict)
    by_category: dict[int, Figures] = field(default_factory=dict)
    by_day: dict[str, Figures] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)


def figures_of(campaign: Campaign) -> Dashboard:
    """The campaign's figures: hours that are over from their stored figures (pool/rollup.py), the
    rest from the claims, redemptions and ledger entries themselves, all from one snapshot."""
    board = Dashboard(campaign, Figures())

    def figures(table: dict, key) -> Figures:
        return table.setdefault(key, Figures())

    def targets(hour, round_id: int, category_id: int) -> tuple[Figures, ...]:
        day = rollup.local_date(hour).isoformat()
        return (
            board.total,
            figures(board.by_round, round_id),
            figures(board.by_category, category_id),
            figures(board.by_day, day),
        )

    with snapshot() as connection:
        # Issued: coupons put on the wheel, from the ledger (allocations, rollovers, quota changes).
        entries = LedgerEntry.__table__
        put = sa.case(
            (entries.c.kind.in_(ledger.PUT_IN), entries.c.coupons),
            (entries.c.kind == "adjust_down", -entries.c.coupons),
        )
        rows = connection.execute(
            sa.select(entries.c.round_id, entries.c.category_id, sa.func.sum(put))
            .where(entries.c.campaign_id == campaign.id, entries.c.kind.in_((*ledger.PUT_IN, "adjust_down")))
            .group_by(entries.c.round_id, entries.c.category_id)
        )
        for round_id, category_id, count in rows:
            for target in (board.total, figures(board.by_round, round_id), figures(board.by_category, category_id)):
                target.issued += int(count or 0)

        # Claimed: every coupon a resident won, whatever became of it.
        claims = rollup.figures(connection, "claims", campaign_id=campaign.id)
        for hour, round_id, category_id, claimed in connection.execute(
            sa.select(claims.c.hour, claims.c.round_id, claims.c.category_id, claims.c.claimed)
        ):
            for target in targets(hour, round_id, category_id):
                target.claimed += claimed

        # Redemptions that stand (not revoked); refunds are counted and also shown apart.
        days = rollup.figures(connection, "redemptions", campaign_id=campaign.id)
        merchants: dict[int, set] = defaultdict(set)
        picked = ("hour", "round_id", "category_id", "merchant_id", "redeemed", "order_fen", "redeemed_fen")
        for (
            hour,
            round_id,
            category_id,
            merchant_id,
            redeemed,
            order_fen,
            redeemed_fen,
            refunded_fen,
        ) in connection.execute(sa.select(*(days.c[name] for name in (*picked, "refunded_fen")))):
            for target in targets(hour, round_id, category_id):
                target.redeemed += redeemed
                target.order_fen += int(order_fen)
                target.redeemed_fen += int(redeemed_fen)
                target.refunded_fen += int(refunded_fen)
                merchants[id(target)].add(merchant_id)
        for target in (board.total, *board.by_round.values(), *board.by_category.values(), *board.by_day.values()):
            target.merchants = len(merchants[id(target)])

        # The pool's accounts: the ledger's balances.
        entries = rollup.figures(connection, "ledger", campaign_id=campaign.id)
        board.balances = dict.fromkeys(ledger.ACCOUNTS, 0)
        for kind, amount in connection.execute(
            sa.select(entries.c.kind, sa.func.sum(entries.c.amount_fen)).group_by(entries.c.kind)
        ):
            source, target = LEDGER_MOVES[kind]
            board.balances[source] = board.balances.get(source, 0) - int(amount)
            board.balances[target] = board.balances.get(target, 0) + int(amount)
    board.by_day = dict(sorted(board.by_day.items()))
    return board


@bp.get("/")
@role_required(*READ)
def dashboard():
    """Figures and charts of a campaign: totals, per round, per category, per day, the pool."""
    campaign, choices = campaign_choice()
    if campaign is None:
        return message("数据看板", "还没有活动。请先导入活动方案。")
    board = figures_of(campaign)
    rounds = {r.id: r for r in db.session.scalars(sa.select(Round).where(Round.campaign_id == campaign.id))}
    categories = {c.id: c for c in db.session.scalars(sa.select(Category).where(Category.campaign_id == campaign.id))}
    order = sorted(board.by_category, key=lambda k: categories[k].position)
    charts = {
        "categories": [categories[k].name for k in order],
        "issued": [board.by_category[k].issued for k in order],
        "claimed": [board.by_category[k].claimed for k in order],
        "redeemed": [board.by_category[k].redeemed for k in order],
        "days": list(board.by_day),
        "day_redeemed_yuan": [f.redeemed_fen / 100 for f in board.by_day.values()],
        "day_order_yuan": [f.order_fen / 100 for f in board.by_day.values()],
        "day_claimed": [f.claimed for f in board.by_day.values()],
        "pool": [{"name": ledger.ACCOUNT_NAMES[a], "value": board.balances.get(a, 0) / 100} for a in ledger.ACCOUNTS],
    }
    return render_template(
        "admin/dashboard.html",
        board=board,
        choices=choices,
        rounds=rounds,
        categories=categories,
        charts=charts,
        accounts=ledger.ACCOUNTS,
        account_names=ledger.ACCOUNT_NAMES,
    )


def _figures_json(f: Figures) -> dict:
    return {
        "issued": f.issued,
        "claimed": f.claimed,
        "redeemed": f.redeemed,
        "redemption_rate": f.rate,
        "order_fen": f.order_fen,
        "redeemed_fen": f.redeemed_fen,
        "refunded_fen": f.refunded_fen,
        "merchants": f.merchants,
        "leverage": f.leverage,
    }


@api.get("/dashboard")
@role_required(*READ)
def dashboard_json():
    """The dashboard's figures as JSON, for the console's own scripts and the auditors' tools."""
    campaign, _ = campaign_choice()
    if campaign is None:
        abort(404)
    board = figures_of(campaign)
    return jsonify(
        campaign={"id": campaign.id, "code": campaign.code, "name": campaign.name},
        total=_figures_json(board.total),
        by_round={str(k): _figures_json(v) for k, v in board.by_round.items()},
        by_category={str(k): _figures_json(v) for k, v in board.by_category.items()},
        by_day={k: _figures_json(v) for k, v in board.by_day.items()},
        balances_fen={k: v for k, v in board.balances.items() if k != "budget"},
    )
