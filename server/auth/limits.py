"""Rate limits on what bots and scalpers aim at: SMS, binding, the draw, the till's scan and
redeem. Flask-Limiter, in memory by default and in Redis when REDIS_URL is set (every worker
then counts together). Each limit is declared here, once, and put on its view by name.

Three kinds of key: the phone a request is about (from its JSON body), the bearer token, and the
client's address. Some limits count only failures (`failures=True`): five wrong SMS codes for a
phone, or five wrong binding codes from an address, lock that key out for the rest of the window,
while people who get it right are never slowed. A refusal is 429 RATE_LIMITED with a Retry-After
header and a sentence saying when to try again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from flask import Flask, request
from flask_limiter.util import get_remote_address

from ..extensions import limiter
from . import tokens


def by_address() -> str:
    return f"addr:{get_remote_address()}"


def by_token() -> str:
    """The verified bearer (kind and id), else the address: a token's text has variants that
    all verify (the last base64 character's spare bits), each of which would be a key of its own."""
    token = tokens.presented()
    bearer = tokens.read(token) if token else None
    if bearer is None:
        return by_address()
    return f"{bearer.kind}:{bearer.id}"


def by_account() -> str:
    """The signed-in console account (Flask-Login), else the address."""
    from flask_login import current_user

    return f"admin:{current_user.id}" if current_user.is_authenticated else by_address()


def by_phone_and_address() -> str:
    """The phone asked about, from this address: a stranger's failures for someone's phone lock
    the stranger out, not the phone's owner."""
    return f"{by_phone()}|{by_address()}"


def by_phone() -> str:
    body = request.get_json(silent=True)
    phone = (body.get("phone") or body.get("contact_phone")) if isinstance(body, dict) else None
    if not isinstance(phone, str) or not phone.strip():
        return by_address()
    return "phone:" + "".join(ch for ch in phone if ch.isdigit())[:20]


def _failed(response) -> bool:
    return response.status_code in (400, 403, 404, 409)


@dataclass(frozen=True)
class Rule:
    limit: str
    key: object  # a key function
    message: str
    failures: bool = False  # count refused requests only (a lockout)


RULES: dict[str, tuple[Rule, ...]] = {
    "sms": (
        # Per phone the codes' own cooldown paces everyone (auth/sms_codes.py); this is per asker.
        Rule("3 per minute;10 per hour", by_phone_and_address, "验证码获取太频繁，请稍后再试"),
        Rule("30 per hour", by_address, "本网络获取验证码太频繁，请稍后再试"),
    ),
    "bind": (
        Rule(
            "5 per 15 minutes",
            by_phone_and_address,
            "验证码错误次数过多，该手机号已暂时锁定，请15分钟后再试",
            failures=True,
        ),
        Rule("60 per hour", by_address, "本网络绑定操作太频繁，请稍后再试"),
    ),
    # Merchants' applications need no sign-in: a few an hour from one network or for one phone.
    "apply": (
        Rule("20 per hour", by_address, "本网络提交报名太频繁，请稍后再试"),
        Rule("5 per hour", by_phone, "该联系电话提交报名太频繁，请稍后再试"),
    ),
    "staff_bind": (
        # Per phone and address, so that one assistant's slips (or a stranger's guesses) do not
        # lock out a whole shop or mall behind one address; the address as a whole gets more.
        Rule(
            "5 per 15 minutes",
            by_phone_and_address,
            "该手机号绑定失败次数过多，已暂时锁定，请15分钟后再试",
            failures=True,
        ),
        Rule("30 per 15 minutes", by_address, "本网络绑定失败次数过多，已暂时锁定，请15分钟后再试", failures=True),
    ),
    "draw": (
        Rule("30 per minute", by_token, "抽奖太频繁，请稍后再试"),
        # Generous: at 09:00 a carrier's NAT puts many honest phones behind one address.
        Rule("1200 per minute", by_address, "本网络抽奖请求太多，请稍后再试"),
    ),
    "subsidy": (
        Rule("10 per hour", by_token, "提交申请太频繁，请稍后再试"),
        Rule("60 per hour", by_address, "本网络提交申请太频繁，请稍后再试"),
    ),
    "scan": (
        Rule("120 per minute", by_token, "扫码太频繁，请稍后再试"),
        # Guessing short codes: ten unknown or stale codes in ten minutes lock this till out.
        Rule("10 per 10 minutes", by_token, "无效券码次数过多，已暂停10分钟；请让顾客刷新付款码后扫码", failures=True),
    ),
    # The console's searches and exports, per signed-in account: a person reads pages, a script
    # trying the hidden digits of numbers does not get far.
    "console_search": (Rule("60 per minute;600 per hour", by_account, "查询太频繁，请稍后再试"),),
    "redeem": (
        Rule("60 per minute", by_token, "核销太频繁，请稍后再试"),
        Rule("20 per 10 minutes", by_token, "核销被拒次数过多，核销已暂停10分钟，请核对后再试", failures=True),
    ),
}


def limited(name: str):
    """Put the named rules on a view (outermost, so they run before the body is parsed). With
    limits switched off (RATELIMIT_ENABLED=false) the view runs bare: no limiter work at all."""

    def decorate(view):
        guarded = view
        for rule in RULES[name]:
            guarded = limiter.limit(
                rule.limit,
                key_func=rule.key,
                error_message=rule.message,
                deduct_when=_failed if rule.failures else None,
                scope=f"{name}:{rule.key.__name__}:{'fail' if rule.failures else 'all'}",
            )(guarded)

        @functools.wraps(view)
        def run(*args, **kwargs):
            return guarded(*args, **kwargs) if limiter.enabled else view(*args, **kwargs)

        return run

    return decorate


def init_app(app: Flask) -> None:
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "memory://")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
