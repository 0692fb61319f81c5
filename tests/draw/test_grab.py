"""Grab campaigns (抢券: Geermu, Huating, Youhao): a chosen tier at the release time, once per
tier (or once per round) while stock lasts, with the draw's database guarantees."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.auth import tokens
from server.extensions import db
from server.models import Campaign, Coupon, Draw, Round, Tier
from server.pool import jobs as scheduler
from tests.helpers import ROOT, at_once, auth, id_number

EXAMPLES = ROOT / "examples"
# Geermu round 1 opens 2026-02-12 10:00 Shanghai; Huating's first period 2023-01-15 10:00.
GEERMU_OPENS = datetime(2026, 2, 12, 2, 0, tzinfo=UTC)
HUATING_OPENS = datetime(2023, 1, 15, 2, 0, tzinfo=UTC)


def example(name: str, fenced: bool = False) -> dict:
    """An example campaign file; without its geofence unless asked (the fence has a test of its own)."""
    doc = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    if not fenced:
        doc["campaign"].pop("geofence", None)
    return doc


def tiers_of(app, campaign_id: int) -> dict[str, int]:
    """Tier ids by label, e.g. {"满300减80": 3}."""
    with app.app_context():
        found = db.session.scalars(sa.select(Tier).where(Tier.campaign_id == campaign_id)).all()
        return {f"满{t.threshold_fen // 100}减{t.face_fen // 100}": t.id for t in found}


def grab(client, token, tier_id, **extra):
    return client.post("/api/v1/grab", json={"tier_id": tier_id, **extra}, headers=auth(token))


def test_geermu_imports_with_its_tiers_per_week_and_two_rounds(app, runner, balanced):
    result = runner.invoke(args=["campaign", "import", str(EXAMPLES / "geermu-2026.json")])
    assert result.exit_code == 0, result.output
    with app.app_context():
        campaign = db.session.scalar(sa.select(Campaign).where(Campaign.code == "geermu-2026"))
        assert (campaign.kind, campaign.grab_limit, len(campaign.rounds)) == ("grab", "tier", 2)
        per_round = db.session.execute(
            sa.select(Coupon.round_id, Coupon.threshold_fen, Coupon.face_fen, sa.func.count())
            .group_by(Coupon.round_id, Coupon.threshold_fen, Coupon.face_fen)
            .order_by(Coupon.round_id, Coupon.face_fen.desc())
        ).all()
        first, second = (r.id for r in campaign.rounds)
    assert [tuple(row) for row in per_round] == [
        (first, 30000, 8000, 350), (first, 20000, 4000, 2050), (first, 10000, 2000, 2000),
        (second, 30000, 8000, 350), (second, 20000, 4000, 2050), (second, 10000, 2000, 2000),
    ]  # fmt: skip
    assert balanced(campaign.id)["stock"] == 2 * 15_000_000  # 15万元 each week


def test_huating_imports_its_six_tiers_valid_seven_days_from_claim(app, runner):
    result = runner.invoke(args=["campaign", "import", str(EXAMPLES / "huating-2023.json")])
    assert result.exit_code == 0, result.output
    with app.app_context():
        campaign = db.session.scalar(sa.select(Campaign).where(Campaign.code == "huating-2023"))
        assert (campaign.kind, campaign.grab_limit, campaign.validity_days) == ("grab", "round", 7)
        faces = sorted((t.threshold_fen // 100, t.face_fen // 100) for t in campaign.tiers)
    assert faces == [(30, 10), (60, 20), (150, 50), (400, 100), (800, 200), (1200, 300)]


def test_a_grab_takes_the_chosen_tier_once_per_tier_per_period(app, client, make_campaign, make_resident, clock):
    campaign_id = make_campaign(example("geermu-2026.json"))
    tiers = tiers_of(app, campaign_id)
    clock.move_to(GEERMU_OPENS - timedelta(seconds=1))
    resident_id, token = make_resident()
    early = grab(client, token, tiers["满300减80"])
    assert early.status_code == 409
    assert early.get_json()["error"]["code"] == "ROUND_NOT_OPEN"
    assert "第1期抢券将于2月12日 10:00开始" in early.get_json()["error"]["message"]

    clock.move_to(GEERMU_OPENS)
    taken = grab(client, token, tiers["满300减80"])
    assert taken.status_code == 200, taken.get_json()
    coupon = taken.get_json()["coupon"]
    assert (coupon["face_fen"], coupon["threshold_fen"], coupon["round"]) == (8000, 30000, 1)
    assert coupon["valid_until"] == "2026-02-20T00:00:00+08:00"

    again = grab(client, token, tiers["满300减80"])
    assert again.status_code == 409
    error = again.get_json()["error"]
    assert error["code"] == "ALREADY_DRAWN" and error["coupon_id"] == coupon["id"]
    assert "满300减80" in error["message"] and "每期每档限领一张" in error["message"]
    # The other tiers are separate grabs: each once.
    assert grab(client, token, tiers["满200减40"]).status_code == 200
    assert grab(client, token, tiers["满100减20"]).status_code == 200
    assert grab(client, token, tiers["满100减20"]).status_code == 409

    clock.move_to(datetime(2026, 2, 26, 2, 0, tzinfo=UTC))  # the second week: again
    with app.app_context():  # (a token lasts a week: the resident signed in again)
        token = tokens.issue("resident", resident_id, bound=True)
    assert grab(client, token, tiers["满300减80"]).get_json()["coupon"]["round"] == 2


def test_huating_allows_one_coupon_per_period_whatever_the_tier(app, client, make_campaign, make_resident, clock):
    campaign_id = make_campaign(example("huating-2023.json"))
    tiers = tiers_of(app, campaign_id)
    clock.move_to(HUATING_OPENS + timedelta(hours=1))
    _, token = make_resident()
    taken = grab(client, token, tiers["满150减50"])
    assert taken.status_code == 200
    assert taken.get_json()["coupon"]["valid_until"] == "2023-01-22T11:00:00+08:00"  # 7 days from claim
    other = grab(client, token, tiers["满30减10"])
    assert other.status_code == 409
    assert other.get_json()["error"]["code"] == "ALREADY_DRAWN"
    assert "每期限领一张" in other.get_json()["error"]["message"]
    clock.move_to(HUATING_OPENS + timedelta(days=7, hours=1))  # the next period
    # Its stock is what the first period left, rolled over by the scheduler's jobs.
    assert grab(client, token, tiers["满30减10"]).get_json()["error"]["code"] == "SOLD_OUT"
    scheduler.run_all(app)
    assert grab(client, token, tiers["满30减10"]).status_code == 200


def test_a_sold_out_tier_is_refused_by_name_and_leaves_no_grab(app, client, make_campaign, make_resident, clock):
    doc = example("geermu-2026.json")
    doc["tiers"][0]["quantity"] = 2  # 满300减80 x 2
    campaign_id = make_campaign(doc)
    tiers = tiers_of(app, campaign_id)
    clock.move_to(GEERMU_OPENS)
    residents = [make_resident()[1] for _ in range(3)]
    answers = [grab(client, t, tiers["满300减80"]) for t in residents]
    assert [a.status_code for a in answers] == [200, 200, 409]
    error = answers[-1].get_json()["error"]
    assert error["code"] == "SOLD_OUT" and error["message"] == "第1期满300减80券已被抢完，请关注下一期"
    # The refused grab left no draw: the resident may still take another tier.
    assert grab(client, residents[2], tiers["满200减40"]).status_code == 200
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Draw)) == 3


def test_grab_refusals(app, client, make_campaign, make_resident, clock):
    campaign_id = make_campaign(example("geermu-2026.json"))
    tiers = tiers_of(app, campaign_id)
    clock.move_to(GEERMU_OPENS)
    _, token = make_resident()
    _, unbound = make_resident(bound=False)
    assert grab(client, unbound, tiers["满300减80"]).get_json()["error"]["code"] == "NOT_BOUND"
    assert grab(client, token, 999999).status_code == 404
    assert client.post("/api/v1/grab", json={"tier_id": tiers["满300减80"]}).status_code == 401
    spin = client.post("/api/v1/draw", json={"category": "shop_dining"}, headers=auth(token))
    assert spin.status_code == 409
    assert spin.get_json()["error"] == {"code": "WRONG_CAMPAIGN_KIND", "message": "本活动为抢券活动，请选择券种领取"}
    # A wheel campaign refuses grabs the other way round.
    wheel = make_campaign()
    with app.app_context():
        wheel_tier = db.session.scalar(sa.select(Tier.id).where(Tier.campaign_id == wheel))
        code = db.session.get(Campaign, wheel).code
    clock.move_to(datetime(2026, 6, 25, 1, 0, tzinfo=UTC))
    refused = grab(client, make_resident()[1], wheel_tier, campaign=code)
    assert refused.status_code == 409 and "转盘" in refused.get_json()["error"]["message"]


def test_the_campaign_endpoint_shows_the_kind_and_a_chosen_campaign(app, client, make_campaign, clock):
    make_campaign()  # the wheel campaign, the default (the first imported)
    make_campaign(example("geermu-2026.json"))
    default = client.get("/api/v1/campaign").get_json()
    assert (default["code"], default["kind"]) == ("test-campaign", "wheel")
    chosen = client.get("/api/v1/campaign?code=geermu-2026").get_json()
    assert (chosen["code"], chosen["kind"], chosen["grab_limit"]) == ("geermu-2026", "grab", "tier")
    missing = client.get("/api/v1/campaign?code=no-such-campaign")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "NOT_FOUND"


def test_racing_grabs_never_oversell_a_tier_nor_give_one_resident_two(app, make_campaign, make_resident, clock):
    """Many residents, some sending the same grab several times at once, for 10 coupons."""
    doc = example("geermu-2026.json")
    doc["tiers"][0]["quantity"] = 10
    campaign_id = make_campaign(doc)
    tier_id = tiers_of(app, campaign_id)["满300减80"]
    clock.move_to(GEERMU_OPENS)
    residents = [make_resident()[1] for _ in range(15)]
    tokens = residents + residents[:5] * 3  # five residents send the grab four times
    answers = at_once(app, [lambda client, token=token: grab(client, token, tier_id) for token in tokens])
    codes = Counter(status if status == 200 else body["error"]["code"] for status, body in answers)
    assert codes[200] == 10 and set(codes) <= {200, "SOLD_OUT", "ALREADY_DRAWN"}
    with app.app_context():
        holders = db.session.scalars(
            sa.select(Coupon.resident_id).where(Coupon.tier_id == tier_id, Coupon.state == "claimed")
        ).all()
    assert len(holders) == 10 and len(set(holders)) == 10


@pytest.mark.parametrize(
    ("name", "inside", "outside"),
    [
        ("geermu-2026.json", {"lat": 36.41, "lng": 94.90}, {"lat": 36.62, "lng": 101.78}),  # Golmud; Xining
        ("huating-2023.json", {"lat": 35.22, "lng": 106.65}, {"lat": 35.54, "lng": 106.67}),  # Huating; Pingliang
        ("youhao-2023.json", {"lat": 47.85, "lng": 128.84}, {"lat": 45.80, "lng": 126.53}),  # Youhao; Harbin
    ],
)
def test_the_seeds_grab_only_for_residents_located_where_the_plan_says(
    app, client, make_campaign, make_resident, clock, name, inside, outside
):
    """Geermu, Huating and Youhao give their coupons to people located in the city (格尔木市,
    华亭市, 友好区): their example files carry a fence."""
    doc = example(name, fenced=True)
    campaign_id = make_campaign(doc)
    with app.app_context():
        first = db.session.scalar(sa.select(sa.func.min(Round.opens_at)).where(Round.campaign_id == campaign_id))
    clock.move_to(first + timedelta(minutes=1))
    tier_id = min(tiers_of(app, campaign_id).values())
    _, token = make_resident()
    if name == "youhao-2023.json":  # 一个用户 = 手机号 + 身份证 + 设备: the ID card first
        assert grab(client, token, tier_id, location=inside).get_json()["error"]["code"] == "ID_REQUIRED"
        _, token = make_resident(id_card=id_number(1))
    assert grab(client, token, tier_id).get_json()["error"]["code"] == "LOCATION_REQUIRED"
    assert grab(client, token, tier_id, location=outside).get_json()["error"]["code"] == "OUTSIDE_REGION"
    assert grab(client, token, tier_id, location=inside).status_code == 200
