"""The strategies' statistics, on seeded runs: weighted drains tiers evenly; fixed odds keep their odds."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from server.extensions import db
from server.models import Coupon
from tests.helpers import auth, campaign_doc


def draw_many(client, make_resident, category, n):
    won = Counter()
    for _ in range(n):
        _, token = make_resident()
        body = client.post("/api/v1/draw", json={"category": category}, headers=auth(token)).get_json()
        won[body["coupon"]["face_fen"] if body["coupon"] else 0] += 1
    return won


def test_weighted_draw_drains_every_tier_in_proportion(client, app, make_campaign, make_resident, clock):
    # Hotel as in the Qian'an table, scaled down 1:20: 50 x 200, 100 x 100, 200 x 50.
    doc = campaign_doc(budget_yuan=100000)
    doc["tiers"] = [
        {"category": "hotel", "face_yuan": 50, "quantity": 200},
        {"category": "hotel", "face_yuan": 100, "quantity": 100},
        {"category": "hotel", "face_yuan": 200, "quantity": 50},
    ]
    make_campaign(doc)
    checkpoints = []
    for _ in range(3):  # after a third, two thirds, and all of the stock
        draw_many(client, make_resident, "hotel", 350 // 3)
        with app.app_context():
            left = dict(
                db.session.execute(
                    sa.select(Coupon.face_fen, sa.func.count()).where(Coupon.state == "stock").group_by(Coupon.face_fen)
                ).all()
            )
        checkpoints.append(
            {face: left.get(face, 0) / total for face, total in [(5000, 200), (10000, 100), (20000, 50)]}
        )
    for expected, shares in zip([2 / 3, 1 / 3], checkpoints[:2], strict=True):
        for face, share in shares.items():
            # Each tier keeps close to the same share of itself: none is drained first.
            assert abs(share - expected) < 0.12, (face, share, expected)
    assert sum(draw_many(client, make_resident, "hotel", 350 - 3 * (350 // 3)).values()) == 2


def test_fixed_odds_follow_the_configured_weights(client, make_campaign, make_resident, clock):
    doc = campaign_doc(draw_strategy="fixed_odds", thanks_weight=50, budget_yuan=1000000)
    doc["tiers"] = [
        {"category": "hotel", "face_yuan": 50, "quantity": 1000, "odds_weight": 30},
        {"category": "hotel", "face_yuan": 100, "quantity": 1000, "odds_weight": 20},
    ]
    make_campaign(doc)
    won = draw_many(client, make_resident, "hotel", 400)
    # Expected 50% thanks, 30% 50 yuan, 20% 100 yuan; a seeded run, within a few standard deviations.
    assert abs(won[0] / 400 - 0.5) < 0.08
    assert abs(won[5000] / 400 - 0.3) < 0.07
    assert abs(won[10000] / 400 - 0.2) < 0.06


def test_fixed_odds_fall_back_to_what_is_left_when_the_chosen_tier_is_gone(client, make_campaign, make_resident, clock):
    doc = campaign_doc(draw_strategy="fixed_odds", thanks_weight=0)
    doc["tiers"] = [
        {"category": "hotel", "face_yuan": 50, "quantity": 0, "odds_weight": 100},
        {"category": "hotel", "face_yuan": 100, "quantity": 3, "odds_weight": 1},
    ]
    make_campaign(doc)
    assert draw_many(client, make_resident, "hotel", 3) == {10000: 3}
