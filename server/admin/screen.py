"""The on-site event's big screen (年货大集现场大屏): a QR that opens the claim and changes every
SCREEN_ROTATE_S seconds (auth/screen.py), with what is left of each coupon. Shown by the bureau's
staff from a signed-in console, full screen, on the fair's display."""

from __future__ import annotations

from flask import abort, current_app, jsonify, make_response, render_template, request

from ..auth import paycode, screen
from ..campaign.snapshot import phase
from ..core.money import coupon_label
from ..core.time import utcnow
from ..extensions import db
from ..models import Campaign
from ..pool.coupons import remaining_by_tier
from . import bp
from .access import MERCHANTS, role_required


def _event(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or not campaign.screen_qr:
        abort(404)
    return campaign


@bp.get("/campaigns/<id:campaign_id>/screen")
@role_required(*MERCHANTS)
def event_screen(campaign_id: int):
    campaign = _event(campaign_id)
    return render_template(
        "admin/screen.html", campaign=campaign, refresh_s=max(current_app.config["SCREEN_ROTATE_S"] // 3, 1)
    )


@bp.get("/campaigns/<id:campaign_id>/screen.png")
@role_required(*MERCHANTS)
def event_screen_qr(campaign_id: int):
    """The QR of this moment: the resident page with the campaign and the rotating code."""
    campaign = _event(campaign_id)
    code, changes_at = screen.code(campaign.id, utcnow())
    response = make_response(paycode.png(screen.claim_url(request.host_url, campaign.code, code)))
    response.headers.update(
        {"Content-Type": "image/png", "Cache-Control": "no-store", "X-Changes-At": changes_at.isoformat()}
    )
    return response


@bp.get("/campaigns/<id:campaign_id>/screen.json")
@role_required(*MERCHANTS)
def event_screen_figures(campaign_id: int):
    """What is left of each coupon in the open round, for the screen's counters; open or not by the
    rule the console's campaign list reads (campaign.snapshot.phase)."""
    campaign = _event(campaign_id)
    standing = phase(campaign, utcnow())
    left = remaining_by_tier(standing.round.id) if standing.open else {}
    tiers = sorted(campaign.tiers, key=lambda t: -t.face_fen)
    return jsonify(
        open=standing.open,
        tiers=[{"label": coupon_label(t.face_fen, t.threshold_fen), "remaining": left.get(t.id, 0)} for t in tiers],
    )
