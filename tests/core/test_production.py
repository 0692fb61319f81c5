"""HUIGOU_ENV=production refuses, in one line and before serving anyone, a setup meant for
development: SMS codes printed or handed out, WeChat logins taken on trust, a weak or missing
secret, console cookies over plain HTTP."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from server import create_app
from tests.helpers import ROOT

GOOD = {
    "HUIGOU_ENV": "production",
    "SECRET_KEY": "k" * 40,
    "SMS_BACKEND": "aliyun",
    "WECHAT_BACKEND": "wechat",
    "SESSION_COOKIE_SECURE": "true",
}


@pytest.fixture
def environment(monkeypatch, tmp_path):
    def set_to(values: dict) -> None:
        for name in ("HUIGOU_ENV", "SECRET_KEY", "SMS_BACKEND", "WECHAT_BACKEND", "SESSION_COOKIE_SECURE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'p.sqlite3'}")

    return set_to


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"SMS_BACKEND": "outbox"}, "SMS_BACKEND=outbox 是开发用的短信通道"),
        ({"SMS_BACKEND": "console"}, "SMS_BACKEND=console 是开发用的短信通道"),
        ({"WECHAT_BACKEND": "dev"}, "WECHAT_BACKEND=dev 不向微信核验登录"),
        ({"SECRET_KEY": "x"}, "SECRET_KEY 未设置或少于 32 个字符"),
        ({"SECRET_KEY": ""}, "SECRET_KEY 未设置或少于 32 个字符"),
        ({"SESSION_COOKIE_SECURE": "false"}, "SESSION_COOKIE_SECURE 未开启"),
    ],
)
def test_production_refuses_each_development_setting_in_one_line(environment, capsys, change, said):
    environment(GOOD | change)
    with pytest.raises(SystemExit) as stopped:
        create_app()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("错误：HUIGOU_ENV=production 不能启动：") and said in err
    assert err.count("\n") == 1


def test_production_with_real_adapters_starts_and_serves_no_outbox(environment):
    environment(GOOD)
    app = create_app()
    assert app.config["HUIGOU_ENV"] == "production"
    assert "/api/v1/dev/sms-outbox" not in {rule.rule for rule in app.url_map.iter_rules()}


def test_development_stays_the_default_with_its_adapters(environment):
    environment({"SMS_BACKEND": "outbox", "WECHAT_BACKEND": "dev"})
    app = create_app()
    assert app.config["HUIGOU_ENV"] == "development"
    assert "/api/v1/dev/sms-outbox" in {rule.rule for rule in app.url_map.iter_rules()}


def test_a_production_server_with_a_development_setup_does_not_start(tmp_path):
    """The real command, as systemd would run it: a non-zero exit and the reason, no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMS_", "WECHAT_", "SECRET", "SESSION"))}
    env |= {"HUIGOU_ENV": "production", "SMS_BACKEND": "outbox", "DATABASE_URL": f"sqlite:///{tmp_path / 'x'}"}
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "server", "routes"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "SMS_BACKEND=outbox" in done.stderr and "SECRET_KEY" in done.stderr and "Traceback" not in done.stderr
