"""The quota advisor: the next round's quotas proposed from what earlier rounds measured, never
worth more than the money available, applied only through the console's quota change."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.campaign import advisor
from server.core.time import utcnow
from server.extensions import db
from server.models import AuditEntry, Campaign, LedgerEntry, Round, Tier
from server.pool import ledger, rounds
from server.pool.coupons import remaining_by_tier
from server.pool.jobs import run_all
from tests.helpers import T0, auth, campaign_doc, csrf_token, fresh_world, paycode, redeem

# Hotel 100 x 4 and fuel 100 x 8 a round: round 1 is stocked with 1,200 yuan by the plan.
TIERS = [{"category": "hotel", "face_yuan": 100, "quantity": 4}, {"category": "fuel", "face_yuan": 100, "quantity": 8}]
ROUNDS = {"count": 3, "first_draw": "2026-06-25T09:00", "every_days": 2, "valid_days": 2}
# Round 1 closes at 24:00 of its second day (16:00 UTC); round 2 opens at 09:00 the day after.
BEFORE_ROUND_2 = T0 + timedelta(days=1, hours=23)


def small_campaign(budget_yuan: int) -> dict:
    return campaign_doc(budget_yuan=budget_yuan, tiers=TIERS, rounds=ROUNDS)


def play_round_one(client, make_resident, make_till, clock, plays: dict[str, tuple[int, int]]):
    """Residents draw each category a minute apart and spend some of what they win at once.

    `plays`: category -> (coupons drawn, coupons spent at a till, at the threshold: leverage 3).
    """
    for category, (drawn, spent) in plays.items():
        _, till = make_till(category)
        for n in range(drawn):
            clock.shift(timedelta(minutes=1))
            _, token = make_resident()
            won = client.post("/api/v1/draw", json={"category": category}, headers=auth(token))
            assert won.status_code == 200, won.get_json()
            coupon = won.get_json()["coupon"]
            if n < spent:
                answer = redeem(client, till, paycode(client, token, coupon["id"]), coupon["threshold_fen"])
                assert answer.status_code == 200, answer.get_json()


def round_two(app, campaign_id: int) -> Round:
    return db.session.scalar(sa.select(Round).where(Round.campaign_id == campaign_id, Round.number == 2))


def tier_ids(app, campaign_id: int) -> dict[str, int]:
    with app.app_context():
        tiers = db.session.get(Campaign, campaign_id).tiers
        return {t.category.code: t.id for t in tiers}


@pytest.fixture
def measured(app, client, make_campaign, make_resident, make_till, clock):
    """Round 1 played: hotel sold out in 4 minutes, all spent; fuel half drawn, one in four spent.
    Then the night before round 2: the scheduler closed round 1 and rolled what came back."""

    def make(budget_yuan: int = 10000) -> int:
        campaign_id = make_campaign(small_campaign(budget_yuan))
        play_round_one(client, make_resident, make_till, clock, {"hotel": (4, 4), "fuel": (4, 1)})
        clock.move_to(BEFORE_ROUND_2)
        run_all(app)
        return campaign_id

    return make


def test_the_proposal_shifts_quota_to_the_category_that_redeems_more_and_sells_out_faster(app, measured):
    campaign_id = measured()
    tiers = tier_ids(app, campaign_id)
    with app.app_context():
        round_ = round_two(app, campaign_id)
        # What came back from round 1 (4 fuel not drawn, 3 fuel expired) is round 2's stock.
        assert remaining_by_tier(round_.id) == {tiers["fuel"]: 7}
        advice = advisor.advise(round_, utcnow())
    by_tier = {t.slot.id: t for t in advice.tiers}
    hotel, fuel = by_tier[tiers["hotel"]], by_tier[tiers["fuel"]]
    # Hotel: rate 100% vs 5/8 on average -> 160%, sold out within the hour -> x1.3, capped at 150%.
    assert (hotel.base, hotel.percent, hotel.proposed) == (4, 150, 6)
    # Fuel: rate 25% -> 40%, half claimed when the round closed -> x0.75, floored at 50%.
    assert (fuel.base, fuel.percent, fuel.proposed) == (8, 50, 4)
    assert hotel.reason == "核销率 100%（全活动平均 63%），第1轮开抢 4 分钟售罄，带动比 3.0 倍 → 建议增加 50%"
    assert fuel.reason == "核销率 25%（全活动平均 63%），第1轮未售罄，领取 50%，带动比 3.0 倍 → 建议减少 50%"
    # Pool: the 8,800 yuan reserve; round 2 holds the 700 yuan rolled over.
    assert (advice.money.pool_fen, advice.money.stock_fen) == (880000, 70000)
    assert advice.proposed_fen == 100000 and not advice.scaled


@pytest.mark.parametrize("role", ["auditor", "operator"])
def test_the_page_shows_the_reasons_and_the_money_and_auditors_only_read_it(app, console, measured, role):
    campaign_id = measured()
    client = console(role)
    path = f"/admin/campaigns/{campaign_id}/rounds/2/advice"
    answer = client.get(path)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert "第2轮配额建议" in page and "第1轮开抢 4 分钟售罄" in page and "建议减少 50%" in page
    assert "建议投放合计 1,000 元（本轮现有 700 元）" in page
    assert "可用资金 9,500 元（资金池 8,800 元 + 本轮现有库存 700 元）" in page
    assert "采纳并调整配额" not in page and 'name="tier-' not in page
    # The round's quota page links here.
    assert path in client.get(f"/admin/campaigns/{campaign_id}/rounds/2").get_data(as_text=True)
    tiers = tier_ids(app, campaign_id)
    forged = client.post(path, data={"csrf_token": csrf_token(page), f"tier-{tiers['hotel']}": "6"})
    assert forged.status_code == 403
    with app.app_context():
        assert remaining_by_tier(round_two(app, campaign_id).id) == {tiers["fuel"]: 7}
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry).where(
            LedgerEntry.kind.in_(("adjust_up", "adjust_down")))) == 0  # fmt: skip


def test_accepting_the_proposal_sets_the_quotas_through_the_quota_change_and_the_books_balance(
    app, console, measured, balanced, role="admin"
):
    campaign_id = measured()
    tiers = tier_ids(app, campaign_id)
    client = console(role)
    path = f"/admin/campaigns/{campaign_id}/rounds/2/advice"
    page = client.get(path).get_data(as_text=True)
    assert f'name="tier-{tiers["hotel"]}" value="6"' in page and f'name="tier-{tiers["fuel"]}" value="4"' in page
    data = {"csrf_token": csrf_token(page), f"tier-{tiers['hotel']}": "6", f"tier-{tiers['fuel']}": "4"}
    answer = client.post(path, data=data)
    assert answer.status_code == 302 and answer.headers["Location"].endswith(f"/campaigns/{campaign_id}/rounds/2")
    shown = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "已按配额建议调整第2轮：宾馆100元券 0→6张；加油100元券 7→4张" in shown
    with app.app_context():
        assert remaining_by_tier(round_two(app, campaign_id).id) == {tiers["hotel"]: 6, tiers["fuel"]: 4}
        moved = db.session.execute(
            sa.select(LedgerEntry.kind, LedgerEntry.coupons, LedgerEntry.actor).where(
                LedgerEntry.kind.in_(("adjust_up", "adjust_down"))
            )
        ).all()
        assert sorted(moved) == [("adjust_down", 3, f"admin:{role}-user"), ("adjust_up", 6, f"admin:{role}-user")]
        entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "round_quota"))
        assert entry.after == {str(tiers["hotel"]): 6, str(tiers["fuel"]): 4}
    # 8,800 + 700 - 1,000 yuan stays in the pool; ledger.verify finds no problem.
    assert balanced(campaign_id)["pool"] == 850000


def test_an_edited_total_beyond_the_money_is_refused_in_words_and_changes_nothing(app, console, measured, balanced):
    campaign_id = measured(budget_yuan=1300)  # a reserve of 100 yuan
    tiers = tier_ids(app, campaign_id)
    client = console("admin")
    path = f"/admin/campaigns/{campaign_id}/rounds/2/advice"
    page = client.get(path).get_data(as_text=True)
    # Wanted 6 hotel + 4 fuel = 1,000 yuan; 800 are available: scaled down by value, whole coupons.
    assert "按系数调整后需 1,000 元，超出可用资金，已整体等比缩减" in page
    assert "（按可用资金缩减：6 → 5 张）" in page and "（按可用资金缩减：4 → 3 张）" in page
    data = {"csrf_token": csrf_token(page), f"tier-{tiers['hotel']}": "9", f"tier-{tiers['fuel']}": "0"}
    answer = client.post(path, data=data)
    shown = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "未调整：方案合计 900 元，超过可用资金 800 元（资金池 100 元 + 本轮现有库存 700 元），请减少数量" in shown
    assert f'name="tier-{tiers["hotel"]}" value="9"' in shown  # what was typed, to correct
    assert client.post(path, data=data | {f"tier-{tiers['fuel']}": "-1"}).status_code == 400
    assert client.post(path, data=data | {f"tier-{tiers['fuel']}": "²"}).status_code == 400  # isdigit(), not a number
    with app.app_context():
        assert remaining_by_tier(round_two(app, campaign_id).id) == {tiers["fuel"]: 7}
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "round_quota")) == 0  # fmt: skip
    assert balanced(campaign_id)["pool"] == 10000


def test_the_service_counts_the_stock_of_tiers_left_out_against_the_money(app, measured):
    campaign_id = measured(budget_yuan=1300)  # 800 yuan available: 100 in the pool, 700 of fuel stock
    tiers = tier_ids(app, campaign_id)
    with app.app_context():
        round_ = round_two(app, campaign_id)
        assert advisor.check_affordable(round_, {tiers["hotel"]: 1}, utcnow()).available_fen == 80000
        with pytest.raises(rounds.QuotaRefused, match="方案合计 900 元，超过可用资金 800 元"):
            advisor.check_affordable(round_, {tiers["hotel"]: 2}, utcnow())


def test_without_a_measured_round_the_current_allocation_stands(app, console, make_campaign, clock):
    clock.move_to(T0 - timedelta(hours=1))  # round 1 has not opened
    campaign_id = make_campaign(small_campaign(10000))
    tiers = tier_ids(app, campaign_id)
    with app.app_context():
        campaign = db.session.get(Campaign, campaign_id)
        first, second = campaign.rounds[0], campaign.rounds[1]
        advice = advisor.advise(first, utcnow())
        assert advice.quantities == {tiers["hotel"]: 4, tiers["fuel"]: 8}
        assert advice.notes == ["尚无已开始的轮次可供参考：建议保持本轮现有配额（不超过可用资金）。"]
        assert {t.reason for t in advice.tiers} == {"尚无往轮数据，保持本轮现有配额"}
        assert advisor.advise(second, utcnow()).quantities == {tiers["hotel"]: 0, tiers["fuel"]: 0}
    page = console("operator").get(f"/admin/campaigns/{campaign_id}/rounds/1/advice").get_data(as_text=True)
    assert "尚无已开始的轮次可供参考" in page and "建议投放合计 1,200 元（本轮现有 1,200 元）" in page


def test_without_history_the_current_allocation_is_capped_by_the_money():
    slot = advisor.Slot(id=1, category_id=1, category="宾馆", face_fen=10000, current=10)
    advice = advisor.propose([slot], advisor.History(), advisor.Money(pool_fen=20000, stock_fen=30000))
    assert advice.quantities == {1: 5} and advice.proposed_fen == 50000
    assert advice.tiers[0].reason == "尚无往轮数据，保持本轮现有配额（按可用资金缩减：10 → 5 张）"


def test_an_open_round_is_shown_and_cannot_be_changed_from_the_advice(app, console, measured):
    campaign_id = measured()
    client = console("admin")
    page = client.get(f"/admin/campaigns/{campaign_id}/rounds/1/advice").get_data(as_text=True)
    assert "本轮已开始，建议仅供查看" in page and 'name="tier-' not in page
    tiers = tier_ids(app, campaign_id)
    answer = client.post(
        f"/admin/campaigns/{campaign_id}/rounds/1/advice",
        data={"csrf_token": csrf_token(page), f"tier-{tiers['hotel']}": "1"},
    )
    assert "第1轮已开始，只能调整尚未开始的轮次的配额" in answer.get_data(as_text=True)
    assert client.get(f"/admin/campaigns/{campaign_id}/rounds/9/advice").status_code == 404


# ---------------------------------------------------------------- properties


category_history = st.builds(
    lambda claimed, redeemed, spend, issued, claimed_last, minutes: dict(
        claimed=claimed,
        redeemed=min(redeemed, claimed),
        redeemed_fen=min(redeemed, claimed) * 5000,
        spend_fen=spend,
        issued_last=issued,
        claimed_last=min(claimed_last, issued),
        sold_out_after=timedelta(minutes=minutes) if issued and claimed_last >= issued else None,
    ),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 10**9),
    st.integers(0, 500),
    st.integers(0, 600),
    st.integers(0, 5 * 24 * 60),
)


@settings(max_examples=300, deadline=None)
@given(
    faces=st.lists(st.sampled_from([1000, 2000, 5000, 10000, 20000, 50000]), min_size=1, max_size=8),
    quantities=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000)), min_size=8, max_size=8),
    categories=st.lists(category_history, min_size=3, max_size=3),
    measured=st.booleans(),
    drawing=st.booleans(),
    pool_fen=st.integers(0, 10**9),
    stock_fen=st.integers(0, 10**8),
)
def test_the_proposal_never_costs_more_than_the_money_available(
    faces, quantities, categories, measured, drawing, pool_fen, stock_fen
):
    slots = [
        advisor.Slot(i, i % 3, f"品类{i % 3}", face, current, previous)
        for i, (face, (current, previous)) in enumerate(zip(faces, quantities, strict=False))
    ]
    history = advisor.History(
        rounds=(1, 2) if measured else (),
        drawing=drawing,
        categories={c: advisor.CategoryHistory(c, f"品类{c}", **figures) for c, figures in enumerate(categories)},
    )
    money = advisor.Money(pool_fen, stock_fen)
    advice = advisor.propose(slots, history, money)
    assert advice.proposed_fen <= money.available_fen
    for tier in advice.tiers:
        assert 50 <= tier.percent <= 150 if measured else tier.percent == 100
        assert 0 <= tier.proposed <= tier.base * tier.percent // 100
        assert tier.base == (tier.slot.previous if measured else tier.slot.current)
    if advice.wanted_fen <= money.available_fen:
        assert all(t.proposed == t.base * t.percent // 100 for t in advice.tiers)
    else:
        # Scaled down in proportion: each tier keeps at least its share of the money in whole coupons.
        for tier in advice.tiers:
            wanted = tier.base * tier.percent // 100
            assert tier.proposed >= wanted * money.available_fen // advice.wanted_fen


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    reserve_yuan=st.integers(0, 1500),
    plays=st.lists(st.tuples(st.sampled_from(["hotel", "fuel"]), st.booleans()), max_size=10),
    evening=st.sampled_from([timedelta(hours=2), timedelta(days=1, hours=23)]),
)
def test_any_history_gives_a_proposal_the_quota_change_accepts_and_the_books_still_balance(
    app, client, make_till, clock, reserve_yuan, plays, evening
):
    clock.move_to(T0)
    campaign_id, residents = fresh_world(app, small_campaign(1200 + reserve_yuan), residents=6)
    tills = {category: make_till(category)[1] for category in ("hotel", "fuel")}
    drawn: dict[str, int] = {}
    for category, spend in plays:
        clock.shift(timedelta(minutes=7))
        n = drawn.get(category, 0)
        if n >= len(residents):
            continue
        drawn[category] = n + 1
        token = residents[n]
        won = client.post("/api/v1/draw", json={"category": category}, headers=auth(token))
        if won.status_code == 200 and spend:
            coupon = won.get_json()["coupon"]
            redeem(client, tills[category], paycode(client, token, coupon["id"]), coupon["threshold_fen"])
    clock.move_to(T0 + evening)  # round 1 still drawing, or closed and rolled over
    run_all(app)
    with app.app_context():
        round_ = round_two(app, campaign_id)
        advice = advisor.advise(round_, utcnow())
        assert advice.proposed_fen <= advice.money.available_fen
        assert advice.money.pool_fen == ledger.pool_fen(campaign_id)
        advisor.check_affordable(round_, advice.quantities, utcnow())
        rounds.adjust_quotas(round_.id, advice.quantities, "admin:test", utcnow())
        db.session.commit()
        held = remaining_by_tier(round_.id)
        assert {t: n for t, n in advice.quantities.items() if n} == held
        faces = dict(db.session.execute(sa.select(Tier.id, Tier.face_fen)).all())
        assert sum(faces[t] * n for t, n in held.items()) == advice.proposed_fen
        assert ledger.verify(db.session.get(Campaign, campaign_id)).problems == []


# ---------------------------------------------------------------- a round the plan put nothing in


def test_a_round_fed_only_by_rollover_says_why_it_shows_zeros(app, console, client, make_campaign, make_resident,
                                                               make_till, clock):  # fmt: skip
    """The whole budget (1,200 yuan) in round 1: round 2's quota page and its advice are all
    zeros until the rollover after round 1, and both say so in words; once fed, they do not."""
    campaign_id = make_campaign(small_campaign(1200))
    admin = console("admin")
    expected = (
        "本活动的预算全部投放在第1轮；第2轮的券由第1轮未领取、过期和退回的金额滚动生成，第1轮结束后才能确定"
        "（预计 6月26日 24:00 由系统自动生成），所以现在各券种都是0张。"
    )  # round 1 closes at 24:00 of its second day, its coupons' deadline too
    quota_page = admin.get(f"/admin/campaigns/{campaign_id}/rounds/2").get_data(as_text=True)
    assert "资金池现有 0 元" in quota_page and expected in quota_page
    advice_page = admin.get(f"/admin/campaigns/{campaign_id}/rounds/2/advice").get_data(as_text=True)
    assert expected in advice_page and "本轮有券之后，这里的建议按届时的库存和资金重新计算。" in advice_page
    assert expected not in admin.get(f"/admin/campaigns/{campaign_id}/rounds/1").get_data(as_text=True)
    assert "所以现在各券种都是0张" not in admin.get(f"/admin/campaigns/{campaign_id}/rounds/1/advice").get_data(
        as_text=True
    )

    # Round 1 under way: the advice measures it, the money still is not there, the reason stands.
    play_round_one(client, make_resident, make_till, clock, {"hotel": (4, 4), "fuel": (4, 1)})
    with app.app_context():
        advice = advisor.advise(round_two(app, campaign_id), utcnow())
        assert advice.proposed_fen == 0 and advice.notes[0] == expected

    # Fed by the rollover the night before round 2 (fuel: four undrawn, three drawn and expired
    # unspent): no reason left.
    clock.move_to(BEFORE_ROUND_2)
    run_all(app)
    with app.app_context():
        round_ = round_two(app, campaign_id)
        assert sum(remaining_by_tier(round_.id).values()) == 7
        assert advisor.advise(round_, utcnow()).empty is None
    page = console("operator").get(f"/admin/campaigns/{campaign_id}/rounds/2").get_data(as_text=True)
    assert 'id="empty"' not in page


def test_a_reserve_in_the_pool_is_named_and_a_rollover_that_brought_nothing_is_explained(app, make_campaign, clock):
    campaign_id = make_campaign(small_campaign(1500))  # 300 yuan held back in the pool
    with app.app_context():
        round_ = round_two(app, campaign_id)
        reason = advisor.empty_round_reason(round_, utcnow(), stocked=False, pool_fen=ledger.pool_fen(campaign_id))
        assert reason.startswith("本活动计划投放的券全部在第1轮（资金池另有 300 元，可用于调增本轮配额）；")
        round_.rolled_over_at = utcnow()
        reason = advisor.empty_round_reason(round_, utcnow(), stocked=False, pool_fen=0)
        assert reason.endswith("滚动时没有可滚动的金额，所以本轮没有券。")
        assert advisor.empty_round_reason(round_, utcnow(), stocked=True, pool_fen=0) is None
        db.session.rollback()


def test_a_campaign_stocking_every_round_has_no_reason_to_give(app, make_campaign, clock):
    campaign_id = make_campaign(campaign_doc(budget_yuan=3600, tiers=TIERS, rounds=ROUNDS, allocate="every_round"))
    with app.app_context():
        round_ = round_two(app, campaign_id)
        assert advisor.empty_round_reason(round_, utcnow(), stocked=False, pool_fen=0) is None
