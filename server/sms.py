"""SMS verification codes: the rules (expiry, attempts, cooldown, daily cap) and the gateways.

Gateways are adapters chosen by SMS_BACKEND: `console` (logged), `outbox` (stored, for
development and tests, readable at /api/v1/dev/sms-outbox) and `aliyun` (Alibaba Cloud SMS).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import quote

import requests
import sqlalchemy as sa
from flask import Flask, current_app

from .errors import ApiError
from .extensions import db
from .models import SmsCode, SmsOutboxMessage
from .timeutil import day_bounds, zone
from .tokens import keyed_digest

PHONE_RE = re.compile(r"^1[3-9]\d{9}$")
CODE_RE = re.compile(r"^\d{6}$")


class SmsGateway(Protocol):
    def send_code(self, phone: str, code: str, text: str) -> None: ...


class ConsoleGateway:
    def send_code(self, phone: str, code: str, text: str) -> None:
        current_app.logger.warning("SMS to %s: %s", phone, text)


class OutboxGateway:
    """Keeps messages in the database instead of sending them (development only)."""

    def send_code(self, phone: str, code: str, text: str) -> None:
        db.session.add(SmsOutboxMessage(phone=phone, text=text, code=code))


def _percent(value: str) -> str:
    return quote(value, safe="~")


class AliyunGateway:
    """Alibaba Cloud SMS `SendSms` (RPC API, signature version 1.0, HMAC-SHA1)."""

    def __init__(self, key_id: str, key_secret: str, sign_name: str, template: str, endpoint: str):
        self.key_id, self.key_secret = key_id, key_secret
        self.sign_name, self.template, self.endpoint = sign_name, template, endpoint

    def sign(self, params: dict[str, str]) -> str:
        query = "&".join(f"{_percent(k)}={_percent(params[k])}" for k in sorted(params))
        to_sign = "GET&%2F&" + _percent(query)
        digest = hmac.new((self.key_secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def send_code(self, phone: str, code: str, text: str) -> None:
        if not (self.key_id and self.key_secret and self.sign_name and self.template):
            raise ApiError("SERVICE_UNAVAILABLE", "短信服务尚未配置，请联系管理员")
        params = {
            "AccessKeyId": self.key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "PhoneNumbers": phone,
            "RegionId": "cn-hangzhou",
            "SignName": self.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "TemplateCode": self.template,
            "TemplateParam": json.dumps({"code": code}),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
        }
        params["Signature"] = self.sign(params)
        try:
            answer = requests.get(self.endpoint, params=params, timeout=5).json()
        except (requests.RequestException, ValueError) as exc:
            current_app.logger.warning("Aliyun SMS failed: %s", exc)
            raise ApiError("SMS_SEND_FAILED") from exc
        if answer.get("Code") != "OK":
            current_app.logger.warning("Aliyun SMS refused: %s %s", answer.get("Code"), answer.get("Message"))
            raise ApiError("SMS_SEND_FAILED")


def init_app(app: Flask) -> None:
    backend = app.config["SMS_BACKEND"]
    gateways = {
        "console": ConsoleGateway,
        "outbox": OutboxGateway,
        "aliyun": lambda: AliyunGateway(
            app.config["ALIYUN_SMS_ACCESS_KEY_ID"],
            app.config["ALIYUN_SMS_ACCESS_KEY_SECRET"],
            app.config["ALIYUN_SMS_SIGN_NAME"],
            app.config["ALIYUN_SMS_TEMPLATE_CODE"],
            app.config["ALIYUN_SMS_ENDPOINT"],
        ),
    }
    if backend not in gateways:
        raise RuntimeError(f"SMS_BACKEND must be one of {sorted(gateways)}, not {backend!r}")
    app.extensions["huigou.sms"] = gateways[backend]()


def gateway() -> SmsGateway:
    return current_app.extensions["huigou.sms"]


def _hash(phone: str, code: str) -> str:
    return keyed_digest(f"{phone}:{code}")


def check_phone(phone: str) -> str:
    if not PHONE_RE.match(phone or ""):
        raise ApiError("INVALID_INPUT", "请输入正确的11位手机号")
    return phone


def send_code(phone: str, purpose: str, now: datetime) -> int:
    """Send a fresh code; return the seconds before another may be asked for."""
    check_phone(phone)
    cfg = current_app.config
    cooldown = cfg["SMS_RESEND_COOLDOWN_S"]
    last = db.session.scalar(
        sa.select(SmsCode.created_at).where(SmsCode.phone == phone).order_by(SmsCode.created_at.desc()).limit(1)
    )
    if last is not None and now < last + timedelta(seconds=cooldown):
        wait = int((last + timedelta(seconds=cooldown) - now).total_seconds()) + 1
        raise ApiError(
            "SMS_TOO_FREQUENT",
            f"验证码已发送，请{wait}秒后再获取",
            headers={"Retry-After": str(wait)},
            retry_after_s=wait,
        )
    start, end = day_bounds(now, zone(cfg["TIMEZONE"]))
    sent_today = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(SmsCode)
        .where(SmsCode.phone == phone, SmsCode.created_at >= start, SmsCode.created_at < end)
    )
    if sent_today >= cfg["SMS_DAILY_CAP"]:
        raise ApiError("SMS_TOO_FREQUENT", "今天获取验证码的次数已达上限，请明天再试")
    code = f"{secrets.randbelow(10**6):06d}"
    minutes = cfg["SMS_CODE_TTL_S"] // 60
    db.session.add(
        SmsCode(
            phone=phone,
            purpose=purpose,
            code_hash=_hash(phone, code),
            created_at=now,
            expires_at=now + timedelta(seconds=cfg["SMS_CODE_TTL_S"]),
        )
    )
    db.session.flush()
    text = f"【惠购】您的验证码是{code}，{minutes}分钟内有效。请勿告诉他人。"
    gateway().send_code(phone, code, text)
    return cooldown


def verify_code(phone: str, code: str, purpose: str, now: datetime) -> None:
    """Consume the phone's latest code, or refuse; a wrong guess is counted even when refused."""
    latest = db.session.scalar(
        sa.select(SmsCode)
        .where(SmsCode.phone == phone, SmsCode.purpose == purpose)
        .order_by(SmsCode.created_at.desc(), SmsCode.id.desc())
        .limit(1)
        .with_for_update()
    )
    if latest is None or latest.consumed_at is not None:
        raise ApiError("SMS_CODE_INVALID", "请先获取验证码")
    if now >= latest.expires_at:
        raise ApiError("SMS_CODE_EXPIRED")
    max_attempts = current_app.config["SMS_CODE_MAX_ATTEMPTS"]
    if latest.attempts >= max_attempts:
        raise ApiError("SMS_CODE_INVALID", "验证码错误次数过多，请重新获取")
    if not (CODE_RE.match(code or "") and hmac.compare_digest(latest.code_hash, _hash(phone, code))):
        latest.attempts += 1
        left = max_attempts - latest.attempts
        message = f"验证码不正确，还可尝试{left}次" if left else "验证码错误次数过多，请重新获取"
        raise ApiError("SMS_CODE_INVALID", message, keep_changes=True)
    latest.consumed_at = now
