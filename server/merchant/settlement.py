"""What the merchant is owed: 100% of what the coupons of its settled redemptions paid, less the
coupons' shares of refunds (SPEC 4.5; models.Redemption.owed_fen)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from ..core.time import local_day
from ..extensions import db
from ..models import Campaign, Category, Redemption
from ..pool.coupons import settled_clause
from .redemption import Till


def owed(till_: Till, now: datetime) -> dict:
    """Per local day, per campaign and in total; and today by the server's clock (a till's phone may
    be set wrong)."""
    rows = db.session.execute(
        sa.select(Redemption.created_at, Redemption.owed_fen, Campaign.id, Campaign.code, Campaign.name)
        .join(Category, Category.id == Redemption.category_id)
        .join(Campaign, Campaign.id == Category.campaign_id)
        .where(Redemption.merchant_id == till_.merchant_id, settled_clause())
    ).all()
    days: dict[str, list[int]] = {}
    campaigns: dict[tuple, list[int]] = {}
    for created_at, face, *campaign in rows:
        days.setdefault(local_day(created_at).isoformat(), []).append(face)
        campaigns.setdefault(tuple(campaign), []).append(face)
    per_day = [{"date": day, "count": len(faces), "owed_fen": sum(faces)} for day, faces in sorted(days.items())]
    today = local_day(now).isoformat()
    return {
        "days": per_day,
        "campaigns": [
            {"campaign": {"code": code, "name": name}, "count": len(faces), "owed_fen": sum(faces)}
            for (_, code, name), faces in sorted(campaigns.items())
        ],
        "count": len(rows),
        "owed_fen": sum(row.owed_fen for row in rows),
        "today": next((d for d in per_day if d["date"] == today), {"date": today, "count": 0, "owed_fen": 0}),
    }
