"""Request and response schemas of the merchant API."""

from datetime import date

from apiflask import Schema, fields, validators

from ..core.schemas import CategoryOut, LocationIn

DAYS = validators.Range(date(2000, 1, 1), date(2099, 12, 31), error="日期应在2000年至2099年之间")


class ApplyIn(Schema):
    name = fields.String(required=True, validate=validators.Length(2, 100))
    credit_code = fields.String(required=True, validate=validators.Length(18, 18))
    address = fields.String(required=True, validate=validators.Length(2, 200))
    contact_name = fields.String(required=True, validate=validators.Length(2, 40))
    contact_phone = fields.String(required=True, validate=validators.Length(1, 20))
    sms_code = fields.String(
        required=True,
        validate=validators.Length(1, 10),
        metadata={"description": "The code sent to contact_phone (POST /auth/sms, purpose apply)"},
    )
    categories = fields.List(
        fields.String(validate=validators.Length(1, 32)), required=True, validate=validators.Length(1, 20)
    )
    accept_commitment = fields.Boolean(required=True, metadata={"description": "诚信承诺书 accepted"})
    bank_payee = fields.String(
        load_default=None, validate=validators.Length(0, 100), metadata={"description": "Settlement account's 户名"}
    )
    bank_name = fields.String(
        load_default=None, validate=validators.Length(0, 100), metadata={"description": "开户银行 (bank and branch)"}
    )
    bank_account = fields.String(
        load_default=None,
        validate=validators.Length(0, 40),
        metadata={"description": "Account number, 8-30 digits; a UnionPay card's (62…) Luhn check digit is checked."
                  " Given with payee and bank, or not at all; a merchant's account is changed only by the bureau"},
    )  # fmt: skip
    location = fields.Nested(
        LocationIn, load_default=None, allow_none=True, metadata={"description": "The shop's position, if known"}
    )
    campaign = fields.String(
        load_default=None,
        validate=validators.Regexp(r"^[a-z][a-z0-9_-]{1,63}$"),
        metadata={"description": "The active campaign whose categories are meant (e.g. an on-site event's); default"
                  " the campaign residents see"},
    )  # fmt: skip


class CampaignNamedOut(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)


class EnrolmentOut(Schema):
    campaign = fields.Nested(CampaignNamedOut, required=True)
    status = fields.String(
        required=True, metadata={"description": "applied, approved, rejected, suspended, blacklisted"}
    )
    status_name = fields.String(required=True)
    categories = fields.List(fields.Nested(CategoryOut), required=True)


class EnrolledMerchantOut(EnrolmentOut):
    """The enrolment applied for (or the binding code's), and every enrolment of the merchant: one
    legal entity (credit code), one enrolment per campaign."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    enrolments = fields.List(fields.Nested(EnrolmentOut), required=True)


class ApplyOut(Schema):
    merchant = fields.Nested(EnrolledMerchantOut, required=True)


class BindIn(Schema):
    binding_code = fields.String(required=True, validate=validators.Length(1, 20))
    name = fields.String(required=True, validate=validators.Length(1, 40))
    phone = fields.String(required=True, validate=validators.Length(1, 20))
    sms_code = fields.String(required=True, validate=validators.Length(1, 10))


class BindOut(Schema):
    token = fields.String(required=True)
    merchant = fields.Nested(EnrolledMerchantOut, required=True)


class ScanIn(Schema):
    paycode = fields.String(required=True, validate=validators.Length(1, 300))


class SpendCategoryOut(Schema):
    name = fields.String(required=True)
    excluded = fields.Boolean(required=True, metadata={"description": "A coupon may not pay for it (押金、充值…)"})


class TillCouponOut(Schema):
    id = fields.Integer(required=True)
    category = fields.Nested(CategoryOut, required=True)
    face_fen = fields.Integer(required=True)
    threshold_fen = fields.Integer(required=True)
    valid_until = fields.String(required=True)
    usable_hours = fields.String(
        required=True, allow_none=True, metadata={"description": 'When in the day it may be spent, e.g. "09:00-22:00"'}
    )
    spend_categories = fields.List(
        fields.Nested(SpendCategoryOut),
        required=True,
        allow_none=True,
        metadata={"description": "What the spend may be recorded as (excluded: not payable with it); null: any words"},
    )
    short_sale = fields.String(
        required=True,
        validate=validators.OneOf(("refuse", "settle")),
        metadata={
            "description": "A spend below the face (不找零): refused, or settled at the spend with the rest "
            "of the face back to the pool"
        },
    )


class RefusalOut(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)


class ScanOut(Schema):
    coupon = fields.Nested(
        TillCouponOut,
        required=True,
        allow_none=True,
        metadata={"description": "The coupon; for a wallet pay code, the largest this shop takes (null: none)"},
    )
    accepted = fields.Boolean(required=True)
    refusal = fields.Nested(RefusalOut, allow_none=True, required=True)
    wallet = fields.List(
        fields.Nested(TillCouponOut),
        load_default=None,
        metadata={
            "description": "A wallet pay code: the resident's coupons this shop takes, largest first; at"
            " redemption the server applies the largest that the spend reaches"
        },
    )


class RedeemIn(Schema):
    paycode = fields.String(required=True, validate=validators.Length(1, 300))
    spend_fen = fields.Integer(required=True, strict=True, validate=validators.Range(1, 100_000_000))
    spend_category = fields.String(required=True, validate=validators.Length(1, 40))
    note = fields.String(load_default=None, allow_none=True, validate=validators.Length(0, 200))
    location = fields.Nested(
        LocationIn,
        load_default=None,
        allow_none=True,
        metadata={"description": "Where the till's phone is, if it may say; for the bureau's risk flags"},
    )


class RedemptionOut(Schema):
    id = fields.Integer(required=True)
    coupon_id = fields.Integer(required=True)
    category = fields.Nested(CategoryOut, required=True)
    face_fen = fields.Integer(required=True)
    threshold_fen = fields.Integer(required=True)
    spend_fen = fields.Integer(required=True)
    paid_fen = fields.Integer(
        required=True, metadata={"description": "What the coupon paid: its face, at most the spend"}
    )
    refunded_spend_fen = fields.Integer(required=True, metadata={"description": "Of the spend, refunded so far"})
    returned_fen = fields.Integer(
        required=True,
        metadata={"description": "The coupon's share of the refunds returned to the pool (policy return)"},
    )
    withheld_fen = fields.Integer(
        required=True, metadata={"description": "The coupon's share of the refunds withheld from the shop (forfeit)"}
    )
    owed_fen = fields.Integer(required=True, metadata={"description": "What the shop is owed: paid less the shares"})
    spend_category = fields.String(required=True)
    note = fields.String(allow_none=True)
    created_at = fields.String(required=True)
    revoked_at = fields.String(allow_none=True)
    refunded_at = fields.String(allow_none=True)


class RedeemOut(Schema):
    redemption = fields.Nested(RedemptionOut, required=True)


class UnboundOut(Schema):
    unbound = fields.Boolean(required=True)
    name = fields.String(required=True, metadata={"description": "The assistant unbound"})


class ReasonIn(Schema):
    reason = fields.String(required=True, validate=validators.Length(1, 200))


class RefundIn(ReasonIn):
    spend_fen = fields.Integer(
        load_default=None,
        validate=validators.Range(min=1),
        metadata={"description": "The part of the sale refunded, in fen; omitted: all of it not yet refunded"},
    )


class RedemptionsQuery(Schema):
    # Bounded: a day near year 1 or 9999 has no UTC instant for its local midnight.
    start = fields.Date(
        load_default=None, validate=DAYS, metadata={"description": "First local day, inclusive (2000-2099)"}
    )
    end = fields.Date(
        load_default=None, validate=DAYS, metadata={"description": "Last local day, inclusive (2000-2099)"}
    )
    page = fields.Integer(load_default=1, validate=validators.Range(1, 100000))
    per_page = fields.Integer(load_default=20, validate=validators.Range(1, 100))


class RedemptionsOut(Schema):
    items = fields.List(fields.Nested(RedemptionOut), required=True)
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)


class SettlementDayOut(Schema):
    date = fields.String(required=True)
    count = fields.Integer(required=True)
    owed_fen = fields.Integer(required=True)


class SettlementCampaignOut(Schema):
    campaign = fields.Nested(CampaignNamedOut, required=True)
    count = fields.Integer(required=True)
    owed_fen = fields.Integer(required=True)


class SettlementBatchOut(Schema):
    campaign = fields.Nested(CampaignNamedOut, required=True)
    number = fields.Integer(required=True, metadata={"description": "The batch's number in its campaign (第N批)"})
    period = fields.String(required=True, metadata={"description": "The period as the bureau names it"})
    state = fields.String(
        required=True,
        validate=validators.OneOf(("draft", "audited", "approved", "paid")),
        metadata={"description": "draft (under audit), audited, approved (to be paid), paid"},
    )
    state_name = fields.String(required=True)
    sales = fields.Integer(required=True, metadata={"description": "Redemptions frozen into it"})
    amount_fen = fields.Integer(required=True, metadata={"description": "Payable to the merchant by this batch"})
    deducted_fen = fields.Integer(
        required=True,
        metadata={"description": "Taken off: audit exceptions, refunds and revokes since earlier batches, a "
                  "shortfall carried"},
    )  # fmt: skip
    paid_fen = fields.Integer(required=True)
    withheld_fen = fields.Integer(required=True, metadata={"description": "Not paid while suspended or blacklisted"})
    clawback_fen = fields.Integer(required=True, metadata={"description": "Owed back to the bureau (追回)"})
    paid_on = fields.String(allow_none=True, required=True, metadata={"description": "Last payment's date"})
    references = fields.List(fields.String(), required=True, metadata={"description": "Bank references of payments"})


class SettlementOut(Schema):
    payable_fen = fields.Integer(
        required=True, metadata={"description": "Frozen into settlement batches and not yet paid nor withheld"}
    )
    paid_fen = fields.Integer(required=True, metadata={"description": "Paid by the bureau, every batch"})
    withheld_fen = fields.Integer(required=True, metadata={"description": "Withheld while suspended or blacklisted"})
    clawback_fen = fields.Integer(required=True, metadata={"description": "Owed back and not yet recovered"})
    batches = fields.List(fields.Nested(SettlementBatchOut), required=True, metadata={"description": "Newest first"})
    days = fields.List(fields.Nested(SettlementDayOut), required=True)
    campaigns = fields.List(
        fields.Nested(SettlementCampaignOut),
        required=True,
        metadata={"description": "The same, per campaign the shop took coupons of (each settled on its own)"},
    )
    count = fields.Integer(required=True)
    owed_fen = fields.Integer(required=True)
    today = fields.Nested(SettlementDayOut, required=True, metadata={"description": "Today, by the server's clock"})
