"""Rate limits and lockouts (server/auth/limits.py): each limit, by phone, token and address, answers
429 RATE_LIMITED in the envelope with a Retry-After; lockouts count only failures."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.helpers import auth, paycode, redeem

pytestmark = pytest.mark.rate_limits


def limited(answer, words: str) -> None:
    assert answer.status_code == 429, answer.get_json()
    error = answer.get_json()["error"]
    assert error["code"] == "RATE_LIMITED" and words in error["message"], error
    assert 1 <= int(answer.headers["Retry-After"]) <= 3601  # the breached window, at most an hour


def test_sms_codes_per_phone_and_per_address(client, clock):
    for _ in range(3):
        # The SMS rules' own cooldown answers SMS_TOO_FREQUENT; the limiter counts every request.
        assert client.post("/api/v1/auth/sms", json={"phone": "13900000001"}).status_code in (200, 429)
    limited(client.post("/api/v1/auth/sms", json={"phone": "13900000001"}), "验证码获取太频繁")
    # Another phone is not held back by the first one's limit ...
    assert client.post("/api/v1/auth/sms", json={"phone": "13900000002"}).status_code == 200
    # ... but one address asking for many phones is.
    for n in range(3, 30):
        client.post("/api/v1/auth/sms", json={"phone": f"139000000{n:02d}"})
    limited(client.post("/api/v1/auth/sms", json={"phone": "13900000099"}), "本网络获取验证码太频繁")
    other = client.post("/api/v1/auth/sms", json={"phone": "13900000098"}, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 200


def test_five_wrong_sms_codes_lock_the_phone_and_right_ones_never_count(client, make_campaign, clock):
    make_campaign()
    body = {"name": "张三", "phone": "13900001111"}
    client.post("/api/v1/auth/sms", json={"phone": "13900001111"})
    code = client.get("/api/v1/dev/sms-outbox?phone=13900001111").get_json()["items"][-1]["code"]
    wrong = "000000" if code != "000000" else "111111"  # (the other phone's code is not this one)
    for _ in range(5):
        assert client.post("/api/v1/auth/bind", json=body | {"sms_code": wrong}).status_code == 400
    limited(client.post("/api/v1/auth/bind", json=body | {"sms_code": code}), "该手机号已暂时锁定")
    # Another phone binds at once: the lock is the phone's, not the address's.
    client.post("/api/v1/auth/sms", json={"phone": "13900002222"})
    code = client.get("/api/v1/dev/sms-outbox?phone=13900002222").get_json()["items"][-1]["code"]
    body = {"name": "李四", "phone": "13900002222"}
    for _ in range(4):  # four slips of the finger, then the right code: through
        assert client.post("/api/v1/auth/bind", json=body | {"sms_code": wrong}).status_code == 400
    assert client.post("/api/v1/auth/bind", json=body | {"sms_code": code}).status_code == 200


def test_wrong_staff_binds_lock_that_phone_from_that_address_and_only_many_the_address(client, make_campaign, clock):
    """One assistant's slips lock their phone from their address, not the whole shop or mall
    behind it; thirty failures from one address lock the address."""
    make_campaign()
    body = {"binding_code": "WRONG123", "name": "店员", "phone": "13700000001", "sms_code": "123456"}
    for _ in range(5):  # the phone's SMS code is checked first: these fail on it, and count
        answer = client.post("/api/v1/merchant/bind", json=body)
        assert answer.get_json()["error"]["code"] == "SMS_CODE_INVALID"
    limited(client.post("/api/v1/merchant/bind", json=body), "该手机号绑定失败次数过多")
    colleague = client.post("/api/v1/merchant/bind", json=body | {"phone": "13700000002"})
    assert colleague.get_json()["error"]["code"] == "SMS_CODE_INVALID"  # the colleague is not held up
    for n in range(3, 28):
        client.post("/api/v1/merchant/bind", json=body | {"phone": f"137000000{n:02d}"})
    limited(client.post("/api/v1/merchant/bind", json=body | {"phone": "13700000099"}), "本网络绑定失败次数过多")


def test_a_strangers_wrong_codes_do_not_lock_the_owner_out(client, make_campaign, clock):
    """Five wrong codes from a stranger's address lock the stranger, not the phone: its owner,
    elsewhere, asks for a fresh code and binds."""
    make_campaign()
    body = {"name": "张三", "phone": "13900003333"}
    client.post("/api/v1/auth/sms", json={"phone": "13900003333"})
    stranger = {"REMOTE_ADDR": "10.9.9.9"}
    for _ in range(5):
        answer = client.post("/api/v1/auth/bind", json=body | {"sms_code": "000001"}, environ_base=stranger)
        assert answer.status_code == 400
    limited(client.post("/api/v1/auth/bind", json=body | {"sms_code": "000001"}, environ_base=stranger), "已暂时锁定")
    clock.shift(timedelta(seconds=61))
    assert client.post("/api/v1/auth/sms", json={"phone": "13900003333"}).status_code == 200
    code = client.get("/api/v1/dev/sms-outbox?phone=13900003333").get_json()["items"][0]["code"]
    assert client.post("/api/v1/auth/bind", json=body | {"sms_code": code}).status_code == 200


def test_draws_per_token(client, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident()
    for _ in range(30):
        assert client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).status_code in (200, 409)
    limited(client.post("/api/v1/draw", json={"category": "fuel"}, headers=auth(token)), "抽奖太频繁")
    _, other = make_resident()
    assert client.post("/api/v1/draw", json={"category": "fuel"}, headers=auth(other)).status_code == 200


def test_a_tokens_variants_and_a_fresh_token_share_the_residents_limit(
    app, client, make_campaign, make_resident, clock
):
    """The signature's last base64 character has spare bits: four texts of one token verify, and
    keyed by the text each had a limit of its own (30 draws a minute became 120)."""
    import string

    from server.auth import tokens

    make_campaign()
    resident_id, token = make_resident()
    alphabet = string.ascii_letters + string.digits + "-_"
    with app.app_context():
        variants = [v for v in (token[:-1] + ch for ch in alphabet) if v != token and tokens.read(v)]
        clock.shift(timedelta(seconds=2))
        fresh = tokens.issue("resident", resident_id, bound=True)  # signed later: another text
    assert fresh != token and len(variants) == 3  # the spare bits are real: three more texts verify
    texts = [token, *variants, fresh]
    for n in range(30):
        answer = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(texts[n % len(texts)]))
        assert answer.status_code in (200, 409)
    for text in texts:
        limited(client.post("/api/v1/draw", json={"category": "fuel"}, headers=auth(text)), "抽奖太频繁")


def test_a_till_guessing_short_codes_is_stopped_after_ten_wrong_ones(
    client, make_campaign, make_resident, make_till, clock
):
    make_campaign()
    _, staff = make_till("hotel")
    _, resident = make_resident()
    won = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(resident)).get_json()["coupon"]
    for n in range(10):
        guess = client.post("/api/v1/merchant/scan", json={"paycode": f"{won['id']}-{n:08d}"}, headers=auth(staff))
        assert guess.get_json()["error"]["code"] == "PAYCODE_EXPIRED"
    real = client.get(f"/api/v1/coupons/{won['id']}/paycode", headers=auth(resident)).get_json()["short_code"]
    limited(client.post("/api/v1/merchant/scan", json={"paycode": real}, headers=auth(staff)), "无效券码次数过多")
    # Another till is not held back, and redeems.
    _, other_staff = make_till("hotel")
    assert redeem(client, other_staff, paycode(client, resident, won["id"]), won["threshold_fen"]).status_code == 200


def test_refused_redemptions_lock_a_till_out(client, make_campaign, make_resident, make_till, clock):
    make_campaign()
    _, staff = make_till("hotel")
    _, resident = make_resident()
    won = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(resident)).get_json()["coupon"]
    code = paycode(client, resident, won["id"])
    for _ in range(20):
        assert redeem(client, staff, code, won["threshold_fen"] - 1).get_json()["error"]["code"] == "BELOW_THRESHOLD"
    limited(redeem(client, staff, code, won["threshold_fen"]), "核销被拒次数过多")


def test_with_redis_url_the_counts_live_in_redis_for_every_worker(tmp_path):
    """Workers count together when REDIS_URL is set (Redis 7 runs beside PostgreSQL here)."""
    import redis

    from server import create_app

    url = "redis://127.0.0.1:6379/15"
    store = redis.Redis.from_url(url)
    try:
        store.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379")
    store.flushdb()
    config = {"TESTING": True, "SECRET_KEY": "t", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'r.sqlite3'}",
              "SMS_BACKEND": "outbox", "REDIS_URL": url, "RATELIMIT_ENABLED": True}  # fmt: skip
    app = create_app(config)
    with app.app_context():
        from server.extensions import db

        db.create_all()
    client = app.test_client()
    for _ in range(3):
        client.post("/api/v1/auth/sms", json={"phone": "13900000077"})
    assert any(b"13900000077" in key for key in store.keys("*"))
    limited(client.post("/api/v1/auth/sms", json={"phone": "13900000077"}), "验证码获取太频繁")
    store.flushdb()


def test_behind_a_proxy_the_forwarded_address_is_the_one_limited(tmp_path):
    from server import create_app
    from server.extensions import db

    app = create_app({"TESTING": True, "SECRET_KEY": "t", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}",
                      "SMS_BACKEND": "outbox", "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "memory://",
                      "PROXY_HOPS": 1})  # fmt: skip
    with app.app_context():
        db.create_all()
    client = app.test_client()
    for n in range(30):
        client.post("/api/v1/auth/sms", json={"phone": f"139000001{n:02d}"}, headers={"X-Forwarded-For": "1.2.3.4"})
    shared = client.post("/api/v1/auth/sms", json={"phone": "13900000199"}, headers={"X-Forwarded-For": "1.2.3.4"})
    limited(shared, "本网络获取验证码太频繁")
    other = client.post("/api/v1/auth/sms", json={"phone": "13900000198"}, headers={"X-Forwarded-For": "5.6.7.8"})
    assert other.status_code == 200
