"""The real WeChat and SMS clients, against local HTTP servers that answer like the providers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlparse

import pytest

from server import create_app
from server.adapters.sms import AliyunGateway


class FakeProvider:
    """A local HTTP server that records each query string and answers a fixed JSON body."""

    def __init__(self, answer: dict):
        self.answer = answer
        self.queries: list[dict[str, str]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                provider.queries.append(dict(parse_qsl(urlparse(self.path).query)))
                provider.paths.append(urlparse(self.path).path)
                body = json.dumps(provider.answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def provider():
    providers = []

    def start(answer):
        providers.append(FakeProvider(answer))
        return providers[-1]

    yield start
    for p in providers:
        p.close()


def wechat_app(tmp_path, base_url, appid="wx123", secret="s3cret"):
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "x",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'w.sqlite3'}",
            "WECHAT_BACKEND": "wechat",
            "WECHAT_APPID": appid,
            "WECHAT_SECRET": secret,
            "WECHAT_API_BASE": base_url,
        }
    )


def test_jscode2session_exchanges_the_code_for_the_openid(tmp_path, provider):
    from server.extensions import db

    wx = provider({"openid": "o-real-1", "session_key": "k"})
    app = wechat_app(tmp_path, wx.url)
    with app.app_context():
        db.create_all()
    answer = app.test_client().post("/api/v1/auth/wechat", json={"code": "js-code-9"})
    assert answer.status_code == 200
    assert answer.get_json()["bound"] is False
    assert wx.paths == ["/sns/jscode2session"]
    assert wx.queries == [
        {"appid": "wx123", "secret": "s3cret", "js_code": "js-code-9", "grant_type": "authorization_code"}
    ]


def test_jscode2session_refusal_is_a_401_in_chinese(tmp_path, provider):
    wx = provider({"errcode": 40029, "errmsg": "invalid code"})
    answer = wechat_app(tmp_path, wx.url).test_client().post("/api/v1/auth/wechat", json={"code": "bad"})
    assert answer.status_code == 401
    assert answer.get_json()["error"]["message"] == "微信登录失败，请重新进入小程序"


def test_wechat_unreachable_or_unconfigured_is_a_503(tmp_path):
    app = wechat_app(tmp_path, "http://127.0.0.1:9")
    assert app.test_client().post("/api/v1/auth/wechat", json={"code": "c"}).status_code == 503
    app = wechat_app(tmp_path, "http://127.0.0.1:9", appid="")
    answer = app.test_client().post("/api/v1/auth/wechat", json={"code": "c"})
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "SERVICE_UNAVAILABLE"


def test_dev_wechat_backend_is_off_unless_configured(tmp_path):
    app = wechat_app(tmp_path, "http://127.0.0.1:9")
    assert app.config["WECHAT_BACKEND"] == "wechat"


def test_aliyun_gateway_sends_a_signed_request(app, provider):
    sms_api = provider({"Code": "OK", "Message": "OK", "BizId": "1"})
    gateway = AliyunGateway("key-id", "key-secret", "惠购", "SMS_1234", sms_api.url + "/")
    with app.app_context():
        gateway.send_code("13912345678", "123456", "unused")
    (query,) = sms_api.queries
    assert query["Action"] == "SendSms"
    assert query["PhoneNumbers"] == "13912345678"
    assert json.loads(query["TemplateParam"]) == {"code": "123456"}
    assert query["SignName"] == "惠购"
    signature = query.pop("Signature")
    assert signature == gateway.sign(query)


def test_aliyun_signature_matches_the_documented_example():
    # Alibaba Cloud's RPC signature documentation works this request through by hand.
    gateway = AliyunGateway("testid", "testsecret", "", "", "")
    params = {
        "Timestamp": "2016-02-23T12:46:24Z",
        "Format": "XML",
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "Version": "2014-05-26",
        "SignatureVersion": "1.0",
    }
    assert gateway.sign(params) == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_aliyun_refusal_is_reported_as_a_failed_send(app, provider):
    from server.core.errors import Refusal

    sms_api = provider({"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "limited"})
    gateway = AliyunGateway("key-id", "key-secret", "惠购", "SMS_1234", sms_api.url + "/")
    with app.app_context(), pytest.raises(Refusal) as refused:
        gateway.send_code("13912345678", "123456", "unused")
    assert refused.value.code == "SMS_SEND_FAILED"
