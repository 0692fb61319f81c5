"""Staged release of a round's stock: a bot burst at 09:00:00 cannot take the whole round."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.campaign import file as campaign_file
from server.extensions import db
from server.models import Coupon, Draw
from tests.draw.test_concurrency import race
from tests.helpers import ON_POSTGRES, T0, auth

STAGES = [{"seconds": 10, "percent": 50}, {"seconds": 180, "percent": 80}]
FUEL_ONLY = [
    {"category": "fuel", "face_yuan": 100, "quantity": 15},
    {"category": "fuel", "face_yuan": 50, "quantity": 5},
    {"category": "hotel", "face_yuan": 50, "quantity": 3},
]


def spin(client, token, category="fuel"):
    return client.post("/api/v1/draw", json={"category": category}, headers=auth(token))


def claimed(app, category_code="fuel") -> int:
    from server.models import Category

    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Coupon)
            .join(Category, Category.id == Coupon.category_id)
            .where(Category.code == category_code, Coupon.state == "claimed")
        )


def test_each_stage_releases_its_share_of_each_category_and_no_more(
    app, client, make_campaign, make_resident, clock, balanced
):
    campaign_id = make_campaign(tiers=FUEL_ONLY, release=STAGES)
    tokens = [make_resident()[1] for _ in range(22)]
    clock.move_to(T0 + timedelta(seconds=1))
    answers = [spin(client, t) for t in tokens[:11]]
    assert [a.status_code for a in answers] == [200] * 10 + [409]  # 50% of 20
    error = answers[-1].get_json()["error"]
    assert error["code"] == "STOCK_NOT_RELEASED"
    assert error["next_release_at"] == "2026-06-25T09:00:10+08:00"
    assert "09:00:10" in error["message"] and "分批" in error["message"]
    # A small category: 50% of 3 is 1 coupon.
    assert spin(client, tokens[0], "hotel").status_code == 200
    assert spin(client, tokens[1], "hotel").get_json()["error"]["code"] == "STOCK_NOT_RELEASED"
    with app.app_context():  # the refused draw left nothing: the resident may spin again later
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Draw)) == 11
    assert claimed(app) == 10

    clock.move_to(T0 + timedelta(seconds=10))  # the second stage: 80%
    answers = [spin(client, t) for t in tokens[10:17]]
    assert [a.status_code for a in answers] == [200] * 6 + [409]
    assert answers[-1].get_json()["error"]["next_release_at"] == "2026-06-25T09:03:00+08:00"
    assert claimed(app) == 16

    clock.move_to(T0 + timedelta(minutes=3))  # everything
    answers = [spin(client, t) for t in tokens[16:22]]
    assert [a.status_code for a in answers] == [200] * 4 + [409] * 2
    assert answers[-1].get_json()["error"]["code"] == "SOLD_OUT"
    assert claimed(app) == 20
    balanced(campaign_id)


def test_fixed_odds_respects_the_release_of_the_tier_and_of_the_category(
    app, client, make_campaign, make_resident, clock
):
    tiers = [{**tier, "odds_weight": 9 if tier["face_yuan"] == 100 else 1} for tier in FUEL_ONLY]
    make_campaign(tiers=tiers, release=STAGES, draw_strategy="fixed_odds")
    tokens = [make_resident()[1] for _ in range(12)]
    answers = [spin(client, t) for t in tokens]
    codes = Counter(a.status_code if a.status_code == 200 else a.get_json()["error"]["code"] for a in answers)
    assert codes == {200: 10, "STOCK_NOT_RELEASED": 2}
    assert claimed(app) == 10


def test_the_campaign_shows_its_release_schedule(client, make_campaign, clock):
    make_campaign(release=STAGES)
    assert client.get("/api/v1/campaign").get_json()["release"] == STAGES


def test_without_a_schedule_everything_is_drawable_at_once(client, make_campaign, make_resident, clock):
    make_campaign(tiers=FUEL_ONLY)
    assert client.get("/api/v1/campaign").get_json()["release"] == []
    answers = [spin(client, make_resident()[1]) for _ in range(21)]
    assert [a.status_code for a in answers] == [200] * 20 + [409]
    assert answers[-1].get_json()["error"]["code"] == "SOLD_OUT"


@pytest.mark.parametrize(
    ("release", "place"),
    [
        ([{"seconds": 10, "percent": 100}], "campaign.release[0]"),
        ([{"seconds": 0, "percent": 50}], "campaign.release[0]"),
        ([{"seconds": 10**12, "percent": 50}], "campaign.release[0]"),
        ([{"seconds": 60, "percent": 50}, {"seconds": 30, "percent": 80}], "campaign.release[1]"),
        ([{"seconds": 10, "percent": 50}, {"seconds": 30, "percent": 40}], "campaign.release[1]"),
        ("十秒一半", "campaign.release"),
    ],
)
def test_a_bad_schedule_is_refused_in_words(app, release, place):
    from tests.helpers import campaign_doc

    with app.app_context():
        _, problems = campaign_file.check(campaign_file.Document(campaign_doc(release=release), "test"))
    assert [p.place for p in problems] == [place]
    assert all("批" in p.message for p in problems)


def test_the_spreadsheet_writes_the_schedule_in_words(app, tmp_path):
    from openpyxl import load_workbook

    book = load_workbook("examples/qianan-2022-annex1-as-printed.xlsx")
    book["活动"].append(["分批放券", "10秒50%，3分钟80%"])
    path = tmp_path / "plan.xlsx"
    book.save(path)
    document = campaign_file.read(path)
    assert document.data["campaign"]["release"] == STAGES
    book["活动"].append(["分批放券", "先放一半"])
    book.save(path)
    with app.app_context():
        _, problems = campaign_file.check(campaign_file.read(path))
    assert [p.message for p in problems if "release" in p.place or "活动!" in p.place] == [
        "分批放券应写成「10秒50%，3分钟80%」，或 [{seconds, percent}] 列表"
    ]


@pytest.mark.skipif(not ON_POSTGRES, reason="real concurrent connections: PostgreSQL")
def test_a_burst_in_the_first_seconds_takes_at_most_the_first_share(app, make_campaign, make_resident, clock):
    make_campaign(tiers=FUEL_ONLY, release=STAGES)
    tokens = [make_resident()[1] for _ in range(40)]
    answers = race(app, tokens, "fuel")
    codes = Counter(status if status == 200 else body["error"]["code"] for status, body in answers)
    assert codes == {200: 10, "STOCK_NOT_RELEASED": 30}
    assert claimed(app) == 10


def test_a_quota_lowered_before_the_round_opens_is_the_share_s_base(app, client, make_campaign, make_resident, clock):
    from server.models import Round, Tier
    from server.pool import rounds

    make_campaign(tiers=FUEL_ONLY, release=STAGES, allocate="every_round")
    with app.app_context():
        second = db.session.scalar(sa.select(Round).where(Round.number == 2))
        fuel = db.session.scalars(sa.select(Tier).join(Tier.category).where(Tier.face_fen == 10000)).all()
        fuel_100 = next(t for t in fuel if t.category.code == "fuel")
        rounds.adjust_quotas(second.id, {fuel_100.id: 5}, "admin:test", T0)  # 15 -> 5: 10 withdrawn
        db.session.commit()
        opens = second.opens_at
    clock.move_to(opens + timedelta(seconds=1))
    answers = [spin(client, make_resident()[1]) for _ in range(6)]
    # 10 coupons in the round now (5 + 5): 50% is 5, however many were withdrawn.
    assert [a.status_code for a in answers] == [200] * 5 + [409]
    assert answers[-1].get_json()["error"]["code"] == "STOCK_NOT_RELEASED"


def test_stock_added_to_an_open_round_keeps_the_share_exact(app, client, make_campaign, make_resident, clock):
    from server.models import Coupon, Round, Tier
    from server.pool import rounds

    make_campaign(tiers=FUEL_ONLY, release=STAGES)
    first = [spin(client, make_resident()[1]) for _ in range(11)]
    assert [a.status_code for a in first] == [200] * 10 + [409]
    with app.app_context():  # a rollover lands in the open round: 10 more fuel coupons
        round_ = db.session.scalar(sa.select(Round).where(Round.number == 1))
        tier = db.session.scalar(sa.select(Tier).where(Tier.face_fen == 5000, Tier.category.has(code="fuel")))
        rounds.add_stock(round_, {tier: 10}, "adjust_up", T0, "admin:test", "测试")
        db.session.commit()
        seqs = db.session.scalars(sa.select(Coupon.seq).where(Coupon.round_id == round_.id)).all()
        assert len(seqs) == len(set(seqs))  # still one order
    # 30 in the round: 15 may go in the first stage, 10 have: 5 more.
    more = [spin(client, make_resident()[1]) for _ in range(6)]
    assert [a.status_code for a in more] == [200] * 5 + [409]
    assert claimed(app) == 15
