"""SMS codes under parallel guesses: the five-attempt cap holds on both databases, because each
attempt is counted, in one guarded statement, before the code is compared."""

from __future__ import annotations

import sqlalchemy as sa

from server.extensions import db
from server.models import SmsCode
from tests.helpers import at_once

PHONE = "13912345678"


def test_sixty_parallel_guesses_get_five_checks_and_the_right_code_then_fails(app, client, clock):
    client.post("/api/v1/auth/sms", json={"phone": PHONE})
    right = client.get(f"/api/v1/dev/sms-outbox?phone={PHONE}").get_json()["items"][0]["code"]
    wrong = [f"{n:06d}" for n in range(100000, 100061) if f"{n:06d}" != right][:60]

    def guess(code):
        return lambda c: c.post("/api/v1/auth/bind", json={"name": "张三", "phone": PHONE, "sms_code": code})

    answers = at_once(app, [guess(code) for code in wrong])
    assert {status for status, _ in answers} == {400}
    said = sorted(body["error"]["message"] for _, body in answers)
    checked = [m for m in said if m.startswith("验证码不正确")]
    # Exactly five guesses were compared with the code: four said how many were left, the fifth
    # (and every other) that there were too many.
    assert checked == [f"验证码不正确，还可尝试{n}次" for n in (1, 2, 3, 4)]
    assert said.count("验证码错误次数过多，请重新获取") == 56
    with app.app_context():
        assert db.session.scalar(sa.select(SmsCode.attempts)) == 5
    late = client.post("/api/v1/auth/bind", json={"name": "张三", "phone": PHONE, "sms_code": right})
    assert late.get_json()["error"]["message"] == "验证码错误次数过多，请重新获取"


def test_two_parallel_binds_with_the_right_code_use_it_once(app, client, clock):
    client.post("/api/v1/auth/sms", json={"phone": PHONE})
    right = client.get(f"/api/v1/dev/sms-outbox?phone={PHONE}").get_json()["items"][0]["code"]
    body = {"name": "张三", "phone": PHONE, "sms_code": right}
    answers = at_once(app, [lambda c: c.post("/api/v1/auth/bind", json=body)] * 6)
    assert sorted(status for status, _ in answers) == [200] + [400] * 5
