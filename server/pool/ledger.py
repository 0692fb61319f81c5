"""The campaign's money as an append-only ledger (SPEC section 2, 资金池).

Every movement is one row of `ledger_entries` moving an amount from one account to another
(`models.LEDGER_MOVES`), so the sum over the accounts never changes and

    budget + carried in + recovered = pool + stock + claimed + redeemed + forfeited + treasury
                                      + carried + subsidy + payable + paid + withheld + disallowed

holds after every transaction by construction. What can go wrong is the ledger disagreeing with
the coupons, so `verify` checks each account against what should back it: the stock account
against the coupons in stock, claimed against the coupons held and not yet used, redeemed and
forfeited against what the used coupons' redemptions paid and their refunds left, subsidy
against the purchase subsidies approved, the settlement accounts against the batches' items,
lines and payments (pool/settlement.py), and no account below zero.

Balances are sums over the entries, never a counter row: the draw and the till append and do
not queue on one hot row.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from ..core.db import utc_param
from ..core.money import tier_name, yuan
from ..extensions import db
from ..models import (
    LEDGER_MOVES,
    Campaign,
    Coupon,
    LedgerEntry,
    Redemption,
    Round,
    SettlementBatch,
    SettlementItem,
    SettlementLine,
    SettlementPayment,
    SubsidyApplication,
    Tier,
)
from ..models import CouponState as State

ACCOUNTS = (
    "pool",
    "stock",
    "claimed",
    "redeemed",
    "forfeited",
    "treasury",
    "carried",
    "subsidy",
    # Settlement (pool/settlement.py): what is redeemed, frozen into batches.
    "payable",
    "paid",
    "withheld",
    "disallowed",
)
# The accounts that hold what residents' redemptions spent, whatever settlement has made of it
# since (frozen, paid, withheld, disallowed): `spent_fen`.
SPENT = ("redeemed", "forfeited", "payable", "paid", "withheld", "disallowed")


def moved(kind_sums, accounts: dict[str, int] | None = None) -> dict[str, int]:
    """The accounts after entries summed per kind, (kind, fen) pairs: each sum leaves its kind's
    source account and enters its target (`models.LEDGER_MOVES`). Adds to `accounts` if given,
    else to every account at zero."""
    accounts = dict.fromkeys(ACCOUNTS, 0) if accounts is None else accounts
    for kind, amount in kind_sums:
        source, target = LEDGER_MOVES[kind]
        accounts[source] = accounts.get(source, 0) - int(amount)
        accounts[target] = accounts.get(target, 0) + int(amount)
    return accounts


def spent_fen(accounts: dict[str, int]) -> int:
    """What redemptions took from the campaign: the SPENT accounts, less what merchants paid back
    (a clawback repays what a refund had already returned to the pool)."""
    return sum(accounts.get(a, 0) for a in SPENT) + accounts.get("recovered", 0)


ACCOUNT_NAMES = {
    "budget": "总预算",
    "pool": "资金池（未投放）",
    "stock": "库存（未领取）",
    "claimed": "已领未用",
    "redeemed": "已核销",
    "forfeited": "退货不退回",
    "treasury": "已返还财政",
    "carried": "结转下期活动",
    "subsidy": "已发放补贴",
    "carried_in": "上期结余转入",
    "payable": "结算待付",
    "paid": "已付商户",
    "withheld": "结算暂扣",
    "disallowed": "审计剔除",
    "recovered": "已追回",
}
KIND_NAMES = {
    "budget": "预算拨入",
    "allocate": "计划投放",
    "rollover": "滚动投放",
    "adjust_up": "调增配额",
    "adjust_down": "调减配额",
    "withdraw": "轮次结束未领取收回",
    "claim": "领取",
    "expire": "过期未用退回",
    "revoke_claim": "撤销领取退回",
    "redeem": "核销",
    "revoke": "撤回核销",
    "refund_return": "退货退回资金池",
    "refund_forfeit": "退货视为已用",
    "treasury": "返还财政",
    "subsidy": "购车补贴",
    "carry_out": "结余转入下期活动",
    "carry_in": "上期结余转入",
    "short": "不找零余额退回",
    "revoke_short": "撤回核销取回余额",
    "settle": "核销转入结算批次",
    "deduct": "结算后退货扣减",
    "disallow": "审计认定无效",
    "reallow": "审计剔除后退货冲回",
    "withhold": "暂扣结算款",
    "release": "解除暂扣",
    "pay": "支付商户",
    "recover": "追回商户款项",
}
# What each kind of entry does to the coupons it counts: (state they leave, state they enter).
# Refunds under "forfeit" leave the coupon used; the budget and the treasury move no coupon.
# So the books give the number of coupons in each state, which `verify` checks by value.
COUPON_MOVES = {
    "allocate": (None, State.STOCK),
    "rollover": (None, State.STOCK),
    "adjust_up": (None, State.STOCK),
    "adjust_down": (State.STOCK, State.WITHDRAWN),
    "withdraw": (State.STOCK, State.WITHDRAWN),
    "claim": (State.STOCK, State.CLAIMED),
    "expire": (State.CLAIMED, State.EXPIRED),
    "revoke_claim": (State.CLAIMED, State.VOID),
    "redeem": (State.CLAIMED, State.USED),
    "revoke": (State.USED, State.CLAIMED),
    "refund_return": (State.USED, State.VOID),
}


def entry(kind: str, campaign_id: int, amount_fen: int, now: datetime, **fields) -> dict:
    """A ledger row as a dict, for `record` (several at once) or a bulk insert."""
    source, target = LEDGER_MOVES[kind]
    return {
        "campaign_id": campaign_id,
        "round_id": fields.get("round_id"),
        "category_id": fields.get("category_id"),
        "tier_id": fields.get("tier_id"),
        "kind": kind,
        "source": source,
        "target": target,
        "amount_fen": amount_fen,
        "coupons": fields.get("coupons", 0),
        "coupon_id": fields.get("coupon_id"),
        "redemption_id": fields.get("redemption_id"),
        "key": fields.get("key"),
        "actor": fields.get("actor"),
        "note": fields.get("note"),
        "created_at": now,
    }


def tier_entry(kind: str, round_: Round, tier: Tier, count: int, now: datetime, **fields) -> dict:
    """An entry moving `count` coupons of a tier in a round (allocations, rollovers, quota changes)."""
    return entry(
        kind,
        round_.campaign_id,
        tier.face_fen * count,
        now,
        round_id=round_.id,
        tier_id=tier.id,
        category_id=tier.category_id,
        coupons=count,
        **fields,
    )


def record(rows: list[dict]) -> None:
    if rows:
        db.session.execute(sa.insert(LedgerEntry.__table__), rows)


def grouped(kind: str, campaign_id: int, coupons, now: datetime, **fields) -> list[dict]:
    """One entry per (round, tier) for a batch of coupons moved together by a job.

    `coupons` are rows with round_id, tier_id, category_id and face_fen.
    """
    groups: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for c in coupons:
        groups[c.round_id, c.tier_id, c.category_id].append(c.face_fen)
    return [
        entry(
            kind,
            campaign_id,
            sum(faces),
            now,
            round_id=round_id,
            tier_id=tier_id,
            category_id=category_id,
            coupons=len(faces),
            **fields,
        )
        for (round_id, tier_id, category_id), faces in sorted(groups.items())
    ]


def coupon_entry_sql(
    kind: str, rows: str, *, campaign: str, redemption: str = "NULL", amount: str = "c.face_fen", coupons: str = "1"
) -> str:
    """The ledger row of one coupon's move, as SQL: `rows` yields the coupons moved as `c` (id,
    round_id, category_id, tier_id, face_fen), `campaign` names their campaign; the amount is the
    coupon's face unless said. The one definition of a coupon's entry: the till's moves below and
    the PostgreSQL draw's statement both use it."""
    source, target = LEDGER_MOVES[kind]
    return (
        "INSERT INTO ledger_entries (campaign_id, round_id, category_id, tier_id, kind, source, target,"
        " amount_fen, coupons, coupon_id, redemption_id, created_at)"
        f" SELECT {campaign}, c.round_id, c.category_id, c.tier_id, '{kind}', '{source}', '{target}',"
        f" {amount}, {coupons}, c.id, {redemption}, :created_at FROM {rows}"
    )


# One statement each: the campaign is found from the coupon's round inside the insert, so
# recording costs no extra round trip.
_COUPON_MOVES = {
    kind: sa.text(
        coupon_entry_sql(
            kind,
            "coupons c JOIN rounds r ON r.id = c.round_id WHERE c.id = :coupon_id",
            campaign="r.campaign_id",
            redemption=":redemption_id",
            amount="COALESCE(CAST(:amount_fen AS BIGINT), c.face_fen)",
            coupons=":coupons",
        )
    ).bindparams(utc_param("created_at"))
    for kind in (
        "claim",
        "redeem",
        "revoke",
        "refund_return",
        "refund_forfeit",
        "revoke_claim",
        "short",
        "revoke_short",
    )
}


def coupon_moved(
    kind: str,
    coupon_id: int,
    now: datetime,
    redemption_id: int | None = None,
    *,
    amount_fen: int | None = None,
    coupons: int = 1,
) -> None:
    """Record one coupon's move (claim, redeem, revoke, refund, revoke_claim, short): its face
    value unless `amount_fen` says what part of it moved, and whether the coupon itself changed
    state (`coupons`: 1, or 0 for a part of its value alone)."""
    params = {"coupon_id": coupon_id, "redemption_id": redemption_id, "created_at": now}
    db.session.execute(_COUPON_MOVES[kind], params | {"amount_fen": amount_fen, "coupons": coupons})


def subsidies_fen(campaign_id: int | None, status: str) -> int:
    """What the campaign's purchase-subsidy applications of a status add up to (every campaign's,
    with None): approved ones are paid, pending ones are owed."""
    query = sa.select(sa.func.coalesce(sa.func.sum(SubsidyApplication.subsidy_fen), 0)).where(
        SubsidyApplication.status == status
    )
    if campaign_id is not None:
        query = query.where(SubsidyApplication.campaign_id == campaign_id)
    return int(db.session.scalar(query))


# ---------------------------------------------------------------- balances


def _movements(campaign_id: int, *columns):
    """Every entry twice: + on its target account, - on its source account."""
    entries = LedgerEntry.__table__
    picked = [entries.c[name] for name in columns]
    credit = sa.select(
        *picked, entries.c.target.label("account"), entries.c.amount_fen.label("amount"), entries.c.coupons
    ).where(entries.c.campaign_id == campaign_id)
    debit = sa.select(
        *picked,
        entries.c.source.label("account"),
        (-entries.c.amount_fen).label("amount"),
        (-entries.c.coupons).label("coupons"),
    ).where(entries.c.campaign_id == campaign_id)
    return sa.union_all(credit, debit).subquery()


def balances(campaign_id: int, *by: str) -> dict[tuple, dict[str, int]]:
    """Balance in fen of each account, keyed by the values of the `by` columns.

    `balances(c)` -> {(): {"pool": ..., ...}}; `balances(c, "round_id")` -> {(round_id,): {...}}.
    """
    moves = _movements(campaign_id, *by)
    keys = [moves.c[name] for name in by]
    rows = db.session.execute(
        sa.select(*keys, moves.c.account, sa.func.sum(moves.c.amount)).group_by(*keys, moves.c.account)
    )
    result: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ACCOUNTS, 0))
    for row in rows:
        *key, account, amount = row
        result[tuple(key)][account] = int(amount or 0)
    return dict(result)


def pool_fen(campaign_id: int) -> int:
    """What the pool holds now (index-backed: few entries touch the pool)."""
    entries = LedgerEntry.__table__
    credit = sa.select(sa.func.coalesce(sa.func.sum(entries.c.amount_fen), 0)).where(
        entries.c.campaign_id == campaign_id, entries.c.target == "pool"
    )
    debit = sa.select(sa.func.coalesce(sa.func.sum(entries.c.amount_fen), 0)).where(
        entries.c.campaign_id == campaign_id, entries.c.source == "pool"
    )
    return int(db.session.scalar(credit)) - int(db.session.scalar(debit))


# ---------------------------------------------------------------- the auditor's check


@dataclass
class Report:
    campaign: Campaign
    totals: dict[str, int]
    by_round: dict[int, dict[str, int]]
    by_category: dict[int, dict[str, int]]
    problems: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return not self.problems


def _backing(campaign_id: int) -> dict[tuple[int, int, str], int]:
    """What should back each account, per (round, tier, account): the face value of the coupons in
    stock and held; of those used ("spent"), their face less what their redemptions did not pay
    (a short sale's rest) and what refunds returned to the pool, and of that what refunds
    withheld from the merchant ("forfeited")."""
    account = sa.case(
        (Coupon.state == State.STOCK, "stock"),
        (Coupon.state == State.CLAIMED, "claimed"),
        else_="spent",
    )
    rows = db.session.execute(
        sa.select(Coupon.round_id, Coupon.tier_id, account, sa.func.sum(Coupon.face_fen))
        .join(Round, Round.id == Coupon.round_id)
        .where(Round.campaign_id == campaign_id, Coupon.state.in_((State.STOCK, State.CLAIMED, State.USED)))
        .group_by(Coupon.round_id, Coupon.tier_id, account)
    )
    backing = {(r, t, a): int(v) for r, t, a, v in rows}
    spent = db.session.execute(
        sa.select(
            Coupon.round_id,
            Coupon.tier_id,
            sa.func.sum(Redemption.face_fen - Redemption.paid_fen + Redemption.returned_fen),
            sa.func.sum(Redemption.withheld_fen),
        )
        .join(Coupon, Coupon.id == Redemption.coupon_id)
        .join(Round, Round.id == Coupon.round_id)
        .where(Round.campaign_id == campaign_id, Redemption.revoked_at.is_(None), Coupon.state == State.USED)
        .group_by(Coupon.round_id, Coupon.tier_id)
    )
    for round_id, tier_id, unpaid, withheld in spent:
        backing[round_id, tier_id, "spent"] = backing.get((round_id, tier_id, "spent"), 0) - int(unpaid)
        backing[round_id, tier_id, "forfeited"] = int(withheld)
    return backing


def _carries(campaign_id: int) -> list[tuple[str, int, int]]:
    """Each carry of leftover this campaign sent or received: (key, amount out, amount in); the two
    entries of a carry share its key, in the two campaigns."""
    entries = LedgerEntry.__table__
    mine = sa.select(entries.c.key).where(
        entries.c.campaign_id == campaign_id, entries.c.kind.in_(("carry_out", "carry_in"))
    )
    out_fen = sa.func.sum(sa.case((entries.c.kind == "carry_out", entries.c.amount_fen), else_=0))
    in_fen = sa.func.sum(sa.case((entries.c.kind == "carry_in", entries.c.amount_fen), else_=0))
    rows = db.session.execute(
        sa.select(entries.c.key, out_fen, in_fen)
        .where(entries.c.key.in_(mine), entries.c.kind.in_(("carry_out", "carry_in")))
        .group_by(entries.c.key)
    )
    return [(key, int(o), int(i)) for key, o, i in rows]


def _summed(fine: dict[tuple, dict[str, int]], key) -> dict[tuple, dict[str, int]]:
    """Balances kept finer, added up by `key` of their keys."""
    summed: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ACCOUNTS, 0))
    for place, accounts in fine.items():
        target = summed[key(place)]
        for account, fen in accounts.items():
            target[account] = target.get(account, 0) + fen
    return summed


def verify(campaign: Campaign) -> Report:
    """Balances of the campaign and every disagreement between the ledger and the coupons."""
    fine = balances(campaign.id, "round_id", "category_id", "tier_id")  # one pass over the entries
    totals = _summed(fine, lambda place: ())[()]
    by_round = {k[0]: v for k, v in _summed(fine, lambda place: place[:1]).items() if k[0] is not None}
    by_category = {k[0]: v for k, v in _summed(fine, lambda place: place[1:2]).items() if k[0] is not None}
    report = Report(campaign, totals, by_round, by_category)
    problem = report.problems.append
    budget = totals.get("budget", 0)
    if -budget != campaign.budget_fen:
        problem(
            f"预算拨入 {yuan(-budget, grouped=True)} 元，与活动总预算 {yuan(campaign.budget_fen, grouped=True)} 元不符"
        )
    carried_in = -totals.get("carried_in", 0)
    recovered = -totals.get("recovered", 0)
    held = sum(totals.get(a, 0) for a in ACCOUNTS)
    if held != campaign.budget_fen + carried_in + recovered:
        funds = yuan(campaign.budget_fen + carried_in + recovered, grouped=True)
        problem(f"各账户合计 {yuan(held, grouped=True)} 元，不等于总预算、上期结余转入与已追回之和 {funds} 元")
    for key, out_fen, in_fen in _carries(campaign.id):
        if out_fen != in_fen:
            problem(f"结余结转 {key}：转出 {yuan(out_fen, grouped=True)} 元，转入 {yuan(in_fen, grouped=True)} 元")
    for account in ACCOUNTS:
        if account in ("redeemed", "payable"):
            # Below zero for a while: a refund after its sale was frozen (until the next batch
            # deducts it), a clawback claim outstanding. Both are checked exactly below.
            continue
        if totals.get(account, 0) < 0:
            problem(f"{ACCOUNT_NAMES[account]} 为负：{yuan(totals[account], grouped=True)} 元")

    approved = subsidies_fen(campaign.id, "approved")
    if totals.get("subsidy", 0) != approved:
        paid = totals.get("subsidy", 0)
        paid, approved = yuan(paid, grouped=True), yuan(approved, grouped=True)
        problem(f"账上{ACCOUNT_NAMES['subsidy']} {paid} 元，已批准的补贴申请合计 {approved} 元")

    tier_redeemed = sum(v.get("redeemed", 0) for k, v in fine.items() if k[2] is not None)
    report.problems.extend(_settlement_problems(campaign.id, totals, tier_redeemed, recovered))

    rounds = {r.id: r.number for r in campaign.rounds}
    tiers = {t.id: t for t in campaign.tiers}
    ledger = _summed(fine, lambda place: (place[0], place[2]))
    backing = _backing(campaign.id)
    places = {(r, t) for r, t in ledger if r is not None and t is not None} | {(r, t) for r, t, _ in backing}
    for round_id, tier_id in sorted(places):
        accounts = ledger.get((round_id, tier_id), dict.fromkeys(ACCOUNTS, 0))
        checks = (
            ("stock", accounts.get("stock", 0), backing.get((round_id, tier_id, "stock"), 0)),
            ("claimed", accounts.get("claimed", 0), backing.get((round_id, tier_id, "claimed"), 0)),
            (
                "redeemed",
                accounts.get("redeemed", 0) + accounts.get("forfeited", 0),
                backing.get((round_id, tier_id, "spent"), 0),
            ),
            ("forfeited", accounts.get("forfeited", 0), backing.get((round_id, tier_id, "forfeited"), 0)),
        )
        for account, in_ledger, in_coupons in checks:
            if in_ledger != in_coupons:  # named only when wrong: a tier's name is a query
                tier = tiers.get(tier_id)
                where = f"第{rounds.get(round_id, '?')}轮 " + (tier_label(tier) if tier else f"券种{tier_id}")
                held, backed = yuan(in_ledger, grouped=True), yuan(in_coupons, grouped=True)
                problem(f"{where}：账上{ACCOUNT_NAMES[account]} {held} 元，券面实有 {backed} 元")
    return report


def _settlement_problems(campaign_id: int, totals: dict[str, int], tier_redeemed: int, recovered: int) -> list[str]:
    """The settlement accounts against the batches: what batches took from redeemed is their sales
    and deductions; payable is what their lines owe less paid and withheld, plus recoveries; paid,
    withheld and recovered are the lines' and payments'; disallowed is what audits set aside; and
    every line's figures are its items'."""
    items, lines, batches = SettlementItem.__table__, SettlementLine.__table__, SettlementBatch.__table__
    mine = sa.select(batches.c.id).where(batches.c.campaign_id == campaign_id)
    amount = items.c.amount_fen
    got = db.session.execute(
        sa.select(
            sa.func.sum(sa.case((items.c.kind.in_(("sale", "deduct")), amount), else_=0)),
            sa.func.sum(
                sa.case(
                    (items.c.kind == "disallow", -amount),
                    (sa.and_(items.c.kind == "sale", sa.not_(items.c.counted)), amount),
                    else_=0,
                )
            ),
        ).where(items.c.batch_id.in_(mine))
    ).one()
    taken, disallowed = int(got[0] or 0), int(got[1] or 0)
    sums = db.session.execute(
        sa.select(
            *(
                sa.func.coalesce(sa.func.sum(lines.c[name]), 0)
                for name in ("gross_fen", "excluded_fen", "deducted_fen", "paid_fen", "withheld_fen", "recovered_fen")
            )
        ).where(lines.c.batch_id.in_(mine))
    ).one()
    gross, excluded, deducted, paid, withheld, line_recovered = (int(v) for v in sums)
    payments = dict(
        db.session.execute(
            sa.select(SettlementPayment.kind, sa.func.sum(SettlementPayment.amount_fen))
            .join(lines, lines.c.id == SettlementPayment.line_id)
            .where(lines.c.batch_id.in_(mine))
            .group_by(SettlementPayment.kind)
        ).all()
    )
    expected = {
        "redeemed": tier_redeemed - taken,
        "payable": gross - excluded - deducted - paid - withheld + recovered,
        "paid": paid,
        "withheld": withheld,
        "disallowed": disallowed,
    }
    problems = [
        f"账上{ACCOUNT_NAMES[account]} {yuan(totals.get(account, 0), grouped=True)} 元，"
        f"结算批次实有 {yuan(value, grouped=True)} 元"
        for account, value in expected.items()
        if totals.get(account, 0) != value
    ]
    for kind, recorded, name in (("pay", paid, "已付"), ("recover", line_recovered, "已追回")):
        if int(payments.get(kind) or 0) != recorded:
            problems.append(f"结算明细{name} {yuan(recorded, grouped=True)} 元，登记的银行流水合计 "
                            f"{yuan(int(payments.get(kind) or 0), grouped=True)} 元")  # fmt: skip
    if recovered != line_recovered:
        problems.append(
            f"账上已追回 {yuan(recovered, grouped=True)} 元，结算明细已追回 {yuan(line_recovered, grouped=True)} 元"
        )
    per_line = db.session.execute(
        sa.select(
            lines.c.id,
            lines.c.gross_fen,
            lines.c.excluded_fen,
            lines.c.deducted_fen,
            sa.select(sa.func.coalesce(sa.func.sum(sa.case((items.c.kind == "sale", amount), else_=0)), 0))
            .where(items.c.batch_id == lines.c.batch_id, items.c.merchant_id == lines.c.merchant_id)
            .scalar_subquery(),
            sa.select(
                sa.func.coalesce(
                    sa.func.sum(sa.case((sa.and_(items.c.kind == "sale", sa.not_(items.c.counted)), amount), else_=0)),
                    0,
                )
            )
            .where(items.c.batch_id == lines.c.batch_id, items.c.merchant_id == lines.c.merchant_id)
            .scalar_subquery(),
            sa.select(sa.func.coalesce(sa.func.sum(sa.case((items.c.kind != "sale", -amount), else_=0)), 0))
            .where(items.c.batch_id == lines.c.batch_id, items.c.merchant_id == lines.c.merchant_id)
            .scalar_subquery(),
        ).where(lines.c.batch_id.in_(mine))
    )
    for line_id, *kept, gross_items, excluded_items, deducted_items in per_line:
        if tuple(kept) != (gross_items, excluded_items, deducted_items):
            problems.append(f"结算明细 {line_id} 的金额与其核销明细不符")
    return problems


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _cell(text: str, width: int, right: bool = True) -> str:
    pad = " " * max(width - _width(text), 0)
    return pad + text if right else text + pad


PUT_IN = ("allocate", "rollover", "adjust_up")  # kinds that put coupons on the wheel
_GIVEN_BACK = ("withdraw", "expire", "revoke_claim", "refund_return", "adjust_down", "short")


def flows(campaign_id: int, column: str) -> dict[int, tuple[int, int]]:
    """Per round (or category): value put in as stock, and value given back to the pool."""
    entries = LedgerEntry.__table__
    key = entries.c[column]
    put_in = sa.func.sum(sa.case((entries.c.kind.in_(PUT_IN), entries.c.amount_fen), else_=0))
    given_back = sa.func.sum(
        sa.case(
            (entries.c.kind.in_(_GIVEN_BACK), entries.c.amount_fen),
            (entries.c.kind == "revoke_short", -entries.c.amount_fen),  # a short sale's rest taken back
            else_=0,
        )
    )
    rows = db.session.execute(
        sa.select(key, put_in, given_back).where(entries.c.campaign_id == campaign_id, key.is_not(None)).group_by(key)
    )
    return {k: (int(a or 0), int(b or 0)) for k, a, b in rows}


def report_text(report: Report) -> str:
    """The `flask ledger` printout: balances of the campaign, then per round and category how
    the stock put in was used (put in = stock + claimed + redeemed + forfeited + given back)."""
    campaign = report.campaign
    lines = [f"{campaign.name}（{campaign.code}）总预算 {yuan(campaign.budget_fen, grouped=True)} 元"]
    if report.totals.get("carried_in"):
        lines[0] += f"，上期结余转入 {yuan(-report.totals['carried_in'], grouped=True)} 元"
    lines.append("  " + "  ".join(_cell(ACCOUNT_NAMES[a], 16) for a in ACCOUNTS))
    lines.append("  " + "  ".join(_cell(yuan(report.totals.get(a, 0), grouped=True), 16) for a in ACCOUNTS))

    spent = ("stock", "claimed", "redeemed", "forfeited")
    header = ["投放", *(ACCOUNT_NAMES[a] for a in spent), "退回资金池"]

    def table(title: str, labels: dict[int, str], balances_by: dict[int, dict[str, int]], moved) -> None:
        lines.append("")
        lines.append("  " + _cell(title, 12, right=False) + "".join(_cell(h, 16) for h in header))
        for key, label in labels.items():
            if key not in moved:
                continue
            accounts = balances_by.get(key, {})
            put_in, given_back = moved[key]
            cells = [put_in, *(accounts.get(a, 0) for a in spent), given_back]
            lines.append(
                "  " + _cell(label, 12, right=False) + "".join(_cell(yuan(v, grouped=True), 16) for v in cells)
            )

    rounds = {r.id: f"第{r.number}轮" for r in sorted(campaign.rounds, key=lambda r: r.number)}
    table("轮次", rounds, report.by_round, flows(campaign.id, "round_id"))
    categories = {c.id: c.name for c in sorted(campaign.categories, key=lambda c: c.position)}
    table("品类", categories, report.by_category, flows(campaign.id, "category_id"))
    lines.append("")
    if report.problems:
        lines.append("  账实不符：")
        lines.extend(f"    - {p}" for p in report.problems)
    else:
        lines.append(
            "  账实相符：总预算 + 上期结余转入 + 已追回 = 资金池 + 库存 + 已领未用 + 已核销 + 退货不退回 + 已返还财政"
            " + 结转下期活动 + 已发放补贴 + 结算待付 + 已付商户 + 结算暂扣 + 审计剔除；结算账户与结算批次一致"
        )
    return "\n".join(lines)


def tier_label(tier: Tier) -> str:
    return tier_name(tier.category.name, tier.face_fen)
