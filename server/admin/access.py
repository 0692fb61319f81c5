"""Who may see and do what in the console: Flask-Login sessions and one role decorator.

Roles: admin (everything), auditor (read and export, no changes), operator (merchants and
residents, no money settings). Anonymous browsers go to the login page; calls under /api get
the JSON 401 of the API's error envelope.
"""

from __future__ import annotations

import functools

from flask import Flask, abort, jsonify, redirect, request, url_for
from flask_login import current_user

from ..core.phone import mask_phone
from ..extensions import db, login_manager
from ..models import AdminUser

READ = ("admin", "auditor", "operator")
MERCHANTS = ("admin", "operator")
MONEY = ("admin",)
ROLE_NAMES = {"admin": "管理员", "auditor": "审计", "operator": "运营"}


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(session_id: str) -> AdminUser | None:
    """The session's account, if the session is still one of its own (accounts.end_sessions)."""
    user_id, _, version = session_id.partition(":")
    if not (user_id.isdigit() and version.isdigit()):
        return None
    user = db.session.get(AdminUser, int(user_id))
    if user is None or user.disabled_at is not None or user.session_version != int(version):
        return None
    return user


@login_manager.unauthorized_handler
def unauthorized():
    if request.path.startswith("/api/"):
        response = jsonify(error={"code": "UNAUTHORIZED", "message": "请先登录"})
        response.status_code = 401
        return response
    return redirect(url_for("admin.login", next=request.full_path if request.query_string else request.path))


def role_required(*roles: str):
    """Signed in, and with one of these roles (403 otherwise)."""

    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return guarded

    return decorate


def sees_phones(role: str) -> bool:
    """Auditors read every record but need no one's phone number in clear."""
    return role in ("admin", "operator")


def phone_for(phone: str | None, role: str) -> str:
    """A phone number as this role may see it."""
    if not phone:
        return ""
    return phone if sees_phones(role) else mask_phone(phone)
