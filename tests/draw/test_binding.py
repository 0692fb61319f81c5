"""Login and binding: WeChat code, SMS codes (expiry, attempts, cooldown, daily cap), one phone per resident."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.extensions import db
from server.models import Resident, SmsCode
from tests.helpers import T0, auth

PHONE = "13912345678"


def login(client, openid="wx-openid-1"):
    answer = client.post("/api/v1/auth/wechat", json={"code": openid})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def send(client, phone=PHONE):
    return client.post("/api/v1/auth/sms", json={"phone": phone})


def last_code(client, phone=PHONE):
    items = client.get(f"/api/v1/dev/sms-outbox?phone={phone}").get_json()["items"]
    return items[0]["code"]


def bind(client, token=None, name="张三", phone=PHONE, code=None):
    headers = auth(token) if token else {}
    return client.post("/api/v1/auth/bind", json={"name": name, "phone": phone, "sms_code": code}, headers=headers)


def test_wechat_login_then_bind_then_the_token_says_bound(client, clock):
    session = login(client)
    assert session["bound"] is False
    assert send(client).get_json() == {"cooldown_s": 60}
    code = last_code(client)
    outbox = client.get(f"/api/v1/dev/sms-outbox?phone={PHONE}").get_json()["items"][0]
    assert code in outbox["text"] and "5分钟" in outbox["text"]
    answer = bind(client, session["token"], code=code)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["resident"]["name"] == "张三"
    assert body["resident"]["phone_masked"] == "139****5678"
    # Logging in again with the same WeChat account finds the bound resident.
    assert login(client)["bound"] is True


def test_bind_without_wechat_creates_or_finds_the_phone_resident(client, app, clock):
    send(client)
    first = bind(client, code=last_code(client)).get_json()
    clock.shift(timedelta(seconds=61))
    send(client)
    again = bind(client, code=last_code(client)).get_json()
    assert again["resident"]["id"] == first["resident"]["id"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Resident)) == 1


def test_bind_refuses_a_phone_bound_to_someone_else(client, clock):
    send(client)
    bind(client, login(client, "wx-a")["token"], code=last_code(client))
    clock.shift(timedelta(seconds=61))
    send(client)
    answer = bind(client, login(client, "wx-b")["token"], code=last_code(client))
    assert answer.status_code == 409
    assert answer.get_json()["error"]["code"] == "PHONE_TAKEN"


def test_bind_refuses_a_second_phone_for_a_bound_resident(client, clock):
    token = login(client)["token"]
    send(client)
    bind(client, token, code=last_code(client))
    send(client, "13800001111")
    answer = bind(client, token, phone="13800001111", code=last_code(client, "13800001111"))
    assert answer.status_code == 409
    assert answer.get_json()["error"]["code"] == "ALREADY_BOUND"
    assert "139****5678" in answer.get_json()["error"]["message"]


def test_sms_code_expires_after_five_minutes(client, clock):
    send(client)
    code = last_code(client)
    clock.shift(timedelta(minutes=5))
    answer = bind(client, code=code)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "SMS_CODE_EXPIRED"


def test_wrong_codes_are_counted_and_lock_the_code(client, app, clock):
    send(client)
    code = last_code(client)
    wrong = "000000" if code != "000000" else "111111"
    messages = []
    for _ in range(5):
        answer = bind(client, code=wrong)
        assert answer.status_code == 400
        assert answer.get_json()["error"]["code"] == "SMS_CODE_INVALID"
        messages.append(answer.get_json()["error"]["message"])
    assert messages[0] == "验证码不正确，还可尝试4次"
    assert messages[-1] == "验证码错误次数过多，请重新获取"
    # Even the right code is refused now: the attempts were committed despite the refusals.
    assert bind(client, code=code).get_json()["error"]["code"] == "SMS_CODE_INVALID"
    with app.app_context():
        assert db.session.scalar(sa.select(SmsCode.attempts)) == 5


def test_a_code_works_once(client, clock):
    send(client)
    code = last_code(client)
    assert bind(client, code=code).status_code == 200
    assert bind(client, code=code).get_json()["error"]["code"] == "SMS_CODE_INVALID"


def test_bind_without_asking_for_a_code(client, clock):
    answer = bind(client, code="123456")
    assert answer.get_json()["error"] == {"code": "SMS_CODE_INVALID", "message": "请先获取验证码"}


def test_resend_cooldown(client, clock):
    assert send(client).status_code == 200
    clock.shift(timedelta(seconds=30))
    answer = send(client)
    assert answer.status_code == 429
    assert answer.get_json()["error"]["code"] == "SMS_TOO_FREQUENT"
    assert answer.headers["Retry-After"] == "31"
    clock.shift(timedelta(seconds=31))
    assert send(client).status_code == 200


def test_codes_slow_down_after_three_and_a_stranger_cannot_use_up_the_day(client, app, clock):
    """A minute apart for the first three of a day, then twice as long each time, up to an hour:
    ten requests for someone's phone no longer use up their day (the cap was 10)."""
    clock.move_to(T0 - timedelta(hours=1))  # 08:00 Shanghai
    waits = []
    for _ in range(10):
        answer = send(client)
        assert answer.status_code == 200
        waits.append(answer.get_json()["cooldown_s"])
        early = send(client)
        assert early.status_code == 429 and int(early.headers["Retry-After"]) <= waits[-1] + 1
        clock.shift(timedelta(seconds=waits[-1] + 1))
    assert waits == [60, 60, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert send(client).status_code == 200  # the eleventh: the owner still gets a code
    slow = send(client)
    assert "分钟后再获取" in slow.get_json()["error"]["message"]


def test_daily_cap_per_phone_resets_at_local_midnight(client, app, clock):
    app.config["SMS_DAILY_CAP"] = 4
    clock.move_to(T0 - timedelta(hours=1))  # 08:00 Shanghai
    for _ in range(4):
        answer = send(client)
        assert answer.status_code == 200
        clock.shift(timedelta(seconds=answer.get_json()["cooldown_s"] + 1))
    answer = send(client)
    assert answer.status_code == 429
    assert "明天" in answer.get_json()["error"]["message"]
    assert send(client, "13700000000").status_code == 200  # another phone is not affected
    clock.move_to(T0 + timedelta(hours=15, minutes=1))  # 00:01 the next day in Shanghai
    assert send(client).status_code == 200


@pytest.mark.parametrize("phone", ["1391234567", "23912345678", "139123456789", "abc", ""])
def test_sms_refuses_a_malformed_phone(client, phone, clock):
    answer = send(client, phone)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "INVALID_INPUT"


@pytest.mark.parametrize("name", ["", "张", "x" * 21, "<script>", "张三1"])
def test_bind_refuses_a_malformed_name(client, name, clock):
    send(client)
    answer = bind(client, name=name, code=last_code(client))
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "INVALID_INPUT"


def test_outbox_route_exists_only_under_the_outbox_backend(tmp_path):
    from server import create_app

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "x",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.sqlite3'}",
            "SMS_BACKEND": "console",
        }
    )
    answer = app.test_client().get(f"/api/v1/dev/sms-outbox?phone={PHONE}")
    assert answer.status_code == 404
    assert answer.get_json()["error"]["code"] == "NOT_FOUND"
