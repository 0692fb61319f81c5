"""Settings read from the environment (and a `.env` file), per API.md."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from flask import Flask


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def from_environment(instance_path: str) -> dict:
    """The settings the factory applies unless a test passes its own."""
    default_db = "sqlite:///" + str(Path(instance_path) / "huigou.sqlite3")
    return {
        # development (the default, what bin/serve runs) or production (refuses a development setup).
        "HUIGOU_ENV": os.environ.get("HUIGOU_ENV", "") or "development",
        "SECRET_KEY": os.environ.get("SECRET_KEY", ""),
        # The tamper-evident chain's key (pool/chain.py); SECRET_KEY when unset. Keep it out of the
        # database's reach and never rotate it during a campaign.
        "CHAIN_KEY": os.environ.get("CHAIN_KEY", ""),
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL", default_db),
        "REDIS_URL": os.environ.get("REDIS_URL") or None,
        "SMS_BACKEND": os.environ.get("SMS_BACKEND", "console"),
        "WECHAT_BACKEND": os.environ.get("WECHAT_BACKEND", "wechat"),
        "WECHAT_APPID": os.environ.get("WECHAT_APPID", ""),
        "WECHAT_SECRET": os.environ.get("WECHAT_SECRET", ""),
        "WECHAT_API_BASE": os.environ.get("WECHAT_API_BASE", "https://api.weixin.qq.com"),
        "ALIYUN_SMS_ACCESS_KEY_ID": os.environ.get("ALIYUN_SMS_ACCESS_KEY_ID", ""),
        "ALIYUN_SMS_ACCESS_KEY_SECRET": os.environ.get("ALIYUN_SMS_ACCESS_KEY_SECRET", ""),
        "ALIYUN_SMS_SIGN_NAME": os.environ.get("ALIYUN_SMS_SIGN_NAME", ""),
        "ALIYUN_SMS_TEMPLATE_CODE": os.environ.get("ALIYUN_SMS_TEMPLATE_CODE", ""),
        "ALIYUN_SMS_ENDPOINT": os.environ.get("ALIYUN_SMS_ENDPOINT", "https://dysmsapi.aliyuncs.com/"),
        "TIMEZONE": os.environ.get("TIMEZONE", "Asia/Shanghai"),
        "RATELIMIT_ENABLED": _flag("RATELIMIT_ENABLED", True),
        "PROXY_HOPS": int(os.environ.get("PROXY_HOPS") or 0),
        "CAMPAIGN_CACHE_SECONDS": float(os.environ.get("CAMPAIGN_CACHE_SECONDS", "2")),
        # Run the round and pool jobs inside the web workers too (behind the leader lock).
        "SCHEDULER_IN_WEB": _flag("SCHEDULER_IN_WEB", False),
        "SESSION_COOKIE_SECURE": _flag("SESSION_COOKIE_SECURE", False),
        # GET /metrics: a bearer token for the scraper, and/or the addresses (or networks) that may
        # read it without one; loopback only by default.
        "METRICS_TOKEN": os.environ.get("METRICS_TOKEN", ""),
        "METRICS_ALLOW": os.environ.get("METRICS_ALLOW", "127.0.0.1,::1"),
        # `flask scheduler run` serves its own figures (job runs, leadership) on this address:port
        # (prometheus_client's server), when set, e.g. 127.0.0.1:9464.
        "SCHEDULER_METRICS": os.environ.get("SCHEDULER_METRICS", ""),
        # One JSON line per request on stderr (core/requestlog.py).
        "REQUEST_LOG": _flag("REQUEST_LOG", True),
    }


# Fixed rules of the product; tests may override them through create_app(config).
DEFAULTS = {
    # No pre-ping: a round trip on every checkout costs the draw ~10%; a dropped connection
    # is invalidated with its pool on first use instead (see README, "Production").
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": False},
    "TOKEN_MAX_AGE_S": 7 * 24 * 3600,
    "SMS_CODE_TTL_S": 300,
    "PAYCODE_TTL_S": 60,
    # The on-site event's big-screen QR changes this often; a pass from it lasts SCREEN_PASS_S.
    "SCREEN_ROTATE_S": 30,
    "SCREEN_PASS_S": 15 * 60,
    # A purchase subsidy's invoice photo (the only upload; other requests keep the 64 KB cap).
    "INVOICE_IMAGE_MAX_BYTES": 5 * 1024 * 1024,
    "REVOKE_WINDOW_S": 30 * 60,
    "SMS_CODE_MAX_ATTEMPTS": 5,
    # A phone's codes: a minute apart for the first three of a day, then twice as long each time,
    # up to an hour: a stranger asking for someone's codes slows them, never locks them out for
    # the day; the daily cap (cost) is out of reach at that pace.
    "SMS_RESEND_COOLDOWN_S": 60,
    "SMS_FREE_SENDS": 3,
    "SMS_MAX_COOLDOWN_S": 3600,
    "SMS_DAILY_CAP": 30,
    "MAX_CONTENT_LENGTH": 64 * 1024,
    # Console sessions: cookies out of scripts' reach and not sent by other sites' forms;
    # SESSION_COOKIE_SECURE is on in production (see README), off for http://127.0.0.1.
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "PERMANENT_SESSION_LIFETIME": 8 * 3600,
    "WTF_CSRF_TIME_LIMIT": 8 * 3600,
    # APIFlask: the OpenAPI document lives under the API prefix, errors are 400 not 422.
    "VALIDATION_ERROR_STATUS_CODE": 400,
    "AUTO_404_RESPONSE": False,
    "INFO": {"description": "惠购 Huigou: consumer-coupon campaign API (resident and merchant)."},
    "SECURITY_SCHEMES": {"BearerAuth": {"type": "http", "scheme": "bearer", "description": "Signed, expiring token"}},
}


def apply(app: Flask, config: dict | None) -> None:
    """The defaults, then the environment, then what a test passes; a secret kept in instance/
    when none is set (development)."""
    from .core.db import engine_url
    from .core.schemas import ErrorOut

    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(DEFAULTS)
    app.config.update(from_environment(app.instance_path))
    app.config["HTTP_ERROR_SCHEMA"] = ErrorOut
    app.config["VALIDATION_ERROR_SCHEMA"] = ErrorOut
    if config:
        app.config.update(config)
    refuse_development_setup_in_production(app.config)
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = instance_secret(Path(app.instance_path))
    app.config["SQLALCHEMY_DATABASE_URI"] = engine_url(app.config["SQLALCHEMY_DATABASE_URI"])


MIN_SECRET_LENGTH = 32


def production_problems(config) -> list[str]:
    """What in these settings is for development only, and must not serve residents."""
    problems = []
    if config["SMS_BACKEND"] in ("console", "outbox"):
        problems.append(
            f"SMS_BACKEND={config['SMS_BACKEND']} 是开发用的短信通道（验证码不发到手机，outbox 还会公开验证码）"
        )
    if config["WECHAT_BACKEND"] == "dev":
        problems.append("WECHAT_BACKEND=dev 不向微信核验登录，任何人都可冒用他人身份")
    if len(config.get("SECRET_KEY") or "") < MIN_SECRET_LENGTH:
        problems.append(f"SECRET_KEY 未设置或少于 {MIN_SECRET_LENGTH} 个字符（各台服务器须用同一个）")
    if not config.get("SESSION_COOKIE_SECURE"):
        problems.append("SESSION_COOKIE_SECURE 未开启（管理后台须经 HTTPS 访问）")
    return problems


def refuse_development_setup_in_production(config) -> None:
    """HUIGOU_ENV=production starts only without development adapters and with a real secret: one
    line on stderr and exit status 2 otherwise (gunicorn's workers then fail to boot)."""
    if config["HUIGOU_ENV"] not in ("development", "production"):
        sys.exit(f"错误：HUIGOU_ENV 应为 development 或 production，不是 {config['HUIGOU_ENV']!r}")
    if config["HUIGOU_ENV"] != "production":
        return
    problems = production_problems(config)
    if problems:
        print("错误：HUIGOU_ENV=production 不能启动：" + "；".join(problems) + "。", file=sys.stderr)
        sys.exit(2)


def instance_secret(instance: Path) -> str:
    """A random key kept in instance/ when SECRET_KEY is not set (development)."""
    path = instance / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
