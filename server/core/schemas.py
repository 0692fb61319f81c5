"""Schemas shared by the resident and merchant APIs, and the error envelope for the document."""

from apiflask import Schema, fields, validators


class CategoryOut(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)


class CouponOut(Schema):
    id = fields.Integer(required=True)
    category = fields.Nested(CategoryOut, required=True)
    face_fen = fields.Integer(required=True)
    threshold_fen = fields.Integer(required=True)
    round = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": ["unused", "used", "expired", "void"]})
    valid_until = fields.String(required=True, metadata={"format": "date-time"})
    claimed_at = fields.String(required=True, metadata={"format": "date-time"})
    merchants = fields.String(metadata={"description": "Path of the merchants that accept it"})
    usable_hours = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": 'When in the day it may be spent, e.g. "09:00-22:00" (null: any time)'},
    )
    void_reason = fields.String(
        allow_none=True,
        metadata={"description": "Why a void coupon is void, for its holder (GET /coupons?status=void)"},
    )


class ErrorDetail(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    detail = fields.Dict(metadata={"description": "INVALID_INPUT: the fields refused and why"})
    # What some refusals add for the page to act on.
    coupon_id = fields.Integer(metadata={"description": "ALREADY_DRAWN: the coupon this draw already won"})
    opens_at = fields.String(metadata={"description": "ROUND_NOT_OPEN: when the next round opens"})
    next_release_at = fields.String(metadata={"description": "STOCK_NOT_RELEASED: when the next batch opens"})
    retry_after_s = fields.Integer(metadata={"description": "SMS_TOO_FREQUENT: seconds to wait before asking again"})


class ErrorOut(Schema):
    error = fields.Nested(ErrorDetail, required=True)


class LocationIn(Schema):
    lat = fields.Float(required=True, validate=validators.Range(-90, 90))
    lng = fields.Float(required=True, validate=validators.Range(-180, 180))
