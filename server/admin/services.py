"""The console's rules: the dashboard's figures (Jincheng plan, section 10) and merchant reviews.

Figures of a campaign, per round, per category and per local day:
issued (投放量), claimed (领取量), redeemed (核销量), redemption rate (核销率 = redeemed / claimed),
order amount (订单金额), redeemed amount (核销金额, face value), refunded amount (核销退款金额),
merchants with redemptions (核销商家数), leverage (直接带动比 = order amount / redeemed amount).
A redemption counts unless it was revoked (撤回); refunds are counted and also shown apart.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from .. import audit, ledger, rollup
from ..extensions import db
from ..merchant import services as merchant_services
from ..merchant.redemption import settled
from ..models import (
    LEDGER_MOVES,
    AdminUser,
    Allocation,
    Campaign,
    Category,
    Coupon,
    LedgerEntry,
    Merchant,
    Redemption,
    Round,
    Staff,
    Tier,
)
from .lists import local_text, within_days

PUT_IN = ("allocate", "rollover", "adjust_up")


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


def dashboard(campaign: Campaign) -> Dashboard:
    """The campaign's figures: hours that are over from their stored figures (rollup.py), the
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

    with rollup.snapshot() as connection:
        # Issued: coupons put on the wheel, from the ledger (allocations, rollovers, quota changes).
        entries = LedgerEntry.__table__
        put = sa.case(
            (entries.c.kind.in_(PUT_IN), entries.c.coupons), (entries.c.kind == "adjust_down", -entries.c.coupons)
        )
        rows = connection.execute(
            sa.select(entries.c.round_id, entries.c.category_id, sa.func.sum(put))
            .where(entries.c.campaign_id == campaign.id, entries.c.kind.in_((*PUT_IN, "adjust_down")))
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


def campaigns() -> list[Campaign]:
    return list(db.session.scalars(sa.select(Campaign).where(Campaign.status != "draft").order_by(Campaign.id.desc())))


# ---------------------------------------------------------------- merchants


MERCHANT_ACTIONS = {
    # action: (audit action, what it does, done message)
    "approve": ("merchant_approve", "审核通过", "已审核通过"),
    "reject": ("merchant_reject", "驳回", "已驳回申请"),
    "suspend": ("merchant_suspend", "暂停", "已暂停"),
    "blacklist": ("merchant_blacklist", "列入黑名单", "已列入黑名单"),
    "reinstate": ("merchant_reinstate", "恢复", "已恢复"),
    "code": ("binding_code", "签发新绑定码", "已签发新绑定码"),
}
NEEDS_REASON = ("reject", "suspend", "blacklist", "reinstate")


def review_merchant(admin: AdminUser, merchant: Merchant, action: str, reason: str, now: datetime) -> str | None:
    """Apply a review action, audited; returns a new binding code when one was issued.

    Raises ReviewError (in Chinese) when the merchant's state does not allow it.
    """
    if action not in MERCHANT_ACTIONS:
        raise merchant_services.ReviewError("未知的操作")
    reason = (reason or "").strip()
    if action in NEEDS_REASON and not reason:
        raise merchant_services.ReviewError(f"请填写{MERCHANT_ACTIONS[action][1]}的理由")
    before = {"status": merchant.status}
    code = None
    if action == "approve":
        code = merchant_services.approve(merchant, now, reason or None)
    elif action == "reject":
        merchant_services.reject(merchant, now, reason)
    elif action == "code":
        code = merchant_services.issue_binding_code(merchant, now)
    else:
        status = {"suspend": "suspended", "blacklist": "blacklisted", "reinstate": "approved"}[action]
        merchant_services.set_standing(merchant, status, now, reason)
    after = {"status": merchant.status} | ({"reason": reason} if reason else {})
    audit.record(admin, MERCHANT_ACTIONS[action][0], now, target=merchant, before=before, after=after)
    db.session.flush()
    return code


def merchants_page(status: str | None, query: str | None, page: int, per_page: int = 50):
    """Merchants, newest first, filtered by status and name; (items, total)."""
    select = sa.select(Merchant)
    if status:
        select = select.where(Merchant.status == status)
    if query:
        select = select.where(Merchant.name.contains(query.strip(), autoescape=True))
    total = db.session.scalar(sa.select(sa.func.count()).select_from(select.subquery()))
    items = db.session.scalars(
        select.order_by(Merchant.created_at.desc(), Merchant.id.desc()).limit(per_page).offset((page - 1) * per_page)
    ).all()
    return items, total


def counts_by_status() -> dict[str, int]:
    rows = db.session.execute(sa.select(Merchant.status, sa.func.count()).group_by(Merchant.status))
    return defaultdict(int, {status: n for status, n in rows})


# ---------------------------------------------------------------- claims


class ClaimError(ValueError):
    """A claim that cannot be revoked (the message is for the bureau)."""


def revoke_claim(admin: AdminUser, coupon_id: int, reason: str, now: datetime) -> Coupon:
    """Take back a coupon a resident holds unused (e.g. won by fraud): void, its value to the pool.

    A guarded update, so a till redeeming the same coupon at the same moment wins or loses
    cleanly: a used coupon is never revoked.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ClaimError("请填写撤销的理由")
    revoked = db.session.execute(
        sa.update(Coupon)
        .where(Coupon.id == coupon_id, Coupon.state == "claimed", Coupon.valid_until > now)
        .values(state="void")
        .execution_options(synchronize_session=False)
    ).rowcount
    coupon = db.session.get(Coupon, coupon_id, populate_existing=True)
    if coupon is None or coupon.resident_id is None:
        raise ClaimError("找不到这张已领取的消费券")
    if revoked != 1:
        raise ClaimError(f"券号 {coupon_id} 已使用、已过期或已撤销，不能撤销")
    ledger.coupon_moved("revoke_claim", coupon_id, now)
    audit.record(
        admin,
        "claim_revoke",
        now,
        target=coupon,
        before={"state": "claimed"},
        after={"state": "void", "reason": reason},
    )
    db.session.flush()
    return coupon


# ---------------------------------------------------------------- settlement (结算)


@dataclass
class MerchantPeriod:
    merchant: Merchant
    redeemed: int = 0  # redemptions that stand (not revoked)
    order_fen: int = 0
    settled: int = 0  # what the bureau pays for (the till's own rule: merchant/redemption.settled)
    owed_fen: int = 0
    refunded: int = 0


def settlement(period: dict) -> list[MerchantPeriod]:
    """Per merchant for the period (filters "from"/"to", local days): redemptions, order amount,
    and what the bureau owes it; hours that are over from their stored figures, the rest live."""
    merchants = {m.id: m for m in db.session.scalars(sa.select(Merchant))}
    measures = ("redeemed", "order_fen", "settled", "owed_fen", "refunded")
    with rollup.snapshot() as connection:
        hours = rollup.figures(connection, "redemptions", rollup.Period(period.get("from"), period.get("to")))
        totals = connection.execute(
            sa.select(hours.c.merchant_id, *(sa.func.sum(hours.c[name]) for name in measures)).group_by(
                hours.c.merchant_id
            )
        ).all()
    rows = [MerchantPeriod(merchants[merchant_id], *(int(v) for v in values)) for merchant_id, *values in totals]
    return sorted(rows, key=lambda p: (-p.owed_fen, p.merchant.id))


def statement_rows(merchant_id: int, period: dict):
    """The settled redemptions of one merchant in the period, oldest first, for its statement."""
    query = within_days(
        settled(
            sa.select(
                Redemption.id,
                local_text(Redemption.created_at).label("created_at"),
                Redemption.coupon_id,
                Redemption.face_fen,
                Redemption.spend_fen,
                Redemption.spend_category,
                Staff.name,
            )
            .join(Staff, Staff.id == Redemption.staff_id)
            .where(Redemption.merchant_id == merchant_id)
        ),
        Redemption.created_at,
        period,
    )
    return db.session.execute(query.order_by(Redemption.created_at, Redemption.id).execution_options(yield_per=2000))


# ---------------------------------------------------------------- coupon management (消费券管理)


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
        return sum(self.states.get(s, 0) for s in ("claimed", "used", "expired", "void"))


def coupon_table(campaign: Campaign) -> list[TierRound]:
    """Per round and tier: quantity, and how many coupons are in each state, counted from the
    books (every change of a coupon's state is a ledger entry: ledger.COUPON_MOVES), so a
    million coupons cost a few thousand stored rows (rollup.py)."""
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
    with rollup.snapshot() as connection:
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


# ---------------------------------------------------------------- campaigns and rounds


def check_campaign_file(upload) -> tuple[list, object]:
    """Check an uploaded JSON or XLSX plan exactly as `flask campaign check` does: (problems, plan)."""
    import tempfile
    from pathlib import Path

    from .. import campaign_file

    suffix = Path(upload.filename or "").suffix.lower()
    if suffix not in (".json", ".xlsx"):
        return [campaign_file.Problem("文件", "只接受 .json 或 .xlsx 格式的活动方案")], None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"plan{suffix}"
        upload.save(path)
        try:
            document = campaign_file.read(path)
        except campaign_file.CampaignFileError as exc:
            return [campaign_file.Problem("文件", str(exc))], None
        plan, problems = campaign_file.check(document)
    return problems, plan


def import_campaign(admin: AdminUser, plan, *, draft: bool, now: datetime) -> Campaign:
    from .. import campaign_file, campaigns

    campaign = campaign_file.create(plan, status="draft" if draft else "active")
    audit.record(
        admin, "campaign_import", now, target=campaign, after={"code": campaign.code, "status": campaign.status}
    )
    campaigns.forget_snapshot()
    return campaign


def adjust_round(admin: AdminUser, round_: Round, wanted: dict[int, int], now: datetime):
    """The bureau's quota change of a future round (rounds.adjust_quotas), audited."""
    from .. import rounds

    changes = rounds.adjust_quotas(round_.id, wanted, f"admin:{admin.username}", now)
    if changes:
        audit.record(
            admin,
            "round_quota",
            now,
            target=round_,
            before={str(c.tier.id): c.before for c in changes},
            after={str(c.tier.id): c.after for c in changes},
        )
    return changes
