"""On-site event campaigns (Geermu's 年货大集): claims open only through the big screen's rotating
QR, and the coupons are good only at the event's merchants and only during the event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from server.auth import screen
from server.extensions import db
from server.models import Campaign, Tier
from tests.helpers import ROOT, apply_merchant, auth, paycode, redeem

FAIR = json.loads((ROOT / "examples" / "geermu-2026-fair.json").read_text(encoding="utf-8"))
OPENS = datetime(2026, 2, 6, 1, 0, tzinfo=UTC)  # 2026-02-06 09:00 Shanghai
ENDS = datetime(2026, 2, 15, 16, 0, tzinfo=UTC)  # 24:00 of 2026-02-15 Shanghai


def screen_code(app, campaign_id: int, at: datetime) -> str:
    with app.app_context(), app.test_request_context():
        return screen.code(campaign_id, at)[0]


def scanned(client, code: str):
    return client.post("/api/v1/screen/pass", json={"campaign": "geermu-2026-fair", "screen": code})


def grab(client, token, tier_id, screen_pass=None):
    body = {"tier_id": tier_id, "campaign": "geermu-2026-fair", "screen_pass": screen_pass}
    return client.post("/api/v1/grab", json=body, headers=auth(token))


def fair(app, make_campaign) -> tuple[int, dict[int, int]]:
    campaign_id = make_campaign(FAIR)
    with app.app_context():
        found = db.session.scalars(sa.select(Tier).where(Tier.campaign_id == campaign_id))
        tiers = {t.face_fen // 100: t.id for t in found}
    return campaign_id, tiers


def test_the_fair_imports_with_its_three_cash_coupons(app, make_campaign, balanced):
    campaign_id, tiers = fair(app, make_campaign)
    with app.app_context():
        campaign = db.session.get(Campaign, campaign_id)
        assert campaign.screen_qr and campaign.kind == "grab"
        assert sorted((t.face_fen, t.threshold_fen) for t in campaign.tiers) == [(500, 0), (1000, 0), (2000, 0)]
    assert balanced(campaign_id)["stock"] == 6_000_000  # 6万元: 20x1000 + 10x3000 + 5x2000
    assert sorted(tiers) == [5, 10, 20]


def test_a_grab_needs_a_pass_from_the_screen(app, client, make_campaign, make_resident, clock):
    campaign_id, tiers = fair(app, make_campaign)
    clock.move_to(OPENS + timedelta(hours=1))
    _, token = make_resident()
    refused = grab(client, token, tiers[20])
    assert refused.status_code == 403
    assert refused.get_json()["error"] == {
        "code": "SCREEN_CODE_STALE",
        "message": "本场活动的券只能在活动现场扫描大屏二维码领取",
    }
    answer = scanned(client, screen_code(app, campaign_id, OPENS + timedelta(hours=1)))
    assert answer.status_code == 200, answer.get_json()
    taken = grab(client, token, tiers[20], answer.get_json()["screen_pass"])
    assert taken.status_code == 200, taken.get_json()
    coupon = taken.get_json()["coupon"]
    assert (coupon["face_fen"], coupon["threshold_fen"]) == (2000, 0)
    assert coupon["valid_until"] == "2026-02-16T00:00:00+08:00"  # the event's end
    # Once per coupon kind, as any grab.
    assert grab(client, token, tiers[20], answer.get_json()["screen_pass"]).get_json()["error"]["code"] == (
        "ALREADY_DRAWN"
    )


def test_a_photo_of_the_screen_goes_stale_within_a_minute(app, client, make_campaign, clock):
    campaign_id, _ = fair(app, make_campaign)
    shown_at = OPENS + timedelta(hours=2)
    code = screen_code(app, campaign_id, shown_at)
    clock.move_to(shown_at + timedelta(seconds=29))
    assert scanned(client, code).status_code == 200  # still on the screen, or just replaced
    clock.move_to(shown_at + timedelta(seconds=61))  # two rotations later: a photo sent around town
    stale = scanned(client, code)
    assert stale.status_code == 403
    assert stale.get_json()["error"]["code"] == "SCREEN_CODE_STALE"
    assert "过期" in stale.get_json()["error"]["message"]
    # A forged code, and another campaign's code, are refused the same way.
    window = code.split(".")[1]
    assert scanned(client, f"{campaign_id}.{window}.0123456789abcdef").status_code == 403
    assert scanned(client, f"{campaign_id + 1}.{window}.{code.split('.')[2]}").status_code == 403


def test_a_pass_serves_the_resident_who_first_grabs_with_it(app, client, make_campaign, make_resident, clock):
    campaign_id, tiers = fair(app, make_campaign)
    clock.move_to(OPENS + timedelta(hours=4))
    issued = scanned(client, screen_code(app, campaign_id, OPENS + timedelta(hours=4))).get_json()
    owner, friend = make_resident()[1], make_resident()[1]
    assert grab(client, owner, tiers[20], issued["screen_pass"]).status_code == 200
    assert grab(client, owner, tiers[10], issued["screen_pass"]).status_code == 200  # the same pass, another kind
    forwarded = grab(client, friend, tiers[20], issued["screen_pass"])
    assert forwarded.status_code == 403
    assert forwarded.get_json()["error"] == {
        "code": "SCREEN_CODE_STALE",
        "message": "这个领券凭证已被他人使用，请在活动现场扫描大屏上的二维码",
    }
    # The friend at the fair scans the screen for a pass of their own.
    own = scanned(client, screen_code(app, campaign_id, OPENS + timedelta(hours=4))).get_json()["screen_pass"]
    assert grab(client, friend, tiers[20], own).status_code == 200


def test_a_pass_lasts_fifteen_minutes_and_names_its_campaign(app, client, make_campaign, make_resident, clock):
    campaign_id, tiers = fair(app, make_campaign)
    clock.move_to(OPENS + timedelta(hours=3))
    issued = scanned(client, screen_code(app, campaign_id, OPENS + timedelta(hours=3))).get_json()
    assert issued["expires_at"] == "2026-02-06T12:15:00+08:00"
    clock.move_to(OPENS + timedelta(hours=3, minutes=15, seconds=1))
    _, token = make_resident()
    late = grab(client, token, tiers[10], issued["screen_pass"])
    assert late.status_code == 403 and "重新扫描" in late.get_json()["error"]["message"]
    assert grab(client, token, tiers[10], "not-a-pass").get_json()["error"]["code"] == "SCREEN_CODE_STALE"


def test_fair_coupons_are_good_only_at_the_fairs_merchants_and_during_the_fair(
    app, client, make_campaign, make_resident, make_till, clock
):
    campaign_id, tiers = fair(app, make_campaign)
    make_campaign()  # the county's wheel campaign, with its hotels
    clock.move_to(OPENS + timedelta(days=5))
    _, hotel = make_till("hotel")
    _, stall = make_till("fair")
    _, token = make_resident()
    issued = scanned(client, screen_code(app, campaign_id, OPENS + timedelta(days=5))).get_json()
    coupons = [grab(client, token, tiers[face], issued["screen_pass"]).get_json()["coupon"] for face in (20, 10)]

    elsewhere = redeem(client, hotel, paycode(client, token, coupons[0]["id"]), 5000, category="年货")
    assert elsewhere.status_code == 409
    assert elsewhere.get_json()["error"] == {"code": "CATEGORY_MISMATCH", "message": "这是年货大集券，本店不能使用"}
    at_the_fair = redeem(client, stall, paycode(client, token, coupons[0]["id"]), 3000, category="年货")
    assert at_the_fair.status_code == 200, at_the_fair.get_json()

    clock.move_to(ENDS)  # the fair is over: the other coupon is no good
    _, token_after = make_resident()
    code = client.get(f"/api/v1/coupons/{coupons[1]['id']}/paycode", headers=auth(token))
    assert code.status_code == 409 and code.get_json()["error"]["code"] == "COUPON_EXPIRED"
    assert grab(client, token_after, tiers[5], issued["screen_pass"]).get_json()["error"]["code"] == "ROUND_CLOSED"


def test_the_fairs_merchants_enrol_for_it_and_are_listed_for_its_coupons(
    app, client, make_campaign, make_resident, clock
):
    from server.merchant import credit_code

    campaign_id, tiers = fair(app, make_campaign)
    make_campaign()  # the county's wheel campaign is the default one
    body = {
        "name": "年货大集12号摊位",
        "credit_code": credit_code.make("632801", "MA00000F"),
        "address": "格尔木市年货大集会场",
        "contact_name": "马师傅",
        "contact_phone": "13897000001",
        "categories": ["fair"],
        "accept_commitment": True,
    }
    refused = apply_merchant(client, body)  # not a category of the default campaign
    assert refused.status_code == 400 and "年货大集" not in refused.get_json()["error"]["message"]
    enrolled = apply_merchant(client, body | {"campaign": "geermu-2026-fair"})
    assert enrolled.status_code == 201, enrolled.get_json()
    assert enrolled.get_json()["merchant"]["categories"] == [{"code": "fair", "name": "年货大集"}]
    with app.app_context():
        from server.models import Merchant

        (at_the_fair,) = db.session.get(Merchant, enrolled.get_json()["merchant"]["id"]).enrolments
        at_the_fair.status = "approved"
        db.session.commit()
    clock.move_to(OPENS + timedelta(hours=1))
    _, token = make_resident()
    issued = scanned(client, screen_code(app, campaign_id, OPENS + timedelta(hours=1))).get_json()
    grab(client, token, tiers[20], issued["screen_pass"])
    link = client.get("/api/v1/coupons", headers=auth(token)).get_json()["items"][0]["merchants"]
    assert link == "/api/v1/categories/fair/merchants?code=geermu-2026-fair"
    listed = client.get(link).get_json()
    assert [m["name"] for m in listed["items"]] == ["年货大集12号摊位"]


def test_the_default_campaign_is_not_the_event(app, client, make_campaign, clock):
    fair(app, make_campaign)
    assert client.get("/api/v1/campaign").get_json()["error"]["code"] == "NO_CAMPAIGN"
    chosen = client.get("/api/v1/campaign?code=geermu-2026-fair").get_json()
    assert chosen["screen_qr"] is True and chosen["kind"] == "grab"
