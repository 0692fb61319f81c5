"""Merchants (商户管理): the list by status and name, and the bureau's review of each -- approve,
reject, suspend, blacklist, reinstate, or issue a new binding code (campaign/enrolment.py) -- audited."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..campaign import enrolment
from ..core.errors import InvalidInput, ReviewRefused
from ..core.time import utcnow
from ..extensions import db
from ..models import AdminUser, Merchant
from . import audit, bp
from .access import MERCHANTS, READ, phone_for, role_required
from .console import page_of, refusals_go_to, safe_next
from .forms import ActionForm

MERCHANT_ACTIONS = {
    # action: (audit action, what it does, done message)
    "approve": ("merchant_approve", "审核通过", "已审核通过"),
    "reject": ("merchant_reject", "驳回", "已驳回申请"),
    "suspend": ("merchant_suspend", "暂停", "已暂停"),
    "blacklist": ("merchant_blacklist", "列入黑名单", "已列入黑名单"),
    "reinstate": ("merchant_reinstate", "恢复", "已恢复"),
    "code": ("binding_code", "签发新绑定码", "已签发新绑定码"),
}
NEEDS_REASON = ("reject", "suspend", "blacklist", "reinstate")


def review_merchant(admin: AdminUser, merchant: Merchant, action: str, reason: str, now: datetime) -> str | None:
    """Apply a review action, audited; returns a new binding code when one was issued.

    Refused (ReviewRefused, in Chinese) when the merchant's state does not allow it.
    """
    if action not in MERCHANT_ACTIONS:
        raise ReviewRefused("未知的操作", subject=merchant.name)
    reason = (reason or "").strip()
    if action in NEEDS_REASON and not reason:
        raise ReviewRefused(f"请填写{MERCHANT_ACTIONS[action][1]}的理由", subject=merchant.name)
    before = {"status": merchant.status}
    code = None
    if action == "approve":
        code = enrolment.approve(merchant, now, reason or None)
    elif action == "reject":
        enrolment.reject(merchant, now, reason)
    elif action == "code":
        code = enrolment.issue_binding_code(merchant, now)
    else:
        status = {"suspend": "suspended", "blacklist": "blacklisted", "reinstate": "approved"}[action]
        enrolment.set_standing(merchant, status, now, reason)
    after = {"status": merchant.status} | ({"reason": reason} if reason else {})
    audit.record(admin, MERCHANT_ACTIONS[action][0], now, target=merchant, before=before, after=after)
    db.session.flush()
    return code


def counts_by_status() -> dict[str, int]:
    rows = db.session.execute(sa.select(Merchant.status, sa.func.count()).group_by(Merchant.status))
    return defaultdict(int, {status: n for status, n in rows})


@bp.get("/merchants")
@role_required(*READ)
def merchants():
    status = request.args.get("status") or None
    if status and status not in enrolment.STATUS_NAMES:
        status = None
    query = (request.args.get("q") or "").strip()[:50]
    select = sa.select(Merchant).options(sa.orm.selectinload(Merchant.categories))  # every row's, in one query
    if status:
        select = select.where(Merchant.status == status)
    if query:
        select = select.where(Merchant.name.contains(query, autoescape=True))
    shown = page_of(select.order_by(Merchant.created_at.desc(), Merchant.id.desc()), scalars=True)
    return render_template(
        "admin/merchants.html",
        items=shown.rows,
        total=shown.total,
        page=shown.number,
        pages=shown.pages,
        status=status,
        query=query,
        counts=counts_by_status(),
        form=ActionForm(),
        phone=lambda p: phone_for(p, current_user.role),
        can_review=current_user.role in MERCHANTS,
    )


@bp.post("/merchants/<id:merchant_id>/<action>")
@role_required(*MERCHANTS)
def merchant_action(merchant_id: int, action: str):
    """Approve, reject, suspend, blacklist, reinstate, or issue a binding code."""
    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None or action not in MERCHANT_ACTIONS:
        abort(404)
    back = safe_next(request.form.get("back")) or url_for("admin.merchants")
    refusals_go_to(back)
    form = ActionForm()
    if not form.validate_on_submit():
        raise InvalidInput("；".join(e for errors in form.errors.values() for e in errors) or "提交无效")
    code = review_merchant(current_user._get_current_object(), merchant, action, form.reason.data, utcnow())
    done = MERCHANT_ACTIONS[action][2]
    flash(f"{merchant.name}：{done}" + (f"。店员绑定码 {code}（只显示这一次，30天内有效）" if code else ""), "info")
    return redirect(back)
