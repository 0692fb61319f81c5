"""Identity by ID card (Youhao: 一个用户 = 手机号 + 身份证 + 设备), a campaign option: the number is
checked (GB 11643), binds one resident, is kept only as a keyed digest and shown only masked."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from server.core.errors import InvalidInput
from server.core.idcard import check_id_number, mask_id
from server.extensions import db
from server.models import Resident
from tests.helpers import ON_POSTGRES, at_once, auth, campaign_doc, id_number

STANDARD = "11010519491231002X"  # the example number of GB 11643-1999


def bind(client, phone, id_card=None, name="张三", token=None):
    client.post("/api/v1/auth/sms", json={"phone": phone})
    code = client.get(f"/api/v1/dev/sms-outbox?phone={phone}").get_json()["items"][0]["code"]
    body = {"name": name, "phone": phone, "sms_code": code} | ({"id_number": id_card} if id_card else {})
    return client.post("/api/v1/auth/bind", json=body, headers=auth(token) if token else {})


def draw(client, token):
    return client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token))


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("11010519491231002Y", "请输入18位身份证号码（最后一位可以是X）"),
        ("1101051949123100", "请输入18位身份证号码（最后一位可以是X）"),
        ("110105194902300021", "身份证号码中的出生日期有误，请核对"),  # 30 February
        ("110105194912310021", "身份证号码校验不通过，请核对后重新输入"),  # one character off
        ("110105194912310029", "身份证号码校验不通过，请核对后重新输入"),
    ],
)
def test_a_number_that_is_not_an_id_card_is_refused_in_words(typed, said):
    with pytest.raises(InvalidInput) as refused:
        check_id_number(typed)
    assert refused.value.message == said


def test_valid_numbers_pass_the_check_and_show_masked():
    assert check_id_number(" 11010519491231002x ") == STANDARD  # a lower-case x, spaces around
    assert check_id_number(id_number(7)) == id_number(7)
    assert mask_id(STANDARD) == "110***********002X"


def test_binding_with_the_id_card_keeps_only_its_digest_and_lets_the_resident_take_part(
    app, client, make_campaign, clock
):
    make_campaign(campaign_doc(identity="id_card"))
    assert client.get("/api/v1/campaign").get_json()["identity"] == "id_card"
    answer = bind(client, "13900000001", STANDARD)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["resident"]["id_card_masked"] == "110***********002X"
    assert draw(client, answer.get_json()["token"]).status_code == 200
    with app.app_context():
        row = db.session.execute(sa.select(Resident.__table__)).one()
    kept = " ".join(str(value) for value in row)
    assert "19491231002" not in kept and "110***********002X" in kept  # never the number in clear


def test_one_card_binds_one_resident(app, client, make_campaign, clock):
    make_campaign(campaign_doc(identity="id_card"))
    assert bind(client, "13900000001", STANDARD).status_code == 200
    answer = bind(client, "13900000002", STANDARD.lower())
    assert answer.status_code == 409
    assert answer.get_json()["error"] == {"code": "ID_TAKEN", "message": "该身份证号已被其他用户绑定"}
    with app.app_context():  # the refused binding changed nothing: the second phone is not bound
        assert db.session.scalar(sa.select(Resident).where(Resident.phone == "13900000002")) is None


def test_a_resident_bound_by_phone_gives_the_card_when_a_campaign_asks(
    app, client, make_campaign, make_resident, clock
):
    make_campaign(campaign_doc(identity="id_card"))
    _, token = make_resident()
    refused = draw(client, token)
    assert refused.status_code == 403
    assert refused.get_json()["error"] == {"code": "ID_REQUIRED", "message": "本活动需实名参与，请先填写姓名和身份证号"}
    body = {"name": "李四", "id_number": id_number(3)}
    answer = client.post("/api/v1/auth/identity", json=body, headers=auth(token))
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["resident"]["name"] == "李四"
    token = answer.get_json()["token"]
    assert draw(client, token).status_code == 200
    # Given once: the same card again is fine, another one is refused.
    assert client.post("/api/v1/auth/identity", json=body, headers=auth(token)).status_code == 200
    other = client.post("/api/v1/auth/identity", json={"name": "李四", "id_number": id_number(4)}, headers=auth(token))
    assert other.status_code == 409
    assert other.get_json()["error"]["message"] == f"您已实名认证（身份证 {mask_id(id_number(3))}），不能更换"


def test_a_campaign_of_phones_only_does_not_ask_for_the_card(client, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident()
    assert client.get("/api/v1/campaign").get_json()["identity"] == "phone"
    assert draw(client, token).status_code == 200


def test_the_console_shows_and_exports_the_card_masked(app, client, console, make_campaign, make_resident, clock):
    make_campaign(campaign_doc(identity="id_card"))
    make_resident(phone="13955556666", id_card=STANDARD)
    browser = console("admin")
    page = browser.get("/admin/lists/residents").get_data(as_text=True)
    assert "<td>110***********002X</td>" in page
    exported = browser.get("/admin/lists/residents/export.csv").get_data(as_text=True)
    assert "110***********002X" in exported and "19491231002" not in exported


@pytest.mark.skipif(not ON_POSTGRES, reason="real concurrent connections: PostgreSQL")
def test_two_residents_racing_for_one_card_bind_it_once(app, make_campaign, make_resident, clock):
    make_campaign(campaign_doc(identity="id_card"))
    tokens = [make_resident()[1] for _ in range(6)]
    body = {"name": "王五", "id_number": STANDARD}
    answers = at_once(
        app,
        [lambda c, t=t: c.post("/api/v1/auth/identity", json=body, headers=auth(t)) for t in tokens],
    )
    assert sorted(status for status, _ in answers) == [200] + [409] * 5
    assert {body["error"]["code"] for status, body in answers if status == 409} == {"ID_TAKEN"}
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).where(Resident.id_hash.is_not(None))) == 1


def test_a_file_with_an_unknown_identity_is_its_problem(app):
    from server.campaign import file as campaign_file

    with app.app_context():
        _, problems = campaign_file.check(campaign_file.Document(campaign_doc(identity="passport"), "test"))
    assert [str(p) for p in problems] == [
        "campaign.identity: 身份验证应为 phone（姓名+手机号）或 id_card（姓名+手机号+身份证，一证一户）"
    ]


@pytest.mark.parametrize(("written", "meant"), [("手机号+身份证", "id_card"), ("手机号", "phone")])
def test_a_workbook_writes_the_identity_in_words(tmp_path, written, meant):
    from openpyxl import load_workbook

    from server.campaign import file as campaign_file
    from tests.helpers import ROOT

    book = load_workbook(ROOT / "examples" / "qianan-2022-annex1-as-printed.xlsx")
    book["活动"].append(["身份验证", written])
    book.save(tmp_path / "plan.xlsx")
    assert campaign_file.read(tmp_path / "plan.xlsx").data["campaign"]["identity"] == meant
