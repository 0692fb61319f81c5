"""Creating a campaign from a plan that checked clean: the campaign, its categories, tiers and
rounds, the stock of the rounds the plan stocks, and the ledger's first entries."""

from __future__ import annotations

import sqlalchemy as sa

from ...core.time import utcnow
from ...extensions import db
from ...models import Allocation, Campaign, Category, Round, Tier
from ...pool import ledger
from ...pool.coupons import generate_stock
from ..snapshot import for_everyone
from .check import Plan


def create(plan: Plan, *, status: str = "active") -> Campaign:
    """Build the campaign, its rounds and its stock coupons; flushes, never commits."""
    settings = {k: v for k, v in plan.campaign.items() if k not in ("allocate", "rollover_mix")}
    campaign = Campaign(**settings, status=status)
    # The first campaign for everyone is the default until the bureau chooses; later imports
    # never change what residents see.
    campaign.is_default = (
        status == "active"
        and for_everyone(campaign)
        and not db.session.scalar(sa.select(Campaign.id).where(Campaign.is_default.is_(True)).limit(1))
    )
    db.session.add(campaign)
    categories = {}
    for position, (code, name) in enumerate(plan.categories):
        categories[code] = Category(campaign=campaign, code=code, name=name, position=position)
    tiers = []
    for spec in plan.tiers:
        tier = Tier(
            campaign=campaign,
            category=categories[spec["category"]],
            face_fen=spec["face_fen"],
            threshold_fen=spec["threshold_fen"],
            threshold_explicit=spec["threshold_explicit"],
            odds_weight=spec["odds_weight"],
            usage_hours=spec["usage_hours"],
        )
        tiers.append((tier, spec["quantity"]))
    rounds = [
        Round(campaign=campaign, number=n, opens_at=opens, closes_at=closes, valid_until=valid)
        for n, (opens, closes, valid) in enumerate(plan.rounds, start=1)
    ]
    # Objects linked only by a backref are not cascaded into the session in SQLAlchemy 2.
    db.session.add_all([*categories.values(), *(tier for tier, _ in tiers), *rounds])
    stocked = rounds if plan.campaign["allocate"] == "every_round" else rounds[:1]
    for round_ in stocked:
        for tier, quantity in tiers:
            round_.allocations.append(Allocation(tier=tier, quantity=quantity))
    db.session.flush()
    if plan.campaign["rollover_mix"] is not None:
        campaign.rollover_mix = [
            {"tier_id": tiers[item["tier"]][0].id, "weight": item["weight"]} for item in plan.campaign["rollover_mix"]
        ]
    now = utcnow()
    moves = [ledger.entry("budget", campaign.id, campaign.budget_fen, now, note="活动预算")]
    for round_ in stocked:
        generate_stock(round_.id, tiers)
        moves.extend(
            ledger.tier_entry("allocate", round_, tier, quantity, now, key=f"allocate:{round_.id}:{tier.id}")
            for tier, quantity in tiers
            if quantity
        )
    ledger.record(moves)
    return campaign
