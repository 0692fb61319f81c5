"""Signing in and out of the console; repeated wrong passwords lock the account for a while."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from ..auth import accounts
from ..core.time import utcnow
from . import audit, bp
from .access import READ, role_required
from .console import safe_next
from .forms import ActionForm, LoginForm


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in; a refused attempt is kept in the audit log and counted towards the lockout."""
    form = LoginForm()
    if form.validate_on_submit():
        now = utcnow()
        try:
            user = accounts.authenticate(form.username.data, form.password.data, now)
        except accounts.SignInRefused as refused:
            why = refused.extra_data.get("why")  # for the audit log: which refusal it was
            audit.record(None, "login_failed", now, name=form.username.data, after={"reason": why})
            flash(str(refused), "error")
            return render_template("admin/login.html", form=form), 401
        login_user(user)
        audit.record(user, "login", now, target=user)
        return redirect(safe_next(request.args.get("next")) or url_for("admin.dashboard"))
    return render_template("admin/login.html", form=form)


@bp.post("/logout")
@role_required(*READ)
def logout():
    if not ActionForm().validate_on_submit():
        abort(400)
    user = current_user._get_current_object()
    audit.record(user, "logout", utcnow(), target=user)
    accounts.end_sessions(user)  # a copy of the cookie kept elsewhere is no longer served
    logout_user()
    flash("已退出登录", "info")
    return redirect(url_for("admin.login"))
