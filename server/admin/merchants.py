"""Merchants (商户管理): their enrolments, one per merchant and campaign, by status, campaign and
name, and the bureau's review of each -- approve, reject, suspend, blacklist (confirmed on the
page), reinstate, lift a blacklisting (an admin's, with a reason), or issue a new binding code
(campaign/enrolment.py) -- audited."""

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
from ..models import AdminUser, Campaign, Enrolment, Merchant, Staff
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
    "unblacklist": ("merchant_unblacklist", "撤销黑名单", "已撤销黑名单，恢复为已通过"),
    "code": ("binding_code", "签发新绑定码", "已签发新绑定码"),
}
NEEDS_REASON = ("reject", "suspend", "blacklist", "reinstate", "unblacklist")
# Reversing a blacklisting is the admin's alone (an operator blacklists, but does not undo it).
ADMIN_ONLY = ("unblacklist",)
# The standing each of the other actions gives an enrolment (campaign/enrolment.py set_standing).
STANDING = {"suspend": "suspended", "blacklist": "blacklisted", "reinstate": "approved", "unblacklist": "approved"}
BLACKLIST_UNCONFIRMED = "请勾选「确认列入黑名单」后再提交：列入黑名单后，该商户在所有活动中的报名都将停止，且不能再报名"


def review_merchant(admin: AdminUser, enrolled: Enrolment, action: str, reason: str, now: datetime) -> str | None:
    """Apply a review action to an enrolment, audited; returns a new binding code when one was
    issued. Refused (ReviewRefused, in Chinese) when the enrolment's state does not allow it."""
    name = enrolment.label(enrolled)
    if action not in MERCHANT_ACTIONS:
        raise ReviewRefused("未知的操作", subject=name)
    reason = (reason or "").strip()
    if action in NEEDS_REASON and not reason:
        raise ReviewRefused(f"请填写{MERCHANT_ACTIONS[action][1]}的理由", subject=name)
    before = {"status": enrolled.status, "campaign": enrolled.campaign.code}
    code = None
    if action == "approve":
        code = enrolment.approve(enrolled, now, reason or None)
    elif action == "reject":
        enrolment.reject(enrolled, now, reason)
    elif action == "code":
        code = enrolment.issue_binding_code(enrolled, now)
    else:
        enrolment.set_standing(enrolled, STANDING[action], now, reason, lifting=action == "unblacklist")
    after = {"status": enrolled.status, "campaign": enrolled.campaign.code} | ({"reason": reason} if reason else {})
    audit.record(admin, MERCHANT_ACTIONS[action][0], now, target=enrolled.merchant, before=before, after=after)
    db.session.flush()
    return code


def counts_by_status(campaign_id: int | None) -> dict[str, int]:
    query = sa.select(Enrolment.status, sa.func.count()).group_by(Enrolment.status)
    if campaign_id:
        query = query.where(Enrolment.campaign_id == campaign_id)
    return defaultdict(int, {status: n for status, n in db.session.execute(query)})


@bp.get("/merchants")
@role_required(*READ)
def merchants():
    """The enrolments, newest first: each merchant once per campaign it applied to."""
    status = request.args.get("status") or None
    if status and status not in enrolment.STATUS_NAMES:
        status = None
    campaigns = db.session.execute(sa.select(Campaign.id, Campaign.name).order_by(Campaign.id.desc())).all()
    campaign_id = request.args.get("campaign", type=int)
    if campaign_id not in {c.id for c in campaigns}:
        campaign_id = None
    query = (request.args.get("q") or "").strip()[:50]
    select = sa.select(Enrolment).join(Merchant, Merchant.id == Enrolment.merchant_id)
    select = select.options(  # every row's merchant, categories and campaign, in a few queries
        sa.orm.selectinload(Enrolment.merchant).selectinload(Merchant.categories),
        sa.orm.selectinload(Enrolment.merchant).selectinload(Merchant.staff),
        sa.orm.selectinload(Enrolment.campaign),
    )
    if status:
        select = select.where(Enrolment.status == status)
    if campaign_id:
        select = select.where(Enrolment.campaign_id == campaign_id)
    if query:
        select = select.where(Merchant.name.contains(query, autoescape=True))
    shown = page_of(select.order_by(Enrolment.created_at.desc(), Enrolment.id.desc()), scalars=True)
    return render_template(
        "admin/merchants.html",
        items=shown.rows,
        total=shown.total,
        page=shown.number,
        pages=shown.pages,
        status=status,
        query=query,
        campaigns=campaigns,
        campaign_id=campaign_id,
        counts=counts_by_status(campaign_id),
        form=ActionForm(),
        phone=lambda p: phone_for(p, current_user.role),
        can_review=current_user.role in MERCHANTS,
        can_unblacklist=current_user.role == "admin",
    )


@bp.post("/merchants/enrolments/<id:enrolment_id>/<action>")
@role_required(*MERCHANTS)
def merchant_action(enrolment_id: int, action: str):
    """Approve, reject, suspend, blacklist, reinstate, lift a blacklisting, or issue a binding code,
    for one enrolment. A blacklisting must be confirmed (the form's checkbox): it ends every
    enrolment of the merchant at once."""
    enrolled = db.session.get(Enrolment, enrolment_id)
    if enrolled is None or action not in MERCHANT_ACTIONS:
        abort(404)
    if action in ADMIN_ONLY and current_user.role != "admin":
        abort(403)
    back = safe_next(request.form.get("back")) or url_for("admin.merchants")
    refusals_go_to(back)
    form = ActionForm()
    if not form.validate_on_submit():
        raise InvalidInput("；".join(e for errors in form.errors.values() for e in errors) or "提交无效")
    if action == "blacklist" and request.form.get("confirm") != "1":
        raise ReviewRefused(BLACKLIST_UNCONFIRMED, subject=enrolment.label(enrolled))
    code = review_merchant(current_user._get_current_object(), enrolled, action, form.reason.data, utcnow())
    done = MERCHANT_ACTIONS[action][2]
    flash(
        f"{enrolment.label(enrolled)}：{done}" + (f"。店员绑定码 {code}（只显示这一次，30天内有效）" if code else ""),
        "info",
    )
    return redirect(back)


def unbind_staff(admin: AdminUser, staff: Staff, now: datetime) -> None:
    """One shop assistant unbound (a phone lost, a person gone): their token stops working at
    once (the till loads only bound staff), their redemptions stay theirs, their phone may bind
    again with a new binding code; audited."""
    enrolment.unbind(staff, now)
    audit.record(admin, "staff_unbind", now, target=staff, after={"merchant": staff.merchant_id, "name": staff.name})
    db.session.flush()


@bp.post("/merchants/staff/<id:staff_id>/unbind")
@role_required(*MERCHANTS)
def staff_unbind(staff_id: int):
    staff = db.session.get(Staff, staff_id) or abort(404)
    back = safe_next(request.form.get("back")) or url_for("admin.merchants")
    refusals_go_to(back)
    if not ActionForm().validate_on_submit():
        raise InvalidInput("提交无效，请刷新页面后重试")
    unbind_staff(current_user._get_current_object(), staff, utcnow())
    flash(f"已解绑店员 {staff.name}（{phone_for(staff.phone, current_user.role)}），其登录已失效", "info")
    return redirect(back)
