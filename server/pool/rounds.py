"""Round life cycle and the pool's moves (SPEC section 2, 资金池与滚动).

Validity is judged against the clock wherever a coupon is listed or used, so no resident or
till ever waits for these functions; they materialise state and move money:

- `expire_coupons`: claimed coupons past their deadline -> expired, their value back to the pool;
- `close_rounds`: a round's stock not drawn by its close -> withdrawn, back to the pool;
- `roll_over`: before a round opens, the value returned to the pool becomes its extra stock,
  by the campaign's policy (the same tiers in proportion, or a chosen tier mix; or none, each
  period having its own allocation);
- `return_leftover`: after the last round's deadline and the campaign's delay, what the pool
  holds goes back to the treasury (返还财政), or to the next campaign the plan names;
- `adjust_quotas`: the bureau changes a future round's quota, paid from or back to the pool.

Each is idempotent: coupons move by guarded state transitions and rounds carry markers, and
every function that spends from the pool first locks the campaign's row, so two schedulers
racing (or one job run twice) move money once. Each function flushes; the caller commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..core import cache
from ..core.db import lock_row
from ..core.errors import refusal
from ..core.money import yuan
from ..extensions import db
from ..models import Allocation, Campaign, LedgerEntry, Round, Tier
from . import coupons, ledger

SCHEDULER = "scheduler"
log = logging.getLogger(__name__)

QuotaRefused = refusal("QUOTA_REFUSED", 409, "配额未调整", subject="未调整", api=False)


def lock_campaign(campaign_id: int) -> None:
    """Serialise the jobs and the bureau on one campaign's pool. Every draw's and till's ledger
    insert references the campaign row by its foreign key; the lock (core.db.lock_row) lets them
    through, so the crowd never waits for a job."""
    lock_row(Campaign.__table__, campaign_id)


def _campaigns(campaign_id: int | None) -> list[int]:
    query = sa.select(Campaign.id).where(Campaign.status != "draft").order_by(Campaign.id)
    if campaign_id is not None:
        query = query.where(Campaign.id == campaign_id)
    return list(db.session.scalars(query))


# ---------------------------------------------------------------- expiry


def expire_coupons(now: datetime, campaign_id: int | None = None) -> int:
    """Claimed coupons past their deadline become expired; their value returns to the pool."""
    moved = 0
    for cid in _campaigns(campaign_id):
        lock_campaign(cid)
        moved += coupons.expire(cid, now, SCHEDULER)
    return moved


# ---------------------------------------------------------------- closing a round


def close_rounds(now: datetime, campaign_id: int | None = None) -> list[int]:
    """Rounds past their close: the stock nobody drew goes back to the pool. Returns round ids."""
    closed = []
    for cid in _campaigns(campaign_id):
        due = db.session.scalars(
            sa.select(Round.id).where(Round.campaign_id == cid, Round.closes_at <= now, Round.closed_at.is_(None))
        ).all()
        if not due:
            continue
        lock_campaign(cid)
        for round_id in due:
            round_ = db.session.get(Round, round_id, populate_existing=True)
            if round_.closed_at is not None:  # another scheduler closed it while we waited
                continue
            coupons.withdraw_round(cid, round_id, now, SCHEDULER)
            round_.closed_at = now
            closed.append(round_id)
    db.session.flush()
    return closed


# ---------------------------------------------------------------- rollover


def rollover_due(previous: Round, round_: Round) -> datetime:
    """When the value returned by the previous round can go into this one.

    After the previous round closed and its coupons reached their deadline, so that expired
    coupons roll too; but no later than this round's opening.
    """
    return max(previous.closes_at, min(previous.valid_until, round_.opens_at))


# What a round gives back, and what rollovers took from it. The bureau's quota changes are
# neither: a quota taken off a round is free pool money, like a planned reserve.
_RETURN_KINDS = ("withdraw", "expire", "revoke_claim", "refund_return")
_SPEND_KINDS = ("rollover",)


def rollable_by_tier(campaign_id: int) -> tuple[int, dict[int, int]]:
    """Value returned to the pool by rounds and not yet rolled over: (total, per tier).

    A planned reserve (budget beyond what the plan allocates) and quota the bureau took off a
    round are not rollable: they stay in the pool for the bureau's quota changes and go back to
    the treasury at the end. If the bureau's increases spent returned value, the total is
    capped by what the pool holds.
    """
    entries = LedgerEntry.__table__
    signed = sa.case((entries.c.kind.in_(_RETURN_KINDS), entries.c.amount_fen), else_=-entries.c.amount_fen)
    rows = db.session.execute(
        sa.select(entries.c.tier_id, sa.func.sum(signed))
        .where(entries.c.campaign_id == campaign_id, entries.c.kind.in_(_RETURN_KINDS + _SPEND_KINDS))
        .group_by(entries.c.tier_id)
    ).all()
    per_tier = {tier_id: int(amount) for tier_id, amount in rows if tier_id is not None}
    total = min(sum(per_tier.values()), ledger.pool_fen(campaign_id))
    return max(total, 0), per_tier


def split(amount: int, weights: dict[Tier, int]) -> dict[Tier, int]:
    """Whole coupons per tier worth at most `amount`, shared by weight of value.

    Each tier gets the coupons its share buys; what is left buys further coupons for the tiers
    with the largest unspent share, while a coupon still fits. The rest stays in the pool.
    """
    total_weight = sum(weights.values())
    if amount <= 0 or total_weight <= 0:
        return {}
    counts, unspent = {}, {}
    for tier, weight in weights.items():
        share = amount * weight // total_weight
        counts[tier] = share // tier.face_fen
        unspent[tier] = share - counts[tier] * tier.face_fen
    left = amount - sum(tier.face_fen * n for tier, n in counts.items())
    for tier in sorted(weights, key=lambda t: (-unspent[t], t.face_fen, t.id)):
        if weights[tier] and tier.face_fen <= left:
            counts[tier] += 1
            left -= tier.face_fen
    return {tier: n for tier, n in counts.items() if n}


def rollover_plan(campaign: Campaign) -> dict[Tier, int]:
    """Coupons per tier the pool's returned value buys, by the campaign's policy."""
    total, per_tier = rollable_by_tier(campaign.id)
    tiers = {t.id: t for t in campaign.tiers}
    if campaign.rollover_policy == "mix" and campaign.rollover_mix:
        weights = {tiers[item["tier_id"]]: item["weight"] for item in campaign.rollover_mix}
        return split(total, weights)
    # Same tiers, in proportion: each tier gets back what it returned, scaled down if the
    # bureau has spent some of the returned value meanwhile.
    returned = {tiers[t]: amount for t, amount in per_tier.items() if amount > 0}
    wanted = sum(returned.values())
    if wanted <= total:
        return {tier: amount // tier.face_fen for tier, amount in returned.items() if amount >= tier.face_fen}
    return split(total, returned)


def add_stock(round_: Round, counts: dict[Tier, int], kind: str, now: datetime, actor: str, note: str | None):
    """Generate stock in the round, pay for it from the pool, and record the round's quota."""
    counts = {tier: n for tier, n in counts.items() if n > 0}
    if not counts:
        return []
    coupons.generate_stock(round_.id, list(counts.items()))
    allocations = {a.tier_id: a for a in round_.allocations}
    moves = []
    for tier, n in sorted(counts.items(), key=lambda item: item[0].id):
        allocation = allocations.get(tier.id)
        if allocation is None:
            round_.allocations.append(Allocation(tier=tier, quantity=n))
        else:
            allocation.quantity += n
        key = f"{kind}:{round_.id}:{tier.id}" if kind == "rollover" else None
        moves.append(ledger.tier_entry(kind, round_, tier, n, now, key=key, actor=actor, note=note))
    ledger.record(moves)
    return moves


def roll_over(now: datetime, campaign_id: int | None = None) -> list[int]:
    """Feed each round that is due with the value returned to the pool. Returns round ids."""
    rolled = []
    for cid in _campaigns(campaign_id):
        campaign = db.session.get(Campaign, cid)
        if campaign.rollover_policy == "none":  # each period has its own allocation
            continue
        for previous, round_ in zip(campaign.rounds, campaign.rounds[1:], strict=False):
            if round_.rolled_over_at or round_.closed_at or round_.closes_at <= now:
                continue
            if rollover_due(previous, round_) > now:
                break
            # Everything that returns value by now must have done so before we count it.
            close_rounds(now, cid)
            expire_coupons(now, cid)
            lock_campaign(cid)
            db.session.refresh(round_)
            if round_.rolled_over_at is not None:  # another scheduler got here first
                continue
            add_stock(round_, rollover_plan(campaign), "rollover", now, SCHEDULER, f"第{previous.number}轮滚动")
            round_.rolled_over_at = now
            rolled.append(round_.id)
    db.session.flush()
    if rolled:
        cache.forget()
    return rolled


# ---------------------------------------------------------------- the end


def campaign_over(campaign: Campaign, now: datetime) -> bool:
    """Past the last round's close and past every coupon's deadline (both clamp to it)."""
    last = campaign.rounds[-1]
    return now >= last.closes_at and now >= last.valid_until


def leftover_due(campaign: Campaign) -> datetime:
    """When what the pool holds after the campaign moves on: the last deadline, plus the delay the
    plan gives (Geermu: 截止后两周)."""
    last = campaign.rounds[-1]
    return max(last.closes_at, last.valid_until) + timedelta(days=campaign.leftover_after_days)


def return_leftover(now: datetime, campaign_id: int | None = None) -> int:
    """After the campaign (and its delay), what the pool holds goes back to the treasury, or into
    the pool of the campaign it names (two entries sharing a key). Returns fen moved.

    Runs again harmlessly: later returns (a refund after the end) move with the next run. What
    pending purchase-subsidy applications would be paid stays in the pool until the bureau has
    reviewed them (an application made on the last evening is still payable); a rejection frees
    its share for the next run. Leftover named for a campaign not imported yet waits for it.
    """
    moved = 0
    for cid in _campaigns(campaign_id):
        campaign = db.session.get(Campaign, cid)
        if not campaign.rounds or now < leftover_due(campaign):
            continue
        target = None
        if campaign.leftover_to:
            target = db.session.scalar(sa.select(Campaign).where(Campaign.code == campaign.leftover_to))
            if target is None or target.id == cid:
                log.warning("campaign %s: its leftover waits for campaign %s", campaign.code, campaign.leftover_to)
                continue
        close_rounds(now, cid)
        expire_coupons(now, cid)
        lock_campaign(cid)
        left = ledger.pool_fen(cid) - ledger.subsidies_fen(cid, "pending")
        if left <= 0:
            continue
        if target is None:
            ledger.record([ledger.entry("treasury", cid, left, now, actor=SCHEDULER, note="活动结束返还财政")])
        else:
            key = f"carry:{cid}:{now.isoformat()}"
            ledger.record(
                [
                    ledger.entry("carry_out", cid, left, now, actor=SCHEDULER, key=key, note=f"结余转入{target.name}"),
                    ledger.entry(
                        "carry_in", target.id, left, now, actor=SCHEDULER, key=key, note=f"{campaign.name}结余转入"
                    ),
                ]
            )
        moved += left
    return moved


# ---------------------------------------------------------------- the bureau's quota changes


@dataclass(frozen=True)
class QuotaChange:
    tier: Tier
    before: int
    after: int


def adjust_quotas(round_id: int, quantities: dict[int, int], actor: str, now: datetime) -> list[QuotaChange]:
    """Set a future round's stock per tier, paid from the pool (or returned to it).

    All or nothing: refused (QuotaRefused) if the round has opened, a tier is not the campaign's,
    or the increases cost more than the pool holds once the decreases are returned to it.
    """
    round_ = db.session.get(Round, round_id)
    if round_ is None:
        raise QuotaRefused("找不到该轮次")
    lock_campaign(round_.campaign_id)
    db.session.refresh(round_)
    if now >= round_.opens_at:
        raise QuotaRefused(f"第{round_.number}轮已开始，只能调整尚未开始的轮次的配额")
    tiers = {t.id: t for t in round_.campaign.tiers}
    for tier_id, quantity in quantities.items():
        if tier_id not in tiers:
            raise QuotaRefused(f"券种 {tier_id} 不属于本活动")
        if quantity < 0:
            raise QuotaRefused("配额不能为负数")
    held = coupons.remaining_by_tier(round_.id)
    changes = [QuotaChange(tiers[t], held.get(t, 0), q) for t, q in sorted(quantities.items()) if q != held.get(t, 0)]
    withdrawn = {
        change.tier.id: coupons.withdraw_some(round_, change.tier, change.before - change.after, now, actor)
        for change in changes
        if change.after < change.before
    }
    for allocation in round_.allocations:
        allocation.quantity -= withdrawn.get(allocation.tier_id, 0)
    increases = {c.tier: c.after - c.before for c in changes if c.after > c.before}
    cost = sum(tier.face_fen * n for tier, n in increases.items())
    pool = ledger.pool_fen(round_.campaign_id)
    if cost > pool:
        raise QuotaRefused(
            f"调增需要 {yuan(cost, grouped=True)} 元，资金池只有 {yuan(pool, grouped=True)} 元，请减少调增的数量"
        )
    add_stock(round_, increases, "adjust_up", now, actor, f"第{round_.number}轮配额调整")
    db.session.flush()
    cache.forget()
    return changes
