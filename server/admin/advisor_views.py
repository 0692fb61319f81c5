"""The quota advisor's page (配额建议): a round's proposed quotas with the reasons, accepted or
edited by the bureau and applied through the console's one quota change (services.adjust_round)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import advisor, ledger, rounds
from ..extensions import db
from ..models import Round
from ..timeutil import utcnow
from . import bp, services
from .access import MONEY, READ, role_required
from .forms import ActionForm, tier_quantities

# Who may apply a proposal: those who may change quotas (round_quotas); others only read it.
APPLY = MONEY


@bp.route("/campaigns/<id:campaign_id>/rounds/<id:number>/advice", methods=["GET", "POST"])
@role_required(*READ)
def round_advice(campaign_id: int, number: int):
    """The proposed quotas of a round and why; admins apply them, as proposed or edited."""
    round_ = db.session.scalar(sa.select(Round).where(Round.campaign_id == campaign_id, Round.number == number))
    if round_ is None:
        abort(404)
    status = 200
    if request.method == "POST":
        if current_user.role not in APPLY:
            abort(403)
        if not ActionForm().validate_on_submit():
            abort(400)
        status = 400  # refused unless applied below
        wanted = tier_quantities(request.form)
        if wanted is None:
            flash("配额须为非负整数", "error")
        else:
            now = utcnow()
            try:
                advisor.check_affordable(round_, wanted, now)
                changes = services.adjust_round(current_user._get_current_object(), round_, wanted, now)
            except rounds.QuotaError as refused:
                db.session.rollback()
                flash(f"未调整：{refused}", "error")
            else:
                db.session.commit()
                done = "；".join(f"{ledger.tier_label(c.tier)} {c.before}→{c.after}张" for c in changes)
                flash(f"已按配额建议调整第{round_.number}轮：" + (done or "无变化"), "info")
                return redirect(url_for("admin.round_quotas", campaign_id=campaign_id, number=number))
    now = utcnow()
    advice = advisor.advise(round_, now)
    # A refused form shows what was typed, so the bureau corrects it rather than starting over.
    typed = {int(k[5:]): v for k, v in request.form.items() if k.startswith("tier-") and k[5:].isdigit()}
    return (
        render_template(
            "admin/advice.html",
            round=round_,
            advice=advice,
            values=advice.quantities | typed,
            open=now >= round_.opens_at,
            can_apply=current_user.role in APPLY,
        ),
        status,
    )
