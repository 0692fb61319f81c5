"""Bureau accounts: creation, password hashing, generated one-time passwords, disabling and
enabling, sign-in with lockout. The console's account page and `flask admin` call the same rules."""

from __future__ import annotations

import functools
import re
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from ..core.errors import refusal
from ..extensions import db
from ..models import AdminUser

ROLES = ("admin", "auditor", "operator")
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,40}$")


AccountRefused = refusal("ACCOUNT_REFUSED", 400, "账号未创建", api=False)


def create_admin(username: str, password: str, role: str) -> AdminUser:
    """A new bureau account; flushes, never commits."""
    if not USERNAME_RE.match(username):
        raise AccountRefused("用户名须为3至40位字母、数字或 _ . -")
    if role not in ROLES:
        raise AccountRefused(f"角色须为 {', '.join(ROLES)} 之一")
    if len(password) < 10:
        raise AccountRefused("密码至少10位")
    if db.session.scalar(sa.select(AdminUser.id).where(AdminUser.username == username)):
        raise AccountRefused(f"用户名 {username} 已存在")
    user = AdminUser(username=username, password_hash=generate_password_hash(password), role=role)
    db.session.add(user)
    db.session.flush()
    return user


def end_sessions(user: AdminUser) -> None:
    """Every session of this account ends at once: a saved cookie is no longer served."""
    user.session_version += 1


def set_password(user: AdminUser, password: str) -> None:
    if len(password) < 10:
        raise AccountRefused("密码至少10位")
    user.password_hash = generate_password_hash(password)
    user.failed_logins, user.locked_until = 0, None
    end_sessions(user)
    db.session.flush()


# A generated password is read off a screen and typed: no 0/O/o, 1/l/I. Twelve of these 56
# characters are about 69 bits, in three groups of four for reading aloud.
PASSWORD_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"


def new_password() -> str:
    """A random password to be shown once: Kq7m-R4tx-P9hw."""
    groups = ("".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(4)) for _ in range(3))
    return "-".join(groups)


def reset_password(user: AdminUser) -> str:
    """A generated password for a lost one, returned to be shown once; the lockout is lifted and
    every session of the account ends (set_password)."""
    password = new_password()
    set_password(user, password)
    return password


def disable(user: AdminUser, now: datetime, *, by: AdminUser | None = None) -> None:
    """The account can no longer sign in, and every session of it ends.

    Done in the console (`by` the account doing it), an admin cannot disable their own account or
    the last enabled admin: someone must be left who can manage the accounts. The command line may
    (whoever runs it can always create another account).
    """
    subject = user.username
    if user.disabled_at is not None:
        raise AccountRefused("该账号已停用", subject=subject)
    if by is not None:
        if by.id == user.id:
            raise AccountRefused("不能停用自己正在使用的账号", subject=subject)
        if user.role == "admin" and enabled_admins(excluding=user) == 0:
            raise AccountRefused("这是最后一个可用的管理员账号，不能停用", subject=subject)
    user.disabled_at = now
    end_sessions(user)
    db.session.flush()


def enable(user: AdminUser) -> None:
    """A disabled account may sign in again (with its password; a lockout is lifted)."""
    if user.disabled_at is None:
        raise AccountRefused("该账号未停用", subject=user.username)
    user.disabled_at, user.failed_logins, user.locked_until = None, 0, None
    db.session.flush()


def enabled_admins(*, excluding: AdminUser | None = None) -> int:
    """How many admins may sign in, their rows locked until the commit: of two admins disabling
    each other at once, the second counts after the first has disabled its admin."""
    query = sa.select(AdminUser.id).where(AdminUser.role == "admin", AdminUser.disabled_at.is_(None))
    if excluding is not None:
        query = query.where(AdminUser.id != excluding.id)
    return len(db.session.scalars(query.with_for_update()).all())


def find(username: str) -> AdminUser:
    user = db.session.scalar(sa.select(AdminUser).where(AdminUser.username == username))
    if user is None:
        raise AccountRefused(f"没有账号 {username}")
    return user


# Console sign-in: after MAX_FAILED wrong passwords in a row the account is locked for LOCK_MINUTES.
MAX_FAILED = 5
LOCK_MINUTES = 15


@functools.cache
def _dummy_hash() -> str:
    """Checked when the username is unknown, so that a wrong name costs as long as a wrong
    password. Made on first use, not at import: hashing costs every process start otherwise."""
    return generate_password_hash("not-a-password-of-anyone")


# A refused sign-in. One sentence for every failure (an unknown name, a wrong password, a locked
# account), so that the page never tells a stranger which names exist; it says the rule instead.
REFUSED = f"用户名或密码错误。连续输错{MAX_FAILED}次，账号将锁定{LOCK_MINUTES}分钟；如已锁定，请稍后再试。"
SignInRefused = refusal("SIGN_IN_REFUSED", 401, REFUSED, api=False)


def authenticate(username: str, password: str, now: datetime) -> AdminUser:
    """The account these credentials open, or SignInRefused. Counts failures; flushes."""
    user = db.session.scalar(sa.select(AdminUser).where(AdminUser.username == (username or "").strip()))
    if user is None:
        check_password_hash(_dummy_hash(), password or "")
        raise SignInRefused(why="unknown")
    if user.disabled_at is not None or (user.locked_until is not None and now < user.locked_until):
        check_password_hash(_dummy_hash(), password or "")  # as long as any other refusal
        raise SignInRefused(why="disabled" if user.disabled_at is not None else "locked")
    if not check_password_hash(user.password_hash, password or ""):
        user.failed_logins += 1
        why = "wrong_password"
        if user.failed_logins >= MAX_FAILED:  # locked: and whoever may have the password is signed out
            user.failed_logins, user.locked_until, why = 0, now + timedelta(minutes=LOCK_MINUTES), "locked_now"
            end_sessions(user)
        db.session.flush()
        raise SignInRefused(why=why)
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    db.session.flush()
    return user
