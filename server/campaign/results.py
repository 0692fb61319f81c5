"""A campaign's results (公示, SPEC section 8), as its public page shows them once the bureau has
published them: what came of the money, overall and per category.

Every figure is computed from the ledger (`ledger_entries`: balances of its accounts, coupons
counted through `ledger.COUPON_MOVES`) and, for what residents spent, from the redemptions that
stand: none is typed in. A redemption stands unless it was revoked (撤回) or refunded under the
"return" policy (its coupon is voided and its value went back to the pool). So the face value of
the standing redemptions is exactly the ledger's redeemed + forfeited accounts, and the leverage
(带动比) divides the spend of the same redemptions by it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa

from ..extensions import db
from ..models import Campaign, Category, LedgerEntry, Merchant, Redemption, merchant_categories
from ..pool import ledger
from ..pool.coupons import State, standing_clause
from . import enrolment


@dataclass
class CategoryResults:
    category: Category
    merchants: int = 0
    claimed: int = 0  # coupons residents won or took
    redeemed: int = 0  # coupons used, forfeited refunds included
    redeemed_fen: int = 0  # their face value (the ledger's redeemed + forfeited)
    spend_fen: int = 0  # what residents spent in the standing redemptions

    @property
    def leverage(self) -> Decimal | None:
        return leverage(self.spend_fen, self.redeemed_fen)


@dataclass
class Results:
    """What came of a campaign's money, from its ledger and its standing redemptions."""

    budget_fen: int
    claimed: int = 0
    redeemed: int = 0
    redeemed_fen: int = 0
    forfeited_fen: int = 0  # of redeemed_fen: refunds under "forfeit", still counted as used
    spend_fen: int = 0
    returned_to_pool_fen: int = 0  # everything that ever came back to the pool (not the budget)
    balances: dict[str, int] = field(default_factory=dict)  # the ledger's accounts, now
    by_category: list[CategoryResults] = field(default_factory=list)

    @property
    def leverage(self) -> Decimal | None:
        return leverage(self.spend_fen, self.redeemed_fen)

    @property
    def funds_fen(self) -> int:
        """The budget, and what an earlier campaign's leftover brought in."""
        return self.budget_fen - self.balances.get("carried_in", 0)

    @property
    def treasury_fen(self) -> int:
        return self.balances.get("treasury", 0)

    @property
    def subsidy_fen(self) -> int:
        return self.balances.get("subsidy", 0)

    def use_of_money(self) -> list[tuple[str, int]]:
        """The budget (and leftover carried in from an earlier campaign) split over the ledger's
        accounts (they add up to it); empty lines left out but for what was redeemed and returned
        to the treasury, which are always shown."""
        b = self.balances
        lines = [
            ("消费者核销使用", ledger.spent_fen(b)),
            ("已发放购车补贴", b.get("subsidy", 0)),
            ("已返还财政", b.get("treasury", 0)),
            ("结余转入下期活动", b.get("carried", 0)),
            ("资金池结余（待投放或返还）", b.get("pool", 0)),
            ("库存（未领取）", b.get("stock", 0)),
            ("已领取未使用", b.get("claimed", 0)),
        ]
        always = ("消费者核销使用", "已返还财政")
        return [(label, fen) for label, fen in lines if fen or label in always]


def leverage(spend_fen: int, face_fen: int) -> Decimal | None:
    """Spend per yuan of coupon, to two decimals (half up), from integer fen: no float rounding."""
    if not face_fen:
        return None
    return (Decimal(spend_fen) / Decimal(face_fen)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def results(campaign: Campaign) -> Results:
    """The campaign's results, per category and in total."""
    categories = {c.id: CategoryResults(c) for c in sorted(campaign.categories, key=lambda c: c.position)}
    totals = Results(budget_fen=campaign.budget_fen)

    # One pass over the books: per category, and the entries of none (budget, treasury,
    # subsidies); together they are the campaign's balances.
    totals.balances = dict.fromkeys(ledger.ACCOUNTS, 0)
    for (category_id,), accounts in ledger.balances(campaign.id, "category_id").items():
        for account, fen in accounts.items():
            totals.balances[account] = totals.balances.get(account, 0) + fen
        if category_id in categories:
            categories[category_id].redeemed_fen = ledger.spent_fen(accounts)
    totals.forfeited_fen = totals.balances.get("forfeited", 0)
    totals.redeemed_fen = ledger.spent_fen(totals.balances)

    # Coupons claimed and in use, counted by the books: each kind of entry moves its coupons
    # from one state to another (a forfeited refund moves none: the coupon stays used).
    entries = LedgerEntry.__table__
    for category_id, kind, coupons in db.session.execute(
        sa.select(entries.c.category_id, entries.c.kind, sa.func.sum(entries.c.coupons))
        .where(entries.c.campaign_id == campaign.id, entries.c.category_id.is_not(None))
        .group_by(entries.c.category_id, entries.c.kind)
    ):
        place = categories.get(category_id)
        if place is None or kind not in ledger.COUPON_MOVES:
            continue
        leaves, enters = ledger.COUPON_MOVES[kind]
        count = int(coupons or 0)
        if kind == "claim":
            place.claimed += count
        place.redeemed += count * ((enters == State.USED) - (leaves == State.USED))

    totals.returned_to_pool_fen = int(
        db.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(entries.c.amount_fen), 0)).where(
                entries.c.campaign_id == campaign.id, entries.c.target == "pool", entries.c.kind != "budget"
            )
        )
    )

    for category_id, spend in db.session.execute(
        sa.select(Redemption.category_id, sa.func.sum(Redemption.spend_fen))
        .join(Category, Category.id == Redemption.category_id)
        .where(Category.campaign_id == campaign.id, standing_clause())
        .group_by(Redemption.category_id)
    ):
        if category_id in categories:
            categories[category_id].spend_fen = int(spend or 0)

    for category_id, count in db.session.execute(
        sa.select(merchant_categories.c.category_id, sa.func.count())
        .join(Merchant, Merchant.id == merchant_categories.c.merchant_id)
        .where(
            merchant_categories.c.category_id.in_(list(categories)),
            enrolment.approved_in(merchant_categories.c.merchant_id, campaign.id),
        )
        .group_by(merchant_categories.c.category_id)
    ):
        categories[category_id].merchants = count

    totals.by_category = list(categories.values())
    totals.claimed = sum(c.claimed for c in totals.by_category)
    totals.redeemed = sum(c.redeemed for c in totals.by_category)
    totals.spend_fen = sum(c.spend_fen for c in totals.by_category)
    return totals


def merchants_by_category(campaign: Campaign) -> dict[int, list[tuple[str, str]]]:
    """Approved merchants of each of the campaign's categories: (name, address), nothing else."""
    listed: dict[int, list[tuple[str, str]]] = defaultdict(list)
    rows = db.session.execute(
        sa.select(merchant_categories.c.category_id, Merchant.name, Merchant.address)
        .join(Merchant, Merchant.id == merchant_categories.c.merchant_id)
        .join(Category, Category.id == merchant_categories.c.category_id)
        .where(Category.campaign_id == campaign.id, enrolment.approved_in(Merchant.id, campaign.id))
        .order_by(Category.position, Merchant.id)
    )
    for category_id, name, address in rows:
        listed[category_id].append((name, address))
    return dict(listed)


def public_campaign(code: str) -> Campaign | None:
    """A campaign the public may see: any but a draft."""
    return db.session.scalar(sa.select(Campaign).where(Campaign.code == code, Campaign.status != "draft"))
