"""Purchase subsidy review (购车补贴审核): the queue, one application with its invoice photo, and
approval -- paid from the pool, in the ledger (kind "subsidy", keyed by the application, so it is
paid once) -- or rejection with a reason the resident sees."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user

from ..campaign.subsidy import STATUS_NAMES, bracket_of, bracket_rows
from ..core.errors import InvalidInput, ReviewRefused
from ..core.money import yuan
from ..core.time import utcnow
from ..extensions import db
from ..models import VEHICLE_KINDS, AdminUser, Campaign, Resident, SubsidyApplication
from ..pool import ledger, rounds
from . import audit, bp
from .access import MERCHANTS, READ, phone_for, role_required
from .console import page_of, refusals_go_to
from .forms import ActionForm

# Reviewing is checking documents, as merchant enrolment is: admins and operators; auditors read.
REVIEW = MERCHANTS


def review(admin: AdminUser, application_id: int, approve: bool, note: str | None, now: datetime):
    """Approve (pay from the pool, in the ledger) or reject (with a reason) a pending application.

    The campaign's pool is locked first (pool.rounds.lock_campaign), then the application: two
    reviewers, or a reviewer and a job, never pay twice or pay beyond the pool.
    """
    who = f"申请 #{application_id}"
    campaign_id = db.session.scalar(
        sa.select(SubsidyApplication.campaign_id).where(SubsidyApplication.id == application_id)
    )
    if campaign_id is None:
        raise ReviewRefused("找不到这份申请", subject=who)
    rounds.lock_campaign(campaign_id)
    # populate_existing: the console has loaded the application before the locks; without it the
    # session would keep that stale copy and a second reviewer would see "pending" still.
    application = db.session.scalar(
        sa.select(SubsidyApplication)
        .where(SubsidyApplication.id == application_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if application.status != "pending":
        raise ReviewRefused(f"这份申请已审核（{STATUS_NAMES[application.status]}），不能重复审核", subject=who)
    note = (note or "").strip()[:200] or None
    before = {"status": application.status}
    if approve:
        pool = ledger.pool_fen(campaign_id)
        if pool < application.subsidy_fen:
            owed = yuan(application.subsidy_fen, grouped=True)
            raise ReviewRefused(f"资金池余额 {yuan(pool, grouped=True)} 元，不足以支付这笔补贴 {owed} 元", subject=who)
        label = f"{VEHICLE_KINDS[application.vehicle_kind]} {application.plate} 发票{application.invoice_no}"
        ledger.record(
            [
                ledger.entry(
                    "subsidy",
                    campaign_id,
                    application.subsidy_fen,
                    now,
                    key=f"subsidy:{application.id}",
                    actor=f"admin:{admin.username}",
                    note=f"购车补贴：{label}"[:200],
                )
            ]
        )
        application.status = "approved"
    else:
        if not note:
            raise ReviewRefused("驳回须写明原因，申请人会看到这条原因", subject=who)
        application.status = "rejected"
    application.review_note = note
    application.reviewed_by = admin.username
    application.reviewed_at = now
    audit.record(
        admin,
        "subsidy_approve" if approve else "subsidy_reject",
        now,
        target=application,
        before=before,
        after={"status": application.status, "subsidy_fen": application.subsidy_fen, "note": note},
    )
    return application


@bp.get("/subsidies")
@role_required(*READ)
def subsidies():
    status = request.args.get("status", "pending")
    status = status if status in STATUS_NAMES else None
    query = sa.select(SubsidyApplication, Resident).join(Resident, Resident.id == SubsidyApplication.resident_id)
    if status:
        query = query.where(SubsidyApplication.status == status)
    shown = page_of(query.order_by(SubsidyApplication.created_at, SubsidyApplication.id))
    counts = dict(
        db.session.execute(
            sa.select(SubsidyApplication.status, sa.func.count()).group_by(SubsidyApplication.status)
        ).all()
    )
    paid = ledger.subsidies_fen(None, "approved")
    return render_template(
        "admin/subsidies.html",
        rows=shown.rows,
        status=status,
        counts=counts,
        paid=paid,
        total=shown.total,
        page=shown.number,
        pages=shown.pages,
        names=STATUS_NAMES,
        vehicles=VEHICLE_KINDS,
        phone=lambda p: phone_for(p, current_user.role),
    )


def _application(application_id: int) -> SubsidyApplication:
    application = db.session.get(SubsidyApplication, application_id)
    if application is None:
        abort(404)
    return application


@bp.get("/subsidies/<id:application_id>")
@role_required(*READ)
def subsidy_detail(application_id: int):
    application = _application(application_id)
    campaign = db.session.get(Campaign, application.campaign_id)
    resident = db.session.get(Resident, application.resident_id)
    mine = [b for b in campaign.subsidy_brackets or () if b["vehicle"] == application.vehicle_kind]
    rows = bracket_rows(mine)
    bracket = bracket_of(mine, application.vehicle_kind, application.invoice_fen)
    applied = next((r for r in rows if bracket and r["from_fen"] == bracket["from_fen"]), None)
    return render_template(
        "admin/subsidy.html",
        a=application,
        campaign=campaign,
        resident=resident,
        rows=rows,
        applied=applied,
        names=STATUS_NAMES,
        vehicles=VEHICLE_KINDS,
        phone=phone_for(resident.phone, current_user.role),
        can_review=current_user.role in REVIEW and application.status == "pending",
        form=ActionForm(),
    )


@bp.get("/subsidies/<id:application_id>/invoice")
@role_required(*READ)
def subsidy_invoice(application_id: int):
    """The invoice photo as uploaded (Pillow checked it is an image of its type)."""
    application = _application(application_id)
    response = make_response(application.image)
    response.headers.update({"Content-Type": f"image/{application.image_type}", "Cache-Control": "private, no-store"})
    return response


@bp.post("/subsidies/<id:application_id>/<any(approve, reject):action>")
@role_required(*REVIEW)
def subsidy_review(application_id: int, action: str):
    application = _application(application_id)
    refusals_go_to(url_for("admin.subsidy_detail", application_id=application_id))
    form = ActionForm()
    if not form.validate_on_submit():
        raise InvalidInput(
            "；".join(e for errors in form.errors.values() for e in errors) or "提交无效，请刷新页面后重试"
        )
    done = review(current_user._get_current_object(), application.id, action == "approve", form.reason.data, utcnow())
    if action == "approve":
        flash(f"申请 #{done.id} 已批准，补贴 {yuan(done.subsidy_fen, grouped=True)} 元已记入资金台账", "info")
    else:
        flash(f"申请 #{done.id} 已驳回：{done.review_note}", "info")
    following = db.session.scalar(
        sa.select(SubsidyApplication.id)
        .where(SubsidyApplication.status == "pending")
        .order_by(SubsidyApplication.created_at, SubsidyApplication.id)
        .limit(1)
    )
    if following is not None:  # on to the next in the queue
        return redirect(url_for("admin.subsidy_detail", application_id=following))
    return redirect(url_for("admin.subsidies"))
