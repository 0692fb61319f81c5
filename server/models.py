"""The campaign model of SPEC section 2, and the people who take part in it.

Money is integer fen. Every invariant the database can hold itself is a constraint here:
the draw relies on them, not on Python-side checks.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .core.time import UTCDateTime, utcnow
from .extensions import db

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Campaign(db.Model):
    __tablename__ = "campaigns"
    __table_args__ = (
        sa.CheckConstraint("budget_fen >= 0", name="budget_not_negative"),
        sa.CheckConstraint("draw_strategy IN ('weighted', 'fixed_odds')", name="draw_strategy"),
        sa.CheckConstraint("refund_policy IN ('return', 'forfeit')", name="refund_policy"),
        sa.CheckConstraint("short_sale IN ('refuse', 'settle')", name="short_sale"),
        sa.CheckConstraint(
            "(validity_kind = 'round_deadline' AND validity_days IS NULL)"
            " OR (validity_kind = 'days_from_claim' AND validity_days > 0)",
            name="validity_rule",
        ),
        sa.CheckConstraint("thanks_weight >= 0", name="thanks_weight"),
        sa.CheckConstraint("status IN ('draft', 'active', 'ended')", name="status"),
        sa.CheckConstraint("rollover_policy IN ('same_tiers', 'mix', 'none')", name="rollover_policy"),
        sa.CheckConstraint("leftover_after_days >= 0", name="leftover_after_days"),
        sa.CheckConstraint("kind IN ('wheel', 'grab', 'subsidy')", name="kind"),
        sa.CheckConstraint("grab_limit IN ('tier', 'round')", name="grab_limit"),
        sa.CheckConstraint("identity IN ('phone', 'id_card')", name="identity"),
        # The bureau's default campaign: the one residents see without naming one. At most one.
        sa.Index(
            "uq_campaigns_default",
            "is_default",
            unique=True,
            postgresql_where=sa.text("is_default"),
            sqlite_where=sa.text("is_default"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    region: Mapped[str] = mapped_column(sa.String(100))
    budget_fen: Mapped[int] = mapped_column(sa.BigInteger)
    timezone: Mapped[str] = mapped_column(sa.String(64), default="Asia/Shanghai")
    draw_strategy: Mapped[str] = mapped_column(sa.String(16), default="weighted")
    # Weight of the "thanks for taking part" outcome under fixed odds (tiers carry theirs).
    thanks_weight: Mapped[int] = mapped_column(default=0)
    # Threshold rule: spend >= multiple x face, unless a tier sets an explicit 满X减Y.
    threshold_multiple: Mapped[Decimal | None] = mapped_column(sa.Numeric(6, 2))
    min_leverage: Mapped[Decimal | None] = mapped_column(sa.Numeric(6, 2))
    validity_kind: Mapped[str] = mapped_column(sa.String(20), default="round_deadline")
    validity_days: Mapped[int | None]
    refund_policy: Mapped[str] = mapped_column(sa.String(10), default="return")
    # A spend below the coupon's face (不得找零): "refuse" it, or "settle" the coupon at the spend,
    # the rest of its face back to the pool. Never settled above the spend.
    short_sale: Mapped[str] = mapped_column(sa.String(8), default="refuse", server_default="refuse")
    # {"kind": "circle", "lat", "lng", "radius_m"} or {"kind": "polygon", "points": [[lat, lng], ...]}
    geofence: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    # What a round's returned value becomes in the next round: the same tiers in proportion, or
    # a chosen mix ([{"tier_id", "weight"}, ...]), or nothing ("none": each period has its own
    # allocation and what it leaves stays in the pool for the end, Geermu 每期发放15万元).
    rollover_policy: Mapped[str] = mapped_column(sa.String(12), default="same_tiers")
    rollover_mix: Mapped[list[dict[str, int]] | None] = mapped_column(sa.JSON)
    # Staged release: [{"seconds": 10, "percent": 50}, ...] -- in a round's first `seconds`, at
    # most `percent`% of each category's stock can be drawn. None: all of it from the start.
    release_schedule: Mapped[list[dict[str, int]] | None] = mapped_column(sa.JSON)
    # SPEC section 8: "wheel" (a spin per category and round), "grab" (抢券: a chosen tier taken
    # at the release time, once per tier -- or once per round, `grab_limit` -- while stock
    # lasts), "subsidy" (购车补贴: applications reviewed by the bureau, paid by bracket).
    kind: Mapped[str] = mapped_column(sa.String(10), default="wheel", server_default="wheel")
    grab_limit: Mapped[str] = mapped_column(sa.String(8), default="tier", server_default="tier")
    # An on-site event (年货大集): claims open only through the rotating QR on the big screen.
    screen_qr: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Youhao's wallet pay code (钱包付款码): one code for the resident's coupons of this campaign,
    # the till applying the best; a campaign without it is paid coupon by coupon.
    wallet: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Purchase subsidies: [{"vehicle": "new_energy", "from_fen": 3000000, "to_fen": 6000000,
    # "subsidy_fen": 80000}, ...]; `to_fen` is exclusive and None for "and above".
    subsidy_brackets: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON)
    # When the bureau published the results on the campaign's public page (None: not yet).
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The campaign's end (Huating: 截止3月31日24时): nothing is drawn, grabbed or redeemed after it,
    # and no coupon is valid past it (None: the end of its last round).
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When in the day coupons may be spent, "09:00-22:00" local (Youhao: 每日9:00-22:00); None: any
    # time. A tier may set its own (Tier.usage_hours).
    usage_hours: Mapped[str | None] = mapped_column(sa.String(11))
    # Who a resident must be to take part: "phone" (name + phone by SMS) or "id_card" (and an ID
    # card, one card to one resident: Youhao 一个用户 = 手机号 + 身份证 + 设备).
    identity: Mapped[str] = mapped_column(sa.String(8), default="phone", server_default="phone")
    # What the till may record a spend as, per coupon category ("*": every category), some marked
    # excluded (Geermu: 不得用于交付定金、充值、预存): {"*": [{"name": "餐饮", "excluded": false}, ...]}.
    # None: any words the till types.
    spend_categories: Mapped[dict[str, list[dict[str, Any]]] | None] = mapped_column(sa.JSON)
    # What the pool holds after the campaign: when it moves (days after the last deadline; Geermu:
    # 截止后两周) and where -- the treasury, or the campaign of this code (Qian'an 二: 结余资金可用于
    # 下一期活动), as ledger moves (pool.rounds.return_leftover).
    leftover_after_days: Mapped[int] = mapped_column(default=0, server_default="0")
    leftover_to: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(10), default="active")
    # Chosen by the bureau in the console (the first campaign imported until then); an import
    # never changes it (campaign.snapshot.active_campaign).
    is_default: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    categories: Mapped[list[Category]] = relationship(
        back_populates="campaign", order_by="Category.position", cascade="all, delete-orphan"
    )
    tiers: Mapped[list[Tier]] = relationship(back_populates="campaign", cascade="all, delete-orphan")
    rounds: Mapped[list[Round]] = relationship(
        back_populates="campaign", order_by="Round.number", cascade="all, delete-orphan"
    )


class Category(db.Model):
    __tablename__ = "categories"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(sa.String(32))
    name: Mapped[str] = mapped_column(sa.String(32))
    position: Mapped[int] = mapped_column(default=0)

    campaign: Mapped[Campaign] = relationship(back_populates="categories")


class Tier(db.Model):
    __tablename__ = "tiers"
    __table_args__ = (
        sa.UniqueConstraint("category_id", "face_fen", "threshold_fen"),
        sa.CheckConstraint("face_fen > 0", name="face_positive"),
        sa.CheckConstraint("threshold_fen >= 0", name="threshold_not_negative"),
        sa.CheckConstraint("odds_weight IS NULL OR odds_weight >= 0", name="odds_weight"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    category_id: Mapped[int] = mapped_column(sa.ForeignKey("categories.id", ondelete="CASCADE"))
    face_fen: Mapped[int]
    # The effective threshold, always stored; `threshold_explicit` says it is the tier's own 满X减Y.
    threshold_fen: Mapped[int]
    threshold_explicit: Mapped[bool] = mapped_column(default=False)
    odds_weight: Mapped[int | None]
    usage_hours: Mapped[str | None] = mapped_column(sa.String(11))  # instead of the campaign's

    campaign: Mapped[Campaign] = relationship(back_populates="tiers")
    category: Mapped[Category] = relationship()


class Round(db.Model):
    __tablename__ = "rounds"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "number"),
        sa.CheckConstraint("opens_at < closes_at", name="opens_before_close"),
        sa.CheckConstraint("closes_at <= valid_until", name="closes_before_deadline"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    number: Mapped[int]
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set by the scheduler's jobs: the unclaimed stock went back to the pool; the pool's
    # returned value became this round's extra stock.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rolled_over_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    campaign: Mapped[Campaign] = relationship(back_populates="rounds")
    allocations: Mapped[list[Allocation]] = relationship(back_populates="round", cascade="all, delete-orphan")


class Allocation(db.Model):
    """How many coupons of a tier a round puts on the wheel."""

    __tablename__ = "allocations"
    __table_args__ = (
        sa.UniqueConstraint("round_id", "tier_id"),
        sa.CheckConstraint("quantity >= 0", name="quantity_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id", ondelete="CASCADE"))
    tier_id: Mapped[int] = mapped_column(sa.ForeignKey("tiers.id", ondelete="CASCADE"))
    quantity: Mapped[int]

    round: Mapped[Round] = relationship(back_populates="allocations")
    tier: Mapped[Tier] = relationship()


class Resident(db.Model):
    __tablename__ = "residents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    openid: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(40))
    # One phone binds one resident: the unique index decides races, not a prior lookup.
    phone: Mapped[str | None] = mapped_column(sa.String(11), unique=True)
    bound_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Where the binding came from, for the bureau's risk flags (many residents from one place).
    bound_address: Mapped[str | None] = mapped_column(sa.String(45))
    bound_device: Mapped[str | None] = mapped_column(sa.String(64))
    # The ID card, where a campaign asks for it (core/idcard.py): a keyed digest, unique so that
    # one card binds one resident, and the masked number people recognise; never the number.
    id_hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    id_masked: Mapped[str | None] = mapped_column(sa.String(18))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Draw(db.Model):
    """One spin of the wheel, or one grab. The unique key is the rule "once per category per
    round"; a grab limited per tier puts the tier's id in `slot`, so it is once per tier."""

    __tablename__ = "draws"
    __table_args__ = (
        sa.UniqueConstraint("resident_id", "round_id", "category_id", "slot"),
        sa.CheckConstraint("outcome IN ('won', 'thanks')", name="outcome"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("residents.id"))
    round_id: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id"))
    category_id: Mapped[int] = mapped_column(sa.ForeignKey("categories.id"))
    slot: Mapped[int] = mapped_column(default=0, server_default="0")
    outcome: Mapped[str] = mapped_column(sa.String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CouponState(StrEnum):
    """Where a coupon is in its life (pool/coupons.py moves it, each move with its ledger entry)."""

    STOCK = "stock"  # on the wheel, nobody's yet
    WITHDRAWN = "withdrawn"  # not drawn by its round's close, or taken off by the bureau
    CLAIMED = "claimed"  # a resident's, usable until valid_until
    USED = "used"  # spent at a till
    VOID = "void"  # refunded under "return", or revoked by the bureau
    EXPIRED = "expired"  # reached valid_until unused


class Coupon(db.Model):
    """A coupon, generated as stock when its round is allocated and claimed by a draw.

    Stock rows are pre-generated and claimed with `FOR UPDATE SKIP LOCKED`, so oversell is
    impossible by construction and concurrent draws do not queue on one counter row. `seq` is
    a random permutation within the round: taking stock in `seq` order is sampling without
    replacement, so every tier drains in proportion to what is left of it.

    States: stock -> claimed -> used (-> claimed again if revoked; -> void if refunded under the
    "return" policy); claimed -> expired (unused at its deadline); stock -> withdrawn (not drawn
    by the round's close, or taken off by the bureau). Each move of money is a ledger entry.
    """

    __tablename__ = "coupons"
    __table_args__ = (
        sa.CheckConstraint(
            "state IN ('stock', 'withdrawn', 'claimed', 'used', 'void', 'expired')",
            name="state",
        ),
        sa.CheckConstraint(
            "(state IN ('stock', 'withdrawn') AND resident_id IS NULL AND draw_id IS NULL)"
            " OR (state NOT IN ('stock', 'withdrawn') AND resident_id IS NOT NULL AND draw_id IS NOT NULL"
            " AND claimed_at IS NOT NULL AND valid_until IS NOT NULL)",
            name="claimed_has_owner",
        ),
        sa.Index(
            "ix_coupons_stock_by_category",
            "round_id",
            "category_id",
            "seq",
            postgresql_where=sa.text("state = 'stock'"),
            sqlite_where=sa.text("state = 'stock'"),
        ),
        sa.Index(
            "ix_coupons_stock_by_tier",
            "round_id",
            "tier_id",
            "seq",
            postgresql_where=sa.text("state = 'stock'"),
            sqlite_where=sa.text("state = 'stock'"),
        ),
        sa.Index("ix_coupons_resident", "resident_id", "claimed_at"),
        # The console's claim search: newest first, alone or by category.
        sa.Index("ix_coupons_claimed", "claimed_at", "id"),
        sa.Index("ix_coupons_category_claimed", "category_id", "claimed_at"),
        # The expiry job's search: claimed coupons by deadline.
        sa.Index(
            "ix_coupons_claimed_deadline",
            "valid_until",
            postgresql_where=sa.text("state = 'claimed'"),
            sqlite_where=sa.text("state = 'claimed'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    round_id: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id"))
    tier_id: Mapped[int] = mapped_column(sa.ForeignKey("tiers.id"))
    category_id: Mapped[int] = mapped_column(sa.ForeignKey("categories.id"))
    # Terms are copied onto the coupon: a later change of the tier does not change a coupon held.
    face_fen: Mapped[int]
    threshold_fen: Mapped[int]
    seq: Mapped[int]
    state: Mapped[str] = mapped_column(sa.String(10), default=CouponState.STOCK)
    resident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("residents.id"))
    draw_id: Mapped[int | None] = mapped_column(sa.ForeignKey("draws.id"), unique=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tier: Mapped[Tier] = relationship()
    category: Mapped[Category] = relationship()
    round: Mapped[Round] = relationship()


class SmsCode(db.Model):
    __tablename__ = "sms_codes"
    __table_args__ = (sa.Index("ix_sms_codes_phone_created", "phone", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    phone: Mapped[str] = mapped_column(sa.String(11))
    purpose: Mapped[str] = mapped_column(sa.String(16))
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(default=0)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SmsOutboxMessage(db.Model):
    """Messages kept instead of sent, under SMS_BACKEND=outbox (development only)."""

    __tablename__ = "sms_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    phone: Mapped[str] = mapped_column(sa.String(11), index=True)
    text: Mapped[str] = mapped_column(sa.String(200))
    code: Mapped[str] = mapped_column(sa.String(6))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


merchant_categories = sa.Table(
    "merchant_categories",
    db.metadata,
    sa.Column("merchant_id", sa.ForeignKey("merchants.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("category_id", sa.ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True),
)


class Merchant(db.Model):
    """A legal entity (one credit code) that sells to residents; it takes part in a campaign by an
    enrolment there (Enrolment), with its categories of that campaign."""

    __tablename__ = "merchants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    credit_code: Mapped[str] = mapped_column(sa.String(18), unique=True)
    address: Mapped[str] = mapped_column(sa.String(200))
    contact_name: Mapped[str] = mapped_column(sa.String(40))
    contact_phone: Mapped[str] = mapped_column(sa.String(20))
    lat: Mapped[float | None]  # the shop's position, when given at enrolment
    lng: Mapped[float | None]
    # Where its settlement is paid (merchant/bank.py checks the account number): 户名, 开户行, 账号.
    bank_payee: Mapped[str | None] = mapped_column(sa.String(100))
    bank_name: Mapped[str | None] = mapped_column(sa.String(100))
    bank_account: Mapped[str | None] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Its categories of every campaign it applied to (each category is one campaign's).
    categories: Mapped[list[Category]] = relationship(secondary=merchant_categories)
    enrolments: Mapped[list[Enrolment]] = relationship(back_populates="merchant", order_by="Enrolment.id")
    staff: Mapped[list[Staff]] = relationship(
        primaryjoin="and_(Staff.merchant_id == Merchant.id, Staff.unbound_at.is_(None))",
        order_by="Staff.id",
        viewonly=True,
    )


class Enrolment(db.Model):
    """A merchant's part in one campaign (报名): applied, then approved (with binding codes for its
    staff), rejected, suspended or blacklisted by the bureau. Its staff take the coupons of every
    campaign it is approved in (merchant/redemption.py)."""

    __tablename__ = "enrolments"
    __table_args__ = (
        sa.UniqueConstraint("merchant_id", "campaign_id"),
        sa.CheckConstraint(
            "status IN ('applied', 'approved', 'rejected', 'suspended', 'blacklisted')",
            name="status",
        ),
        sa.Index("ix_enrolments_status", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(sa.ForeignKey("merchants.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(sa.String(12), default="applied")
    # When the applicant accepted the integrity commitment (诚信承诺书).
    commitment_accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    review_note: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    merchant: Mapped[Merchant] = relationship(back_populates="enrolments")
    campaign: Mapped[Campaign] = relationship()

    @property
    def categories(self) -> list[Category]:
        """The merchant's categories of this campaign."""
        return [c for c in self.merchant.categories if c.campaign_id == self.campaign_id]


class Staff(db.Model):
    """A shop assistant whose phone is bound to a merchant; one phone serves one merchant at a
    time. Unbinding keeps the row (its redemptions name it) and ends its token at once."""

    __tablename__ = "staff"
    __table_args__ = (
        sa.Index(
            "uq_staff_phone_bound",
            "phone",
            unique=True,
            postgresql_where=sa.text("unbound_at IS NULL"),
            sqlite_where=sa.text("unbound_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(sa.ForeignKey("merchants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(40))
    phone: Mapped[str] = mapped_column(sa.String(11))
    binding_code_id: Mapped[int] = mapped_column(sa.ForeignKey("binding_codes.id"))
    bound_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    unbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    merchant: Mapped[Merchant] = relationship()


class BindingCode(db.Model):
    """A one-time code the bureau gives an approved enrolment so the merchant's staff can bind
    their phones (to the merchant: they take the coupons of all its approved campaigns)."""

    __tablename__ = "binding_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    merchant_id: Mapped[int] = mapped_column(sa.ForeignKey("merchants.id", ondelete="CASCADE"), index=True)
    enrolment_id: Mapped[int] = mapped_column(sa.ForeignKey("enrolments.id", ondelete="CASCADE"), index=True)
    # Only a keyed hash is kept: the code is shown once, to the bureau, when it is issued.
    code_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AdminUser(UserMixin, db.Model):
    """A bureau account of the console: admin (everything), auditor (read, export), operator."""

    __tablename__ = "admin_users"
    __table_args__ = (sa.CheckConstraint("role IN ('admin', 'auditor', 'operator')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(40), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(10), default="admin")
    # Failed logins in a row; at the limit the account is locked until `locked_until`.
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A session names the account and this number; logging out, a new password, a lockout or
    # disabling the account raises it, which ends every session of the account at once.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def get_id(self) -> str:
        """What the session keeps (Flask-Login): the account and its session version."""
        return f"{self.id}:{self.session_version}"


class AuditEntry(db.Model):
    """Who did what in the console, with the state before and after, and when."""

    __tablename__ = "audit_entries"
    __table_args__ = (sa.Index("ix_audit_entries_created", "created_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    admin_id: Mapped[int | None] = mapped_column(sa.ForeignKey("admin_users.id"))
    admin_name: Mapped[str] = mapped_column(sa.String(40))  # kept as it was, whatever happens to the account
    action: Mapped[str] = mapped_column(sa.String(40))
    target_type: Mapped[str | None] = mapped_column(sa.String(20))
    target_id: Mapped[str | None] = mapped_column(sa.String(40))
    before: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    address: Mapped[str | None] = mapped_column(sa.String(45))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Redemption(db.Model):
    """A coupon spent at a till: the terms it had, what was spent, who took it, when."""

    __tablename__ = "redemptions"
    __table_args__ = (
        # One live redemption per coupon: two tills racing for it record one.
        sa.Index(
            "uq_redemptions_live_coupon",
            "coupon_id",
            unique=True,
            postgresql_where=sa.text("revoked_at IS NULL"),
            sqlite_where=sa.text("revoked_at IS NULL"),
        ),
        # A retried submission (same Idempotency-Key from the same till) records once.
        sa.UniqueConstraint("staff_id", "idempotency_key"),
        # A wallet pay code pays once: another coupon of the wallet needs a fresh code. Its nonce
        # is 64 random bits and unique per wallet, so a fresh code is never taken for a used one.
        sa.Index(
            "uq_redemptions_wallet_code",
            "resident_id",
            "paycode_nonce",
            unique=True,
            postgresql_where=sa.text("paycode_nonce IS NOT NULL"),
            sqlite_where=sa.text("paycode_nonce IS NOT NULL"),
        ),
        sa.CheckConstraint("spend_fen >= 0", name="spend_not_negative"),
        sa.CheckConstraint("paid_fen <= face_fen", name="paid_within_face"),
        sa.CheckConstraint("refunded_spend_fen <= spend_fen", name="refunds_within_sale"),
        sa.CheckConstraint("returned_fen + withheld_fen <= paid_fen", name="shares_within_paid"),
        sa.Index("ix_redemptions_merchant_created", "merchant_id", "created_at"),
        # The console's searches: newest first, alone or by staff, buyer or category.
        sa.Index("ix_redemptions_created", "created_at", "id"),
        sa.Index("ix_redemptions_staff_created", "staff_id", "created_at"),
        sa.Index("ix_redemptions_resident_created", "resident_id", "created_at"),
        sa.Index("ix_redemptions_category_created", "category_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    coupon_id: Mapped[int] = mapped_column(sa.ForeignKey("coupons.id"))
    category_id: Mapped[int] = mapped_column(sa.ForeignKey("categories.id"))
    merchant_id: Mapped[int] = mapped_column(sa.ForeignKey("merchants.id"))
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("residents.id"))
    face_fen: Mapped[int]
    threshold_fen: Mapped[int]
    spend_fen: Mapped[int]
    # What the coupon paid of the sale: its face, or the spend where the campaign settles a spend
    # below the face at the spend (Campaign.short_sale).
    paid_fen: Mapped[int]
    spend_category: Mapped[str] = mapped_column(sa.String(40))
    note: Mapped[str | None] = mapped_column(sa.String(200))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(64))
    paycode_nonce: Mapped[str | None] = mapped_column(sa.String(16))  # the wallet pay code's, if paid with one
    lat: Mapped[float | None]  # where the till stood, when its phone reported it
    lng: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # 撤回: a mistaken redemption undone within the window; the coupon is usable again.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoke_reason: Mapped[str | None] = mapped_column(sa.String(200))
    # 退货, in whole or in parts (Refund): the spend refunded so far, and the coupon's share of it
    # (campaign.rules.refund_share) given back to the pool under the "return" policy or withheld
    # from the merchant under "forfeit" (the coupon stays used for the resident). The merchant is
    # owed paid - returned - withheld (owed_fen).
    refunded_spend_fen: Mapped[int] = mapped_column(default=0, server_default="0")
    returned_fen: Mapped[int] = mapped_column(default=0, server_default="0")
    withheld_fen: Mapped[int] = mapped_column(default=0, server_default="0")
    # When the whole spend was refunded (under "return" the coupon is then voided).
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refund_reason: Mapped[str | None] = mapped_column(sa.String(200))
    refund_policy: Mapped[str | None] = mapped_column(sa.String(10))

    @hybrid_property
    def owed_fen(self) -> int:
        """What the merchant is owed for it (in SQL too): what the coupon paid, less the shares
        refunds returned or withheld."""
        return self.paid_fen - self.returned_fen - self.withheld_fen


class Refund(db.Model):
    """One refund of (part of) a redemption's sale at the till (退货): how much of the spend, and
    the coupon's share of it, returned to the pool or withheld from the merchant by the policy."""

    __tablename__ = "refunds"
    __table_args__ = (
        sa.CheckConstraint("spend_fen >= 0 AND share_fen >= 0", name="amounts_not_negative"),
        sa.Index("ix_refunds_merchant_created", "merchant_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    redemption_id: Mapped[int] = mapped_column(sa.ForeignKey("redemptions.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(sa.ForeignKey("merchants.id"))
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    spend_fen: Mapped[int]  # of the sale, refunded now
    share_fen: Mapped[int]  # of the coupon's value
    policy: Mapped[str] = mapped_column(sa.String(10))
    reason: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SettlementBatch(db.Model):
    """One settlement of a campaign for a period the bureau chooses (a round, a week, a month, the
    whole campaign), frozen from the ledger (pool/settlement.py): draft -> audited (an auditor's
    opinion on its sample) -> approved (an admin, never the auditor) -> paid (every line paid or
    withheld). One batch of a campaign is open (not yet audited) at a time."""

    __tablename__ = "settlement_batches"
    __table_args__ = (
        sa.CheckConstraint("state IN ('draft', 'audited', 'approved', 'paid')", name="state"),
        # Separated duties: whoever audited a batch does not approve it.
        sa.CheckConstraint("approved_by IS NULL OR approved_by <> audited_by", name="audit_not_approval"),
        sa.UniqueConstraint("campaign_id", "number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]  # 第N批, per campaign
    label: Mapped[str] = mapped_column(sa.String(60))  # the period as the bureau names it
    period_from: Mapped[date | None]  # local days, inclusive; none: from the campaign's start
    period_to: Mapped[date]
    state: Mapped[str] = mapped_column(sa.String(10), default="draft")
    created_by: Mapped[int] = mapped_column(sa.ForeignKey("admin_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    audited_by: Mapped[int | None] = mapped_column(sa.ForeignKey("admin_users.id"))
    audited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opinion: Mapped[str | None] = mapped_column(sa.String(500))
    approved_by: Mapped[int | None] = mapped_column(sa.ForeignKey("admin_users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    campaign: Mapped[Campaign] = relationship()
    lines: Mapped[list[SettlementLine]] = relationship(order_by="SettlementLine.id", viewonly=True)


class SettlementLine(db.Model):
    """What one batch settles with one merchant: the sales frozen into it, less audit exceptions,
    less deductions for refunds, revokes and invalidations since earlier batches, less a shortfall
    carried from its previous line; payable is that when positive, and a shortfall no later batch
    takes is a clawback claim (recovered_fen when the merchant pays it back). Withheld is what is
    not paid while the merchant is suspended or blacklisted."""

    __tablename__ = "settlement_lines"
    __table_args__ = (
        sa.UniqueConstraint("batch_id", "merchant_id"),
        sa.CheckConstraint(
            "gross_fen >= 0 AND excluded_fen >= 0 AND carried_fen >= 0"
            " AND recovered_fen >= 0 AND paid_fen >= 0 AND withheld_fen >= 0",
            name="amounts_not_negative",
        ),
        # Nothing is paid twice: what is paid and withheld never exceeds what is payable.
        sa.CheckConstraint("paid_fen + withheld_fen <= payable_fen", name="paid_within_payable"),
        sa.CheckConstraint("recovered_fen <= shortfall_fen", name="recovered_within_shortfall"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("settlement_batches.id", ondelete="CASCADE"), index=True)
    merchant_id: Mapped[int] = mapped_column(sa.ForeignKey("merchants.id"), index=True)
    sales: Mapped[int] = mapped_column(default=0)  # redemptions frozen into it
    gross_fen: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    excluded_fen: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # audit exceptions
    deducted_fen: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # changes since earlier batches
    carried_fen: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # shortfall of the previous line
    payable_fen: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    shortfall_fen: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    carried_on: Mapped[bool] = mapped_column(default=False)  # its shortfall went to a later line
    recovered_fen: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    paid_fen: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    withheld_fen: Mapped[int] = mapped_column(sa.BigInteger, default=0)

    batch: Mapped[SettlementBatch] = relationship()
    merchant: Mapped[Merchant] = relationship()

    @property
    def net_fen(self) -> int:
        return self.gross_fen - self.excluded_fen - self.deducted_fen - self.carried_fen

    @property
    def unpaid_fen(self) -> int:
        return self.payable_fen - self.paid_fen - self.withheld_fen

    @property
    def clawback_fen(self) -> int:
        """Owed back and not yet recovered: its shortfall, unless a later line took it."""
        return 0 if self.carried_on else self.shortfall_fen - self.recovered_fen


class SettlementItem(db.Model):
    """One redemption's part in a batch: its sale ("sale": what it owed when frozen; a redemption
    is frozen into exactly one batch, which the partial unique index holds), or a later change to
    it: "deduct" (what a refund or a revoke took off what earlier batches settled) or "disallow"
    (what an audit found invalid after its batch was audited). The auditor marks a sale invalid
    with a reason: in a batch under audit it is excluded there (`counted` false); later, the next
    batch disallows it."""

    __tablename__ = "settlement_items"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('sale', 'deduct', 'disallow')", name="kind"),
        sa.Index(
            "uq_settlement_items_sale",
            "redemption_id",
            unique=True,
            postgresql_where=sa.text("kind = 'sale'"),
            sqlite_where=sa.text("kind = 'sale'"),
        ),
        sa.Index("ix_settlement_items_batch", "batch_id", "merchant_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("settlement_batches.id", ondelete="CASCADE"))
    merchant_id: Mapped[int] = mapped_column(sa.ForeignKey("merchants.id"))
    redemption_id: Mapped[int] = mapped_column(sa.ForeignKey("redemptions.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(8))
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)  # signed: a change is negative when it takes off
    reason: Mapped[str | None] = mapped_column(sa.String(200))  # a change's cause
    counted: Mapped[bool] = mapped_column(default=True)  # false: excluded by the audit of its own batch
    invalid_reason: Mapped[str | None] = mapped_column(sa.String(200))
    invalid_by: Mapped[int | None] = mapped_column(sa.ForeignKey("admin_users.id"))
    invalid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SettlementPayment(db.Model):
    """A payment of (part of) a line, as the bank confirmed it: amount, date, reference; or a
    clawback the merchant paid back (kind "recover")."""

    __tablename__ = "settlement_payments"
    __table_args__ = (
        sa.CheckConstraint("amount_fen > 0", name="amount_positive"),
        sa.CheckConstraint("kind IN ('pay', 'recover')", name="kind"),
        # A bank reference is recorded once per line: the second operator's form changes nothing.
        sa.UniqueConstraint("line_id", "reference"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(sa.ForeignKey("settlement_lines.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(8), default="pay")
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)
    paid_on: Mapped[date]
    reference: Mapped[str] = mapped_column(sa.String(60))
    recorded_by: Mapped[int] = mapped_column(sa.ForeignKey("admin_users.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RefusedRedemption(db.Model):
    """Every refused redemption attempt, with its reason, for the bureau's risk review."""

    __tablename__ = "refused_redemptions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(sa.ForeignKey("merchants.id"))
    coupon_id: Mapped[int | None] = mapped_column(sa.ForeignKey("coupons.id"))
    code: Mapped[str] = mapped_column(sa.String(32))
    message: Mapped[str] = mapped_column(sa.String(200))
    spend_fen: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Every movement of a campaign's money: kind -> (from account, to account). "budget" is where
# the campaign's money comes from; the other accounts are the five terms of SPEC section 2's
# invariant (pool, stock, claimed, redeemed + forfeited, treasury), so that
# budget = pool + stock + claimed + redeemed + forfeited + treasury holds by construction and
# `ledger.verify` compares each account with the coupons that should back it.
LEDGER_MOVES = {
    "budget": ("budget", "pool"),  # the campaign's budget comes in
    "allocate": ("pool", "stock"),  # a round's planned stock is generated
    "rollover": ("pool", "stock"),  # returned value becomes the next round's stock
    "adjust_up": ("pool", "stock"),  # the bureau adds to a round's quota
    "adjust_down": ("stock", "pool"),  # the bureau takes from a round's quota
    "withdraw": ("stock", "pool"),  # stock not drawn by the round's close
    "claim": ("stock", "claimed"),  # a resident wins a coupon
    "expire": ("claimed", "pool"),  # a coupon reaches its deadline unused
    "revoke_claim": ("claimed", "pool"),  # the bureau revokes a coupon held unused (e.g. fraud)
    "redeem": ("claimed", "redeemed"),  # spent at a till
    "revoke": ("redeemed", "claimed"),  # a mistaken redemption undone
    "refund_return": ("redeemed", "pool"),  # goods returned, "return" policy: the coupon is voided
    "refund_forfeit": ("redeemed", "forfeited"),  # goods returned, "forfeit" policy: stays spent
    "short": ("claimed", "pool"),  # a coupon settled at a spend below its face: the rest (不找零)
    "revoke_short": ("pool", "claimed"),  # that redemption undone: the rest is the coupon's again
    "treasury": ("pool", "treasury"),  # after the last round, what is left goes back (返还财政)
    "carry_out": ("pool", "carried"),  # ... or to the next campaign (结余转入下期活动), whose
    "carry_in": ("carried_in", "pool"),  # pool it comes into, the two entries sharing a key
    "subsidy": ("pool", "subsidy"),  # a purchase subsidy approved by the bureau (购车补贴)
    # Settlement (pool/settlement.py), per campaign without round or tier: what is redeemed is
    # frozen into a batch, then paid, withheld or disallowed; later changes are deducted.
    "settle": ("redeemed", "payable"),  # sales frozen into a batch
    "deduct": ("payable", "redeemed"),  # a refund or revoke since an earlier batch
    "disallow": ("payable", "disallowed"),  # a sale the audit found invalid
    "reallow": ("disallowed", "payable"),  # ... of which a refund took a part since
    "withhold": ("payable", "withheld"),  # the merchant is suspended or blacklisted
    "release": ("withheld", "payable"),  # ... and reinstated
    "pay": ("payable", "paid"),  # paid to the merchant's account
    "recover": ("recovered", "payable"),  # a clawback the merchant paid back
}


class ScreenPass(db.Model):
    """An on-site event's pass (auth/screen.py), bound to the resident who first grabs with it: a pass
    forwarded to a group serves one resident, not everyone it reaches."""

    __tablename__ = "screen_passes"

    nonce: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("residents.id"), index=True)
    bound_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


VEHICLE_KINDS = {"new_energy": "新能源汽车", "fuel": "燃油汽车", "used": "二手车", "motorcycle": "摩托车"}


class SubsidyApplication(db.Model):
    """A resident's application for a purchase subsidy, with its invoice, and the bureau's review.

    One live application (pending or approved) per invoice, per vehicle and per resident and
    vehicle class (car or motorcycle): the partial unique indexes decide races. A rejected
    application does not count, so a resident may apply again with a clearer invoice.
    """

    __tablename__ = "subsidy_applications"
    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="status"),
        sa.CheckConstraint("vehicle_kind IN ('new_energy', 'fuel', 'used', 'motorcycle')", name="vehicle_kind"),
        sa.CheckConstraint("invoice_fen > 0 AND subsidy_fen > 0", name="amounts_positive"),
        *(
            sa.Index(
                f"uq_subsidy_live_{name}",
                "campaign_id",
                *columns,
                unique=True,
                postgresql_where=sa.text("status <> 'rejected'"),
                sqlite_where=sa.text("status <> 'rejected'"),
            )
            for name, columns in (
                ("invoice", ("invoice_no",)),
                ("vehicle", ("vin",)),
                ("resident", ("resident_id", "vehicle_class")),
            )
        ),
        sa.Index("ix_subsidy_applications_queue", "campaign_id", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("residents.id"), index=True)
    vehicle_kind: Mapped[str] = mapped_column(sa.String(12))
    vehicle_class: Mapped[str] = mapped_column(sa.String(12))  # car | motorcycle
    invoice_no: Mapped[str] = mapped_column(sa.String(40))
    invoice_fen: Mapped[int] = mapped_column(sa.BigInteger)
    vin: Mapped[str] = mapped_column(sa.String(17))  # 车辆识别代号
    plate: Mapped[str] = mapped_column(sa.String(10))  # 号牌号码
    registered_on: Mapped[date]  # 上户登记日期
    image: Mapped[bytes] = mapped_column(sa.LargeBinary, deferred=True)
    image_type: Mapped[str] = mapped_column(sa.String(10))  # jpeg | png | webp
    subsidy_fen: Mapped[int] = mapped_column(sa.BigInteger)  # from the bracket table, at application
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    reviewed_by: Mapped[str | None] = mapped_column(sa.String(40))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    review_note: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerEntry(db.Model):
    """One movement of a campaign's money. Append-only: nothing updates or deletes a row."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        sa.CheckConstraint(
            " OR ".join(
                f"(kind = '{kind}' AND source = '{source}' AND target = '{target}')"
                for kind, (source, target) in LEDGER_MOVES.items()
            ),
            name="kind_moves",
        ),
        sa.CheckConstraint("amount_fen >= 0", name="amount_not_negative"),
        sa.CheckConstraint("coupons >= 0", name="coupons_not_negative"),
        # A job's move carries a key naming what it did, so running it twice moves money once.
        sa.UniqueConstraint("campaign_id", "key"),
        sa.Index("ix_ledger_entries_source", "campaign_id", "source"),
        sa.Index("ix_ledger_entries_target", "campaign_id", "target"),
        sa.Index("ix_ledger_entries_kind", "campaign_id", "kind"),  # the dashboard's issued coupons
        sa.Index("ix_ledger_entries_created", "created_at"),  # the hours stored and read (pool/rollup.py)
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    round_id: Mapped[int | None] = mapped_column(sa.ForeignKey("rounds.id", ondelete="CASCADE"))
    category_id: Mapped[int | None] = mapped_column(sa.ForeignKey("categories.id", ondelete="CASCADE"))
    tier_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tiers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    source: Mapped[str] = mapped_column(sa.String(10))
    target: Mapped[str] = mapped_column(sa.String(10))
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)
    coupons: Mapped[int] = mapped_column(default=0)
    coupon_id: Mapped[int | None] = mapped_column(BigId)
    redemption_id: Mapped[int | None] = mapped_column(BigId)
    key: Mapped[str | None] = mapped_column(sa.String(64))
    # "scheduler" or "admin:NAME"; none for a resident's or a till's act (the coupon says whose).
    actor: Mapped[str | None] = mapped_column(sa.String(40))
    note: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Seal(db.Model):
    """One link of a campaign's tamper-evident chain over its claims and redemptions.

    `digest` is an HMAC (key CHAIN_KEY, never in the database) of the previous link's digest
    and the record's facts, so a sealed record changed, deleted or reordered breaks the chain
    from that link on, and the chain cannot be recomputed from a copy of the database alone.
    Links are appended by the `seal` job shortly after the records commit (see pool/chain.py).
    """

    __tablename__ = "seals"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "position", name="uq_seals_position"),
        sa.UniqueConstraint("kind", "record_id", name="uq_seals_record"),
        sa.CheckConstraint("kind IN ('claim', 'redemption')", name="kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(sa.BigInteger)
    kind: Mapped[str] = mapped_column(sa.String(10))
    record_id: Mapped[int] = mapped_column(sa.BigInteger)
    record_at: Mapped[datetime] = mapped_column(UTCDateTime)
    digest: Mapped[str] = mapped_column(sa.String(64))
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SchedulerLease(db.Model):
    """The scheduler's leader lease where the database has no advisory locks (SQLite)."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(80))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HourMark(db.Model):
    """Whether an hour's stored figures (HourClaims, HourRedemptions, HourLedger, the Hour*Risk) hold.

    The `close_hours` job stores an hour once it is over; whatever later changes one of its
    redemptions (a revocation, a refund) marks it stale in the same transaction (pool/rollup.py).
    """

    __tablename__ = "hour_marks"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)  # UTC, on the hour
    fresh: Mapped[bool] = mapped_column(default=False)
    computed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class HourClaims(db.Model):
    """Coupons claimed in an hour, per campaign, round and category."""

    __tablename__ = "hour_claims"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    round_id: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True)
    category_id: Mapped[int] = mapped_column(sa.ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    claimed: Mapped[int]
    # Claims that were their resident's first in the campaign, and in the category: summed up to a
    # moment, the residents who had claimed by then (coverage, 覆盖率).
    first_in_campaign: Mapped[int] = mapped_column(default=0, server_default="0")
    first_in_category: Mapped[int] = mapped_column(default=0, server_default="0")


class HourRedemptions(db.Model):
    """Redemptions of an hour that stand (not revoked), per campaign, round, category and
    merchant: what the dashboard and the settlement page add up."""

    __tablename__ = "hour_redemptions"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    round_id: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True)
    category_id: Mapped[int] = mapped_column(sa.ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True)
    merchant_id: Mapped[int] = mapped_column(sa.ForeignKey("merchants.id", ondelete="CASCADE"), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    redeemed: Mapped[int]
    order_fen: Mapped[int] = mapped_column(sa.BigInteger)
    redeemed_fen: Mapped[int] = mapped_column(sa.BigInteger)
    refunded: Mapped[int]
    refunded_fen: Mapped[int] = mapped_column(sa.BigInteger)
    settled: Mapped[int]  # what the bureau pays for (pool.coupons.settled_clause)
    owed_fen: Mapped[int] = mapped_column(sa.BigInteger)


class HourLedger(db.Model):
    """The ledger's entries of an hour, summed per campaign, round, tier and kind: the pool's
    balances and the coupons in each state (pool.ledger.COUPON_MOVES) without reading every entry."""

    __tablename__ = "hour_ledger"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    round_id: Mapped[int | None] = mapped_column(sa.ForeignKey("rounds.id", ondelete="CASCADE"))
    tier_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tiers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    amount_fen: Mapped[int] = mapped_column(sa.BigInteger)
    coupons: Mapped[int] = mapped_column(sa.BigInteger)


class HourMerchantRisk(db.Model):
    """A merchant's redemptions of an hour that stand, as the risk flags count them (pool/risk.py):
    how many, how many spent exactly the threshold, and how many ended a burst."""

    __tablename__ = "hour_merchant_risk"
    __table_args__ = (
        sa.CheckConstraint("exact <= redeemed AND bursts <= redeemed", name="parts_within_redeemed"),
        sa.CheckConstraint("bursts = 0 OR burst_first IS NOT NULL", name="burst_times"),
    )

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(sa.ForeignKey("merchants.id", ondelete="CASCADE"), primary_key=True)
    redeemed: Mapped[int]
    exact: Mapped[int]  # spends exactly at the coupon's threshold
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)
    bursts: Mapped[int] = mapped_column(default=0, server_default="0")  # redemptions that ended a burst
    burst_first: Mapped[datetime | None] = mapped_column(UTCDateTime)
    burst_last: Mapped[datetime | None] = mapped_column(UTCDateTime)


class HourStaffRisk(db.Model):
    """An assistant's redemptions of an hour that stand, per the hour of the same resident's
    previous one by that assistant that local day (none: the resident's first that day): summed,
    the residents an assistant redeemed for in a day, or in any part of one (pool/risk.py)."""

    __tablename__ = "hour_staff_risk"
    __table_args__ = (sa.CheckConstraint("previous IS NULL OR previous <= hour", name="previous_before"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id", ondelete="CASCADE"))
    merchant_id: Mapped[int] = mapped_column(sa.ForeignKey("merchants.id", ondelete="CASCADE"))
    previous: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redeemed: Mapped[int]
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HourRepeatRisk(db.Model):
    """A resident's redemptions of an hour at a merchant that came within minutes of their previous
    one there (pool/risk.py): rows only where there are such."""

    __tablename__ = "hour_repeat_risk"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(sa.ForeignKey("merchants.id", ondelete="CASCADE"), primary_key=True)
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True)
    repeats: Mapped[int]
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the earliest previous redemption
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HourRefundRisk(db.Model):
    """Refunds of an hour per merchant, per the hour of the same redemption's previous refund (none:
    its first), with their amounts (pool/risk.py)."""

    __tablename__ = "hour_refund_risk"
    __table_args__ = (sa.CheckConstraint("previous IS NULL OR previous <= hour", name="previous_before"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    merchant_id: Mapped[int] = mapped_column(sa.ForeignKey("merchants.id", ondelete="CASCADE"))
    previous: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refunds: Mapped[int]
    spend_fen: Mapped[int] = mapped_column(sa.BigInteger)
    share_fen: Mapped[int] = mapped_column(sa.BigInteger)
    withheld_fen: Mapped[int] = mapped_column(sa.BigInteger)  # the shares withheld under "forfeit"
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SurveyResponse(db.Model):
    """One resident's answers to the satisfaction survey (campaign/survey.py), once per resident."""

    __tablename__ = "survey_responses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("residents.id"), unique=True)
    campaign_id: Mapped[int | None] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="SET NULL"), index=True)
    # {"1": {"choices": [0]}, "2": {"choices": [0, 5], "other": "..."}, ...}: option indexes
    answers: Mapped[dict] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
