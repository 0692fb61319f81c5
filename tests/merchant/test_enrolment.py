"""Merchant enrolment (报名), the bureau's review, and one-time binding codes."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.campaign import enrolment as services
from server.core.errors import Refusal
from server.extensions import db
from server.merchant import credit_code
from server.models import BindingCode, Merchant
from tests.helpers import T0, apply_merchant

VALID_CODE = credit_code.make("220723", "MA000099")


def enrolment_of(merchant_id: int):
    """The merchant's one enrolment (each test applies to one campaign)."""
    (only,) = db.session.get(Merchant, merchant_id).enrolments
    return only


def application(**overrides) -> dict:
    body = {
        "name": "乾安县演示超市有限公司",
        "credit_code": VALID_CODE,
        "address": "乾安县演示街1号",
        "contact_name": "演示联系人",
        "contact_phone": "13900000001",
        "categories": ["hotel"],
        "accept_commitment": True,
    }
    body.update(overrides)
    return body


def test_a_merchant_applies_and_waits_for_review(client, app, make_campaign, clock):
    make_campaign()
    answer = apply_merchant(client, application(categories=["hotel", "fuel"]))
    assert answer.status_code == 201, answer.get_json()
    merchant = answer.get_json()["merchant"]
    assert merchant["status"] == "applied" and merchant["status_name"] == "待审核"
    assert [c["code"] for c in merchant["categories"]] == ["hotel", "fuel"]
    with app.app_context():
        assert enrolment_of(merchant["id"]).commitment_accepted_at == T0
    # Not listed to residents before approval.
    assert client.get("/api/v1/categories/hotel/merchants").get_json()["items"] == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"accept_commitment": False}, "请阅读并同意《诚信承诺书》后再提交"),
        (
            {"credit_code": VALID_CODE[:17] + ("0" if VALID_CODE[17] != "0" else "1")},
            "统一社会信用代码不正确，请核对18位代码",
        ),
        ({"contact_phone": "12345"}, "请输入正确的11位手机号"),
        ({"categories": ["casino"]}, "经营品类不在本次活动范围内：casino"),
    ],
)
def test_an_application_is_refused_with_a_reason(client, make_campaign, clock, overrides, message):
    make_campaign()
    answer = apply_merchant(client, application(**overrides))
    assert answer.status_code == 400
    assert answer.get_json()["error"] == {"code": "INVALID_INPUT", "message": message}


def test_one_application_per_credit_code(client, make_campaign, clock):
    make_campaign()
    assert apply_merchant(client, application()).status_code == 201
    again = apply_merchant(client, application(name="另一个名字"))
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "MERCHANT_EXISTS"


def apply_one(client) -> int:
    return apply_merchant(client, application()).get_json()["merchant"]["id"]


def test_approval_issues_a_one_time_code_that_expires(client, app, runner, make_campaign, clock):
    make_campaign()
    merchant_id = apply_one(client)
    result = runner.invoke(args=["merchant", "approve", str(merchant_id)])
    assert result.exit_code == 0, result.output
    code = result.output.split("绑定码：")[1][:8]
    assert client.get("/api/v1/categories/hotel/merchants").get_json()["items"][0]["id"] == merchant_id
    with app.app_context():
        found, merchant = services.binding_code_merchant(code.lower(), T0)
        assert merchant.id == merchant_id
        found.used_at = T0
        db.session.commit()
        with pytest.raises(Refusal) as used:
            services.binding_code_merchant(code, T0)
        assert used.value.code == "BINDING_CODE_INVALID"
        fresh = services.issue_binding_code(enrolment_of(merchant_id), T0)
        db.session.commit()
        with pytest.raises(Refusal):
            services.binding_code_merchant(fresh, T0 + timedelta(days=30))
        services.binding_code_merchant(fresh, T0 + timedelta(days=29))
        # Codes are stored as keyed hashes only.
        assert all(fresh not in (b.code_hash or "") for b in db.session.scalars(sa.select(BindingCode)))


def test_a_review_the_merchants_state_refuses_is_one_line_and_changes_nothing(
    client, app, runner, make_campaign, clock
):
    make_campaign()
    merchant_id = apply_one(client)
    assert runner.invoke(args=["merchant", "approve", str(merchant_id)]).exit_code == 0
    again = runner.invoke(args=["merchant", "approve", str(merchant_id)])
    assert again.exit_code == 1
    assert again.output == "错误：报名当前状态为「已通过」，无需审核\n"
    rejected = runner.invoke(args=["merchant", "reject", str(merchant_id), "--reason", "失信"])
    assert (rejected.exit_code, rejected.output) == (1, "错误：报名当前状态为「已通过」，不能驳回\n")
    with app.app_context():
        assert enrolment_of(merchant_id).status == "approved"


def test_a_new_code_revokes_the_unused_old_one(client, app, runner, make_campaign, clock):
    make_campaign()
    merchant_id = apply_one(client)
    first = runner.invoke(args=["merchant", "approve", str(merchant_id)]).output.split("绑定码：")[1][:8]
    second = runner.invoke(args=["merchant", "code", str(merchant_id)]).output.split("新绑定码：")[1][:8]
    with app.app_context():
        with pytest.raises(Refusal):
            services.binding_code_merchant(first, T0)
        assert services.binding_code_merchant(second, T0)[1].id == merchant_id


def test_reject_needs_a_reason_and_blocks_codes(client, app, runner, make_campaign, clock):
    make_campaign()
    merchant_id = apply_one(client)
    result = runner.invoke(args=["merchant", "reject", str(merchant_id), "--reason", "列入失信被执行人名单"])
    assert result.exit_code == 0 and "已驳回" in result.output
    refused = runner.invoke(args=["merchant", "code", str(merchant_id)])
    assert refused.exit_code == 1
    assert "只有已通过审核的商户可以发放绑定码" in refused.output
    assert runner.invoke(args=["merchant", "approve", "999"]).exit_code == 1
    with app.app_context():
        assert enrolment_of(merchant_id).review_note == "列入失信被执行人名单"


def test_a_suspended_merchant_code_is_refused(client, app, runner, make_campaign, clock):
    make_campaign()
    merchant_id = apply_one(client)
    code = runner.invoke(args=["merchant", "approve", str(merchant_id)]).output.split("绑定码：")[1][:8]
    with app.app_context():
        enrolment_of(merchant_id).status = "suspended"
        db.session.commit()
        with pytest.raises(Refusal) as refused:
            services.binding_code_merchant(code, T0)
        assert refused.value.code == "MERCHANT_SUSPENDED"


def staff_code(client, phone):
    assert client.post("/api/v1/auth/sms", json={"phone": phone, "purpose": "staff"}).status_code == 200
    return client.get(f"/api/v1/dev/sms-outbox?phone={phone}").get_json()["items"][0]["code"]


def bind_staff(client, binding_code, phone="13800000002", name="店员小王", code=None):
    code = code or staff_code(client, phone)
    body = {"binding_code": binding_code, "name": name, "phone": phone, "sms_code": code}
    return client.post("/api/v1/merchant/bind", json=body)


def test_staff_bind_with_the_code_and_get_a_staff_token(client, runner, make_campaign, clock):
    from server.auth import tokens

    make_campaign()
    merchant_id = apply_one(client)
    code = runner.invoke(args=["merchant", "approve", str(merchant_id)]).output.split("绑定码：")[1][:8]
    answer = bind_staff(client, code)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["merchant"]["id"] == merchant_id
    with client.application.app_context():
        bearer = tokens.read(body["token"])
    assert bearer.kind == "staff"
    # The code is single-use: a second assistant needs a new one.
    clock.shift(timedelta(seconds=61))
    again = bind_staff(client, code, phone="13800000003")
    assert again.get_json()["error"]["code"] == "BINDING_CODE_INVALID"
    fresh = runner.invoke(args=["merchant", "code", str(merchant_id)]).output.split("新绑定码：")[1][:8]
    clock.shift(timedelta(seconds=61))
    assert bind_staff(client, fresh, phone="13800000003").status_code == 200


def test_staff_bind_refusals(client, runner, make_campaign, clock):
    make_campaign()
    merchant_id = apply_one(client)
    code = runner.invoke(args=["merchant", "approve", str(merchant_id)]).output.split("绑定码：")[1][:8]
    # The phone first: without its SMS code a wrong binding code and a right one answer alike.
    sms = staff_code(client, "13800000002")
    wrong_sms = "000000" if sms != "000000" else "111111"
    for binding_code in ("WRONGCOD", code):
        said = bind_staff(client, binding_code, code=wrong_sms).get_json()["error"]
        assert said["code"] == "SMS_CODE_INVALID"
    # With the phone's code, a wrong binding code is named, and uses the SMS code up: each guess
    # costs a fresh code.
    assert bind_staff(client, "WRONGCOD", code=sms).get_json()["error"]["code"] == "BINDING_CODE_INVALID"
    assert bind_staff(client, code, code=sms).get_json()["error"] == {
        "code": "SMS_CODE_INVALID", "message": "请先获取验证码"}  # fmt: skip
    clock.shift(timedelta(seconds=61))
    # A resident's binding code is not a staff code.
    client.post("/api/v1/auth/sms", json={"phone": "13800000009"})
    resident_code = client.get("/api/v1/dev/sms-outbox?phone=13800000009").get_json()["items"][0]["code"]
    refused = bind_staff(client, code, phone="13800000009", code=resident_code)
    assert refused.get_json()["error"]["code"] == "SMS_CODE_INVALID"
    # A wrong SMS code leaves the binding code usable.
    clock.shift(timedelta(seconds=61))
    right = staff_code(client, "13800000002")
    wrong = "000000" if right != "000000" else "111111"
    assert bind_staff(client, code, code=wrong).get_json()["error"]["code"] == "SMS_CODE_INVALID"
    assert bind_staff(client, code, code=right).status_code == 200
    # One phone serves one merchant.
    other = apply_other(client)
    other_code = runner.invoke(args=["merchant", "approve", str(other)]).output.split("绑定码：")[1][:8]
    clock.shift(timedelta(seconds=61))
    assert bind_staff(client, other_code).get_json()["error"]["code"] == "PHONE_TAKEN"


def apply_other(client) -> int:
    body = application(name="乾安县另一家演示酒店", credit_code=credit_code.make("220723", "MA000098"))
    return apply_merchant(client, body).get_json()["merchant"]["id"]


def test_suspend_reinstate_and_blacklist(client, app, runner, make_campaign, clock):
    make_campaign()
    merchant_id = apply_one(client)
    code = runner.invoke(args=["merchant", "approve", str(merchant_id)]).output.split("绑定码：")[1][:8]
    result = runner.invoke(args=["merchant", "suspend", str(merchant_id), "--reason", "群众举报，核查中"])
    assert result.exit_code == 0 and "已暂停" in result.output
    assert client.get("/api/v1/categories/hotel/merchants").get_json()["items"] == []
    assert runner.invoke(args=["merchant", "reinstate", str(merchant_id), "--reason", "核查无误"]).exit_code == 0
    assert client.get("/api/v1/categories/hotel/merchants").get_json()["items"][0]["id"] == merchant_id
    assert runner.invoke(args=["merchant", "blacklist", str(merchant_id), "--reason", "虚假交易"]).exit_code == 0
    with app.app_context(), pytest.raises(Refusal):
        services.binding_code_merchant(code, T0)
    refused = runner.invoke(args=["merchant", "reinstate", str(merchant_id), "--reason", "x"])
    assert refused.exit_code == 1
    assert "不能改为「已通过」" in refused.output


def test_an_application_proves_its_contact_phone_by_an_sms_code(app, client, make_campaign, clock):
    """Applications need no sign-in: the contact phone's SMS code stops a script filing forty."""
    make_campaign()
    body = application()
    assert client.post("/api/v1/merchant/apply", json=body).status_code == 400  # no code: invalid input
    sent = client.post("/api/v1/auth/sms", json={"phone": body["contact_phone"], "purpose": "apply"})
    assert sent.status_code == 200
    code = client.get(f"/api/v1/dev/sms-outbox?phone={body['contact_phone']}").get_json()["items"][0]["code"]
    wrong = client.post("/api/v1/merchant/apply", json=body | {"sms_code": "000000" if code != "000000" else "1"})
    assert wrong.status_code == 400 and wrong.get_json()["error"]["code"] == "SMS_CODE_INVALID"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Merchant)) == 0
    assert client.post("/api/v1/merchant/apply", json=body | {"sms_code": code}).status_code == 201
    again = client.post("/api/v1/merchant/apply", json=application(credit_code=credit_code.make("220723", "MA000097"))
                        | {"sms_code": code})  # fmt: skip
    assert again.get_json()["error"]["code"] == "SMS_CODE_INVALID"  # a code serves one application


@pytest.mark.rate_limits
def test_applications_are_limited_per_contact_phone(client, make_campaign, clock):
    make_campaign()
    for n in range(5):
        body = application(credit_code=credit_code.make("220723", f"MA0001{n:02d}"), name=f"演示商户{n}有限公司")
        assert apply_merchant(client, body).status_code == 201
    body = application(credit_code=credit_code.make("220723", "MA000199"))
    refused = apply_merchant(client, body)
    assert refused.status_code == 429 and "该联系电话提交报名太频繁" in refused.get_json()["error"]["message"]


def test_an_application_brings_the_settlement_account_checked(client, app, make_campaign, clock):
    """户名, 开户银行 and 账号 together or not at all; a UnionPay card's Luhn digit is checked; an
    application cannot change the account of a merchant known already."""
    make_campaign()
    bank = {"bank_payee": "乾安县演示超市有限公司", "bank_name": "中国银行乾安支行"}
    for account, message in (("6222 0202 0011 2233 441", "校验位不正确"), ("12-34", "8至30位数字")):
        answer = apply_merchant(client, application(**bank, bank_account=account))
        assert answer.status_code == 400 and message in answer.get_json()["error"]["message"]
    answer = apply_merchant(client, application(bank_payee="乾安县演示超市有限公司"))
    assert "同时填写" in answer.get_json()["error"]["message"]
    answer = apply_merchant(client, application(**bank, bank_account="6222 0202 0011 2233 446"))
    assert answer.status_code == 201, answer.get_json()
    make_campaign(code="second-campaign")
    again = application(**bank, bank_account="110060149018000123456", campaign="second-campaign")
    assert apply_merchant(client, again).status_code == 201
    with app.app_context():
        merchant = db.session.scalar(sa.select(Merchant).where(Merchant.credit_code == VALID_CODE))
        assert (merchant.bank_payee, merchant.bank_account) == ("乾安县演示超市有限公司", "6222020200112233446")


def test_bank_account_numbers():
    from server.core.bank import check_account, luhn_valid, mask_account, with_check_digit

    assert luhn_valid("4111111111111111") and luhn_valid("6222020200112233446")
    assert not luhn_valid("6222020200112233441")
    assert check_account("6222 0202-0011 2233 446") == "6222020200112233446"
    assert check_account("110060149018000123456") == "110060149018000123456"  # a company's: no check digit
    for bad in ("6222020200112233441", "1234567", "62220202001122334x", "", "1" * 31):
        with pytest.raises(Refusal):
            check_account(bad)
    assert mask_account("6222020200112233446") == "6222***********3446"
    assert with_check_digit("622202020011223344") == "6222020200112233446"
