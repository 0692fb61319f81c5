"""Bureau accounts: creation and password hashing."""

from __future__ import annotations

import re

import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from .extensions import db
from .models import AdminUser

ROLES = ("admin", "auditor", "operator")
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,40}$")


class AccountError(ValueError):
    pass


def create_admin(username: str, password: str, role: str) -> AdminUser:
    """A new bureau account; flushes, never commits."""
    if not USERNAME_RE.match(username):
        raise AccountError("用户名须为3至40位字母、数字或 _ . -")
    if role not in ROLES:
        raise AccountError(f"角色须为 {', '.join(ROLES)} 之一")
    if len(password) < 10:
        raise AccountError("密码至少10位")
    if db.session.scalar(sa.select(AdminUser.id).where(AdminUser.username == username)):
        raise AccountError(f"用户名 {username} 已存在")
    user = AdminUser(username=username, password_hash=generate_password_hash(password), role=role)
    db.session.add(user)
    db.session.flush()
    return user
