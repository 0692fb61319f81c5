"""Merchant endpoints of API.md. Thin: parse, call a service; the blueprint commits once."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, request

from ..auth import tokens
from ..auth.limits import limited
from ..core import metrics
from ..core.api import BEARER
from ..core.errors import InvalidInput
from ..core.time import local_midnight, utcnow
from ..pool.settlement import merchant_view as settlement_view
from . import bp, enrolment, redemption
from .schemas import (
    ApplyIn,
    ApplyOut,
    BindIn,
    BindOut,
    ReasonIn,
    RedeemIn,
    RedeemOut,
    RedemptionsOut,
    RedemptionsQuery,
    RefundIn,
    ScanIn,
    ScanOut,
    SettlementOut,
    UnboundOut,
)
from .settlement import owed


@bp.post("/apply")
@limited("apply")
@bp.input(ApplyIn, arg_name="body")
@bp.output(ApplyOut, status_code=201)
@bp.doc(responses={400: "Invalid application or SMS code", 404: "No campaign", 409: "Already applied", 429: "Too many"})
def apply(body):
    """A merchant applies to take part (报名), accepting the integrity commitment."""
    enrolled = enrolment.apply(body, utcnow())
    return {"merchant": enrolment.merchant_json(enrolled)}


@bp.post("/bind")
@limited("staff_bind")
@bp.input(BindIn, arg_name="body")
@bp.output(BindOut)
@bp.doc(responses={400: "Bad code or SMS code", 403: "Merchant suspended", 409: "Phone already staff"})
def bind(body):
    """A shop assistant binds their phone to the merchant with its one-time binding code."""
    token, enrolled = enrolment.bind_staff(
        body["binding_code"], body["name"], body["phone"], body["sms_code"], utcnow()
    )
    return {"token": token, "merchant": enrolment.merchant_json(enrolled)}


@bp.post("/scan")
@limited("scan")
@bp.input(ScanIn, arg_name="body")
@bp.output(ScanOut)
@bp.doc(security=BEARER, responses={400: "Stale or unreadable pay code", 401: "No staff token", 404: "No coupon"})
def scan(body):
    """What the till shows for a scanned pay code, and whether this shop may take it."""
    till = redemption.till(tokens.require_bearer("staff"))
    return redemption.scan(till, body["paycode"], utcnow())


@bp.post("/redeem")
@limited("redeem")
@bp.input(RedeemIn, arg_name="body")
@bp.output(RedeemOut)
@bp.doc(
    security=BEARER,
    responses={400: "Stale pay code", 401: "No staff token", 403: "Not allowed", 409: "Used, expired, wrong category"},
)
def redeem(body):
    """Spend the coupon (Idempotency-Key header: a retried submission records once)."""
    metrics.outcome(metrics.REDEMPTIONS, "ok")
    till = redemption.till(tokens.require_bearer("staff"))
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > 64:
        raise InvalidInput("Idempotency-Key 过长")
    done = redemption.redeem(
        till, body["paycode"], body["spend_fen"], body["spend_category"], body["note"], key, utcnow(), body["location"]
    )
    return {"redemption": redemption.redemption_json(done)}


@bp.post("/redemptions/<id:redemption_id>/revoke")
@bp.input(ReasonIn, arg_name="body")
@bp.output(RedeemOut)
@bp.doc(security=BEARER, responses={401: "No staff token", 403: "Window passed", 404: "Not this shop's", 409: "Done"})
def revoke(redemption_id, body):
    """Undo a mistaken redemption within the window (撤回); the coupon can be used again."""
    till = redemption.till(tokens.require_bearer("staff"))
    window = current_app.config["REVOKE_WINDOW_S"]
    done = redemption.revoke(till, redemption_id, body["reason"], utcnow(), window)
    return {"redemption": redemption.redemption_json(done)}


@bp.post("/redemptions/<id:redemption_id>/refund")
@bp.input(RefundIn, arg_name="body")
@bp.output(RedeemOut)
@bp.doc(security=BEARER, responses={401: "No staff token", 404: "Not this shop's", 409: "Done"})
def refund(redemption_id, body):
    """Goods returned (退货), all of the sale or `spend_fen` of it: the coupon's proportional share is
    returned to the pool or withheld from the shop, by the campaign's refund policy."""
    till = redemption.till(tokens.require_bearer("staff"))
    done = redemption.refund(till, redemption_id, body["reason"], utcnow(), body["spend_fen"])
    return {"redemption": redemption.redemption_json(done)}


@bp.post("/staff/unbind")
@bp.output(UnboundOut)
@bp.doc(security=BEARER, responses={401: "No staff token"})
def unbind():
    """Unbind this phone from the shop (解绑本机): the staff token stops working at once; binding
    again takes a new binding code from the bureau."""
    till = redemption.till(tokens.require_bearer("staff"))
    staff = enrolment.unbind_self(till.staff_id, utcnow())
    return {"unbound": True, "name": staff.name}


@bp.get("/redemptions")
@bp.input(RedemptionsQuery, location="query", arg_name="query")
@bp.output(RedemptionsOut)
@bp.doc(security=BEARER, responses={400: "Bad filter", 401: "No staff token"})
def redemptions(query):
    """The merchant's own redemptions, newest first, by local date range, paginated."""
    till = redemption.till(tokens.require_bearer("staff"))
    start = local_midnight(query["start"]) if query["start"] else None
    end = local_midnight(query["end"] + timedelta(days=1)) if query["end"] else None
    items, total = redemption.own_redemptions(till, start, end, query["page"], query["per_page"])
    return {
        "items": [redemption.redemption_json(r) for r in items],
        "total": total,
        "page": query["page"],
        "per_page": query["per_page"],
    }


@bp.get("/settlement")
@bp.output(SettlementOut)
@bp.doc(security=BEARER, responses={401: "No staff token"})
def settlement():
    """What the merchant is owed: what the coupons of its valid redemptions paid, per local day and
    in total; and its settlement batches: payable, paid, withheld, clawed back."""
    till = redemption.till(tokens.require_bearer("staff"))
    return owed(till, utcnow()) | settlement_view(till.merchant_id)
