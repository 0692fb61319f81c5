"""Rounds (轮次): a round's quota per tier, changed by an admin before the round opens (paid from or
back to the pool, pool.rounds.adjust_quotas), and the quota advisor's proposal (配额建议) with its
reasons, accepted or edited through the same change."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..campaign import advisor
from ..core.errors import InvalidInput
from ..core.time import utcnow
from ..extensions import db
from ..models import AdminUser, Round
from ..pool import ledger, rounds
from ..pool.coupons import remaining_by_tier
from . import audit, bp
from .access import MONEY, READ, role_required
from .console import refusals_go_to
from .forms import ActionForm, tier_quantities

# Who may apply a proposal: those who may change quotas (round_quotas); others only read it.
APPLY = MONEY


def adjust_round(admin: AdminUser, round_: Round, wanted: dict[int, int], now: datetime):
    """The bureau's quota change of a future round (pool.rounds.adjust_quotas), audited."""
    changes = rounds.adjust_quotas(round_.id, wanted, f"admin:{admin.username}", now)
    if changes:
        audit.record(
            admin,
            "round_quota",
            now,
            target=round_,
            before={str(c.tier.id): c.before for c in changes},
            after={str(c.tier.id): c.after for c in changes},
        )
    return changes


def _changed(changes) -> str:
    return "；".join(f"{ledger.tier_label(c.tier)} {c.before}→{c.after}张" for c in changes)


def _round_or_404(campaign_id: int, number: int) -> Round:
    round_ = db.session.scalar(sa.select(Round).where(Round.campaign_id == campaign_id, Round.number == number))
    if round_ is None:
        abort(404)
    return round_


@bp.route("/campaigns/<id:campaign_id>/rounds/<id:number>", methods=["GET", "POST"])
@role_required(*READ)
def round_quotas(campaign_id: int, number: int):
    """A round's quota per tier; an admin changes a round that has not opened, paid from the pool."""
    round_ = _round_or_404(campaign_id, number)
    form = ActionForm()
    if request.method == "POST":
        if current_user.role not in MONEY:
            abort(403)
        if not form.validate_on_submit():
            abort(400)
        refusals_go_to(request.path)
        wanted = tier_quantities(request.form)
        if wanted is None:
            raise InvalidInput("配额须为非负整数")
        changes = adjust_round(current_user._get_current_object(), round_, wanted, utcnow())
        flash("已调整：" + (_changed(changes) or "无变化"), "info")
        return redirect(request.path)
    held = remaining_by_tier(round_.id)
    tiers = sorted(round_.campaign.tiers, key=lambda t: (t.category.position, t.face_fen))
    pool, now = ledger.pool_fen(campaign_id), utcnow()
    return render_template(
        "admin/round.html",
        round=round_,
        tiers=tiers,
        held=held,
        pool=pool,
        empty=advisor.empty_round_reason(round_, now, stocked=any(held.values()), pool_fen=pool),
        open=now >= round_.opens_at,
        form=form,
        can_change=current_user.role in MONEY,
    )


@bp.route("/campaigns/<id:campaign_id>/rounds/<id:number>/advice", methods=["GET", "POST"])
@role_required(*READ)
def round_advice(campaign_id: int, number: int):
    """The proposed quotas of a round and why; admins apply them, as proposed or edited."""
    round_ = _round_or_404(campaign_id, number)
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
                with db.session.begin_nested():  # a refusal here changes nothing, and the page is shown again
                    advisor.check_affordable(round_, wanted, now)
                    changes = adjust_round(current_user._get_current_object(), round_, wanted, now)
            except rounds.QuotaRefused as refused:
                flash(refused.flash, "error")
            else:
                flash(f"已按配额建议调整第{round_.number}轮：" + (_changed(changes) or "无变化"), "info")
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
