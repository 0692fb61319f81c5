"""Settlement batches (结算批次): what the bureau pays each merchant, frozen from the ledger, audited,
approved and paid by different people, with every move of money in the ledger.

    draft ──审计意见(auditor)──▶ audited ──批准(admin, not the auditor)──▶ approved ──付款(operator)──▶ paid

- **Freezing** a batch (`freeze`) takes, for one campaign and a period the bureau names, every
  settled redemption (coupons.settled_clause) made before the period's end and in no batch yet:
  one "sale" item each, at what it owes then. A redemption is frozen into exactly one batch (a
  partial unique index holds it), so a redemption that commits while a batch freezes is in this
  batch or in the next, never in both and never in none. Freezing the same period again answers
  the batch already frozen.
- **Changes since** an earlier batch (a refund, a revoke, an audit's invalidation after the
  fact) become "adjust" items of the next batch: what the redemption owes now less what batches
  have settled for it. A merchant whose deductions exceed its sales carries the shortfall to its
  next line; a shortfall no later batch takes is a clawback claim, recovered when it pays back.
- **Withholding**: while a merchant is suspended or blacklisted in the campaign, the unpaid part
  of its lines is withheld (kept visible, not payable); reinstated, it is released.

Ledger accounts (models.LEDGER_MOVES, per campaign, no round or tier): redeemed (owed, not yet
frozen) -> payable -> paid, withheld or disallowed; deductions go back to redeemed, recoveries
come in from "recovered". `ledger.verify` checks them against the items, lines and payments.

Every write takes the campaign's settlement lock (PostgreSQL advisory lock; SQLite's one writer),
and each step is a guarded UPDATE as well: two admins approving, two operators paying, approve one
batch once and pay a line at most what it owes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from ..core.db import advisory_lock, lock_row, on_postgres
from ..core.errors import Forbidden, InvalidInput, NotFound, refusal
from ..core.money import yuan
from ..core.time import local_midnight
from ..extensions import db
from ..models import (
    AdminUser,
    Campaign,
    Category,
    Enrolment,
    Merchant,
    Redemption,
    SettlementBatch,
    SettlementItem,
    SettlementLine,
    SettlementPayment,
)
from . import ledger
from .coupons import settled_clause

SettlementRefused = refusal("SETTLEMENT_REFUSED", 409, "结算操作未执行", subject="未执行", api=False)

LOCK_KEY = int.from_bytes(b"setl", "big")  # advisory_lock(this key, the campaign)
STATE_NAMES = {"draft": "待审计", "audited": "已审计待批准", "approved": "已批准待付款", "paid": "已付款"}
SAMPLE_SHARE = 0.10  # Jincheng §10: one in ten checked before payment
# Who takes each step (admin/access.py's roles): duties separated, one person one step.
FREEZE_ROLES = ("admin", "operator")
AUDIT_ROLES = ("auditor",)
APPROVE_ROLES = ("admin",)
PAY_ROLES = ("operator",)
GOOD_STANDING = ("approved",)


def _serialise(campaign_id: int) -> None:
    """One settlement writer per campaign at a time."""
    if on_postgres():
        advisory_lock(LOCK_KEY, campaign_id)
    else:
        lock_row(Campaign.__table__, campaign_id)


def _may(admin: AdminUser, roles: tuple[str, ...], step: str) -> None:
    if admin.role not in roles:
        raise Forbidden(f"{step}须由{'或'.join(_ROLE_WORDS[r] for r in roles)}办理")


_ROLE_WORDS = {"admin": "管理员", "auditor": "审计人员", "operator": "运营人员"}


def _money_moved(campaign_id: int, kind: str, amount_fen: int, now: datetime, admin: AdminUser | None, note: str):
    """One settlement entry of the ledger (a negative amount moves the other way)."""
    reverse = {
        "settle": "deduct",
        "deduct": "settle",
        "withhold": "release",
        "release": "withhold",
        "disallow": "reallow",
        "reallow": "disallow",
    }
    if amount_fen < 0:
        kind, amount_fen = reverse.get(kind, kind), -amount_fen
    if amount_fen:
        actor = f"admin:{admin.username}"[:40] if admin else None
        ledger.record([ledger.entry(kind, campaign_id, amount_fen, now, actor=actor, note=note[:200])])


def batch_name(batch: SettlementBatch) -> str:
    return f"第{batch.number}批（{batch.label}）"


# ---------------------------------------------------------------- freezing


def period_end(period_to: date) -> datetime:
    """The UTC instant a period ending on this local day ends (its 24:00)."""
    return local_midnight(period_to + timedelta(days=1))


def freeze(
    campaign: Campaign,
    period_from: date | None,
    period_to: date,
    label: str,
    admin: AdminUser,
    now: datetime,
) -> tuple[SettlementBatch, bool]:
    """The campaign's batch for the period, frozen now; (the batch, whether it is new). The same
    period frozen again answers the batch it already has."""
    _may(admin, FREEZE_ROLES, "生成结算批次")
    label = (label or "").strip() or f"{period_from or '活动开始'} 至 {period_to}"
    if period_from and period_from > period_to:
        raise InvalidInput("结算期间的开始日期晚于结束日期")
    if period_end(period_to) > now:
        raise SettlementRefused(f"结算期间到 {period_to} 24:00 才结束，结束后再生成批次")
    _serialise(campaign.id)
    same = db.session.scalar(
        sa.select(SettlementBatch).where(
            SettlementBatch.campaign_id == campaign.id,
            SettlementBatch.period_to == period_to,
            SettlementBatch.period_from.is_(None)
            if period_from is None
            else SettlementBatch.period_from == period_from,
        )
    )
    if same is not None:
        return same, False
    open_ = db.session.scalar(
        sa.select(SettlementBatch).where(SettlementBatch.campaign_id == campaign.id, SettlementBatch.state == "draft")
    )
    if open_ is not None:
        raise SettlementRefused(f"{batch_name(open_)}尚未审计，审计后再生成下一批")
    number = (
        db.session.scalar(
            sa.select(sa.func.max(SettlementBatch.number)).where(SettlementBatch.campaign_id == campaign.id)
        )
        or 0
    ) + 1
    batch = SettlementBatch(
        campaign_id=campaign.id,
        number=number,
        label=label[:60],
        period_from=period_from,
        period_to=period_to,
        created_by=admin.id,
        created_at=now,
    )
    db.session.add(batch)
    db.session.flush()
    sold = _freeze_sales(batch, period_end(period_to))
    changed = _freeze_changes(batch)
    lines = _make_lines(batch)
    if not lines:
        raise SettlementRefused("本期间没有需要结算的核销，也没有待扣减的款项")
    note = f"{batch_name(batch)}"
    _money_moved(campaign.id, "settle", sold, now, admin, note)
    _money_moved(campaign.id, "deduct", -changed["deduct"], now, admin, note + " 前批已结算后退货或撤回")
    _money_moved(campaign.id, "disallow", -changed["disallow"], now, admin, note + " 前批已结算后审计认定无效")
    _withhold(campaign.id, [line.merchant_id for line in lines], now, admin)
    return batch, True


def _freeze_sales(batch: SettlementBatch, end: datetime) -> int:
    """Every settled redemption of the campaign made before `end` and in no batch yet, as a sale
    item of this one (one statement: what commits after it is the next batch's). Their sum."""
    items = SettlementItem.__table__
    taken = sa.select(items.c.redemption_id).where(items.c.kind == "sale", items.c.redemption_id == Redemption.id)
    chosen = (
        sa.select(
            sa.literal(batch.id),
            Redemption.merchant_id,
            Redemption.id,
            sa.literal("sale"),
            Redemption.owed_fen,
            sa.true(),
        )
        .join(Category, Category.id == Redemption.category_id)
        .where(
            Category.campaign_id == batch.campaign_id,
            Redemption.created_at < end,
            settled_clause(),
            Redemption.owed_fen > 0,
            ~sa.exists(taken),
        )
    )
    db.session.execute(
        sa.insert(items).from_select(
            ["batch_id", "merchant_id", "redemption_id", "kind", "amount_fen", "counted"], chosen
        )
    )
    return int(
        db.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(items.c.amount_fen), 0)).where(
                items.c.batch_id == batch.id, items.c.kind == "sale"
            )
        )
    )


def _freeze_changes(batch: SettlementBatch) -> dict[str, int]:
    """Adjust items for the redemptions earlier batches settled that owe otherwise now.

    Per redemption: `moved` is what batches took from the redeemed account for it (sales and
    deductions), `disallowed` what audits set aside; it should now be what it owes (0 when revoked
    or refunded, `owed_fen` else) taken, and all of that set aside when an audit found it invalid.
    """
    items = SettlementItem.__table__
    earlier = (
        sa.select(
            items.c.redemption_id,
            items.c.merchant_id,
            sa.func.sum(sa.case((items.c.kind.in_(("sale", "deduct")), items.c.amount_fen), else_=0)).label("moved"),
            sa.func.sum(
                sa.case(
                    (items.c.kind == "disallow", -items.c.amount_fen),
                    (sa.and_(items.c.kind == "sale", sa.not_(items.c.counted)), items.c.amount_fen),
                    else_=0,
                )
            ).label("disallowed"),
            sa.func.max(sa.case((items.c.invalid_at.is_not(None), 1), else_=0)).label("invalid"),
        )
        .join(SettlementBatch, SettlementBatch.id == items.c.batch_id)
        .where(SettlementBatch.campaign_id == batch.campaign_id, items.c.batch_id != batch.id)
        .group_by(items.c.redemption_id, items.c.merchant_id)
        .subquery()
    )
    owes = sa.case((settled_clause(), Redemption.owed_fen), else_=0)
    rows = db.session.execute(
        sa.select(
            earlier.c.redemption_id,
            earlier.c.merchant_id,
            earlier.c.moved,
            earlier.c.disallowed,
            earlier.c.invalid,
            owes.label("owes"),
            Redemption.revoked_at,
        )
        .join(Redemption, Redemption.id == earlier.c.redemption_id)
        .where(
            sa.or_(
                earlier.c.moved != owes,
                earlier.c.disallowed != sa.case((earlier.c.invalid == 1, owes), else_=0),
            )
        )
    ).all()
    new, moved = [], {"deduct": 0, "disallow": 0}
    for row in rows:
        deduct = int(row.owes) - int(row.moved)
        if deduct:
            why = "撤回核销" if row.revoked_at else "退货"
            new.append((row.redemption_id, row.merchant_id, "deduct", deduct, f"前批已结算后{why}"))
            moved["deduct"] += deduct
        disallow = -((int(row.owes) if row.invalid else 0) - int(row.disallowed))
        if disallow:
            new.append((row.redemption_id, row.merchant_id, "disallow", disallow, "前批已结算后经审计认定无效"))
            moved["disallow"] += disallow
    if new:
        db.session.execute(
            sa.insert(items),
            [
                {
                    "batch_id": batch.id,
                    "redemption_id": redemption_id,
                    "merchant_id": merchant_id,
                    "kind": kind,
                    "amount_fen": amount,
                    "reason": reason,
                    "counted": True,
                }
                for redemption_id, merchant_id, kind, amount, reason in new
            ],
        )
    return moved


def _make_lines(batch: SettlementBatch) -> list[SettlementLine]:
    """A line per merchant with items in the batch or a shortfall still to carry."""
    items = SettlementItem.__table__
    sums = db.session.execute(
        sa.select(
            items.c.merchant_id,
            sa.func.sum(sa.case((items.c.kind == "sale", 1), else_=0)),
            sa.func.sum(sa.case((items.c.kind == "sale", items.c.amount_fen), else_=0)),
            sa.func.sum(sa.case((items.c.kind != "sale", -items.c.amount_fen), else_=0)),
        )
        .where(items.c.batch_id == batch.id)
        .group_by(items.c.merchant_id)
    ).all()
    zero = dict.fromkeys(AMOUNTS, 0)
    lines = {
        merchant_id: SettlementLine(
            **zero | {"sales": int(n), "gross_fen": int(gross), "deducted_fen": int(deducted)},
            batch_id=batch.id,
            merchant_id=merchant_id,
            carried_on=False,
        )
        for merchant_id, n, gross, deducted in sums
    }
    for owing in outstanding_claims(batch.campaign_id):
        line = lines.setdefault(
            owing.merchant_id,
            SettlementLine(**zero, batch_id=batch.id, merchant_id=owing.merchant_id, carried_on=False),
        )
        line.carried_fen += owing.shortfall_fen - owing.recovered_fen
        owing.carried_on = True
    for line in lines.values():
        _recount(line)
        db.session.add(line)
    db.session.flush()
    return list(lines.values())


AMOUNTS = ("sales", "gross_fen", "excluded_fen", "deducted_fen", "carried_fen", "payable_fen", "shortfall_fen",
           "recovered_fen", "paid_fen", "withheld_fen")  # fmt: skip


def _recount(line: SettlementLine) -> None:
    net = line.net_fen
    line.payable_fen, line.shortfall_fen = max(net, 0), max(-net, 0)


def outstanding_claims(campaign_id: int, merchant_id: int | None = None) -> list[SettlementLine]:
    """Lines whose shortfall no later line has taken and the merchant has not paid back: the
    campaign's clawback claims (追回)."""
    query = (
        sa.select(SettlementLine)
        .join(SettlementBatch, SettlementBatch.id == SettlementLine.batch_id)
        .where(
            SettlementBatch.campaign_id == campaign_id,
            SettlementLine.carried_on.is_(False),
            SettlementLine.shortfall_fen > SettlementLine.recovered_fen,
        )
    )
    if merchant_id is not None:
        query = query.where(SettlementLine.merchant_id == merchant_id)
    return list(db.session.scalars(query.order_by(SettlementLine.id)))


# ---------------------------------------------------------------- withholding


def _withhold(campaign_id: int, merchant_ids, now: datetime, admin: AdminUser | None) -> None:
    """Withhold the unpaid part of these merchants' lines in the campaign while they are not in
    good standing there; release it when they are again."""
    standing = dict(
        db.session.execute(
            sa.select(Enrolment.merchant_id, Enrolment.status).where(
                Enrolment.campaign_id == campaign_id, Enrolment.merchant_id.in_(list(merchant_ids))
            )
        ).all()
    )
    lines = db.session.scalars(
        sa.select(SettlementLine)
        .join(SettlementBatch, SettlementBatch.id == SettlementLine.batch_id)
        .where(SettlementBatch.campaign_id == campaign_id, SettlementLine.merchant_id.in_(list(merchant_ids)))
    )
    moved = 0
    for line in lines:
        held = line.payable_fen - line.paid_fen if standing.get(line.merchant_id) not in GOOD_STANDING else 0
        moved += held - line.withheld_fen
        line.withheld_fen = held
    db.session.flush()
    _money_moved(campaign_id, "withhold", moved, now, admin, "商户暂停或列入黑名单，暂扣未付结算款")


def standing_changed(merchant_id: int, campaign_ids, now: datetime, admin: AdminUser | None) -> None:
    """A merchant suspended, blacklisted or reinstated in these campaigns: its unpaid settlement
    withheld or released (campaign/enrolment.set_standing calls it)."""
    for campaign_id in sorted(set(campaign_ids)):
        _serialise(campaign_id)
        _withhold(campaign_id, [merchant_id], now, admin)


# ---------------------------------------------------------------- the audit


def sample(batch: SettlementBatch) -> list[int]:
    """The batch's audit sample, as redemption ids: one in ten of its sales (at least one), chosen
    by a hash of the batch and the redemption, so anyone with the batch draws the same sample."""
    sales = db.session.scalars(
        sa.select(SettlementItem.redemption_id).where(
            SettlementItem.batch_id == batch.id, SettlementItem.kind == "sale"
        )
    ).all()
    size = min(len(sales), max(1, math.ceil(len(sales) * SAMPLE_SHARE)))
    rank = sorted(sales, key=lambda r: hashlib.sha256(f"{batch.id}:{r}".encode()).hexdigest())
    return sorted(rank[:size])


def sale_item(campaign_id: int, redemption_id: int) -> SettlementItem:
    item = db.session.scalar(
        sa.select(SettlementItem)
        .join(SettlementBatch, SettlementBatch.id == SettlementItem.batch_id)
        .where(
            SettlementBatch.campaign_id == campaign_id,
            SettlementItem.redemption_id == redemption_id,
            SettlementItem.kind == "sale",
        )
    )
    if item is None:
        raise NotFound(f"核销 {redemption_id} 不在本活动的任何结算批次中")
    return item


def mark_invalid(item: SettlementItem, reason: str, admin: AdminUser, now: datetime) -> SettlementBatch:
    """An audit exception: the sale is invalid, for this reason. In a batch under audit it is
    excluded there; in a batch audited already, the next batch deducts it."""
    batch = db.session.get(SettlementBatch, item.batch_id)
    _may(admin, ("auditor", "admin") if batch.state != "draft" else AUDIT_ROLES, "标记核销异常")
    reason = (reason or "").strip()
    if not 2 <= len(reason) <= 200:
        raise InvalidInput("请写明认定无效的理由（2至200个字）")
    _serialise(batch.campaign_id)
    db.session.refresh(item)
    if item.invalid_at is not None:
        raise SettlementRefused(f"核销 {item.redemption_id} 已于此前认定无效")
    item.invalid_reason, item.invalid_by, item.invalid_at = reason, admin.id, now
    db.session.refresh(batch)
    if batch.state == "draft":
        item.counted = False
        line = db.session.scalar(
            sa.select(SettlementLine).where(
                SettlementLine.batch_id == batch.id, SettlementLine.merchant_id == item.merchant_id
            )
        )
        line.excluded_fen += item.amount_fen
        withheld = line.withheld_fen
        line.withheld_fen = 0
        _money_moved(batch.campaign_id, "release", withheld, now, admin, batch_name(batch))
        _recount(line)
        db.session.flush()
        note = f"{batch_name(batch)} 审计剔除核销 {item.redemption_id}"
        _money_moved(batch.campaign_id, "disallow", item.amount_fen, now, admin, note)
        _withhold(batch.campaign_id, [line.merchant_id], now, admin)
    db.session.flush()
    return batch


def audit(batch: SettlementBatch, opinion: str, admin: AdminUser, now: datetime) -> None:
    """The auditor's opinion on a draft batch, after checking its sample: draft -> audited."""
    _may(admin, AUDIT_ROLES, "审计意见")
    opinion = (opinion or "").strip()
    if not 4 <= len(opinion) <= 500:
        raise InvalidInput("请填写审计意见（4至500个字），说明抽查了哪些核销、结论如何")
    _serialise(batch.campaign_id)
    done = db.session.execute(
        sa.update(SettlementBatch)
        .where(SettlementBatch.id == batch.id, SettlementBatch.state == "draft")
        .values(state="audited", audited_by=admin.id, audited_at=now, opinion=opinion)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(batch)
    if not done:
        raise SettlementRefused(f"{batch_name(batch)}当前为「{STATE_NAMES[batch.state]}」，不能再出具审计意见")


def approve(batch: SettlementBatch, admin: AdminUser, now: datetime) -> None:
    """An admin's approval of an audited batch, never by its auditor: audited -> approved."""
    _may(admin, APPROVE_ROLES, "批准结算")
    _serialise(batch.campaign_id)
    done = db.session.execute(
        sa.update(SettlementBatch)
        .where(
            SettlementBatch.id == batch.id, SettlementBatch.state == "audited", SettlementBatch.audited_by != admin.id
        )
        .values(state="approved", approved_by=admin.id, approved_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(batch)
    if done:
        _paid_when_done(batch)
        return
    if batch.audited_by == admin.id:
        raise SettlementRefused(f"{batch_name(batch)}由您出具审计意见，须由另一位管理员批准")
    raise SettlementRefused(f"{batch_name(batch)}当前为「{STATE_NAMES[batch.state]}」，只有已审计的批次可以批准")


# ---------------------------------------------------------------- payment


def _paid_when_done(batch: SettlementBatch) -> None:
    """An approved batch is paid once no line has anything left to pay (paid, or withheld)."""
    unpaid_lines = sa.exists(
        sa.select(SettlementLine.id).where(
            SettlementLine.batch_id == batch.id,
            SettlementLine.paid_fen + SettlementLine.withheld_fen < SettlementLine.payable_fen,
        )
    )
    db.session.execute(
        sa.update(SettlementBatch)
        .where(SettlementBatch.id == batch.id, SettlementBatch.state == "approved", ~unpaid_lines)
        .values(state="paid")
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(batch)


def pay(line: SettlementLine, amount_fen: int, paid_on: date, reference: str, admin: AdminUser, now: datetime):
    """A payment to the merchant of a line of an approved batch, as the bank confirmed it: at most
    what the line still owes (partial payments add up), never while it is withheld, and one
    bank reference once. The batch is paid when every line is."""
    _payment("pay", line, amount_fen, paid_on, reference, admin, now)


def recover(line: SettlementLine, amount_fen: int, paid_on: date, reference: str, admin: AdminUser, now: datetime):
    """A clawback the merchant paid back (追回), on a line whose shortfall no later batch took."""
    _payment("recover", line, amount_fen, paid_on, reference, admin, now)


def _payment(kind: str, line, amount_fen: int, paid_on: date, reference: str, admin: AdminUser, now: datetime):
    """A bank transfer recorded on a line: paid to the merchant ("pay": paid_fen, within what is
    payable and not withheld) or paid back by it ("recover": recovered_fen, within its shortfall)."""
    paying = kind == "pay"
    _may(admin, PAY_ROLES, "登记付款" if paying else "登记追回款")
    reference = (reference or "").strip()
    if not 4 <= len(reference) <= 60:
        raise InvalidInput("请填写银行流水号或回单号（4至60个字符）")
    if amount_fen <= 0:
        raise InvalidInput("金额应大于0")
    batch = db.session.get(SettlementBatch, line.batch_id)
    _serialise(batch.campaign_id)
    if paying:
        _withhold(batch.campaign_id, [line.merchant_id], now, admin)
    db.session.refresh(batch)
    db.session.refresh(line)
    name, amount = line.merchant.name, yuan(amount_fen, grouped=True)
    if paying and batch.state not in ("approved", "paid"):
        raise SettlementRefused(f"{batch_name(batch)}当前为「{STATE_NAMES[batch.state]}」，批准后才能付款")
    if paying and line.withheld_fen:
        held = yuan(line.withheld_fen, grouped=True)
        raise SettlementRefused(f"{name}已暂停或列入黑名单，结算款 {held} 元暂扣，不能付款")
    if not paying and line.carried_on:
        raise SettlementRefused("该笔应追回款已转入下一批次扣减")
    same = sa.select(SettlementPayment.id).where(
        SettlementPayment.line_id == line.id, SettlementPayment.reference == reference
    )
    if db.session.scalar(same):
        raise SettlementRefused(f"流水号 {reference} 已登记过，未重复登记")
    lines = SettlementLine.__table__.c
    column, used, limit = (
        (lines.paid_fen, lines.paid_fen + lines.withheld_fen, lines.payable_fen)
        if paying
        else (lines.recovered_fen, lines.recovered_fen, lines.shortfall_fen)
    )
    done = db.session.execute(
        sa.update(SettlementLine)
        .where(lines.id == line.id, used + amount_fen <= limit)
        .values({column: column + amount_fen})
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        if paying:
            unpaid = yuan(line.unpaid_fen, grouped=True)
            raise SettlementRefused(f"{name}本批尚未付款 {unpaid} 元，付款 {amount} 元超出")
        due = yuan(line.shortfall_fen - line.recovered_fen, grouped=True)
        raise SettlementRefused(f"{name}应追回 {due} 元，登记 {amount} 元超出")
    db.session.add(
        SettlementPayment(
            line_id=line.id, kind=kind, amount_fen=amount_fen, paid_on=paid_on, reference=reference,
            recorded_by=admin.id, recorded_at=now,
        )
    )  # fmt: skip
    note = f"{batch_name(batch)} {name} {reference}" + ("" if paying else " 追回")
    _money_moved(batch.campaign_id, kind, amount_fen, now, admin, note)
    db.session.flush()
    db.session.refresh(line)
    if paying:
        _paid_when_done(batch)


# ---------------------------------------------------------------- what each side reads


@dataclass
class Totals:
    sales: int = 0
    gross_fen: int = 0
    excluded_fen: int = 0
    deducted_fen: int = 0
    carried_fen: int = 0
    payable_fen: int = 0
    paid_fen: int = 0
    withheld_fen: int = 0
    shortfall_fen: int = 0
    recovered_fen: int = 0
    clawback_fen: int = 0

    @classmethod
    def of(cls, lines) -> Totals:
        totals = cls()
        for line in lines:
            for name in cls.__dataclass_fields__:
                setattr(totals, name, getattr(totals, name) + getattr(line, name))
        return totals

    @property
    def unpaid_fen(self) -> int:
        return self.payable_fen - self.paid_fen - self.withheld_fen


def items_of(batch_id: int, *where):
    """A batch's items (those matching `where`, if given) with their redemptions, by merchant and
    time: for the statement, the sample, the exceptions and the changes."""
    query = (
        sa.select(SettlementItem, Redemption)
        .join(Redemption, Redemption.id == SettlementItem.redemption_id)
        .where(SettlementItem.batch_id == batch_id, *where)
        .order_by(SettlementItem.merchant_id, Redemption.created_at, SettlementItem.id)
    )
    return db.session.execute(query).all()


def payments_of(line_ids) -> dict[int, list[SettlementPayment]]:
    found: dict[int, list[SettlementPayment]] = {}
    for payment in db.session.scalars(
        sa.select(SettlementPayment).where(SettlementPayment.line_id.in_(list(line_ids))).order_by(SettlementPayment.id)
    ):
        found.setdefault(payment.line_id, []).append(payment)
    return found


def merchant_view(merchant_id: int) -> dict:
    """The merchant's side: what its batches made payable, paid, withheld and claim back, and each
    batch with its period, state, amount and payments (GET /merchant/settlement)."""
    rows = db.session.execute(
        sa.select(SettlementLine, SettlementBatch, Campaign)
        .join(SettlementBatch, SettlementBatch.id == SettlementLine.batch_id)
        .join(Campaign, Campaign.id == SettlementBatch.campaign_id)
        .where(SettlementLine.merchant_id == merchant_id)
        .order_by(SettlementBatch.created_at.desc(), SettlementBatch.id.desc())
    ).all()
    payments = payments_of(line.id for line, _, _ in rows)
    batches = []
    for line, batch, campaign in rows:
        paid = [p for p in payments.get(line.id, []) if p.kind == "pay"]
        batches.append(
            {
                "campaign": {"code": campaign.code, "name": campaign.name},
                "number": batch.number,
                "period": batch.label,
                "state": batch.state,
                "state_name": STATE_NAMES[batch.state],
                "sales": line.sales,
                "amount_fen": line.payable_fen,
                "deducted_fen": line.excluded_fen + line.deducted_fen + line.carried_fen,
                "paid_fen": line.paid_fen,
                "withheld_fen": line.withheld_fen,
                "clawback_fen": line.clawback_fen,
                "paid_on": paid[-1].paid_on.isoformat() if paid else None,
                "references": [p.reference for p in paid],
            }
        )
    totals = Totals.of(line for line, _, _ in rows)
    return {
        "payable_fen": totals.unpaid_fen,
        "paid_fen": totals.paid_fen,
        "withheld_fen": totals.withheld_fen,
        "clawback_fen": totals.clawback_fen,
        "batches": batches,
    }


def merchants_missing_bank(lines) -> list[Merchant]:
    return [line.merchant for line in lines if not (line.merchant.bank_account and line.merchant.bank_payee)]
