"""Purchase subsidy review (购车补贴审核): the queue, one application with its invoice photo, and
approval (paid from the pool in the ledger) or rejection with a reason, through subsidy.review."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user

from .. import ledger, subsidy
from ..extensions import db
from ..models import VEHICLE_KINDS, Campaign, Resident, SubsidyApplication
from ..timeutil import utcnow
from . import bp
from .access import MERCHANTS, READ, phone_for, role_required
from .forms import ActionForm
from .views import PER_PAGE, _page, _pages

# Reviewing is checking documents, as merchant enrolment is: admins and operators; auditors read.
REVIEW = MERCHANTS


@bp.get("/subsidies")
@role_required(*READ)
def subsidies():
    status = request.args.get("status", "pending")
    status = status if status in subsidy.STATUS_NAMES else None
    page = _page()
    query = sa.select(SubsidyApplication, Resident).join(Resident, Resident.id == SubsidyApplication.resident_id)
    if status:
        query = query.where(SubsidyApplication.status == status)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = db.session.execute(
        query.order_by(SubsidyApplication.created_at, SubsidyApplication.id)
        .limit(PER_PAGE)
        .offset((page - 1) * PER_PAGE)
    ).all()
    counts = dict(
        db.session.execute(
            sa.select(SubsidyApplication.status, sa.func.count()).group_by(SubsidyApplication.status)
        ).all()
    )
    paid = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(SubsidyApplication.subsidy_fen), 0)).where(
            SubsidyApplication.status == "approved"
        )
    )
    return render_template(
        "admin/subsidies.html",
        rows=rows,
        status=status,
        counts=counts,
        paid=paid,
        total=total,
        page=page,
        pages=_pages(total, page, len(rows)),
        names=subsidy.STATUS_NAMES,
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
    rows = subsidy.bracket_rows(mine)
    bracket = subsidy.bracket_of(mine, application.vehicle_kind, application.invoice_fen)
    applied = next((r for r in rows if bracket and r["from_fen"] == bracket["from_fen"]), None)
    return render_template(
        "admin/subsidy.html",
        a=application,
        campaign=campaign,
        resident=resident,
        rows=rows,
        applied=applied,
        names=subsidy.STATUS_NAMES,
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
    form = ActionForm()
    if not form.validate_on_submit():
        flash("；".join(e for errors in form.errors.values() for e in errors) or "提交无效，请刷新页面后重试", "error")
        return redirect(url_for("admin.subsidy_detail", application_id=application.id))
    try:
        done = subsidy.review(
            current_user._get_current_object(), application.id, action == "approve", form.reason.data, utcnow()
        )
    except subsidy.ReviewError as refused:
        db.session.rollback()
        flash(f"申请 #{application_id}：{refused}", "error")
        return redirect(url_for("admin.subsidy_detail", application_id=application_id))
    db.session.commit()
    if action == "approve":
        flash(f"申请 #{done.id} 已批准，补贴 {ledger.yuan(done.subsidy_fen)} 元已记入资金台账", "info")
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
