"""Accounts (账号管理), an admin's page: every console account with its role, last sign-in and
state; create one, disable or enable it, reset its password. A generated password is shown once,
in the flash; the rules (auth/accounts.py) are the command line's own, and every change is
audited."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user

from ..auth import accounts
from ..core.errors import InvalidInput
from ..core.time import utcnow
from ..extensions import db
from ..models import AdminUser
from . import audit, bp
from .access import ROLE_NAMES, role_required
from .console import refusals_go_to
from .forms import ActionForm

ADMINS = ("admin",)


def create_account(admin: AdminUser, username: str, role: str, now: datetime) -> tuple[AdminUser, str]:
    """A new account with a generated password, returned to be shown once; audited."""
    if role not in ROLE_NAMES:
        raise InvalidInput("请选择角色")
    password = accounts.new_password()
    user = accounts.create_admin(username.strip(), password, role)
    audit.record(admin, "account_create", now, target=user, after={"username": user.username, "role": role})
    return user, password


def disable_account(admin: AdminUser, user: AdminUser, now: datetime) -> None:
    """Disable an account (never one's own, nor the last enabled admin); its sessions end."""
    accounts.disable(user, now, by=admin)
    audit.record(admin, "account_disable", now, target=user, before={"disabled": False}, after={"disabled": True})


def enable_account(admin: AdminUser, user: AdminUser, now: datetime) -> None:
    accounts.enable(user)
    audit.record(admin, "account_enable", now, target=user, before={"disabled": True}, after={"disabled": False})


def reset_account_password(admin: AdminUser, user: AdminUser, now: datetime) -> str:
    """A generated password for the account, returned to be shown once; its sessions end."""
    password = accounts.reset_password(user)
    audit.record(admin, "account_password", now, target=user)
    return password


def _account_or_404(account_id: int) -> AdminUser:
    user = db.session.get(AdminUser, account_id)
    if user is None:
        abort(404)
    return user


def _checked_form() -> None:
    refusals_go_to(url_for("admin.accounts_page"))
    if not ActionForm().validate_on_submit():
        raise InvalidInput("页面已过期，操作未执行，请刷新页面后重试")


def _me() -> AdminUser:
    return current_user._get_current_object()


@bp.get("/accounts")
@role_required(*ADMINS)
def accounts_page():
    """Every console account, admins first."""
    order = sa.case({"admin": 0, "operator": 1, "auditor": 2}, value=AdminUser.role)
    users = db.session.scalars(sa.select(AdminUser).order_by(order, AdminUser.username)).all()
    return render_template("admin/accounts.html", users=users, now=utcnow(), roles=ROLE_NAMES)


@bp.post("/accounts")
@role_required(*ADMINS)
def account_create():
    _checked_form()
    role = request.form.get("role", "")
    user, password = create_account(_me(), request.form.get("username", ""), role, utcnow())
    flash(f"已新建账号 {user.username}（{ROLE_NAMES[role]}）。初始密码 {password}（只显示这一次，请交给本人）", "info")
    return redirect(url_for("admin.accounts_page"))


@bp.post("/accounts/<id:account_id>/disable")
@role_required(*ADMINS)
def account_disable(account_id: int):
    user = _account_or_404(account_id)
    _checked_form()
    disable_account(_me(), user, utcnow())
    flash(f"已停用账号 {user.username}，该账号已登录的会话全部失效", "info")
    return redirect(url_for("admin.accounts_page"))


@bp.post("/accounts/<id:account_id>/enable")
@role_required(*ADMINS)
def account_enable(account_id: int):
    user = _account_or_404(account_id)
    _checked_form()
    enable_account(_me(), user, utcnow())
    flash(f"已启用账号 {user.username}", "info")
    return redirect(url_for("admin.accounts_page"))


@bp.post("/accounts/<id:account_id>/password")
@role_required(*ADMINS)
def account_password(account_id: int):
    """Reset a password: a generated one, shown once; every session of the account ends."""
    user = _account_or_404(account_id)
    _checked_form()
    me = _me()
    password = reset_account_password(me, user, utcnow())
    ended = "该账号已登录的会话全部失效"
    if user.id == me.id:  # one's own: this session goes on under the new session version
        login_user(user)
        ended = "该账号在其他地方的会话全部失效，本次登录保留"
    flash(f"已重置账号 {user.username} 的密码。新密码 {password}（只显示这一次，请交给本人）；{ended}", "info")
    return redirect(url_for("admin.accounts_page"))
