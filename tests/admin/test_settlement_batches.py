"""Settlement batches in the console and on the command line: a seven-round campaign with refunds,
a blacklisting and an audit exception, whose console, workbook, bank file and till show the same
figures; each step for its role alone."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.extensions import db
from server.models import Merchant, SettlementBatch, SettlementLine
from server.pool.jobs import run_all
from tests.helpers import T0, auth, csrf_token, paycode, redeem, sign_in

ROUND = timedelta(days=5)


@pytest.fixture
def county(app, client, make_campaign, make_resident, make_till, clock):
    """The seven-round test campaign, a hotel and a fuel station, and sell(category)."""
    app.config["TOKEN_MAX_AGE_S"] = 60 * 24 * 3600  # the same tills all campaign long
    campaign_id = make_campaign()
    tills = {"hotel": make_till("hotel"), "fuel": make_till("fuel")}

    def sell(category):
        _, resident = make_resident()
        won = client.post("/api/v1/draw", json={"category": category}, headers=auth(resident)).get_json()["coupon"]
        answer = redeem(client, tills[category][1], paycode(client, resident, won["id"]), won["threshold_fen"])
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["redemption"]

    return campaign_id, tills, sell


def post(client, path, **data):
    token = csrf_token(client.get("/admin/settlement/batches").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **data})


def flashed(client) -> str:
    page = client.get("/admin/settlement/batches").get_data(as_text=True)
    return " ".join(re.findall(r'class="flash[^"]*"[^>]*>([^<]+)<', page))


def batch_id_of(app, number: int) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(SettlementBatch.id).where(SettlementBatch.number == number))


def line_rows(app, batch_id):
    with app.app_context():
        return {
            line.merchant.name: (line.id, line.payable_fen, line.paid_fen, line.withheld_fen, line.gross_fen)
            for line in db.session.scalars(sa.select(SettlementLine).where(SettlementLine.batch_id == batch_id))
        }


def workbook_summary(client, batch_id) -> tuple[list[list], list]:
    from openpyxl import load_workbook

    answer = client.get(f"/admin/settlement/batches/{batch_id}.xlsx")
    assert answer.status_code == 200
    sheet = load_workbook(io.BytesIO(answer.data))["汇总"]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    header = next(i for i, r in enumerate(rows) if r and r[0] == "商户")
    body, total = rows[header + 1 : -1], rows[-1]
    money = [cell for cell in sheet[header + 2] if isinstance(cell.value, float | int)]
    assert money and all(cell.number_format == "#,##0.00" for cell in money[1:])
    return body, total


def fen(yuan_value) -> int:
    return round(yuan_value * 100)


def test_a_seven_round_campaign_settles_the_same_everywhere(app, county, make_account, clock, runner, balanced):
    campaign_id, tills, sell = county
    for role in ("operator", "auditor", "admin"):
        make_account(role)

    def signed_in():
        """The three duties, signed in afresh (a console session lasts a working day)."""
        nonlocal operator, auditor, admin
        operator, auditor, admin = (app.test_client() for _ in range(3))
        for client, name in ((operator, "operator-user"), (auditor, "auditor-user"), (admin, "admin-user")):
            assert sign_in(client, name).status_code == 302

    operator = auditor = admin = None

    def cycle(number, to, label, pay=True, exception=None):
        signed_in()
        assert post(operator, "/admin/settlement/batches", campaign=campaign_id, label=label, to=to).status_code == 302
        batch_id = batch_id_of(app, number)
        page = auditor.get(f"/admin/settlement/batches/{batch_id}").get_data(as_text=True)
        assert "审计抽查样本" in page and 'data-action="audit"' in page and 'data-action="approve"' not in page
        if exception:
            answer = post(
                auditor, f"/admin/settlement/batches/{batch_id}/invalid", redemption=exception, reason="拆单套券"
            )
            assert answer.status_code == 302
        # The wrong role is refused and changes nothing.
        assert post(operator, f"/admin/settlement/batches/{batch_id}/audit", opinion="越权审计").status_code == 403
        assert post(auditor, f"/admin/settlement/batches/{batch_id}/approve").status_code == 403
        assert post(auditor, f"/admin/settlement/batches/{batch_id}/audit", opinion="抽查样本无误").status_code == 302
        assert post(admin, f"/admin/settlement/batches/{batch_id}/approve").status_code == 302
        if pay:
            for line_id, payable, paid, withheld, _ in line_rows(app, batch_id).values():
                if payable - paid - withheld > 0:
                    amount = f"{(payable - paid - withheld) / 100:.2f}"
                    answer = post(operator, f"/admin/settlement/lines/{line_id}/pay", amount=amount, date="2026-08-20",
                                  reference=f"B{number}-{line_id}")  # fmt: skip
                    assert answer.status_code == 302
        return batch_id

    sales = {}
    for number in range(1, 8):
        clock.move_to(T0 + (number - 1) * ROUND)
        run_all(app)  # the round opens with its stock
        if number == 3:
            # Batch 1, rounds 1-2: the bank file first needs every payee's account.
            first = cycle(1, "2026-07-04", "第1-2轮", pay=False)
            assert operator.get(f"/admin/settlement/batches/{first}/bank.csv").status_code == 302
            assert "未登记收款账户：演示商户1、演示商户2" in flashed(operator)
            with app.app_context():
                codes = dict(db.session.execute(sa.select(Merchant.name, Merchant.credit_code)).all())
            for name, account in (("演示商户1", "6222020200112233446"), ("演示商户2", "110060149018000123456")):
                args = ["bank", codes[name], "--payee", name, "--bank", "中国银行乾安支行", "--account", account]
                done = runner.invoke(args=["settlement", *args, "--as", "operator-user"])
                assert done.exit_code == 0, done.output
            args = ["bank", codes["演示商户1"], "--payee", "演示商户1", "--bank", "中国银行"]
            bad = runner.invoke(args=["settlement", *args, "--account", "6222020200112233441", "--as", "operator-user"])
            assert bad.exit_code == 1 and "校验位不正确" in bad.output
            bank = operator.get(f"/admin/settlement/batches/{first}/bank.csv")
            rows = list(csv.reader(io.StringIO(bank.data.decode("utf-8-sig"))))
            lines = line_rows(app, first)
            assert rows[0] == ["收款人户名", "收款账号", "开户银行", "金额(元)", "用途"]
            assert {r[0]: r[3] for r in rows[1:]} == {name: f"{v[1] / 100:.2f}" for name, v in lines.items()}
            assert {r[4] for r in rows[1:]} == {"消费券结算 测试消费券 第1-2轮"}
            assert rows[1][1] in ("6222020200112233446", "110060149018000123456")
            for line_id, payable, *_rest in lines.values():
                answer = post(operator, f"/admin/settlement/lines/{line_id}/pay", amount=f"{payable / 100:.2f}",
                              date="2026-07-10", reference=f"B1-{line_id}")  # fmt: skip
                assert answer.status_code == 302
            assert line_rows(app, first)["演示商户1"][2] == lines["演示商户1"][1]

            # A refund after batch 1 was paid: batch 2 deducts it. Then the fuel station is blacklisted.
            refunded = sales[1][0]
            path = f"/api/v1/merchant/redemptions/{refunded['id']}/refund"
            assert (
                app.test_client().post(path, json={"reason": "退货"}, headers=auth(tills["hotel"][1])).status_code
                == 200
            )
        sales[number] = [sell("hotel"), sell("hotel")] + ([sell("fuel")] if number < 7 else [])
        if number == 6:  # after round 6's sales: batch 2, rounds 3-5; then the blacklisting
            second = cycle(2, "2026-07-19", "第3-5轮", pay=False)
            assert line_rows(app, second)["演示商户1"][4] == sum(r["owed_fen"] for n in (3, 4, 5) for r in sales[n][:2])
            token = csrf_token(admin.get("/admin/merchants").get_data(as_text=True))
            with app.app_context():
                fuel = db.session.get(Merchant, tills["fuel"][0])
                enrolment_id = fuel.enrolments[0].id
            answer = admin.post(f"/admin/merchants/enrolments/{enrolment_id}/blacklist",
                                data={"csrf_token": token, "reason": "虚假交易", "confirm": "1"})  # fmt: skip
            assert answer.status_code == 302
            lines = line_rows(app, second)
            assert lines["演示商户2"][3] == lines["演示商户2"][1] > 0  # withheld whole
            bank = operator.get(f"/admin/settlement/batches/{second}/bank.csv")
            assert [r[0] for r in csv.reader(io.StringIO(bank.data.decode("utf-8-sig")))][1:] == ["演示商户1"]
            hotel_line = lines["演示商户1"]
            answer = post(operator, f"/admin/settlement/lines/{hotel_line[0]}/pay", amount=f"{hotel_line[1] / 100:.2f}",
                          date="2026-07-25", reference="B2-hotel")  # fmt: skip
            assert answer.status_code == 302
            fuel_line = lines["演示商户2"][0]
            post(
                operator,
                f"/admin/settlement/lines/{fuel_line}/pay",
                amount="1.00",
                date="2026-07-25",
                reference="B2-fuel",
            )
            assert "暂扣" in flashed(operator)

    clock.move_to(T0 + 7 * ROUND)
    # Batch 3, rounds 6-7, with an audit exception.
    third = cycle(3, "2026-07-29", "第6-7轮", exception=str(sales[7][1]["id"]))

    totals = balanced(campaign_id)
    for batch_id in (first, second, third):
        body, total = workbook_summary(admin, batch_id)
        lines = line_rows(app, batch_id)
        assert {r[0]: fen(r[10]) for r in body} == {name: v[1] for name, v in lines.items()}
        for column in (6, 7, 8, 9, 10, 11, 12):
            assert fen(total[column]) == sum(fen(r[column]) for r in body)
        page = admin.get(f"/admin/settlement/batches/{batch_id}").get_data(as_text=True)
        shown = re.search(r'id="total-payable">([^<]+)<', page).group(1)
        assert shown == f"{sum(v[1] for v in lines.values()) / 100:,.2f}"
    hotel_view = app.test_client().get("/api/v1/merchant/settlement", headers=auth(tills["hotel"][1])).get_json()
    fuel_view = app.test_client().get("/api/v1/merchant/settlement", headers=auth(tills["fuel"][1])).get_json()
    assert [b["number"] for b in hotel_view["batches"]] == [3, 2, 1]
    assert hotel_view["paid_fen"] + fuel_view["paid_fen"] == totals["paid"]
    assert fuel_view["withheld_fen"] == totals["withheld"] > 0
    third_lines = line_rows(app, third)
    assert sum(b["amount_fen"] for b in hotel_view["batches"]) == sum(
        line_rows(app, b)["演示商户1"][1] for b in (first, second, third)
    )
    assert third_lines["演示商户1"][1] == third_lines["演示商户1"][4] - sales[7][1]["owed_fen"]
    assert totals["disallowed"] == sales[7][1]["owed_fen"]

    # The audit log names every step.
    log = admin.get("/admin/audit").get_data(as_text=True)
    for action in (
        "生成结算批次",
        "认定核销无效",
        "出具结算审计意见",
        "批准结算批次",
        "登记结算付款",
        "登记商户收款账户",
    ):
        assert action in log
    # The auditor sees accounts masked.
    page = auditor.get(f"/admin/settlement/batches/{first}").get_data(as_text=True)
    assert "6222020200112233446" not in page and "6222***********3446" in page


def test_the_command_line_runs_the_cycle(app, county, make_account, runner, clock):
    campaign_id, _, sell = county
    for role, name in (("operator", "cashier"), ("auditor", "auditor-li"), ("admin", "director")):
        make_account(role, name)
    sell("hotel"), sell("fuel")
    clock.move_to(T0 + timedelta(days=1))

    def flask(*args):
        return runner.invoke(args=["settlement", *args])

    frozen = flask("freeze", "test-campaign", "--to", "2026-06-25", "--label", "首日", "--as", "cashier")
    assert frozen.exit_code == 0 and "已生成" in frozen.output, frozen.output
    batch_id = batch_id_of(app, 1)
    assert flask("approve", str(batch_id), "--as", "director").exit_code == 1
    sample = flask("sample", str(batch_id))
    assert sample.exit_code == 0 and len(sample.output.strip().splitlines()) == 1
    wrong = flask("audit", str(batch_id), "--opinion", "抽查无误", "--as", "cashier")
    assert wrong.exit_code == 1 and "审计人员" in wrong.output
    assert flask("audit", str(batch_id), "--opinion", "抽查无误", "--as", "auditor-li").exit_code == 0
    assert flask("approve", str(batch_id), "--as", "director").exit_code == 0
    with app.app_context():
        payable = {
            line.merchant.credit_code: line.payable_fen
            for line in db.session.scalars(sa.select(SettlementLine).where(SettlementLine.batch_id == batch_id))
        }
    for code, amount in payable.items():
        done = flask("pay", str(batch_id), code, "--amount", f"{amount / 100:.2f}", "--date", "2026-07-01",
                     "--reference", f"CLI-{code[-6:]}", "--as", "cashier")  # fmt: skip
        assert done.exit_code == 0, done.output
    shown = flask("show", str(batch_id))
    assert "已付款" in shown.output and "审计 auditor-li" in shown.output
    assert flask("list").output.count("\n") == 1
    export = flask("export", str(batch_id), "--xlsx", str(app.instance_path) + "/b.xlsx")
    assert export.exit_code == 0, export.output
