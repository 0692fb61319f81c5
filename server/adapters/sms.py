"""SMS gateways, chosen by SMS_BACKEND: `console` (logged), `outbox` (stored, for development and
tests, readable at /api/v1/dev/sms-outbox) and `aliyun` (Alibaba Cloud SMS). The codes they carry
and their rules are auth/sms_codes.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote

import requests
from flask import Flask, current_app

from ..core.errors import ServiceUnavailable, SmsSendFailed
from ..extensions import db
from ..models import SmsOutboxMessage


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
            raise ServiceUnavailable("短信服务尚未配置，请联系管理员")
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
            raise SmsSendFailed() from exc
        if answer.get("Code") != "OK":
            current_app.logger.warning("Aliyun SMS refused: %s %s", answer.get("Code"), answer.get("Message"))
            raise SmsSendFailed()


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
