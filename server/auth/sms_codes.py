"""SMS verification codes: 6 digits, kept only as keyed hashes, valid SMS_CODE_TTL_S, a few
attempts, a resend cooldown and a daily cap per phone. The gateway that carries them is an
adapter (adapters/sms.py)."""

from __future__ import annotations

import hmac
import math
import re
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from ..adapters import sms
from ..core import metrics
from ..core.errors import SmsCodeExpired, SmsCodeInvalid, SmsTooFrequent
from ..core.phone import check_phone
from ..core.signing import keyed_digest
from ..core.time import day_bounds
from ..extensions import db
from ..models import SmsCode

CODE_RE = re.compile(r"^\d{6}$")


def _hash(phone: str, code: str) -> str:
    return keyed_digest(f"{phone}:{code}")


def cooldown_after(earlier_today: int) -> int:
    """Seconds before the next code, after the code sent with `earlier_today` sent before it."""
    cfg = current_app.config
    doublings = max(0, earlier_today + 1 - cfg["SMS_FREE_SENDS"])
    return min(cfg["SMS_RESEND_COOLDOWN_S"] * 2 ** min(doublings, 20), cfg["SMS_MAX_COOLDOWN_S"])


def send(phone: str, purpose: str, now: datetime) -> int:
    """Send a fresh code; return the seconds before another may be asked for."""
    check_phone(phone)
    cfg = current_app.config
    start, end = day_bounds(now)
    sent_today = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(SmsCode)
        .where(SmsCode.phone == phone, SmsCode.created_at >= start, SmsCode.created_at < end)
    )
    last = db.session.scalar(
        sa.select(SmsCode.created_at).where(SmsCode.phone == phone).order_by(SmsCode.created_at.desc()).limit(1)
    )
    wait_s = cooldown_after(sent_today - 1)  # none sent today: the base cooldown (yesterday's last)
    if last is not None and now < last + timedelta(seconds=wait_s):
        wait = int((last + timedelta(seconds=wait_s) - now).total_seconds()) + 1
        when = f"{wait}秒" if wait <= 120 else f"{math.ceil(wait / 60)}分钟"
        raise SmsTooFrequent(
            f"验证码已发送，请{when}后再获取",
            headers={"Retry-After": str(wait)},
            retry_after_s=wait,
        )
    if sent_today >= cfg["SMS_DAILY_CAP"]:
        raise SmsTooFrequent("今天获取验证码的次数已达上限，请明天再试")
    cooldown = cooldown_after(sent_today)
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
    try:
        sms.gateway().send_code(phone, code, text)
    except Exception:
        metrics.SMS.labels(purpose, "failed").inc()
        raise
    metrics.SMS.labels(purpose, "sent").inc()
    return cooldown


def verify(phone: str, code: str, purpose: str, now: datetime) -> None:
    """Consume the phone's latest code, or refuse; a wrong guess is counted even when refused.

    The attempt is counted before the code is compared, in one guarded statement (the count is
    raised only while under the cap), and the code is consumed by another (only while unused):
    however many guesses arrive at once, on either database, at most SMS_CODE_MAX_ATTEMPTS are
    compared and a right code binds once.
    """
    latest = db.session.scalar(
        sa.select(SmsCode.id)
        .where(SmsCode.phone == phone, SmsCode.purpose == purpose)
        .order_by(SmsCode.created_at.desc(), SmsCode.id.desc())
        .limit(1)
    )
    if latest is None:
        raise SmsCodeInvalid("请先获取验证码")
    max_attempts = current_app.config["SMS_CODE_MAX_ATTEMPTS"]
    counted = db.session.execute(
        sa.update(SmsCode)
        .where(
            SmsCode.id == latest,
            SmsCode.consumed_at.is_(None),
            SmsCode.expires_at > now,
            SmsCode.attempts < max_attempts,
        )
        .values(attempts=SmsCode.attempts + 1)
        .returning(SmsCode.attempts, SmsCode.code_hash)
    ).first()
    if counted is None:  # used, expired, or out of attempts: say which
        used, expires_at = db.session.execute(
            sa.select(SmsCode.consumed_at, SmsCode.expires_at).where(SmsCode.id == latest)
        ).one()
        if used is not None:
            raise SmsCodeInvalid("请先获取验证码")
        if now >= expires_at:
            raise SmsCodeExpired()
        raise SmsCodeInvalid("验证码错误次数过多，请重新获取")
    attempts, code_hash = counted
    if not (CODE_RE.match(code or "") and hmac.compare_digest(code_hash, _hash(phone, code))):
        left = max_attempts - attempts
        message = f"验证码不正确，还可尝试{left}次" if left else "验证码错误次数过多，请重新获取"
        raise SmsCodeInvalid(message, keep_changes=True)
    consumed = db.session.execute(
        sa.update(SmsCode).where(SmsCode.id == latest, SmsCode.consumed_at.is_(None)).values(consumed_at=now)
    ).rowcount
    if consumed != 1:  # another request used it in the meantime
        raise SmsCodeInvalid("请先获取验证码")
