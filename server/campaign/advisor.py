"""The quota advisor (配额建议): the next round's quantity per tier, proposed from what the earlier
rounds of the campaign measured, with the reasons, for the bureau to accept or edit.

Measured rounds are the campaign's rounds numbered before the target that have opened. Per
category, over all of them: redemption rate (核销率 = standing redemptions / coupons claimed) and
leverage (带动比 = spend / face value redeemed); in the latest of them: whether the category sold
out and how long after the opening its last coupon was claimed, or else the share claimed.

The rule, per category, as a whole percentage:

1. rate:   100 x (the category's redemption rate / the campaign's), 100 when either is unknown;
2. demand: sold out within an hour of the opening 130, sold out later 110, not sold out by the
   close 50 + half the share claimed (60% claimed -> 80), still drawing and not sold out 100;
3. factor: rate x demand / 100, bounded to 50..150 (at most halved, at most one and a half times).

Each tier's proposal is the quantity the latest measured round put out (what those figures are
about: the target round's own stock may be only what rollover brought back) times its category's
factor, in whole coupons. If that costs more than the money available to the round -- what the
pool holds plus the value of the round's own stock, which `rounds.adjust_quotas` returns to the
pool before it pays for increases -- the whole proposal is scaled down in proportion with
`rounds.split`, so its face value never exceeds the money. With no measured round the proposal
is the round's current stock, capped the same way. Leverage is reported, not scored.

Everything is read with aggregate queries (a campaign holds up to millions of coupons); `propose`
is a pure function of the figures. Accepting goes through the console's quota change
(`admin.rounds.adjust_round` -> `pool.rounds.adjust_quotas`), after `check_affordable`.

A round the plan put no money in (`allocate: first_round`) holds nothing until the rollover
feeds it after the round before; until then its quota page and its advice are all zeros, and
`empty_round_reason` says why in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from fractions import Fraction

import sqlalchemy as sa

from ..core.money import yuan
from ..core.time import moment
from ..extensions import db
from ..models import Allocation, Category, Coupon, LedgerEntry, Redemption, Round, Tier
from ..pool import ledger, rounds
from ..pool.coupons import remaining_by_tier

FACTOR_BOUNDS = (50, 150)
FAST_SELL_OUT = timedelta(hours=1)
DEMAND_FAST, DEMAND_SOLD_OUT, DEMAND_UNKNOWN = 130, 110, 100


# ---------------------------------------------------------------- what was measured


@dataclass(frozen=True)
class CategoryHistory:
    """One category's figures: over all measured rounds, and in the latest of them."""

    category_id: int
    name: str
    claimed: int = 0
    redeemed: int = 0
    redeemed_fen: int = 0
    spend_fen: int = 0
    issued_last: int = 0
    claimed_last: int = 0
    sold_out_after: timedelta | None = None  # last claim after the opening, if it sold out

    @property
    def rate(self) -> Fraction | None:
        return Fraction(self.redeemed, self.claimed) if self.claimed else None

    @property
    def leverage(self) -> Fraction | None:
        return Fraction(self.spend_fen, self.redeemed_fen) if self.redeemed_fen else None

    @property
    def share_last(self) -> Fraction | None:
        return Fraction(min(self.claimed_last, self.issued_last), self.issued_last) if self.issued_last else None


@dataclass(frozen=True)
class History:
    rounds: tuple[int, ...] = ()  # numbers of the measured rounds
    drawing: bool = False  # the latest measured round is still open for claims
    still_valid: bool = False  # its coupons can still be spent: its rate will rise
    categories: dict[int, CategoryHistory] = field(default_factory=dict)

    @property
    def last(self) -> int | None:
        return self.rounds[-1] if self.rounds else None

    @property
    def average_rate(self) -> Fraction | None:
        claimed = sum(c.claimed for c in self.categories.values())
        redeemed = sum(c.redeemed for c in self.categories.values())
        return Fraction(redeemed, claimed) if claimed else None


# ---------------------------------------------------------------- the proposal


@dataclass(frozen=True)
class Slot:
    """A tier as the rule sees it. `id` and `face_fen` are all `rounds.split` reads of a tier."""

    id: int
    category_id: int
    category: str
    face_fen: int
    current: int  # stock the target round holds now
    previous: int = 0  # what the latest measured round put out


@dataclass(frozen=True)
class Money:
    pool_fen: int
    stock_fen: int  # face value of the target round's stock (returned to the pool by a change)

    @property
    def available_fen(self) -> int:
        return self.pool_fen + self.stock_fen


@dataclass(frozen=True)
class TierAdvice:
    slot: Slot
    base: int
    percent: int  # the category's factor
    proposed: int
    reason: str


@dataclass(frozen=True)
class Advice:
    history: History
    money: Money
    tiers: list[TierAdvice]
    wanted_fen: int  # what base x factor would cost before any scaling down
    empty: str | None = None  # why the round holds nothing yet (empty_round_reason)

    @property
    def proposed_fen(self) -> int:
        return sum(t.slot.face_fen * t.proposed for t in self.tiers)

    @property
    def current_fen(self) -> int:
        return sum(t.slot.face_fen * t.slot.current for t in self.tiers)

    @property
    def scaled(self) -> bool:
        return self.wanted_fen > self.money.available_fen

    @property
    def quantities(self) -> dict[int, int]:
        return {t.slot.id: t.proposed for t in self.tiers}

    @property
    def summary(self) -> str:
        money = self.money

        def amount(fen: int) -> str:
            return yuan(fen, grouped=True)

        line = (
            f"建议投放合计 {amount(self.proposed_fen)} 元（本轮现有 {amount(self.current_fen)} 元）；"
            f"可用资金 {amount(money.available_fen)} 元（资金池 {amount(money.pool_fen)} 元"
            f" + 本轮现有库存 {amount(money.stock_fen)} 元）；"
            f"采纳后资金池余 {amount(money.available_fen - self.proposed_fen)} 元。"
        )
        if self.scaled:
            line += f"按系数调整后需 {amount(self.wanted_fen)} 元，超出可用资金，已整体等比缩减。"
        return line

    @property
    def notes(self) -> list[str]:
        history = self.history
        first = [self.empty, "本轮有券之后，这里的建议按届时的库存和资金重新计算。"] if self.empty else []
        if not history.rounds:
            return [*first, "尚无已开始的轮次可供参考：建议保持本轮现有配额（不超过可用资金）。"]
        numbers = "、".join(f"第{n}轮" for n in history.rounds)
        notes = [*first, f"依据{numbers}的领取与核销数据，以第{history.last}轮的投放量为基数。"]
        if history.drawing:
            notes.append(f"第{history.last}轮仍在领取中，售罄情况尚无定论。")
        if history.still_valid:
            notes.append(f"第{history.last}轮的券仍在有效期内，核销率还会上升。")
        return notes


def _percent(value: Fraction) -> int:
    """A fraction as a whole percentage, halves rounded up."""
    return int(value * 100 + Fraction(1, 2))


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds()) // 60
    if minutes < 1:
        return "不到 1 分钟"
    if minutes < 60:
        return f"{minutes} 分钟"
    if minutes < 24 * 60:
        return f"{minutes // 60} 小时 {minutes % 60} 分钟"
    return f"{minutes // (24 * 60)} 天 {minutes % (24 * 60) // 60} 小时"


def category_factor(category: CategoryHistory, history: History) -> tuple[int, str]:
    """The category's factor in percent (50..150) and why, in words for the bureau."""
    parts = []
    average = history.average_rate
    rate = category.rate
    if rate is None:
        parts.append("此前无人领取，核销率无从计算")
        rate_percent = 100
    elif not average:
        parts.append(f"核销率 {_percent(rate)}%（全活动尚无核销）")
        rate_percent = 100
    else:
        parts.append(f"核销率 {_percent(rate)}%（全活动平均 {_percent(average)}%）")
        rate_percent = _percent(rate / average)

    last = f"第{history.last}轮"
    share = category.share_last
    if category.sold_out_after is not None:
        fast = category.sold_out_after <= FAST_SELL_OUT
        parts.append(f"{last}开抢 {_duration(category.sold_out_after)}售罄")
        demand = DEMAND_FAST if fast else DEMAND_SOLD_OUT
    elif share is None:
        parts.append(f"{last}未投放该品类")
        demand = DEMAND_UNKNOWN
    elif history.drawing:
        parts.append(f"{last}仍在领取中，已领 {_percent(share)}%")
        demand = DEMAND_UNKNOWN
    else:
        parts.append(f"{last}未售罄，领取 {_percent(share)}%")
        demand = 50 + _percent(share) // 2

    if category.leverage is not None:
        parts.append(f"带动比 {float(category.leverage):.1f} 倍")
    low, high = FACTOR_BOUNDS
    percent = min(max(_percent(Fraction(rate_percent * demand, 100 * 100)), low), high)
    if percent > 100:
        verdict = f"建议增加 {percent - 100}%"
    elif percent < 100:
        verdict = f"建议减少 {100 - percent}%"
    else:
        verdict = "建议持平"
    return percent, "，".join(parts) + f" → {verdict}"


def propose(slots: list[Slot], history: History, money: Money) -> Advice:
    """The proposal: base x category factor, scaled down to the money available (pure)."""
    measured = bool(history.rounds)
    factors: dict[int, tuple[int, str]] = {}
    for slot in slots:
        if slot.category_id not in factors:
            category = history.categories.get(slot.category_id) or CategoryHistory(slot.category_id, slot.category)
            factors[slot.category_id] = category_factor(category, history) if measured else (100, "")
    wanted = {}
    for slot in slots:
        base = slot.previous if measured else slot.current
        wanted[slot] = base * factors[slot.category_id][0] // 100
    wanted_fen = sum(slot.face_fen * n for slot, n in wanted.items())
    available = max(money.available_fen, 0)
    if wanted_fen > available:
        # Weights of value: each tier keeps its share of the money; whole coupons, never more.
        counts = rounds.split(available, {slot: slot.face_fen * n for slot, n in wanted.items() if n})
        proposed = {slot: counts.get(slot, 0) for slot in slots}
    else:
        proposed = wanted
    advice = []
    for slot in slots:
        percent, why = factors[slot.category_id]
        base = slot.previous if measured else slot.current
        if not measured:
            why = "尚无往轮数据，保持本轮现有配额"
        if proposed[slot] != wanted[slot]:
            why += f"（按可用资金缩减：{wanted[slot]} → {proposed[slot]} 张）"
        advice.append(TierAdvice(slot, base, percent, proposed[slot], why))
    return Advice(history, money, advice, wanted_fen)


# ---------------------------------------------------------------- reading the figures


def measured_rounds(round_: Round, now: datetime) -> list[Round]:
    """The campaign's rounds before this one that have opened, in order."""
    return list(
        db.session.scalars(
            sa.select(Round)
            .where(Round.campaign_id == round_.campaign_id, Round.number < round_.number, Round.opens_at <= now)
            .order_by(Round.number)
        )
    )


def history(round_: Round, now: datetime) -> History:
    """What the measured rounds show per category, counted by the database."""
    measured = measured_rounds(round_, now)
    if not measured:
        return History()
    last = measured[-1]
    ids = [r.id for r in measured]
    figures: dict[int, dict] = {
        c.id: {"category_id": c.id, "name": c.name}
        for c in db.session.scalars(sa.select(Category).where(Category.campaign_id == round_.campaign_id))
    }

    claims = db.session.execute(
        sa.select(Coupon.round_id, Coupon.category_id, sa.func.count(), sa.func.max(Coupon.claimed_at))
        .where(Coupon.round_id.in_(ids), Coupon.claimed_at.is_not(None))
        .group_by(Coupon.round_id, Coupon.category_id)
    ).all()
    for round_id, category_id, count, latest in claims:
        row = figures[category_id]
        row["claimed"] = row.get("claimed", 0) + count
        if round_id == last.id:
            row["claimed_last"] = count
            row["latest_claim"] = latest

    issued = db.session.execute(
        sa.select(Tier.category_id, sa.func.sum(Allocation.quantity))
        .join(Tier, Tier.id == Allocation.tier_id)
        .where(Allocation.round_id == last.id)
        .group_by(Tier.category_id)
    ).all()
    for category_id, count in issued:
        figures[category_id]["issued_last"] = int(count or 0)

    # Redemptions that stand (not revoked), as the dashboard counts them: refunds included.
    spent = db.session.execute(
        sa.select(
            Redemption.category_id,
            sa.func.count(),
            sa.func.sum(Redemption.paid_fen),
            sa.func.sum(Redemption.spend_fen),
        )
        .join(Coupon, Coupon.id == Redemption.coupon_id)
        .where(Coupon.round_id.in_(ids), Redemption.revoked_at.is_(None))
        .group_by(Redemption.category_id)
    ).all()
    for category_id, count, paid, spend in spent:
        figures[category_id] |= {"redeemed": count, "redeemed_fen": int(paid or 0), "spend_fen": int(spend or 0)}

    categories = {}
    for category_id, row in figures.items():
        latest = row.pop("latest_claim", None)
        sold_out = row.get("issued_last", 0) > 0 and row.get("claimed_last", 0) >= row["issued_last"]
        row["sold_out_after"] = max(latest - last.opens_at, timedelta(0)) if sold_out and latest else None
        categories[category_id] = CategoryHistory(**row)
    return History(
        rounds=tuple(r.number for r in measured),
        drawing=last.closed_at is None and now < last.closes_at,
        still_valid=now < last.valid_until,
        categories=categories,
    )


def money(round_: Round) -> Money:
    """The pool, and the value of the round's stock that a quota change returns to it."""
    tiers = {t.id: t for t in round_.campaign.tiers}
    held = remaining_by_tier(round_.id)
    return Money(ledger.pool_fen(round_.campaign_id), sum(tiers[t].face_fen * n for t, n in held.items()))


def slots(round_: Round, previous: Round | None) -> list[Slot]:
    """Every tier of the campaign, with the round's stock and the previous round's allocation."""
    held = remaining_by_tier(round_.id)
    put_out = {}
    if previous is not None:
        put_out = dict(
            db.session.execute(
                sa.select(Allocation.tier_id, Allocation.quantity).where(Allocation.round_id == previous.id)
            ).all()
        )
    tiers = sorted(round_.campaign.tiers, key=lambda t: (t.category.position, t.face_fen, t.threshold_fen))
    return [
        Slot(t.id, t.category_id, t.category.name, t.face_fen, held.get(t.id, 0), put_out.get(t.id, 0)) for t in tiers
    ]


def advise(round_: Round, now: datetime) -> Advice:
    """The proposal for this round, from the rounds before it."""
    measured = history(round_, now)
    previous = next((r for r in round_.campaign.rounds if r.number == measured.last), None)
    available = money(round_)
    advice = propose(slots(round_, previous), measured, available)
    empty = empty_round_reason(round_, now, stocked=available.stock_fen > 0, pool_fen=available.pool_fen)
    return replace(advice, empty=empty)


def planned_rounds(campaign_id: int) -> list[int]:
    """The numbers of the rounds the plan put money in (the ledger's `allocate` entries)."""
    return list(
        db.session.scalars(
            sa.select(Round.number)
            .join(LedgerEntry, LedgerEntry.round_id == Round.id)
            .where(LedgerEntry.campaign_id == campaign_id, LedgerEntry.kind == "allocate")
            .distinct()
            .order_by(Round.number)
        )
    )


def empty_round_reason(round_: Round, now: datetime, *, stocked: bool, pool_fen: int) -> str | None:
    """Why a round that has not opened holds no coupon, in words for the bureau (its quota page
    and its advice show zeros); None when it holds some, has opened, or the plan stocked it."""
    campaign = round_.campaign
    previous = next((r for r in campaign.rounds if r.number == round_.number - 1), None)
    if stocked or now >= round_.opens_at or previous is None:
        return None
    planned = planned_rounds(campaign.id)
    if round_.number in planned:
        return None  # stocked by the plan, then set to nothing by the bureau: the page says so
    where = "、".join(f"第{n}轮" for n in planned) or "各轮"
    if pool_fen > 0:
        money_ = f"本活动计划投放的券全部在{where}（资金池另有 {yuan(pool_fen, grouped=True)} 元，可用于调增本轮配额）"
    else:
        money_ = f"本活动的预算全部投放在{where}"
    this = f"第{round_.number}轮"
    if campaign.rollover_policy == "none":
        return f"{money_}；本活动不滚动，{this}没有计划投放的券。"
    source = f"第{previous.number}轮" if previous.number == 1 else "此前各轮"
    if round_.rolled_over_at is not None:
        return (
            f"{money_}；{this}的券由{source}未领取、过期和退回的金额滚动生成，"
            f"{moment(round_.rolled_over_at)}滚动时没有可滚动的金额，所以本轮没有券。"
        )
    due = rounds.rollover_due(previous, round_)
    return (
        f"{money_}；{this}的券由{source}未领取、过期和退回的金额滚动生成，第{previous.number}轮结束后才能确定"
        f"（预计 {moment(due)} 由系统自动生成），所以现在各券种都是0张。"
    )


def check_affordable(round_: Round, quantities: dict[int, int], now: datetime) -> Money:
    """Refuse (QuotaRefused) quantities for the round worth more than the money available to it.

    Takes the campaign's pool lock first, so the figure holds until the caller's quota change
    (`rounds.adjust_quotas`, which checks the pool again) and commit. A round that has opened is
    left to `adjust_quotas`, which refuses any change to it in its own words.
    """
    rounds.lock_campaign(round_.campaign_id)
    available = money(round_)
    if now >= round_.opens_at:
        return available
    tiers = {t.id: t for t in round_.campaign.tiers}
    held = remaining_by_tier(round_.id)
    kept = {t: n for t, n in held.items() if t not in quantities}
    total = sum(tiers[t].face_fen * n for t, n in (quantities | kept).items() if t in tiers)
    if total > available.available_fen:
        pool, stock = yuan(available.pool_fen, grouped=True), yuan(available.stock_fen, grouped=True)
        raise rounds.QuotaRefused(
            f"方案合计 {yuan(total, grouped=True)} 元，超过可用资金 {yuan(available.available_fen, grouped=True)} 元"
            f"（资金池 {pool} 元 + 本轮现有库存 {stock} 元），请减少数量"
        )
    return available
