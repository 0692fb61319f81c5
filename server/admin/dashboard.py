"""The dashboard (数据看板): a campaign's figures (Jincheng plan, section 10) and charts, and the
monthly report (月报) of the same figures for one month.

Figures of a campaign, per round, per category and per local day:
issued (投放量): the planned stock (计划投放, the rounds' allocations), value re-issued from the pool
(滚动再投放: what came back, put on the wheel again) and the bureau's quota changes, each shown
apart, so that a seven-round run does not look like seven plans;
claimed (领取量), residents who had claimed by the period's end (累计领取人数) and coverage (覆盖率 =
those residents / residents bound by then, per campaign and per category), redeemed (核销量), redemption rate (核销率 =
redeemed / claimed), order amount (订单金额), redeemed amount (核销金额, face value), refunded amount
(核销退款金额), merchants with redemptions (核销商家数), leverage (直接带动比 = order amount /
redeemed amount). A redemption counts unless it was revoked (撤回); refunds are counted and also
shown apart.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa
from flask import abort, jsonify, render_template

from ..core.db import snapshot
from ..core.time import local_day, utcnow
from ..extensions import db
from ..models import Campaign, Category, LedgerEntry, Resident, Round
from ..pool import ledger, rollup
from . import api, bp
from .access import READ, role_required
from .console import campaign_choice, message


@dataclass
class Figures:
    issued: int = 0  # coupons put on the wheel: planned + reissued + adjusted
    issued_fen: int = 0
    planned: int = 0  # the rounds' planned allocations
    planned_fen: int = 0
    reissued: int = 0  # value that came back to the pool, put on the wheel again (rollover)
    reissued_fen: int = 0
    adjusted: int = 0  # the bureau's quota changes, up less down
    claimed: int = 0
    claimants: int | None = None  # residents who had claimed by the period's end (not per day or round)
    bound: int = 0  # residents bound by the period's end, coverage's denominator
    redeemed: int = 0
    order_fen: int = 0
    redeemed_fen: int = 0
    refunded_fen: int = 0
    merchants: int = 0

    @property
    def coverage(self) -> float | None:
        return self.claimants / self.bound if self.claimants is not None and self.bound else None

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
    bound: int = 0  # residents bound by the period's end


_ISSUED = {"allocate": "planned", "rollover": "reissued", "adjust_up": "adjusted", "adjust_down": "adjusted"}


def figures_of(campaign: Campaign, period: rollup.Period | None = None) -> Dashboard:
    """The campaign's figures over `period` (local days; the whole campaign by default): hours that
    are over from their stored figures (pool/rollup.py), the rest from the claims, redemptions and
    ledger entries themselves, all from one snapshot. The pool's balances are at the period's end."""
    board = Dashboard(campaign, Figures())
    period = period or rollup.Period()
    start, end = period.bounds()

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
        # Issued: coupons put on the wheel, from the ledger: the planned allocations, rollovers and
        # the bureau's quota changes, each kept apart.
        # Few entries of these kinds: read from the ledger itself (ix_ledger_entries_kind).
        entries = LedgerEntry.__table__
        issued = sa.select(
            entries.c.round_id,
            entries.c.category_id,
            entries.c.kind,
            sa.func.sum(entries.c.coupons),
            sa.func.sum(entries.c.amount_fen),
        )
        issued = issued.where(entries.c.campaign_id == campaign.id, entries.c.kind.in_(_ISSUED))
        if start:
            issued = issued.where(entries.c.created_at >= start)
        if end:
            issued = issued.where(entries.c.created_at < end)
        issued = issued.group_by(entries.c.round_id, entries.c.category_id, entries.c.kind)
        rows = connection.execute(issued)
        for round_id, category_id, kind, count, amount in rows:
            sign = -1 if kind == "adjust_down" else 1
            count, amount = sign * int(count or 0), sign * int(amount or 0)
            for target in (board.total, figures(board.by_round, round_id), figures(board.by_category, category_id)):
                target.issued += count
                target.issued_fen += amount
                if kind == "allocate":
                    target.planned, target.planned_fen = target.planned + count, target.planned_fen + amount
                elif kind == "rollover":
                    target.reissued, target.reissued_fen = target.reissued + count, target.reissued_fen + amount
                else:
                    target.adjusted += count

        # Claimed: every coupon a resident won, whatever became of it; and the claims that were
        # their resident's first (in the campaign, in the category), which add up to the
        # residents who had claimed by the period's end: counted from the campaign's start.
        claims = rollup.figures(connection, "claims", period, campaign_id=campaign.id)
        whole = period.first is None  # these claims are all of them up to the period's end
        firsts = defaultdict(int)  # category id (None: the campaign) -> residents
        columns = ("hour", "round_id", "category_id", "claimed", "first_in_campaign", "first_in_category")
        for hour, round_id, category_id, claimed, in_campaign, in_category in connection.execute(
            sa.select(*(claims.c[name] for name in columns))
        ):
            for target in targets(hour, round_id, category_id):
                target.claimed += claimed
            firsts[None] += in_campaign
            firsts[category_id] += in_category
        if not whole:
            firsts = defaultdict(int)
            earlier = rollup.figures(connection, "claims", rollup.Period(last=period.last), campaign_id=campaign.id)
            for category_id, in_campaign, in_category in connection.execute(
                sa.select(earlier.c.category_id, sa.func.sum(earlier.c.first_in_campaign),
                          sa.func.sum(earlier.c.first_in_category)).group_by(earlier.c.category_id)
            ):  # fmt: skip
                firsts[None] += int(in_campaign or 0)
                firsts[category_id] += int(in_category or 0)

        # Redemptions that stand (not revoked); refunds are counted and also shown apart.
        days = rollup.figures(connection, "redemptions", period, campaign_id=campaign.id)
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

        # Coverage at the period's end: residents who had claimed by then (their first claims, in
        # the campaign and in each category, added up from the start), of the residents bound.
        board.bound = connection.scalar(
            sa.select(sa.func.count())
            .select_from(Resident)
            .where(Resident.bound_at.is_not(None), *([Resident.bound_at < end] if end else []))
        )
        board.total.claimants = firsts[None]
        for category_id, count in firsts.items():
            if category_id is not None:
                figures(board.by_category, category_id).claimants = count
        for target in (board.total, *board.by_category.values()):
            target.bound = board.bound
            if target.claimants is None:
                target.claimants = 0

        # The pool's accounts: the ledger's balances at the period's end.
        entries = rollup.figures(connection, "ledger", rollup.Period(last=period.last), campaign_id=campaign.id)
        board.balances = ledger.moved(
            connection.execute(sa.select(entries.c.kind, sa.func.sum(entries.c.amount_fen)).group_by(entries.c.kind))
        )
    board.by_day = dict(sorted(board.by_day.items()))
    return board


# ---------------------------------------------------------------- months, for the monthly report (reports.py)


@dataclass(frozen=True)
class Month:
    first: date  # the month's first day

    @property
    def last(self) -> date:
        return self.next - timedelta(days=1)

    @property
    def next(self) -> date:
        return date(self.first.year + self.first.month // 12, self.first.month % 12 + 1, 1)

    @property
    def key(self) -> str:
        return f"{self.first.year}-{self.first.month:02d}"

    @property
    def label(self) -> str:
        return f"{self.first.year}年{self.first.month}月"

    @property
    def available(self) -> str:
        return f"{self.next.year}年{self.next.month}月{self.next.day}日"

    def ready(self, today: date) -> bool:
        return today >= self.next

    @classmethod
    def parse(cls, text: str) -> Month | None:
        try:
            year, month = (int(part) for part in text.split("-"))
            return cls(date(year, month, 1))
        except ValueError:
            return None


def months_of(campaign: Campaign, today: date) -> list[Month]:
    """The months a campaign has figures in: from its first round's opening to its last deadline
    (or its end), up to this month."""
    first, last = db.session.execute(
        sa.select(sa.func.min(Round.opens_at), sa.func.max(Round.valid_until)).where(Round.campaign_id == campaign.id)
    ).one()
    if first is None:
        return []
    if campaign.ends_at is not None:
        last = min(last, campaign.ends_at)
    # A deadline at local midnight is the day before's 24:00.
    end = min(local_day(last - timedelta(microseconds=1)), today)
    months, month = [], Month(local_day(first).replace(day=1))
    while month.first <= end:
        months.append(month)
        month = Month(month.next)
    return months


def month_links(campaign: Campaign) -> list[dict]:
    today = local_day(utcnow())
    return [
        {"key": m.key, "label": m.label, "ready": m.ready(today), "available": m.available}
        for m in months_of(campaign, today)
    ]


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
        months=month_links(campaign),
        accounts=ledger.ACCOUNTS,
        account_names=ledger.ACCOUNT_NAMES,
    )


def _figures_json(f: Figures) -> dict:
    return {
        "planned": f.planned,
        "planned_fen": f.planned_fen,
        "issued": f.issued,
        "issued_fen": f.issued_fen,
        "reissued": f.reissued,
        "reissued_fen": f.reissued_fen,
        "adjusted": f.adjusted,
        "claimed": f.claimed,
        "claimants": f.claimants,
        "coverage": f.coverage,
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
        bound=board.bound,
        balances_fen={k: v for k, v in board.balances.items() if k != "budget"},
    )
