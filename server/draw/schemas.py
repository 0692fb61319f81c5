"""Request and response schemas of the resident API (validation and the OpenAPI document)."""

from apiflask import Schema, fields, validators

from ..core.schemas import CategoryOut, CouponOut, LocationIn
from ..pool.coupons import Status


class WechatLoginIn(Schema):
    # wx.login codes are 32 characters; 64 keeps the dev adapter's openid (the code itself) in its column.
    code = fields.String(required=True, validate=validators.Length(1, 64))


class TokenOut(Schema):
    token = fields.String(required=True)
    bound = fields.Boolean(required=True)


class SmsIn(Schema):
    phone = fields.String(required=True, validate=validators.Length(1, 20))
    purpose = fields.String(
        load_default="bind",
        validate=validators.OneOf(["bind", "staff", "apply"]),
        metadata={
            "description": "bind: a resident binding; staff: a shop assistant binding; apply: a merchant's"
            " application (proves its contact phone)"
        },
    )


class SmsOut(Schema):
    cooldown_s = fields.Integer(required=True)


class BindIn(Schema):
    name = fields.String(required=True, validate=validators.Length(1, 40))
    phone = fields.String(required=True, validate=validators.Length(1, 20))
    sms_code = fields.String(required=True, validate=validators.Length(1, 10))
    id_number = fields.String(
        validate=validators.Length(1, 30),
        metadata={"description": "The ID card's 18 characters, where the campaign's identity is id_card; kept only "
                  "as a keyed digest"},
    )  # fmt: skip


class IdentityIn(Schema):
    name = fields.String(required=True, validate=validators.Length(1, 40))
    id_number = fields.String(required=True, validate=validators.Length(1, 30))


class ResidentOut(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    phone_masked = fields.String(required=True)
    id_card_masked = fields.String(
        required=True, allow_none=True, metadata={"description": "110***********123X, or null if none was given"}
    )


class BindOut(Schema):
    resident = fields.Nested(ResidentOut, required=True)
    token = fields.String(required=True, metadata={"description": "A fresh token that says the resident is bound"})


class TierOut(Schema):
    id = fields.Integer(required=True)
    category = fields.Nested(CategoryOut, required=True)
    face_fen = fields.Integer(required=True)
    threshold_fen = fields.Integer(required=True)
    quantity = fields.Integer(required=True)
    remaining = fields.Integer(required=True)
    usable_hours = fields.String(
        required=True, allow_none=True, metadata={"description": "When in the day its coupons may be spent"}
    )


class RoundOut(Schema):
    number = fields.Integer(required=True)
    opens_at = fields.String(required=True)
    closes_at = fields.String(required=True)
    valid_until = fields.String(required=True)


class ReleaseStepOut(Schema):
    seconds = fields.Integer(required=True)
    percent = fields.Integer(required=True)


CAMPAIGN_CODE = fields.String(
    load_default=None,
    validate=validators.Regexp(r"^[a-z][a-z0-9_-]{1,63}$"),
    metadata={"description": "An active campaign's code; without it, the campaign residents see by default"},
)


class CampaignQuery(Schema):
    code = CAMPAIGN_CODE


class CampaignListedOut(Schema):
    code = fields.String(
        required=True, metadata={"description": "What GET /campaign?code= and the page's ?campaign= take"}
    )
    name = fields.String(required=True)
    region = fields.String(required=True)
    kind = fields.String(required=True, validate=validators.OneOf(["wheel", "grab", "subsidy"]))
    is_default = fields.Boolean(
        required=True, metadata={"description": "The bureau's default: what GET /campaign answers without a code"}
    )
    ends_at = fields.String(required=True, allow_none=True)


class CampaignsOut(Schema):
    items = fields.List(fields.Nested(CampaignListedOut), required=True)


class BracketOut(Schema):
    vehicle = fields.String(required=True, metadata={"description": "new_energy, fuel, used or motorcycle"})
    vehicle_name = fields.String(required=True)
    from_fen = fields.Integer(required=True, metadata={"description": "Invoice amount from (inclusive)"})
    to_fen = fields.Integer(required=True, allow_none=True, metadata={"description": "Up to (exclusive); null: above"})
    span = fields.String(required=True, metadata={"description": "The bracket in words, e.g. 10万（含）—20万以下"})
    subsidy_fen = fields.Integer(required=True)


class CampaignOut(Schema):
    id = fields.Integer(required=True)
    code = fields.String(required=True)
    name = fields.String(required=True)
    region = fields.String(required=True)
    kind = fields.String(
        required=True,
        validate=validators.OneOf(["wheel", "grab", "subsidy"]),
        metadata={"description": "wheel: POST /draw per category; grab: POST /grab a chosen tier; subsidy: apply"},
    )
    grab_limit = fields.String(
        required=True, metadata={"description": "A grab's rule: `tier` once per tier per round, `round` once per round"}
    )
    screen_qr = fields.Boolean(
        required=True, metadata={"description": "An on-site event: grabs need a pass from the big screen's QR"}
    )
    wallet = fields.Boolean(
        required=True,
        metadata={"description": "Its coupons may be paid with the wallet pay code (GET /wallet/paycode)"},
    )
    draw_strategy = fields.String(required=True)
    geofence_required = fields.Boolean(required=True)
    identity = fields.String(
        required=True,
        metadata={"description": "phone: name and phone by SMS; id_card: and the ID card (POST /auth/bind or "
                  "/auth/identity), one card to one resident"},
    )  # fmt: skip
    categories = fields.List(fields.Nested(CategoryOut), required=True)
    tiers = fields.List(fields.Nested(TierOut), required=True)
    rounds = fields.List(fields.Nested(RoundOut), required=True)
    current_round = fields.Integer(required=True, allow_none=True)
    release = fields.List(
        fields.Nested(ReleaseStepOut),
        required=True,
        metadata={"description": "Staged release: in a round's first `seconds`, at most `percent`% of each category"},
    )
    subsidy_brackets = fields.List(
        fields.Nested(BracketOut), required=True, metadata={"description": "A purchase subsidy's bracket table"}
    )
    ends_at = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "format": "date-time",
            "description": "The campaign's end: nothing is drawn, grabbed or redeemed after it",
        },
    )


class SegmentOut(Schema):
    index = fields.Integer(required=True)
    face_fen = fields.Integer(required=True)
    label = fields.String(required=True)


class WheelOut(Schema):
    category = fields.Nested(CategoryOut, required=True)
    round = fields.Integer(required=True, allow_none=True)
    segments = fields.List(fields.Nested(SegmentOut), required=True)
    remaining = fields.Integer(required=True)


class DrawIn(Schema):
    category = fields.String(required=True, validate=validators.Length(1, 32))
    location = fields.Nested(LocationIn, allow_none=True, load_default=None)
    campaign = CAMPAIGN_CODE


class GrabIn(Schema):
    tier_id = fields.Integer(required=True, validate=validators.Range(1, 2**31 - 1))
    location = fields.Nested(LocationIn, allow_none=True, load_default=None)
    campaign = CAMPAIGN_CODE
    screen_pass = fields.String(
        load_default=None,
        validate=validators.Length(1, 200),
        metadata={"description": "An on-site event's pass, from POST /screen/pass"},
    )


class GrabOut(Schema):
    coupon = fields.Nested(CouponOut, required=True)


class ScreenPassIn(Schema):
    campaign = fields.String(required=True, validate=validators.Regexp(r"^[a-z][a-z0-9_-]{1,63}$"))
    screen = fields.String(
        required=True, validate=validators.Length(1, 60), metadata={"description": "The code in the screen's QR"}
    )


class ScreenPassOut(Schema):
    screen_pass = fields.String(required=True)
    expires_at = fields.String(required=True, metadata={"format": "date-time"})


class DrawOut(Schema):
    segment_index = fields.Integer(required=True)
    coupon = fields.Nested(CouponOut, required=True, allow_none=True)


class CouponsQuery(Schema):
    status = fields.String(
        validate=validators.OneOf([Status.UNUSED, Status.USED, Status.EXPIRED, Status.VOID]),
        load_default=None,
        metadata={"description": "unused, used, expired, or void (revoked by the bureau, or refunded under "
                  "the return policy: each with its void_reason)"},
    )  # fmt: skip


class DrawnOut(Schema):
    category = fields.String(required=True, metadata={"description": "The category's code"})
    outcome = fields.String(required=True, validate=validators.OneOf(["won", "thanks"]))


class DrawsOut(Schema):
    round = fields.Integer(required=True, allow_none=True, metadata={"description": "The open round (null: none)"})
    drawn = fields.List(
        fields.Nested(DrawnOut), required=True, metadata={"description": "The categories drawn this round"}
    )


class CouponsOut(Schema):
    items = fields.List(fields.Nested(CouponOut), required=True)


class MerchantOut(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    address = fields.String(required=True)


class MerchantsOut(Schema):
    category = fields.Nested(CategoryOut, required=True)
    items = fields.List(fields.Nested(MerchantOut), required=True)


class PaycodeOut(Schema):
    paycode = fields.String(required=True, metadata={"description": "The token the QR code carries"})
    short_code = fields.String(
        required=True,
        metadata={"description": "The same pay code to type by hand at the till: coupon number and 8 digits"},
    )
    expires_at = fields.String(required=True, metadata={"format": "date-time"})


class SubsidyIn(Schema):
    campaign = CAMPAIGN_CODE
    vehicle_kind = fields.String(required=True, validate=validators.OneOf(["new_energy", "fuel", "used", "motorcycle"]))
    invoice_no = fields.String(required=True, validate=validators.Length(1, 60))
    invoice_fen = fields.Integer(required=True, validate=validators.Range(1, 10**11))
    vin = fields.String(required=True, validate=validators.Length(1, 30), metadata={"description": "车辆识别代号"})
    plate = fields.String(required=True, validate=validators.Length(1, 20), metadata={"description": "号牌号码"})
    registered_on = fields.Date(required=True, metadata={"description": "上户登记日期"})
    invoice_image = fields.File(
        required=True, metadata={"description": "The invoice photo: JPEG, PNG or WEBP, 5 MB at most"}
    )


class SubsidyOut(Schema):
    id = fields.Integer(required=True)
    vehicle_kind = fields.String(required=True)
    vehicle_name = fields.String(required=True)
    invoice_no = fields.String(required=True)
    invoice_fen = fields.Integer(required=True)
    vin = fields.String(required=True)
    plate = fields.String(required=True)
    registered_on = fields.String(required=True, metadata={"format": "date"})
    subsidy_fen = fields.Integer(required=True, metadata={"description": "From the bracket table at application"})
    status = fields.String(required=True, metadata={"description": "pending, approved or rejected"})
    status_name = fields.String(required=True)
    review_note = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True)
    reviewed_at = fields.String(required=True, allow_none=True)


class SubsidyAppliedOut(Schema):
    application = fields.Nested(SubsidyOut, required=True)


class SubsidiesOut(Schema):
    items = fields.List(fields.Nested(SubsidyOut), required=True)


class WalletPaycodeOut(Schema):
    paycode = fields.String(required=True, metadata={"description": "The token the QR code carries"})
    short_code = fields.String(
        required=True,
        metadata={"description": 'To type at the till when the camera fails: "W", the resident\'s number and 8 '
                  "digits; it pays once in its minute"},
    )  # fmt: skip
    expires_at = fields.String(required=True, metadata={"format": "date-time"})


class SurveyAnswerIn(Schema):
    question = fields.Integer(required=True, validate=validators.Range(1, 99))
    choices = fields.List(fields.Integer(validate=validators.Range(0, 99)), required=True,
                          validate=validators.Length(0, 20))  # fmt: skip
    other = fields.String(load_default=None, allow_none=True, validate=validators.Length(0, 200))


class SurveyIn(Schema):
    # Empty is a survey not answered: the refusal names the first question missing, in words.
    answers = fields.List(fields.Nested(SurveyAnswerIn), required=True, validate=validators.Length(0, 20))


class SurveyConditionOut(Schema):
    question = fields.Integer(required=True)
    choice = fields.Integer(required=True, metadata={"description": "The option's index, from 0"})


class SurveyQuestionOut(Schema):
    number = fields.Integer(required=True)
    text = fields.String(required=True)
    options = fields.List(fields.String(), required=True)
    many = fields.Boolean(required=True)
    optional = fields.Boolean(required=True)
    when = fields.Nested(
        SurveyConditionOut,
        required=True,
        allow_none=True,
        metadata={"description": "Asked only when that question was answered with that option (null: always)"},
    )


class SurveyOut(Schema):
    questions = fields.List(fields.Nested(SurveyQuestionOut), required=True)
    answered = fields.Boolean(required=True, metadata={"description": "Whether this resident has answered"})
    used = fields.Boolean(
        required=True, metadata={"description": "Whether this resident has used a coupon (the page's answer to 6)"}
    )


class SurveyDoneOut(Schema):
    answered = fields.Boolean(required=True)
