"""Settlement batches (pool/settlement.py): frozen once, audited, approved and paid by different
people, withheld, deducted and clawed back, with the ledger balanced after every step."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from server.campaign import enrolment
from server.core.db import transient
from server.core.errors import Refusal
from server.extensions import db
from server.models import AdminUser, Campaign, Enrolment, Redemption, SettlementBatch, SettlementItem, SettlementLine
from server.pool import settlement
from tests.helpers import ON_POSTGRES, T0, at_once, auth, paycode, redeem

DAY = timedelta(days=1)


@pytest.fixture
def people(make_account):
    """One account per duty, and a second admin."""
    return {
        "admin": make_account("admin"),
        "admin2": make_account("admin", "admin-two"),
        "auditor": make_account("auditor"),
        "operator": make_account("operator"),
        "operator2": make_account("operator", "operator-two"),
    }


def step(app, username, action):
    """One step as the console's commit point takes it: committed, or rolled back on a refusal."""
    with app.app_context():
        user = db.session.scalar(sa.select(AdminUser).where(AdminUser.username == username))
        try:
            result = action(user)
            db.session.commit()
            return result
        except Exception:
            db.session.rollback()
            raise


@pytest.fixture
def shop(client, make_campaign, make_resident, make_till, clock):
    """The test campaign with a hotel and a fuel station; sell(category) redeems a fresh coupon
    there at its threshold and answers the redemption."""
    campaign_id = make_campaign()
    tills = {"hotel": make_till("hotel"), "fuel": make_till("fuel")}

    def sell(category="hotel", extra=0):
        _, resident = make_resident()
        won = client.post("/api/v1/draw", json={"category": category}, headers=auth(resident)).get_json()["coupon"]
        code = paycode(client, resident, won["id"])
        answer = redeem(client, tills[category][1], code, won["threshold_fen"] + extra)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["redemption"]

    return campaign_id, tills, sell


def freeze(app, who, campaign_id, to, now, start=None, label=""):
    def action(user):
        batch, new = settlement.freeze(db.session.get(Campaign, campaign_id), start, to, label, user, now)
        return batch.id, new

    return step(app, who, action)


def audit(app, who, batch_id, now, opinion="抽查样本，小票与核销一致"):
    return step(app, who, lambda u: settlement.audit(db.session.get(SettlementBatch, batch_id), opinion, u, now))


def approve(app, who, batch_id, now):
    return step(app, who, lambda u: settlement.approve(db.session.get(SettlementBatch, batch_id), u, now))


def invalid(app, who, campaign_id, redemption_id, now, reason="无真实交易"):
    return step(
        app, who, lambda u: settlement.mark_invalid(settlement.sale_item(campaign_id, redemption_id), reason, u, now)
    )


def lines(app, batch_id) -> dict[int, dict]:
    with app.app_context():
        found = db.session.scalars(sa.select(SettlementLine).where(SettlementLine.batch_id == batch_id))
        return {
            line.merchant_id: {
                name: getattr(line, name)
                for name in (
                    "sales",
                    "gross_fen",
                    "excluded_fen",
                    "deducted_fen",
                    "carried_fen",
                    "payable_fen",
                    "shortfall_fen",
                    "recovered_fen",
                    "paid_fen",
                    "withheld_fen",
                    "id",
                )
            }  # fmt: skip
            for line in found
        }


def pay(app, who, line_id, amount, now, reference, kind="pay"):
    record = settlement.pay if kind == "pay" else settlement.recover
    return step(
        app, who, lambda u: record(db.session.get(SettlementLine, line_id), amount, date(2026, 8, 1), reference, u, now)
    )


def state(app, batch_id) -> str:
    with app.app_context():
        return db.session.get(SettlementBatch, batch_id).state


def published_spend(app, campaign_id) -> int:
    """What the published results say residents' redemptions spent; settlement moves none of it."""
    from server.campaign.results import results
    from server.pool import ledger

    with app.app_context():
        shown = results(db.session.get(Campaign, campaign_id)).redeemed_fen
        by_tier = ledger.balances(campaign_id, "tier_id")
        assert shown == sum(v["redeemed"] + v["forfeited"] for (tier,), v in by_tier.items() if tier is not None)
        return shown


def refused(code_or_text: str, call, *args):
    with pytest.raises(Refusal) as caught:
        call(*args)
    assert code_or_text in caught.value.message or code_or_text == caught.value.code, caught.value.message
    return caught.value


def test_a_batch_is_frozen_once_audited_approved_and_paid_by_different_people(app, shop, people, balanced, client):
    campaign_id, tills, sell = shop
    hotel, fuel = tills["hotel"][0], tills["fuel"][0]
    sold = [sell("hotel"), sell("hotel"), sell("hotel", extra=1234), sell("fuel"), sell("fuel")]
    spent = published_spend(app, campaign_id)
    refused("才结束", freeze, app, people["operator"], campaign_id, date(2026, 6, 25), T0)
    now = T0 + DAY
    batch_id, new = freeze(app, people["operator"], campaign_id, date(2026, 6, 25), now, label="6月25日")
    assert new and freeze(app, people["operator"], campaign_id, date(2026, 6, 25), now) == (batch_id, False)
    owed = {r["id"]: r["owed_fen"] for r in sold}
    figures = lines(app, batch_id)
    assert figures[hotel]["sales"] == 3 and figures[fuel]["sales"] == 2
    assert figures[hotel]["gross_fen"] == sum(owed[r["id"]] for r in sold[:3])
    assert figures[fuel]["payable_fen"] == sum(owed[r["id"]] for r in sold[3:])
    balanced(campaign_id)

    # Each duty is one role's: an admin does not audit, the auditor does not approve or pay.
    refused("FORBIDDEN", audit, app, people["admin"], batch_id, now)
    refused("尚未审计", freeze, app, people["operator"], campaign_id, date(2026, 6, 26), now + DAY)
    exception = sold[2]["id"]
    invalid(app, people["auditor"], campaign_id, exception, now)
    refused("已于此前认定无效", invalid, app, people["auditor"], campaign_id, exception, now)
    figures = lines(app, batch_id)
    assert figures[hotel]["excluded_fen"] == owed[exception]
    assert figures[hotel]["payable_fen"] == owed[sold[0]["id"]] + owed[sold[1]["id"]]
    balanced(campaign_id)
    refused("批准后才能付款", pay, app, people["operator"], figures[fuel]["id"], 100, now, "REF-0001")
    refused("FORBIDDEN", approve, app, people["auditor"], batch_id, now)
    refused("只有已审计的批次", approve, app, people["admin"], batch_id, now)
    audit(app, people["auditor"], batch_id, now)
    refused("不能再出具审计意见", audit, app, people["auditor"], batch_id, now)
    refused("FORBIDDEN", pay, app, people["admin"], figures[fuel]["id"], 100, now, "REF-0001")
    approve(app, people["admin"], batch_id, now)
    assert state(app, batch_id) == "approved"

    # Partial payments add up; never more than owed, and one bank reference once.
    part = figures[hotel]["payable_fen"] - 100
    pay(app, people["operator"], figures[hotel]["id"], part, now, "BANK-0001")
    refused("超出", pay, app, people["operator"], figures[hotel]["id"], 101, now, "BANK-0002")
    refused("已登记过", pay, app, people["operator2"], figures[hotel]["id"], 100, now, "BANK-0001")
    pay(app, people["operator2"], figures[hotel]["id"], 100, now, "BANK-0002")
    assert state(app, batch_id) == "approved"  # the fuel station is not paid yet
    pay(app, people["operator"], figures[fuel]["id"], figures[fuel]["payable_fen"], now, "BANK-0003")
    assert state(app, batch_id) == "paid"
    totals = balanced(campaign_id)
    assert totals["paid"] == figures[hotel]["payable_fen"] + figures[fuel]["payable_fen"]
    assert totals["disallowed"] == owed[exception] and totals["payable"] == 0
    assert published_spend(app, campaign_id) == spent
    # The audit log's who and when of each step is on the batch itself.
    with app.app_context():
        batch = db.session.get(SettlementBatch, batch_id)
        names = dict(db.session.execute(sa.select(AdminUser.id, AdminUser.username)).all())
        assert (names[batch.created_by], names[batch.audited_by], names[batch.approved_by]) == (
            people["operator"], people["auditor"], people["admin"])  # fmt: skip

    # The merchant sees it from the till.
    view = client.get("/api/v1/merchant/settlement", headers=auth(tills["hotel"][1])).get_json()
    assert (view["paid_fen"], view["payable_fen"], view["withheld_fen"]) == (figures[hotel]["payable_fen"], 0, 0)
    assert view["batches"][0] | {"campaign": None} == {
        "campaign": None, "number": 1, "period": "6月25日", "state": "paid", "state_name": "已付款", "sales": 3,
        "amount_fen": figures[hotel]["payable_fen"], "deducted_fen": owed[exception],
        "paid_fen": figures[hotel]["payable_fen"], "withheld_fen": 0, "clawback_fen": 0, "paid_on": "2026-08-01",
        "references": ["BANK-0001", "BANK-0002"],
    }  # fmt: skip


def test_the_database_holds_one_batch_per_redemption_and_one_person_per_duty(app, shop, people):
    campaign_id, _, sell = shop
    sold = sell()
    batch_id, _ = freeze(app, people["admin"], campaign_id, date(2026, 6, 25), T0 + DAY)
    with app.app_context():
        item = db.session.scalar(sa.select(SettlementItem).where(SettlementItem.redemption_id == sold["id"]))
        copy = {c.name: getattr(item, c.name) for c in SettlementItem.__table__.columns if c.name != "id"}
        with pytest.raises(sa.exc.IntegrityError):
            db.session.execute(sa.insert(SettlementItem.__table__), copy)
        db.session.rollback()
        auditor = db.session.scalar(sa.select(AdminUser.id).where(AdminUser.username == people["auditor"]))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.execute(
                sa.update(SettlementBatch)
                .where(SettlementBatch.id == batch_id)
                .values(state="approved", audited_by=auditor, approved_by=auditor)
            )
        db.session.rollback()


def test_refunds_and_invalidations_after_payment_are_deducted_next_or_clawed_back(app, shop, people, balanced, clock):
    campaign_id, tills, sell = shop
    hotel, staff = tills["hotel"]
    first, second = sell(), sell()
    now = T0 + DAY
    batch_1, _ = freeze(app, people["operator"], campaign_id, date(2026, 6, 25), now)
    audit(app, people["auditor"], batch_1, now)
    approve(app, people["admin"], batch_1, now)
    line_1 = lines(app, batch_1)[hotel]
    pay(app, people["operator"], line_1["id"], line_1["payable_fen"], now, "BANK-1001")

    # After payment: the first sale is refunded at the till, the second found invalid by an audit.
    clock.shift(DAY)
    body = {"reason": "顾客退货"}
    path = f"/api/v1/merchant/redemptions/{first['id']}/refund"
    assert app.test_client().post(path, json=body, headers=auth(staff)).status_code == 200
    invalid(app, people["auditor"], campaign_id, second["id"], now + DAY, reason="同一顾客拆单")
    balanced(campaign_id)
    assert lines(app, batch_1)[hotel]["paid_fen"] == line_1["payable_fen"]  # a paid batch stays as it was

    # No sale since: the deductions exceed the next line -- a clawback claim.
    now = T0 + 2 * DAY
    batch_2, _ = freeze(app, people["operator"], campaign_id, date(2026, 6, 26), now)
    line_2 = lines(app, batch_2)[hotel]
    assert (line_2["gross_fen"], line_2["deducted_fen"]) == (0, first["owed_fen"] + second["owed_fen"])
    assert (line_2["payable_fen"], line_2["shortfall_fen"]) == (0, first["owed_fen"] + second["owed_fen"])
    totals = balanced(campaign_id)
    assert totals["payable"] == -line_2["shortfall_fen"] and totals["disallowed"] == second["owed_fen"]
    view = app.test_client().get("/api/v1/merchant/settlement", headers=auth(staff)).get_json()
    assert view["clawback_fen"] == line_2["shortfall_fen"]

    # The merchant pays part of it back; the next batch takes the rest off its new sales.
    audit(app, people["auditor"], batch_2, now)
    approve(app, people["admin"], batch_2, now)
    assert state(app, batch_2) == "paid"  # nothing to pay
    refused("超出", pay, app, people["operator"], line_2["id"], line_2["shortfall_fen"] + 1, now, "BACK-01", "recover")
    back = line_2["shortfall_fen"] - 2000
    pay(app, people["operator"], line_2["id"], back, now, "BACK-0001", "recover")
    totals = balanced(campaign_id)
    assert totals["payable"] == -2000
    big = sell(extra=100000)
    now = T0 + 3 * DAY
    batch_3, _ = freeze(app, people["operator"], campaign_id, date(2026, 6, 27), now)
    line_3 = lines(app, batch_3)[hotel]
    assert line_3["carried_fen"] == 2000
    assert line_3["payable_fen"] == big["owed_fen"] - line_3["carried_fen"]
    refused("已转入下一批次", pay, app, people["operator"], line_2["id"], 1, now, "BACK-0002", "recover")
    audit(app, people["auditor"], batch_3, now)
    approve(app, people["admin2"], batch_3, now)
    pay(app, people["operator"], line_3["id"], line_3["payable_fen"], now, "BANK-3001")
    totals = balanced(campaign_id)
    assert totals["payable"] == 0
    assert totals["paid"] - back == big["owed_fen"]  # what the merchant kept: the one sale that stands
    assert totals["recovered"] == -back
    published_spend(app, campaign_id)
    # Freezing again finds nothing new: never counted twice.
    refused("没有需要结算", freeze, app, people["operator"], campaign_id, date(2026, 6, 28), now + DAY)


def test_a_suspended_or_blacklisted_merchant_is_withheld_not_paid(app, shop, people, balanced, client):
    campaign_id, tills, sell = shop
    hotel, staff = tills["hotel"]
    sell(), sell("fuel")
    now = T0 + DAY
    batch_id, _ = freeze(app, people["operator"], campaign_id, date(2026, 6, 25), now)
    audit(app, people["auditor"], batch_id, now)
    approve(app, people["admin"], batch_id, now)

    def standing(status, reason):
        with app.app_context():
            enrolled = db.session.scalar(sa.select(Enrolment).where(Enrolment.merchant_id == hotel))
            enrolment.set_standing(enrolled, status, now, reason)
            db.session.commit()

    standing("suspended", "核查中")
    line = lines(app, batch_id)[hotel]
    assert line["withheld_fen"] == line["payable_fen"] > 0
    assert balanced(campaign_id)["withheld"] == line["payable_fen"]
    refused("暂扣", pay, app, people["operator"], line["id"], 100, now, "BANK-0001")
    view = client.get("/api/v1/merchant/settlement", headers=auth(staff)).get_json()
    assert (view["withheld_fen"], view["payable_fen"]) == (line["payable_fen"], 0)
    standing("approved", "核查无误")
    assert lines(app, batch_id)[hotel]["withheld_fen"] == 0
    pay(app, people["operator"], line["id"], 100, now, "BANK-0001")
    standing("blacklisted", "虚假交易")
    line = lines(app, batch_id)[hotel]
    assert line["withheld_fen"] == line["payable_fen"] - 100
    totals = balanced(campaign_id)
    assert (totals["withheld"], totals["paid"]) == (line["withheld_fen"], 100)


def test_a_redemption_arriving_while_a_batch_freezes_is_in_exactly_one_batch(
    app, shop, people, make_resident, balanced
):
    """Real threads and connections: redemptions commit while the batch freezes; every one is in
    this batch or the next, none in both and none lost."""
    campaign_id, tills, sell = shop
    early = [sell() for _ in range(3)]
    racing = []
    for _ in range(8):
        _, resident = make_resident()
        client = app.test_client()
        won = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(resident)).get_json()["coupon"]
        racing.append((paycode(client, resident, won["id"]), won["threshold_fen"]))
    staff = tills["hotel"][1]
    calls = [lambda c, code=code, spend=spend: redeem(c, staff, code, spend) for code, spend in racing]
    frozen: list = []

    def freezing(client):
        for _ in range(5):  # SQLite's one writer may turn it away while a till writes: try again
            try:
                frozen.append(freeze(app, people["operator"], campaign_id, date(2026, 6, 25), T0 + DAY))
                break
            except sa.exc.OperationalError as error:
                assert transient(error) and not ON_POSTGRES
        return client.get("/healthz")

    answers = at_once(app, [*calls, freezing])
    assert answers[-1][0] == 200 and frozen
    # PostgreSQL takes every redemption; SQLite's one writer may answer one 503 (retry later)
    # after its busy timeout on a loaded machine: never recorded, never frozen.
    statuses = [status for status, _ in answers[:-1]]
    assert statuses == [200] * 8 if ON_POSTGRES else set(statuses) <= {200, 503}
    batch_1 = frozen[0][0]
    audit(app, people["auditor"], batch_1, T0 + DAY)
    with app.app_context():
        in_first = db.session.scalar(sa.select(SettlementBatch).where(SettlementBatch.id == batch_1)).lines
        first_count = sum(line.sales for line in in_first)
    if first_count < 3 + statuses.count(200):  # some committed after the freeze's statement: the next batch's
        freeze(app, people["operator"], campaign_id, date(2026, 6, 26), T0 + 2 * DAY)
    else:  # every one made it into the first: the next has nothing to take
        refused("没有需要结算", freeze, app, people["operator"], campaign_id, date(2026, 6, 26), T0 + 2 * DAY)
    with app.app_context():
        sales = db.session.execute(
            sa.select(SettlementItem.redemption_id, SettlementItem.amount_fen).where(SettlementItem.kind == "sale")
        ).all()
        owed = dict(db.session.execute(sa.select(Redemption.id, Redemption.owed_fen)).all())
    assert len(sales) == len({r for r, _ in sales}) == 3 + statuses.count(200) == len(owed)
    assert dict(sales) == owed
    balanced(campaign_id)
    assert {r["id"] for r in early} <= {r for r, _ in sales}


def run_together(app, actions):
    """Each action(user) from its own thread and connection at the same moment; what each did:
    "ok" or the refusal's sentence."""
    barrier = threading.Barrier(len(actions))
    results: list = [None] * len(actions)

    def run(i, who, action):
        barrier.wait()
        try:
            step(app, who, action)
            results[i] = "ok"
        except Refusal as refusal:
            results[i] = refusal.message

    threads = [threading.Thread(target=run, args=(i, who, a)) for i, (who, a) in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_two_admins_approving_and_two_operators_paying_at_once_pay_once(app, shop, people, balanced):
    campaign_id, tills, sell = shop
    hotel = tills["hotel"][0]
    sell(), sell()
    now = T0 + DAY
    batch_id, _ = freeze(app, people["operator"], campaign_id, date(2026, 6, 25), now)
    audit(app, people["auditor"], batch_id, now)

    def approving(user):
        settlement.approve(db.session.get(SettlementBatch, batch_id), user, now)

    results = run_together(app, [(people["admin"], approving), (people["admin2"], approving)])
    assert sorted(results, key=str)[0] == "ok" and results.count("ok") == 1, results
    line = lines(app, batch_id)[hotel]

    def paying(reference, amount):
        def action(user):
            settlement.pay(db.session.get(SettlementLine, line["id"]), amount, date(2026, 8, 1), reference, user, now)

        return action

    whole = line["payable_fen"]
    results = run_together(
        app, [(people["operator"], paying("BANK-A001", whole)), (people["operator2"], paying("BANK-B001", whole))]
    )
    assert results.count("ok") == 1, results
    results = run_together(
        app, [(people["operator"], paying("BANK-A001", 1)), (people["operator2"], paying("BANK-A001", 1))]
    )
    assert results.count("ok") == 0  # the line is paid: nothing more, by any reference
    assert lines(app, batch_id)[hotel]["paid_fen"] == whole
    assert balanced(campaign_id)["paid"] == whole
