"""Resident endpoints of API.md. Thin: parse, call a service; the blueprint commits once."""

from __future__ import annotations

import functools

from flask import current_app, make_response, request

from ..auth import paycode, screen, sms_codes, tokens
from ..auth.limits import limited
from ..campaign import survey
from ..campaign.snapshot import active_campaigns, snapshot
from ..core.api import BEARER, optional_bearer
from ..core.api import error_responses as _errors
from ..core.time import isoformat, utcnow
from . import binding, bp, claim, subsidy
from .coupons import ensure_wallet_coupons, merchants_of, my_coupons, paycode_for
from .schemas import (
    BindIn,
    BindOut,
    CampaignOut,
    CampaignQuery,
    CampaignsOut,
    CouponsOut,
    CouponsQuery,
    DrawIn,
    DrawOut,
    DrawsOut,
    GrabIn,
    GrabOut,
    IdentityIn,
    MerchantsOut,
    PaycodeOut,
    ScreenPassIn,
    ScreenPassOut,
    SmsIn,
    SmsOut,
    SubsidiesOut,
    SubsidyAppliedOut,
    SubsidyIn,
    SurveyDoneOut,
    SurveyIn,
    SurveyOut,
    TokenOut,
    WalletPaycodeOut,
    WechatLoginIn,
    WheelOut,
)


@bp.post("/auth/wechat")
@bp.input(WechatLoginIn, arg_name="body")
@bp.output(TokenOut)
@bp.doc(responses=_errors(400, 401, 503))
def wechat_login(body):
    """Exchange the mini-program's wx.login code for a resident token."""
    token, bound = binding.wechat_login(body["code"])
    return {"token": token, "bound": bound}


@bp.post("/auth/sms")
@limited("sms")
@bp.input(SmsIn, arg_name="body")
@bp.output(SmsOut)
@bp.doc(responses=_errors(400, 429, 502))
def send_sms(body):
    """Send a 6-digit binding code to a phone."""
    cooldown = sms_codes.send(body["phone"], body["purpose"], utcnow())
    return {"cooldown_s": cooldown}


@bp.post("/auth/bind")
@limited("bind")
@bp.input(BindIn, arg_name="body")
@bp.output(BindOut)
@bp.doc(security=BEARER, responses=_errors(400, 401, 409))
@optional_bearer
def bind(body):
    """Bind name and phone (proven by the SMS code) to the resident."""
    bearer = tokens.optional_bearer("resident")
    resident = binding.bind(
        bearer,
        body["name"],
        body["phone"],
        body["sms_code"],
        utcnow(),
        address=request.remote_addr,
        device=request.headers.get("X-Device-Id"),
        id_number=body.get("id_number"),
    )
    return {"resident": binding.resident_json(resident), "token": binding.token_for(resident)}


@bp.post("/auth/identity")
@limited("bind")
@bp.input(IdentityIn, arg_name="body")
@bp.output(BindOut)
@bp.doc(security=BEARER, responses=_errors(400, 401, 403, 409))
def identity(body):
    """A bound resident gives name and ID card, for a campaign that asks for it (identity
    id_card): one card binds one resident, once. Answers a fresh token that says so."""
    bearer = tokens.require_bearer("resident")
    resident = binding.identify(bearer, body["name"], body["id_number"])
    return {"resident": binding.resident_json(resident), "token": binding.token_for(resident)}


@bp.get("/campaign")
@bp.input(CampaignQuery, location="query", arg_name="query")
@bp.output(CampaignOut)
@bp.doc(responses=_errors(400, 404))
def campaign(query):
    """The current campaign (or the active one of `code`): kind, categories, tiers with what is
    left, rounds, current round."""
    return claim.campaign_json(claim.current_snapshot(query.get("code")), utcnow())


@bp.get("/campaigns")
@bp.output(CampaignsOut)
@bp.doc(responses=_errors())
def campaigns():
    """Every active campaign a resident can take part in from the page, the bureau's default first
    (an on-site event's is reached through its screen, not listed)."""
    return {"items": list(active_campaigns())}


@bp.get("/draw/<string:category>/wheel")
@bp.input(CampaignQuery, location="query", arg_name="query")
@bp.output(WheelOut)
@bp.doc(responses=_errors(400, 404))
def wheel(category, query):
    """The wheel's segments for a category (of the campaign `code`, if given), and what is left of it this round."""
    return claim.wheel(claim.current_snapshot(query.get("code")), category, utcnow())


@bp.get("/draws")
@bp.input(CampaignQuery, location="query", arg_name="query")
@bp.output(DrawsOut)
@bp.doc(security=BEARER, responses=_errors(400, 401, 404))
def round_draws(query):
    """The categories this resident has already drawn in the open round (of the campaign `code`, if given)."""
    bearer = tokens.require_bearer("resident")
    return claim.round_draws(claim.current_snapshot(query.get("code")), bearer.id, utcnow())


@bp.post("/draw")
@limited("draw")
@bp.input(DrawIn, arg_name="body")
@bp.output(DrawOut)
@bp.doc(security=BEARER, responses=_errors(400, 401, 403, 404, 409))
def draw(body):
    """Spin the wheel of a category once for this round."""
    bearer = tokens.require_bearer("resident")
    segment, coupon = claim.draw(bearer, body["category"], body.get("location"), utcnow(), body.get("campaign"))
    return {"segment_index": segment, "coupon": coupon}


@bp.post("/grab")
@limited("draw")
@bp.input(GrabIn, arg_name="body")
@bp.output(GrabOut)
@bp.doc(security=BEARER, responses=_errors(400, 401, 403, 404, 409))
def grab(body):
    """Grab one coupon of a chosen tier (抢券 campaigns): once per tier (or per round) while stock lasts."""
    bearer = tokens.require_bearer("resident")
    coupon = claim.grab(
        bearer, body["tier_id"], body.get("location"), utcnow(), body.get("campaign"), body.get("screen_pass")
    )
    return {"coupon": coupon}


@bp.post("/screen/pass")
@limited("draw")
@bp.input(ScreenPassIn, arg_name="body")
@bp.output(ScreenPassOut)
@bp.doc(responses=_errors(400, 403, 404))
def screen_pass(body):
    """Exchange the code of an on-site event's big-screen QR (fresh for a minute) for a pass to grab
    its coupons (valid 15 minutes)."""
    snap = claim.current_snapshot(body["campaign"])
    token, expires = screen.exchange(body["screen"], snap.id, utcnow())
    return {"screen_pass": token, "expires_at": isoformat(expires)}


@bp.get("/coupons")
@bp.input(CouponsQuery, location="query", arg_name="query")
@bp.output(CouponsOut)
@bp.doc(security=BEARER, responses=_errors(400, 401))
def coupons(query):
    """The resident's coupons, newest first, optionally by status."""
    bearer = tokens.require_bearer("resident")
    return {"items": my_coupons(bearer.id, query.get("status"), utcnow())}


@bp.get("/categories/<string:category>/merchants")
@bp.input(CampaignQuery, location="query", arg_name="query")
@bp.output(MerchantsOut)
@bp.doc(responses=_errors(400, 404))
def merchants(category, query):
    """The approved merchants that accept coupons of a category (of the campaign `code`, if given)."""
    snap = claim.current_snapshot(query.get("code"))
    items = merchants_of(snap, category)
    return {"category": claim.category_json(snap, category), "items": items}


@bp.get("/coupons/<id:coupon_id>/paycode")
@bp.output(PaycodeOut)
@bp.doc(security=BEARER, responses=_errors(401, 404, 409))
def coupon_paycode(coupon_id):
    """A fresh pay code for one of the resident's unused coupons (valid 60 s)."""
    bearer = tokens.require_bearer("resident")
    now = utcnow()
    token, expires = paycode_for(bearer.id, coupon_id, now)
    return {
        "paycode": token,
        "short_code": paycode.short_code(coupon_id, bearer.id, now),
        "expires_at": isoformat(expires),
    }


def _qr_image(token: str, expires, kind: str):
    """A pay code as a QR image (PNG or SVG), never cached, with when it stops working."""
    body, mimetype = (paycode.png(token), "image/png") if kind == "png" else (paycode.svg(token), "image/svg+xml")
    response = make_response(body)
    response.headers.update(
        {
            "Content-Type": mimetype,
            "Cache-Control": "no-store",
            "X-Paycode-Expires-At": isoformat(expires),
        }
    )
    return response


@bp.get("/coupons/<id:coupon_id>/paycode.<any(png, svg):kind>")
@bp.doc(
    security=BEARER,
    responses={
        200: {"description": "The pay code as a QR image", "content": {"image/png": {}, "image/svg+xml": {}}},
        **_errors(401, 404, 409),
    },
)
def coupon_paycode_image(coupon_id, kind):
    """The pay code as a QR image, PNG or SVG, fresh on every request."""
    bearer = tokens.require_bearer("resident")
    token, expires = paycode_for(bearer.id, coupon_id, utcnow())
    return _qr_image(token, expires, kind)


def _room_for_the_invoice_photo(view):
    """The invoice photo is the API's one upload: its request may be larger than the 64 KB cap
    (set before the form is parsed, on this view only)."""

    @functools.wraps(view)
    def allowed(*args, **kwargs):
        request.max_content_length = current_app.config["INVOICE_IMAGE_MAX_BYTES"] + 64 * 1024
        return view(*args, **kwargs)

    return allowed


@bp.post("/subsidies")
@_room_for_the_invoice_photo
@limited("subsidy")
@bp.input(SubsidyIn, location="form_and_files", arg_name="body")
@bp.output(SubsidyAppliedOut, status_code=201)
@bp.doc(security=BEARER, responses=_errors(400, 401, 403, 404, 409, 413))
def subsidy_apply(body):
    """Apply for a purchase subsidy (multipart form): the vehicle, its registration, the invoice and
    its photo. The subsidy follows the campaign's bracket table; the bureau reviews it."""
    bearer = tokens.require_bearer("resident")
    binding.ensure_bound(bearer)
    now = utcnow()
    application = subsidy.apply(
        bearer.id,
        body.get("campaign"),
        vehicle_kind=body["vehicle_kind"],
        invoice_no=body["invoice_no"],
        invoice_fen=body["invoice_fen"],
        vin=body["vin"],
        plate=body["plate"],
        registered_on=body["registered_on"],
        image=body["invoice_image"].read(current_app.config["INVOICE_IMAGE_MAX_BYTES"] + 1),
        now=now,
    )
    return {"application": subsidy.application_json(application)}


@bp.get("/subsidies")
@bp.output(SubsidiesOut)
@bp.doc(security=BEARER, responses=_errors(401))
def subsidies():
    """The resident's own subsidy applications, newest first, with the review's outcome."""
    bearer = tokens.require_bearer("resident")
    return {"items": [subsidy.application_json(a) for a in subsidy.mine(bearer.id)]}


@bp.get("/wallet/paycode")
@bp.output(WalletPaycodeOut)
@bp.doc(security=BEARER, responses=_errors(401, 403, 409))
def wallet_paycode():
    """One pay code for all the resident's coupons (valid 60 s): the till applies the largest
    coupon that its shop and the spend qualify for."""
    bearer = tokens.require_bearer("resident")
    binding.ensure_bound(bearer)
    now = utcnow()
    ensure_wallet_coupons(bearer.id, now)
    token, expires = paycode.issue_wallet(bearer.id, now)
    return {"paycode": token, "short_code": paycode.wallet_short_code(bearer.id, now), "expires_at": isoformat(expires)}


@bp.get("/wallet/paycode.png")
@bp.doc(
    security=BEARER,
    responses={
        200: {"description": "The wallet pay code as a QR image", "content": {"image/png": {}}},
        **_errors(401, 409),
    },
)
def wallet_paycode_image():
    """The wallet pay code as a QR image, fresh on every request."""
    bearer = tokens.require_bearer("resident")
    binding.ensure_bound(bearer)
    ensure_wallet_coupons(bearer.id, utcnow())
    token, expires = paycode.issue_wallet(bearer.id, utcnow())
    return _qr_image(token, expires, "png")


@bp.get("/survey")
@bp.output(SurveyOut)
@bp.doc(security=BEARER, responses=_errors(401))
def survey_questions():
    """The satisfaction survey's eleven questions, and whether this resident has answered."""
    bearer = tokens.require_bearer("resident")
    return {
        "questions": [q.as_json() for q in survey.QUESTIONS],
        "answered": survey.answered(bearer.id),
        "used": survey.used_a_coupon(bearer.id),
    }


@bp.post("/survey")
@bp.input(SurveyIn, arg_name="body")
@bp.output(SurveyDoneOut, status_code=201)
@bp.doc(security=BEARER, responses=_errors(400, 401, 403, 409))
def survey_answers(body):
    """Answer the satisfaction survey, once per resident: choices are option indexes (from 0);
    `other` is the text of the option "其他" when it is chosen."""
    bearer = tokens.require_bearer("resident")
    binding.ensure_bound(bearer)
    snap = snapshot()
    survey.submit(bearer.id, snap.id if snap else None, body["answers"], utcnow())
    return {"answered": True}
