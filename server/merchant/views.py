"""Merchant endpoints of API.md. Thin: parse, call a service, commit once."""

from __future__ import annotations

from ..extensions import db
from ..timeutil import utcnow
from . import bp, services
from .schemas import ApplyIn, ApplyOut, BindIn, BindOut


@bp.post("/apply")
@bp.input(ApplyIn, arg_name="body")
@bp.output(ApplyOut, status_code=201)
@bp.doc(responses={400: "Invalid application", 404: "No campaign", 409: "Already applied"})
def apply(body):
    """A merchant applies to take part (报名), accepting the integrity commitment."""
    merchant = services.apply(body, utcnow())
    db.session.commit()
    return {"merchant": services.merchant_json(merchant)}


@bp.post("/bind")
@bp.input(BindIn, arg_name="body")
@bp.output(BindOut)
@bp.doc(responses={400: "Bad code or SMS code", 403: "Merchant suspended", 409: "Phone already staff"})
def bind(body):
    """A shop assistant binds their phone to the merchant with its one-time binding code."""
    token, merchant = services.bind_staff(body["binding_code"], body["name"], body["phone"], body["sms_code"], utcnow())
    db.session.commit()
    return {"token": token, "merchant": services.merchant_json(merchant)}
