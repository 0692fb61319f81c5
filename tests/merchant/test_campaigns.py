"""One merchant, many campaigns (Geermu's fair beside its season, Jincheng's year-round plan,
Huating's batches): a legal entity with an enrolment per campaign, each reviewed on its own; its
staff take the coupons of every campaign it is approved in, and none of the others."""

from __future__ import annotations

import re

import sqlalchemy as sa

from server.core.money import yuan
from server.extensions import db
from server.merchant import credit_code
from server.models import Enrolment, Merchant
from tests.helpers import apply_merchant, auth, campaign_doc, paycode, redeem

CODE = credit_code.make("220723", "MA000077")
SECOND = campaign_doc(code="second-batch", name="第二批消费券")


def apply(client, campaign=None, **overrides):
    body = (
        {
            "name": "乾安县演示宾馆有限公司",
            "credit_code": CODE,
            "address": "乾安县演示街2号",
            "contact_name": "演示联系人",
            "contact_phone": "13900000002",
            "categories": ["hotel"],
            "accept_commitment": True,
        }
        | ({"campaign": campaign} if campaign else {})
        | overrides
    )
    return apply_merchant(client, body)


def review(runner, merchant_id, action, campaign, *extra):
    result = runner.invoke(args=["merchant", action, str(merchant_id), "--campaign", campaign, *extra])
    assert result.exit_code == 0, result.output
    return result.output


def staff_of(client, runner, merchant_id, campaign) -> str:
    """Approve the merchant in `campaign` and bind an assistant with the code: a staff token."""
    code = review(runner, merchant_id, "approve", campaign).split("绑定码：")[1][:8]
    phone = "13800000042"
    client.post("/api/v1/auth/sms", json={"phone": phone, "purpose": "staff"})
    sms = client.get(f"/api/v1/dev/sms-outbox?phone={phone}").get_json()["items"][0]["code"]
    body = {"binding_code": code, "name": "店员小李", "phone": phone, "sms_code": sms}
    answer = client.post("/api/v1/merchant/bind", json=body)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["token"]


def coupon_of(client, make_resident, campaign):
    _, token = make_resident()
    body = {"category": "hotel", "campaign": campaign}
    won = client.post("/api/v1/draw", json=body, headers=auth(token)).get_json()["coupon"]
    return paycode(client, token, won["id"]), won


def test_a_known_merchant_enrols_in_another_campaign_and_not_twice_in_one(app, client, make_campaign, clock):
    make_campaign()
    make_campaign(SECOND)
    first = apply(client)
    assert first.status_code == 201, first.get_json()
    second = apply(client, "second-batch", name="乾安县演示宾馆")
    assert second.status_code == 201, second.get_json()
    merchant = second.get_json()["merchant"]
    assert merchant["id"] == first.get_json()["merchant"]["id"]
    assert (merchant["campaign"]["code"], merchant["status"]) == ("second-batch", "applied")
    assert [(e["campaign"]["code"], e["status"]) for e in merchant["enrolments"]] == [
        ("test-campaign", "applied"),
        ("second-batch", "applied"),
    ]
    again = apply(client, "second-batch")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "MERCHANT_EXISTS"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Merchant)) == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Enrolment)) == 2


def test_the_staff_take_the_coupons_of_every_campaign_the_shop_is_approved_in(
    app, client, runner, console, make_campaign, make_resident, clock
):
    first_id = make_campaign()
    second_id = make_campaign(SECOND)
    merchant_id = apply(client).get_json()["merchant"]["id"]
    apply(client, "second-batch")
    staff = staff_of(client, runner, merchant_id, "test-campaign")

    # Not yet approved in the second batch: its coupon is refused in words, nothing recorded.
    code, won = coupon_of(client, make_resident, "second-batch")
    refused = redeem(client, staff, code, won["threshold_fen"])
    assert refused.status_code == 403
    assert refused.get_json()["error"] == {
        "code": "MERCHANT_SUSPENDED",
        "message": "本店参加「第二批消费券」的报名未获通过或已暂停，不能核销该活动的券",
    }
    review(runner, merchant_id, "approve", "second-batch")
    assert redeem(client, staff, code, won["threshold_fen"]).status_code == 200
    code, won = coupon_of(client, make_resident, "test-campaign")
    assert redeem(client, staff, code, won["threshold_fen"]).status_code == 200

    # Suspended in the first campaign alone: its coupons stop, the second's go on.
    review(runner, merchant_id, "suspend", "test-campaign", "--reason", "核查")
    code, won = coupon_of(client, make_resident, "test-campaign")
    assert redeem(client, staff, code, won["threshold_fen"]).get_json()["error"]["code"] == "MERCHANT_SUSPENDED"
    code, won = coupon_of(client, make_resident, "second-batch")
    assert redeem(client, staff, code, won["threshold_fen"]).status_code == 200
    settlement = client.get("/api/v1/merchant/settlement", headers=auth(staff)).get_json()
    assert [(c["campaign"]["code"], c["count"]) for c in settlement["campaigns"]] == [
        ("test-campaign", 1),
        ("second-batch", 2),
    ]
    owed = {c["campaign"]["code"]: c["owed_fen"] for c in settlement["campaigns"]}
    # The bureau settles each campaign on its own.
    bureau = console("auditor")
    for campaign_id, code in ((first_id, "test-campaign"), (second_id, "second-batch")):
        page = bureau.get(f"/admin/settlement?campaign={campaign_id}").get_data(as_text=True)
        total = re.search(r"<tr><th>合计</th><td></td><td>[^<]*</td><td></td><td></td><td>([^<]*)</td>", page)
        assert total and total.group(1) == yuan(owed[code]), page


def test_a_blacklisted_merchant_is_out_of_every_campaign_and_cannot_apply_again(
    app, client, runner, make_campaign, clock
):
    make_campaign()
    make_campaign(SECOND)
    third = make_campaign(campaign_doc(code="third-batch"))
    merchant_id = apply(client).get_json()["merchant"]["id"]
    apply(client, "second-batch")
    review(runner, merchant_id, "approve", "test-campaign")
    review(runner, merchant_id, "blacklist", "second-batch", "--reason", "列入失信被执行人名单")
    with app.app_context():
        statuses = [e.status for e in db.session.get(Merchant, merchant_id).enrolments]
    assert statuses == ["blacklisted", "blacklisted"]
    refused = apply(client, "third-batch")
    assert refused.status_code == 403
    assert refused.get_json()["error"]["message"] == "该商户已被列入黑名单，不能报名参加活动"
    assert third


def test_the_command_line_asks_which_campaign_when_there_are_several(client, runner, make_campaign, clock):
    make_campaign()
    make_campaign(SECOND)
    merchant_id = apply(client).get_json()["merchant"]["id"]
    apply(client, "second-batch")
    result = runner.invoke(args=["merchant", "approve", str(merchant_id)])
    assert result.exit_code == 1
    assert result.output == (
        "错误：商户 乾安县演示宾馆有限公司 报名了多个活动，请用 --campaign 指明"
        "（已报名：test-campaign、second-batch）\n"
    )
