"""The public page of a published campaign in headless Chromium, on a phone and on a laptop."""

from __future__ import annotations

from datetime import timedelta

import pytest

from server.admin.campaigns import set_published
from server.auth import accounts
from server.campaign import results as publication
from server.core.time import utcnow
from server.extensions import db
from server.models import Campaign
from server.pool.jobs import run_all
from tests.browser import screenshot
from tests.helpers import auth, paycode, redeem

pytestmark = pytest.mark.browser


def test_anyone_reads_the_merchants_and_the_published_results_on_a_phone(
    app, client, browser, live_server, make_campaign, make_resident, make_till, clock
):
    campaign_id = make_campaign()
    tills = {"hotel": make_till("hotel")[1], "fuel": make_till("fuel")[1]}
    make_till("hotel")
    make_till("fuel", status="applied")
    spend = 0
    for n in range(3):
        _, token = make_resident()
        for category in ("hotel", "fuel"):
            coupon = client.post("/api/v1/draw", json={"category": category}, headers=auth(token)).get_json()["coupon"]
            if n < 2:
                amount = coupon["threshold_fen"] + 5055
                answer = redeem(client, tills[category], paycode(client, token, coupon["id"]), amount)
                assert answer.status_code == 200, answer.get_json()
                spend += amount
    with app.app_context():
        campaign = db.session.get(Campaign, campaign_id)
        last = campaign.rounds[-1]
        clock.move_to(max(last.closes_at, last.valid_until) + timedelta(hours=1))
    run_all(app)
    with app.app_context():
        admin = accounts.create_admin("publisher", "correct-horse-battery", "admin")
        campaign = db.session.get(Campaign, campaign_id)
        set_published(admin, campaign, "publish", utcnow())
        db.session.commit()
        results = publication.results(campaign)
        names = [m[0] for ms in publication.merchants_by_category(campaign).values() for m in ms]
    assert results.spend_fen == spend and results.redeemed == 4

    refused = []
    page = browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN", device_scale_factor=2)
    page.on("console", lambda message: "Content Security Policy" in message.text and refused.append(message.text))
    page.goto(f"{live_server}/public/test-campaign")
    assert page.title().startswith("测试消费券")
    merchants = page.locator("#merchants").inner_text()
    assert len(names) == 3 and all(name in merchants for name in names)
    assert "演示商户4" not in merchants  # applied, not approved
    cards = page.locator("#results .cards").inner_text()
    assert "核销（张）" in cards and "带动比" in cards
    assert page.locator("[data-figure=redeemed]").inner_text() == "4"
    assert page.locator("[data-figure=leverage]").inner_text() == str(results.leverage)
    assert page.locator("[data-figure=treasury_yuan]").is_visible()
    assert page.locator("#by-category tr").count() == 1 + 2 + 1  # header, two categories, total
    # Nothing wider than the phone but the tables, which scroll in their own box.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "public-campaign-phone")

    page.set_viewport_size({"width": 1280, "height": 900})
    screenshot(page, "public-campaign-desktop")
    assert refused == [], refused  # no script or style refused by the content security policy
