"""The public page of a campaign (公示, /public/<code>): merchants per category for anyone, and
the results once the bureau has published them, every figure equal to the ledger's."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
import sqlalchemy as sa

from server.admin.campaigns import set_published
from server.auth import accounts
from server.campaign import results as publication
from server.core.errors import Refusal
from server.core.money import yuan
from server.core.time import utcnow
from server.extensions import db
from server.models import Campaign, LedgerEntry, Merchant
from server.pool import ledger
from server.pool.jobs import run_all
from tests.helpers import auth, paycode, redeem

PAGE = "/public/test-campaign"
PENDING = "结果将于活动结束后公示"


# An hour after the test campaign's last coupons expire (2026-07-30 00:00 Shanghai).
ENDED = datetime(2026, 7, 29, 17, 0, tzinfo=UTC)


def publish(app, code: str = "test-campaign") -> None:
    """Publish as the bureau does (the console's own path is tested in tests/admin/)."""
    with app.app_context():
        admin = accounts.create_admin("publisher", "correct-horse-battery", "admin")
        campaign = db.session.scalar(sa.select(Campaign).where(Campaign.code == code))
        set_published(admin, campaign, "publish", utcnow())
        db.session.commit()


def figures(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-figure="(\w+)">([^<]*)<', html))


def fen(text: str) -> int:
    return int(Decimal(text.replace(",", "")) * 100)


def category_row(html: str, code: str) -> list[str]:
    row = re.search(rf'<tr data-category="{code}">(.*?)</tr>', html, re.S)
    assert row, f"no row for {code}"
    return [cell.strip() for cell in re.findall(r"<td>(.*?)</td>", row.group(1), re.S)]


def test_the_page_lists_approved_merchants_per_category_and_no_phone_or_credit_code(
    app, client, make_campaign, make_till, clock
):
    make_campaign()
    hotels = [make_till("hotel")[0], make_till("hotel")[0]]
    fuel = make_till("fuel")[0]
    applied = make_till("hotel", status="applied")[0]
    suspended = make_till("fuel", status="suspended")[0]
    make_campaign(code="other-campaign", name="别处的消费券")
    elsewhere = make_till("hotel")[0]  # the newest campaign's hotel category
    with app.app_context():
        names = {m.id: m.name for m in db.session.scalars(sa.select(Merchant))}
        secrets = {m.credit_code for m in db.session.scalars(sa.select(Merchant))}
        db.session.execute(sa.update(Merchant).values(address="乾安县幸福路1号"))
        db.session.commit()

    answer = client.get(PAGE)

    assert answer.status_code == 200
    assert answer.mimetype == "text/html"
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    html = answer.get_data(as_text=True)
    assert "测试消费券" in html and "乾安县" in html
    hotel_section = re.search(r'<div class="category" data-category="hotel">(.*?)</div>', html, re.S).group(1)
    fuel_section = re.search(r'<div class="category" data-category="fuel">(.*?)</div>', html, re.S).group(1)
    assert all(names[m] in hotel_section for m in hotels) and "2家" in hotel_section
    assert names[fuel] in fuel_section and "1家" in fuel_section
    for absent in (applied, suspended, elsewhere):
        assert names[absent] not in html
    assert "乾安县幸福路1号" in hotel_section
    assert not re.search(r"1[3-9]\d{9}", html), "a phone number on the public page"
    assert not any(code in html for code in secrets)
    assert "演示联系人" not in html
    # Rounds in Beijing time: round 1 opens at 09:00 on 25 June 2026 (01:00 UTC) and its coupons
    # are good until 24:00 of the fifth day; the last round's until 24:00 on 29 July.
    assert "<td>第1轮</td><td>6月25日 09:00</td><td>6月29日 24:00</td><td>6月29日 24:00</td>" in html
    assert "第7轮" in html and "活动时间：2026年6月25日 至 2026年7月29日（共7轮）" in html
    assert "生成时间：2026-06-25 09:00" in html


def test_results_stay_hidden_until_the_bureau_publishes_them(app, client, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident()
    assert client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).status_code == 200

    html = client.get(PAGE).get_data(as_text=True)
    assert PENDING in html
    assert "data-figure" not in html and "资金使用情况" not in html and "带动比" not in html
    # Results are published after the campaign (SPEC 8), not while it runs.
    with pytest.raises(Refusal, match="活动结束后才能公示结果：本活动的券有效至2026-07-30 00:00"):
        publish(app)

    clock.move_to(ENDED)
    publish(app)
    html = client.get(PAGE).get_data(as_text=True)
    assert PENDING not in html
    assert figures(html)["claimed"] == "1"
    assert "公示时间：2026-07-30 01:00" in html


def test_unknown_and_draft_campaigns_are_a_chinese_404(app, client, make_campaign):
    make_campaign()
    make_campaign(code="draft-campaign")
    with app.app_context():
        db.session.execute(sa.update(Campaign).where(Campaign.code == "draft-campaign").values(status="draft"))
        db.session.commit()
    for path in ("/public/no-such-campaign", "/public/draft-campaign"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.mimetype == "text/html"
        assert "找不到这个活动" in answer.get_data(as_text=True)
    assert client.get(PAGE).status_code == 200


def test_a_draft_cannot_be_published(app, make_campaign):
    make_campaign(code="draft-campaign")
    with app.app_context():
        admin = accounts.create_admin("publisher", "correct-horse-battery", "admin")
        campaign = db.session.scalar(sa.select(Campaign))
        campaign.status = "draft"
        with pytest.raises(Refusal, match="草稿"):
            set_published(admin, campaign, "publish", utcnow())


@pytest.mark.parametrize("policy", ["return", "forfeit"])
def test_published_figures_are_the_ledgers_and_the_leverage_is_exact(
    app, client, make_campaign, make_resident, make_till, balanced, clock, policy
):
    campaign_id = make_campaign(refund_policy=policy)
    tills = {"hotel": make_till("hotel")[1], "fuel": make_till("fuel")[1]}
    won = []
    for _ in range(4):
        _, token = make_resident()
        for category in ("hotel", "fuel"):
            answer = client.post("/api/v1/draw", json={"category": category}, headers=auth(token))
            assert answer.status_code == 200, answer.get_json()
            won.append((token, category, answer.get_json()["coupon"]))
    # Five spent, with spends above the threshold that do not divide evenly.
    spent = []
    for n, (token, category, coupon) in enumerate(won[:5]):
        spend = coupon["threshold_fen"] + 1234 * (n + 1) + 7
        answer = redeem(client, tills[category], paycode(client, token, coupon["id"]), spend)
        assert answer.status_code == 200, answer.get_json()
        spent.append((category, coupon, spend, answer.get_json()["redemption"]["id"]))
    # One mistaken redemption undone (the coupon then expires unused), one refunded.
    for (category, _, _, redemption_id), action in zip(spent, ("revoke", "refund"), strict=False):
        path = f"/api/v1/merchant/redemptions/{redemption_id}/{action}"
        answer = client.post(path, json={"reason": "核对"}, headers=auth(tills[category]))
        assert answer.status_code == 200, answer.get_json()
    standing = spent[2:] if policy == "return" else spent[1:]

    # The campaign runs to its end: rounds close, coupons expire, the pool goes to the treasury.
    with app.app_context():
        last = db.session.get(Campaign, campaign_id).rounds[-1]
        clock.move_to(max(last.closes_at, last.valid_until) + timedelta(hours=1))
    run_all(app)
    totals = balanced(campaign_id)
    publish(app)

    html = client.get(PAGE).get_data(as_text=True)
    shown = figures(html)

    face = sum(c["face_fen"] for _, c, _, _ in standing)
    spend = sum(s for _, _, s, _ in standing)
    with app.app_context():
        budget = db.session.get(Campaign, campaign_id).budget_fen
        kinds = dict(
            db.session.execute(
                sa.select(LedgerEntry.kind, sa.func.sum(LedgerEntry.amount_fen))
                .where(LedgerEntry.campaign_id == campaign_id)
                .group_by(LedgerEntry.kind)
            ).all()
        )
        claims = db.session.scalar(
            sa.select(sa.func.sum(LedgerEntry.coupons)).where(
                LedgerEntry.campaign_id == campaign_id, LedgerEntry.kind == "claim"
            )
        )
    assert int(shown["claimed"]) == len(won) == claims
    assert int(shown["redeemed"]) == len(standing)
    assert fen(shown["redeemed_yuan"]) == face == totals["redeemed"] + totals["forfeited"]
    assert fen(shown["spend_yuan"]) == spend
    assert shown["leverage"] == str((Decimal(spend) / Decimal(face)).quantize(Decimal("0.01"), ROUND_HALF_UP))
    # Everything not spent went back to the treasury, through the pool.
    assert fen(shown["treasury_yuan"]) == totals["treasury"] == budget - face
    pool_in = sum(kinds.get(k, 0) for k in ("withdraw", "expire", "revoke_claim", "refund_return", "adjust_down"))
    assert fen(shown["returned_yuan"]) == pool_in > 0
    assert "subsidy_yuan" not in shown and "已发放购车补贴" not in html
    if policy == "forfeit":
        assert f"退货不退回 {yuan(totals['forfeited'], grouped=True)} 元" in html and totals["forfeited"] > 0

    # Per category: the same figures, from the same books.
    for category in ("hotel", "fuel"):
        mine = [(c, s) for cat, c, s, _ in standing if cat == category]
        _, merchants, claimed, redeemed, redeemed_yuan, spend_yuan, _ = category_row(html, category)
        assert (merchants, claimed) == ("1", "4")
        assert int(redeemed) == len(mine)
        assert fen(redeemed_yuan) == sum(c["face_fen"] for c, _ in mine)
        assert fen(spend_yuan) == sum(s for _, s in mine)
    assert "已结束" in html


def test_the_use_of_money_adds_up_to_the_budget_before_any_draw(app, make_campaign):
    campaign_id = make_campaign()
    with app.app_context():
        campaign = db.session.get(Campaign, campaign_id)
        results = publication.results(campaign)
        assert (results.claimed, results.redeemed, results.redeemed_fen, results.spend_fen) == (0, 0, 0, 0)
        assert results.leverage is None
        # Before any draw the budget is all stock or pool, and the lines still add up to it.
        assert sum(fen for _, fen in results.use_of_money()) == campaign.budget_fen
        assert dict(results.use_of_money())["已返还财政"] == 0


def test_subsidies_paid_are_shown_only_when_there_are_some(app, client, make_campaign, clock):
    campaign_id = make_campaign()
    clock.move_to(ENDED)
    publish(app)
    html = client.get(PAGE).get_data(as_text=True)
    assert "subsidy_yuan" not in figures(html) and "购车补贴" not in html
    with app.app_context():
        ledger.record([ledger.entry("subsidy", campaign_id, 800000, utcnow(), note="购车补贴")])
        db.session.commit()
    html = client.get(PAGE).get_data(as_text=True)
    assert fen(figures(html)["subsidy_yuan"]) == 800000
    assert "已发放购车补贴" in html
