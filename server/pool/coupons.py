"""A coupon's life, and the three guarantees of the campaign's money.

    stock --claim--> claimed --use--> used --void (refund, "return")--> void
      |                 |  ^            |
      |                 |  +--unuse-----+            (a mistaken redemption revoked at the till)
      |                 +--expire--> expired         (its deadline passed unused)
      |                 +--void----> void            (revoked by the bureau)
      +--withdraw--> withdrawn                       (not drawn by the round's close, or taken off)

Every move here is a guarded UPDATE (`WHERE state = ...`) paired with its ledger entry
(pool/ledger.py), so a move that did not happen records no money, and one that did records it once.

The guarantees, each held by the database rather than by a check before the write:

1. Never oversold. Stock is pre-generated coupon rows; a claim takes one row still in `stock`,
   `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two draws never take the same row and a round never
   hands out more than the rows it holds.
2. One draw per resident, category and round (per tier, for a grab limited per tier). The claim
   first inserts its `draws` row, whose unique key (resident, round, category, slot) lets one insert
   through; a second one inserts nothing and claims nothing.
3. One redemption per coupon. `use` moves the coupon claimed -> used only if it is still claimed and
   valid, and its redemption row stands behind a unique index on the live redemption of a coupon:
   of two tills racing for it, one records.

A resident sees a coupon's `Status` (unused, used, expired, void), judged against the clock: a
claimed coupon past its deadline is expired before any job moves it (`status`, and its SQL twin
`status_clause`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from flask import current_app

from ..core import db as database
from ..core.db import utc_param
from ..core.errors import ServiceUnavailable
from ..core.time import isoformat
from ..extensions import db
from ..models import Coupon, Draw, Redemption, Tier
from ..models import CouponState as State
from . import ledger

__all__ = ["State", "Status"]


class Status(StrEnum):
    """A coupon as its holder sees it."""

    UNUSED = "unused"
    USED = "used"
    EXPIRED = "expired"
    VOID = "void"


def status(coupon: Coupon, now: datetime) -> Status:
    """Validity is judged against the clock, so correctness never waits for an expiry job."""
    if coupon.state in (State.USED, State.VOID, State.EXPIRED):
        return Status(coupon.state)
    return Status.UNUSED if now < coupon.valid_until else Status.EXPIRED


def status_clause(wanted: str, now: datetime, *, keyed: bool = False):
    """The SQL twin of `status`: the coupons whose status is `wanted` at `now`. `keyed`: the query
    finds its coupons by a key of their own (an id, a resident), so the status is written for no
    partial index of the states to serve it, whatever the statistics say (the hot path's SQL below)."""
    if wanted == Status.UNUSED:
        clause = sa.and_(Coupon.state == State.CLAIMED, Coupon.valid_until > now)
    elif wanted == Status.EXPIRED:
        lapsed = sa.and_(Coupon.state == State.CLAIMED, Coupon.valid_until <= now)
        clause = sa.or_(Coupon.state == State.EXPIRED, lapsed)
    else:
        clause = Coupon.state == wanted  # used, void
    return clause.is_(sa.true()) if keyed else clause


def coupon_json(
    coupon_id: int,
    category: tuple[str, str],
    face_fen: int,
    threshold_fen: int,
    round_number: int,
    status_: str,
    valid_until: datetime,
    claimed_at: datetime,
    usable_hours: str | None,
    **more,
) -> dict:
    """A coupon in the API (API.md `coupon`): category is (code, name); usable_hours the window of
    the day it may be spent in (campaign.rules.usage_hours), if it has one."""
    code, name = category
    return {
        "id": coupon_id,
        "category": {"code": code, "name": name},
        "face_fen": face_fen,
        "threshold_fen": threshold_fen,
        "round": round_number,
        "status": str(status_),
        "valid_until": isoformat(valid_until),
        "claimed_at": isoformat(claimed_at),
        "usable_hours": usable_hours,
        **more,
    }


# ---------------------------------------------------------------- stock


def rng() -> random.Random:
    """The draw's randomness: the system's, unless DRAW_SEED makes runs reproducible (tests)."""
    extensions = current_app.extensions
    if "huigou.rng" not in extensions:
        seed = current_app.config.get("DRAW_SEED")
        extensions["huigou.rng"] = random.SystemRandom() if seed is None else random.Random(seed)
    return extensions["huigou.rng"]


def generate_stock(round_id: int, quantities: list[tuple[Tier, int]]) -> list[dict]:
    """Add stock coupons to a round, shuffled so that taking them in order drains tiers evenly.

    `seq` is a random permutation within the round: taking stock in `seq` order is sampling
    without replacement, so every tier drains in proportion to what is left of it. A round that
    holds stock but has not been drawn from is shuffled again as a whole, so that new and old
    coupons interleave uniformly. Returns the rows created. (The caller books their value.)
    """
    rows = []
    for tier, quantity in quantities:
        rows.extend(
            {
                "round_id": round_id,
                "tier_id": tier.id,
                "category_id": tier.category_id,
                "face_fen": tier.face_fen,
                "threshold_fen": tier.threshold_fen,
                "state": State.STOCK,
            }
            for _ in range(quantity)
        )
    drawn_from = db.session.scalar(
        sa.select(sa.func.max(Coupon.seq)).where(Coupon.round_id == round_id, Coupon.state != State.STOCK)
    )
    if drawn_from is None:
        # One permutation per round; each category's stock is a uniform shuffle of its tiers.
        existing = db.session.scalars(
            sa.select(Coupon.id).where(Coupon.round_id == round_id, Coupon.state == State.STOCK).order_by(Coupon.id)
        ).all()
        order = list(range(len(existing) + len(rows)))
    else:
        # The round is open and drawn from (a rollover landing after 09:00): the stock already
        # there keeps its order and the new coupons follow it, so that `seq` stays unique and a
        # staged release's cap, a `seq` of the old stock, still releases what it did.
        existing = []
        top = db.session.scalar(sa.select(sa.func.max(Coupon.seq)).where(Coupon.round_id == round_id))
        order = list(range(top + 1, top + 1 + len(rows)))
    rng().shuffle(order)
    for row, seq in zip(rows, order[len(existing) :], strict=True):
        row["seq"] = seq
    for start in range(0, len(rows), 5000):
        db.session.execute(sa.insert(Coupon.__table__), rows[start : start + 5000])
    if existing:
        db.session.execute(
            sa.update(Coupon.__table__).where(Coupon.__table__.c.id == sa.bindparam("coupon_id")),
            [{"coupon_id": id_, "seq": seq} for id_, seq in zip(existing, order, strict=False)],
        )
    return rows


def remaining_by_tier(round_id: int) -> dict[int, int]:
    """Stock left per tier of a round (index-backed count)."""
    rows = db.session.execute(
        sa.select(Coupon.tier_id, sa.func.count())
        .where(Coupon.round_id == round_id, Coupon.state == State.STOCK)
        .group_by(Coupon.tier_id)
    )
    return {tier_id: count for tier_id, count in rows}


# ---------------------------------------------------------------- claim: guarantees 1 and 2

# The hot path's SQL, written once: building SQLAlchemy constructs per request costs more CPU
# than the database spends on the statements.
#
# Written so that no statistics can lead the planner astray. At 09:00 the statistics are those of
# the stock before the crowd (nothing claimed, everything in stock) for minutes: a coupon moved by
# its id had the planner walk the partial index of the claimed coupons' deadlines (every claimed
# coupon, per redemption), and a look for stock left scan the whole table. So a coupon's guard is
# written `(...) IS TRUE` where its id finds it (no partial index's condition is then implied:
# only the primary key serves), and a look for stock orders by `seq` (only its index serves).
_INSERT_DRAW = sa.text(
    "INSERT INTO draws (resident_id, round_id, category_id, slot, outcome, created_at)"
    " VALUES (:resident_id, :round_id, :category_id, :slot, :outcome, :created_at)"
    " ON CONFLICT DO NOTHING RETURNING id"
).bindparams(utc_param("created_at"))

ALL_RELEASED = 2**31 - 1  # `seq` is below it: no staged release holds anything back
_BY = ("category_id", "tier_id")  # a claim takes stock of a category (the wheel) or of a tier (a grab)


def _claim_sql(column: str, lock: str) -> sa.TextClause:
    return sa.text(
        "UPDATE coupons SET state = 'claimed', resident_id = :resident_id, draw_id = :draw_id,"
        " claimed_at = :claimed_at, valid_until = :valid_until"
        " WHERE (state = 'stock') IS TRUE AND id = (SELECT id FROM coupons"
        f" WHERE round_id = :round_id AND {column} = :key AND state = 'stock' AND seq <= :max_seq"
        f" ORDER BY seq LIMIT 1 {lock})"
        " RETURNING id, tier_id, face_fen, threshold_fen"
    ).bindparams(utc_param("claimed_at"), utc_param("valid_until"))


def _draw_and_claim_sql(column: str) -> sa.TextClause:
    """PostgreSQL: insert the draw, claim a coupon and book the claim in one statement.

    No draw row (already drawn) means no claim; no coupon claimed leaves the draw for `claim` to
    complete through `_claim_any`, or for the caller to roll back as sold out. The ledger row is
    the ledger's own definition of a coupon's move (ledger.coupon_entry_sql).
    """
    entry = ledger.coupon_entry_sql("claim", "c", campaign=":campaign_id")
    return sa.text(
        "WITH d AS (INSERT INTO draws (resident_id, round_id, category_id, slot, outcome, created_at)"
        " VALUES (:resident_id, :round_id, :category_id, :slot, 'won', :claimed_at)"
        " ON CONFLICT DO NOTHING RETURNING id),"
        " c AS (UPDATE coupons SET state = 'claimed', resident_id = :resident_id,"
        " draw_id = (SELECT id FROM d), claimed_at = :claimed_at, valid_until = :valid_until"
        " WHERE (state = 'stock') IS TRUE AND EXISTS (SELECT 1 FROM d) AND id = (SELECT id FROM coupons"
        f" WHERE round_id = :round_id AND {column} = :key AND state = 'stock' AND seq <= :max_seq"
        " ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, round_id, tier_id, category_id, face_fen, threshold_fen),"
        f" l AS ({entry})"
        " SELECT (SELECT id FROM d) AS draw_id, c.id, c.tier_id, c.face_fen, c.threshold_fen"
        " FROM (SELECT 1) AS one LEFT JOIN c ON true"
    ).bindparams(utc_param("claimed_at"), utc_param("valid_until"), utc_param("created_at"))


_DRAW_AND_CLAIM = {column: database.Prepared(_draw_and_claim_sql(column), named=True) for column in _BY}
_CLAIM = {
    (column, lock): _claim_sql(column, sql)
    for column in _BY
    for lock, sql in (("skip", "FOR UPDATE SKIP LOCKED"), ("none", ""))
}
_STOCK_LEFT = {
    column: sa.text(
        f"SELECT id FROM coupons WHERE round_id = :round_id AND {column} = :key AND state = 'stock'"
        " AND seq <= :max_seq ORDER BY seq LIMIT 1"
    )
    for column in _BY
}


@dataclass(frozen=True)
class Claimed:
    """What a claim did: the draw's id (None: this resident had drawn already, guarantee 2) and the
    coupon taken (None: none left, guarantee 1; the caller refuses, which rolls the draw back)."""

    draw_id: int | None
    coupon: sa.Row | None  # id, tier_id, face_fen, threshold_fen


def claim(
    *,
    campaign_id: int,
    round_id: int,
    category_id: int,
    resident_id: int,
    slot: int,
    tier_id: int | None,
    max_seq: int,
    valid_until: datetime,
    now: datetime,
    any_tier_left: bool = False,
) -> Claimed:
    """Record the draw and claim one stock coupon of the category (or of `tier_id`), at most
    `max_seq` (a staged release's cap). `any_tier_left`: when the tier is gone, take any coupon of
    the category (fixed odds landed on a tier that sold out). One statement on PostgreSQL."""
    params = {
        "campaign_id": campaign_id,
        "round_id": round_id,
        "category_id": category_id,
        "resident_id": resident_id,
        "slot": slot,
        "key": tier_id or category_id,
        "max_seq": max_seq,
        "claimed_at": now,
        "created_at": now,
        "valid_until": valid_until,
    }
    column = "tier_id" if tier_id else "category_id"
    row = None
    if database.on_postgres():
        found = _DRAW_AND_CLAIM[column].one(params)
        draw_id, row = found.draw_id, (found if found.id is not None else None)
    else:
        draw_id = db.session.execute(_INSERT_DRAW, {**params, "outcome": "won", "created_at": now}).scalar()
    if draw_id is None:
        return Claimed(None, None)
    params["draw_id"] = draw_id
    if row is None:
        row = _claim_any(column, params)
        if row is None and tier_id and any_tier_left:
            row = _claim_any("category_id", {**params, "key": category_id})
        if row is not None:
            ledger.coupon_moved("claim", row.id, now)
    return Claimed(draw_id, row)


def _claim_any(column: str, params: dict):
    """Claim one stock coupon in `seq` order, or None when there is none left.

    SKIP LOCKED lets concurrent draws take different rows instead of queueing on one. A row it
    skipped is held by a draw in flight, which may yet roll back, so an apparent sell-out is
    confirmed by looking again until no stock is left or a row is free. It never waits on another
    draw's row lock: a draw waiting for a row keeps the lock of every row it waited for, and two
    such draws, each seeing the other's rows as stock still, lock each other out (a deadlock seen
    at a sell-out under load). Draws in flight end within milliseconds; if after a second of pauses
    stock is still held, the answer is to try again (503, Retry-After), not a sell-out.
    """
    execute = db.session.execute
    if not database.on_postgres():  # SQLite writes one transaction at a time: nothing to skip
        return execute(_CLAIM[column, "none"], params).first()
    for pause in _SOLD_OUT_PAUSES:
        row = execute(_CLAIM[column, "skip"], params).first()
        if row is not None:
            return row
        if execute(_STOCK_LEFT[column], params).first() is None:
            return None
        time.sleep(pause)
    raise ServiceUnavailable("参与的人太多，请稍后再试", headers={"Retry-After": "1"})


_SOLD_OUT_PAUSES = (0.002, 0.005, 0.01, 0.02) + (0.05,) * 19  # seconds; 1.0 in all


def record_thanks(*, resident_id: int, round_id: int, category_id: int, now: datetime) -> bool:
    """A spin that won nothing ("thanks for taking part") still counts as the round's draw (the same
    unique key); False when the resident had drawn already."""
    params = {"resident_id": resident_id, "round_id": round_id, "category_id": category_id, "slot": 0}
    return db.session.execute(_INSERT_DRAW, {**params, "outcome": "thanks", "created_at": now}).scalar() is not None


# A staged release's cap, from the round's quota (allocations: withdrawn coupons are not in
# it) and its stock (the partial stock index), never from a scan of the coupons drawn; one
# statement, so that quota and stock are read in one snapshot.
_RELEASE_CAP = sa.text("""
WITH f AS (SELECT
  (SELECT count(*) FROM coupons WHERE round_id = :round_id AND category_id = :key AND state = 'stock')
  - (SELECT coalesce(sum(a.quantity), 0) - coalesce(sum(a.quantity), 0) * :percent / 100
     FROM allocations a JOIN tiers t ON t.id = a.tier_id WHERE a.round_id = :round_id AND t.category_id = :key)
  AS free)
SELECT f.free, (SELECT seq FROM coupons WHERE round_id = :round_id AND category_id = :key AND state = 'stock'
  ORDER BY seq LIMIT 1 OFFSET (SELECT CASE WHEN free > 0 THEN free - 1 ELSE 0 END FROM f)) AS cap FROM f
""")


def release_cap(round_id: int, category_id: int, percent: int) -> int:
    """The largest `seq` of the category's stock that may be drawn while `percent`% of its quota is
    released: the stage must keep total - floor(P% x total) coupons in stock, so of the stock there
    is now, the first `stock - that` in `seq` order may go (-1: none). Claims take stock at or
    below the cap only (draw.claim.release_cap reads it once per stage)."""
    params = {"round_id": round_id, "key": category_id, "percent": percent}
    free, cap = db.session.execute(_RELEASE_CAP, params).one()
    return cap if free > 0 else -1


def won_by_draw(resident_id: int, round_id: int, category_id: int, slot: int = 0) -> int | None:
    """The coupon a resident's draw (or grab) of the round won, if it won one."""
    return db.session.scalar(
        sa.select(Coupon.id)
        .join(Draw, Draw.id == Coupon.draw_id)
        .where(
            Draw.resident_id == resident_id,
            Draw.round_id == round_id,
            Draw.category_id == category_id,
            Draw.slot == slot,
        )
    )


def stock_left(round_id: int, category_id: int, max_seq: int = ALL_RELEASED) -> bool:
    """Whether the category has stock in the round up to `max_seq`."""
    params = {"round_id": round_id, "key": category_id, "max_seq": max_seq}
    return db.session.execute(_STOCK_LEFT["category_id"], params).first() is not None


# ---------------------------------------------------------------- use: guarantee 3


# The coupon's move, on both databases: only if it is still claimed and valid at the redemption's time.
_SPEND = (
    "UPDATE coupons SET state = 'used'"
    " WHERE id = :coupon_id AND (state = 'claimed' AND valid_until > :created_at) IS TRUE"
)
_USE = sa.text(_SPEND).bindparams(utc_param("created_at"))
_UNDO_USE = sa.text("UPDATE coupons SET state = 'claimed' WHERE id = :coupon_id AND state = 'used'")
_REDEMPTION_COLUMNS = (
    "coupon_id", "category_id", "merchant_id", "staff_id", "resident_id", "face_fen", "threshold_fen",
    "spend_fen", "paid_fen", "spend_category", "note", "idempotency_key", "paycode_nonce", "lat", "lng", "created_at",
)  # fmt: skip
_INSERT_REDEMPTION = sa.text(
    f"INSERT INTO redemptions ({', '.join(_REDEMPTION_COLUMNS)})"
    f" VALUES ({', '.join(':' + c for c in _REDEMPTION_COLUMNS)}) ON CONFLICT DO NOTHING RETURNING id"
).bindparams(utc_param("created_at"))


def _use_sql() -> sa.TextClause:
    """PostgreSQL: spend the coupon, record its redemption and book both entries in one statement.

    The coupon moves only if still claimed and valid (`u`); the redemption is inserted only for a
    coupon moved, and nothing for a key taken meanwhile (`r`); the entries only for a redemption
    recorded (the ledger's own definition of a coupon's move, ledger.coupon_entry_sql). The answer
    says which happened: a coupon moved without a redemption is the caller's to put back.
    """
    moved = "u c JOIN rounds ro ON ro.id = c.round_id CROSS JOIN r"
    paid = ledger.coupon_entry_sql("redeem", moved, campaign="ro.campaign_id", redemption="r.id", amount=":paid_fen")
    # The rest's entry reads `paid`, so that it is written after it, as the till's moves are.
    rest = ledger.coupon_entry_sql(
        "short",
        f"{moved} WHERE CAST(:rest_fen AS BIGINT) > 0 AND EXISTS (SELECT FROM paid)",
        campaign="ro.campaign_id",
        redemption="r.id",
        amount=":rest_fen",
        coupons="0",
    )
    return sa.text(
        f"WITH u AS ({_SPEND} RETURNING id, round_id, category_id, tier_id),"
        f" r AS (INSERT INTO redemptions ({', '.join(_REDEMPTION_COLUMNS)})"
        f" SELECT {', '.join(':' + c for c in _REDEMPTION_COLUMNS)} FROM u ON CONFLICT DO NOTHING RETURNING id),"
        f" paid AS ({paid} RETURNING id),"
        f" rest AS ({rest})"
        " SELECT (SELECT id FROM u) AS coupon_id, (SELECT id FROM r) AS redemption_id"
    ).bindparams(utc_param("created_at"))


_USE_AND_RECORD = database.Prepared(_use_sql())


class KeyTaken(Exception):
    """A unique key of the redemption (the till's Idempotency-Key, the wallet code's nonce) was
    taken meanwhile by another submission; the coupon is left as it was."""


def use(redemption: dict, now: datetime) -> Redemption | None:
    """Spend the coupon `redemption["coupon_id"]`: claimed -> used if it still is, and valid, with
    its redemption row and ledger entries: it pays its face, never more than the spend, and the
    rest of its face goes back to the pool (the till refused a short sale unless the campaign
    settles it so). None when it was not (another till took it first): nothing written.
    KeyTaken when the redemption's Idempotency-Key or wallet code was taken at that moment.
    One statement on PostgreSQL.
    """
    values = {"note": None, "idempotency_key": None, "paycode_nonce": None, "lat": None, "lng": None}
    values |= redemption | {"created_at": now}
    values["paid_fen"] = min(values["face_fen"], values["spend_fen"])  # never more than the sale
    coupon_id, paid, rest = values["coupon_id"], values["paid_fen"], values["face_fen"] - values["paid_fen"]
    if database.on_postgres():
        moved, redemption_id = _USE_AND_RECORD.one(values | {"rest_fen": rest})
        if moved is None:
            return None
    else:
        if db.session.execute(_USE, {"coupon_id": coupon_id, "created_at": now}).rowcount != 1:
            return None
        redemption_id = db.session.execute(_INSERT_REDEMPTION, values).scalar()
        if redemption_id is not None:
            ledger.coupon_moved("redeem", coupon_id, now, redemption_id, amount_fen=paid)
            if rest:
                ledger.coupon_moved("short", coupon_id, now, redemption_id, amount_fen=rest, coupons=0)
    if redemption_id is None:
        db.session.execute(_UNDO_USE, {"coupon_id": coupon_id})
        raise KeyTaken
    return Redemption(id=redemption_id, refunded_spend_fen=0, returned_fen=0, withheld_fen=0, **values)


def unuse(redemption: Redemption, now: datetime) -> bool:
    """A mistaken redemption revoked (撤回): the coupon is its holder's to use again, whole. False
    (and nothing booked) when the coupon was not used."""
    moved = db.session.execute(
        sa.update(Coupon)
        .where(Coupon.id == redemption.coupon_id, Coupon.state == State.USED)
        .values(state=State.CLAIMED)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved == 1:
        ledger.coupon_moved("revoke", redemption.coupon_id, now, redemption.id, amount_fen=redemption.paid_fen)
        rest = redemption.face_fen - redemption.paid_fen
        if rest:
            ledger.coupon_moved("revoke_short", redemption.coupon_id, now, redemption.id, amount_fen=rest, coupons=0)
    return moved == 1


def refund_share(paid_fen: int, spend_fen: int, refunded_before: int, refunded_after: int) -> int:
    """The coupon's share of a refund that brings the sale's refunded spend from `refunded_before`
    to `refunded_after` (Jincheng: 部分退货按比例退回).

    The shares are the cumulative proportion rounded down to the fen, each refund taking the
    difference: floor(paid x after / spend) - floor(paid x before / spend). So however a sale is
    refunded in parts, the shares add up to at most the coupon's value, exactly it when the whole
    spend is refunded, and no refund's share is off by more than a fen. A sale without a spend
    recorded is refunded whole, once.
    """
    if spend_fen <= 0:
        return paid_fen
    return paid_fen * refunded_after // spend_fen - paid_fen * refunded_before // spend_fen


def refund(redemption: Redemption, spend_fen: int, policy: str, now: datetime) -> int | None:
    """Goods returned (退货) for `spend_fen` of the sale: the coupon's share of it (rules.refund_share)
    goes back to the pool under "return" -- and when the whole sale is refunded the coupon is
    voided -- or under "forfeit" is withheld from the merchant while the coupon stays used. The
    redemption's figures are updated; returns the share, or None (and nothing booked) when the
    coupon was not used. The caller holds the redemption's lock and has checked the amount."""
    before, after = redemption.refunded_spend_fen, redemption.refunded_spend_fen + spend_fen
    whole = after >= redemption.spend_fen
    share = refund_share(redemption.paid_fen, redemption.spend_fen, before, after)
    used = Coupon.id == redemption.coupon_id, Coupon.state == State.USED
    if policy == "return" and whole:
        moved = db.session.execute(
            sa.update(Coupon).where(*used).values(state=State.VOID).execution_options(synchronize_session=False)
        ).rowcount
    else:  # nothing moves but the money: the coupon must be used still
        moved = len(db.session.execute(sa.select(Coupon.id).where(*used).with_for_update()).all())
    if moved != 1:
        return None
    if policy == "return":
        redemption.returned_fen += share
        kind, coupons = "refund_return", int(whole)
    else:
        redemption.withheld_fen += share
        kind, coupons = "refund_forfeit", 0
    if share or coupons:
        ledger.coupon_moved(kind, redemption.coupon_id, now, redemption.id, amount_fen=share, coupons=coupons)
    redemption.refunded_spend_fen = after
    redemption.refund_policy = policy
    if whole:
        redemption.refunded_at = now
    return share


def revoke_claim(coupon_id: int, now: datetime) -> bool:
    """The bureau takes back a coupon held unused (won by fraud): void, its value back to the pool.
    False when it is not held unused (a till redeeming it at the same moment wins or loses cleanly)."""
    revoked = db.session.execute(
        sa.update(Coupon)
        .where(Coupon.id == coupon_id, status_clause(Status.UNUSED, now, keyed=True))
        .values(state=State.VOID)
        .execution_options(synchronize_session=False)
    ).rowcount
    if revoked == 1:
        ledger.coupon_moved("revoke_claim", coupon_id, now)
    return revoked == 1


# ---------------------------------------------------------------- the jobs' moves


_EXPIRE = sa.text(
    "UPDATE coupons SET state = 'expired'"
    " WHERE state = 'claimed' AND valid_until <= :now"
    " AND round_id IN (SELECT id FROM rounds WHERE campaign_id = :campaign_id)"
    " RETURNING id, round_id, tier_id, category_id, face_fen"
).bindparams(utc_param("now"))
_WITHDRAW = sa.text(
    "UPDATE coupons SET state = 'withdrawn' WHERE round_id = :round_id AND state = 'stock'"
    " RETURNING id, round_id, tier_id, category_id, face_fen"
)


def expire(campaign_id: int, now: datetime, actor: str) -> int:
    """Claimed coupons of the campaign past their deadline -> expired, their value back to the pool."""
    expired = db.session.execute(_EXPIRE, {"now": now, "campaign_id": campaign_id}).all()
    ledger.record(ledger.grouped("expire", campaign_id, expired, now, actor=actor))
    return len(expired)


def withdraw_round(campaign_id: int, round_id: int, now: datetime, actor: str) -> int:
    """A round's stock nobody drew -> withdrawn, its value back to the pool."""
    withdrawn = db.session.execute(_WITHDRAW, {"round_id": round_id}).all()
    ledger.record(ledger.grouped("withdraw", campaign_id, withdrawn, now, actor=actor, note="轮次结束未领取"))
    return len(withdrawn)


def withdraw_some(round_, tier: Tier, count: int, now: datetime, actor: str) -> int:
    """Take `count` coupons of a tier off a round's stock (the bureau lowers a quota), the last in
    draw order first, their value back to the pool."""
    ids = db.session.scalars(
        sa.select(Coupon.id)
        .where(Coupon.round_id == round_.id, Coupon.tier_id == tier.id, Coupon.state == State.STOCK)
        .order_by(Coupon.seq.desc())
        .limit(count)
    ).all()
    withdrawn = db.session.execute(
        sa.update(Coupon)
        .where(Coupon.id.in_(ids), Coupon.state == State.STOCK)
        .values(state=State.WITHDRAWN)
        .returning(Coupon.id)
        .execution_options(synchronize_session=False)
    ).all()
    note = f"第{round_.number}轮配额调整"
    ledger.record([ledger.tier_entry("adjust_down", round_, tier, len(withdrawn), now, actor=actor, note=note)])
    return len(withdrawn)


# ---------------------------------------------------------------- redemptions that stand


def standing_clause():
    """Redemptions that stand: not revoked, and not refunded under the "return" policy (whose
    coupon is voided). Their face value is what the ledger keeps as redeemed or forfeited."""
    return sa.and_(
        Redemption.revoked_at.is_(None),
        sa.or_(Redemption.refunded_at.is_(None), Redemption.refund_policy == "forfeit"),
    )


def settled_clause():
    """What the merchant is reimbursed for, as a condition on a redemption.

    Qian'an rule: a redemption without spend amount or category forfeits its subsidy; revoked
    ones and refunds under the "return" policy owe nothing.
    """
    return sa.and_(
        standing_clause(),
        Redemption.spend_fen > 0,
        sa.func.length(sa.func.trim(Redemption.spend_category)) > 0,
    )
