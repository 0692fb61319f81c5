"""Tamper evidence: each campaign's claims and redemptions sealed into one hash chain.

A link is HMAC-SHA256(CHAIN_KEY, previous link's digest + the record's facts). The key lives
in the environment, not in the database, so whoever holds a copy of the database (or can write
to it) cannot recompute the chain after changing, deleting or reordering a sealed record.
`flask --app server audit verify` recomputes every link and names the first one broken.

The draw and the till never wait for the chain: chaining at insert time would make every claim
of a campaign queue on one "last link" row, the one hot row the 09:00 crowd must not meet.
The `seal` job appends, every 30 s, the records committed more than SEAL_LAG ago that have no
link yet, in the order of their own time. Records are therefore covered from about a minute
after they happen; what happens to one inside that minute is covered by the ledger (a claim or
redemption with no ledger entry leaves `flask ledger` unbalanced) and the console's audit log.

The facts sealed are those that never change after the record is written (who, what, how much,
when). A coupon's later state (used, void, expired) and a redemption's revoke or refund are
changes the system makes itself, each with its own ledger entry.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from ..core.db import advisory_lock
from ..extensions import db
from ..models import Campaign, Coupon, Redemption, Round, Seal

SEAL_LAG = timedelta(seconds=30)  # every draw and redemption transaction has committed by then
SEAL_WINDOW = timedelta(minutes=10)  # how far behind the chain's head a run looks for late commits
BATCH = 5000
RUN_LIMIT = 50_000  # records per kind a run seals at most (a backlog is worked off run by run)
LATE = SEAL_LAG + SEAL_WINDOW + timedelta(minutes=5)  # a link sealed later than this after its record
LOCK_KEY = int.from_bytes(b"seal", "big")  # advisory_lock(this key, the campaign)

CLAIM_FACTS = (
    Coupon.id,
    Coupon.round_id,
    Coupon.tier_id,
    Coupon.category_id,
    Coupon.face_fen,
    Coupon.threshold_fen,
    Coupon.resident_id,
    Coupon.draw_id,
    Coupon.claimed_at,
    Coupon.valid_until,
)
REDEMPTION_FACTS = (
    Redemption.id,
    Redemption.coupon_id,
    Redemption.category_id,
    Redemption.merchant_id,
    Redemption.staff_id,
    Redemption.resident_id,
    Redemption.face_fen,
    Redemption.threshold_fen,
    Redemption.spend_fen,
    Redemption.spend_category,
    Redemption.created_at,
)
KIND_NAMES = {"claim": "领取记录", "redemption": "核销记录"}
# Per kind: the facts sealed (the record's id first) and the record's own time among them.
SOURCES = {"claim": (CLAIM_FACTS, Coupon.claimed_at), "redemption": (REDEMPTION_FACTS, Redemption.created_at)}
log = logging.getLogger(__name__)


def _key() -> bytes:
    key = current_app.config.get("CHAIN_KEY") or current_app.config["SECRET_KEY"]
    return key.encode()


def _text(value) -> str:
    return value.isoformat() if isinstance(value, datetime) else "" if value is None else str(value)


def digest(previous: str, kind: str, facts: tuple, sealed_at: datetime) -> str:
    message = "\n".join([previous, kind, "|".join(_text(v) for v in facts), _text(sealed_at)])
    return hmac.new(_key(), message.encode(), hashlib.sha256).hexdigest()


def genesis(campaign_id: int) -> str:
    return hmac.new(_key(), f"huigou-chain:{campaign_id}".encode(), hashlib.sha256).hexdigest()


def _claims(campaign_id: int):
    return (
        sa.select(*CLAIM_FACTS)
        .join(Round, Round.id == Coupon.round_id)
        .where(Round.campaign_id == campaign_id, Coupon.draw_id.is_not(None))
    )


def _redemptions(campaign_id: int):
    return (
        sa.select(*REDEMPTION_FACTS)
        .join(Coupon, Coupon.id == Redemption.coupon_id)
        .join(Round, Round.id == Coupon.round_id)
        .where(Round.campaign_id == campaign_id)
    )


def _unsealed(
    campaign_id: int, since: datetime | None, before: datetime, limit: int | None = None
) -> list[tuple[datetime, str, tuple]]:
    """Records of the campaign with no link, timed in [since, before), in chain order; with a
    limit, the oldest ones only, cut so that no older record of either kind is left behind."""
    found, cutoffs = [], []
    for kind, query in (("claim", _claims(campaign_id)), ("redemption", _redemptions(campaign_id))):
        (record_id, *_), at = SOURCES[kind]
        query = query.where(
            at < before,
            ~sa.exists().where(Seal.kind == kind, Seal.record_id == record_id),
        )
        if since is not None:
            query = query.where(at >= since)
        if limit is not None:
            query = query.order_by(at, record_id).limit(limit)
        rows = [(row._mapping[at], kind, tuple(row)) for row in db.session.execute(query)]
        if limit is not None and len(rows) == limit:
            cutoffs.append(rows[-1][0])
        found.extend(rows)
    found.sort(key=lambda item: (item[0], item[1], item[2][0]))
    if cutoffs:
        kept = [item for item in found if item[0] < min(cutoffs)]
        found = kept or found  # (a limit's worth at one instant: take them all)
    return found


def _head(campaign_id: int) -> Seal | None:
    return db.session.scalar(
        sa.select(Seal).where(Seal.campaign_id == campaign_id).order_by(Seal.position.desc()).limit(1)
    )


def seal(now: datetime) -> dict[str, int]:
    """The scheduler's job: link every record committed before now - SEAL_LAG that has none."""
    sealed = {}
    campaigns = db.session.execute(
        sa.select(Campaign.id, sa.func.min(Round.opens_at))
        .join(Round, Round.campaign_id == Campaign.id)
        .where(Campaign.status != "draft")
        .group_by(Campaign.id)
        .order_by(Campaign.id)
    ).all()
    for campaign_id, first_opens in campaigns:
        # A second sealer (two leaders, or `audit seal` by hand) waits, then sees the new head.
        advisory_lock(LOCK_KEY, campaign_id)
        head = _head(campaign_id)
        # Nothing is claimed before the first round opens: the time indexes bound every search.
        since = head.record_at - SEAL_WINDOW if head else first_opens - SEAL_WINDOW
        records = _unsealed(campaign_id, since, now - SEAL_LAG, RUN_LIMIT)
        if not records:
            continue
        position, previous = (head.position, head.digest) if head else (0, genesis(campaign_id))
        links = []
        for at, kind, facts in records:
            position += 1
            previous = digest(previous, kind, facts, now)
            links.append(
                {
                    "campaign_id": campaign_id,
                    "position": position,
                    "kind": kind,
                    "record_id": facts[0],
                    "record_at": at,
                    "digest": previous,
                    "sealed_at": now,
                }
            )
        try:
            with db.session.begin_nested():
                for start in range(0, len(links), BATCH):
                    db.session.execute(sa.insert(Seal), links[start : start + BATCH])
        except sa.exc.IntegrityError:  # SQLite: another sealer got there first; the next run goes on
            continue
        sealed[str(campaign_id)] = len(links)
        # The head, outside the database: `audit verify --expect POSITION:DIGEST` checks it later.
        log.info("chain head of campaign %s: %s:%s", campaign_id, position, previous)
    return sealed


@dataclass
class Verdict:
    campaign_id: int
    links: int = 0
    head: str | None = None
    head_position: int = 0
    problems: list[str] = field(default_factory=list)
    pending: int = 0  # newer than the last run of the job: not sealed yet, as expected

    @property
    def intact(self) -> bool:
        return not self.problems


def _links(campaign_id: int) -> Iterator[list[Seal]]:
    last = 0
    while True:
        chunk = db.session.scalars(
            sa.select(Seal)
            .where(Seal.campaign_id == campaign_id, Seal.position > last)
            .order_by(Seal.position)
            .limit(BATCH)
        ).all()
        if not chunk:
            return
        yield chunk
        last = chunk[-1].position


def _facts(kind: str, ids: list[int]) -> dict[int, tuple]:
    if not ids:
        return {}
    columns, _ = SOURCES[kind]
    query = sa.select(*columns).where(columns[0].in_(ids))
    if kind == "claim":
        query = query.where(Coupon.draw_id.is_not(None))
    return {row[0]: tuple(row) for row in db.session.execute(query)}


def verify(campaign_id: int, now: datetime, expect: dict[int, str] | None = None) -> Verdict:
    """Recompute the campaign's chain link by link; every break is named, the first one first.

    `expect` holds heads noted earlier (position -> digest, from the job's log or an earlier
    verify): a chain cut back and sealed again with the real key differs there.
    """
    verdict = Verdict(campaign_id)
    expect = dict(expect or {})
    previous: str | None = genesis(campaign_id)
    expected = 1
    for chunk in _links(campaign_id):
        facts = {kind: _facts(kind, [s.record_id for s in chunk if s.kind == kind]) for kind in KIND_NAMES}
        for link in chunk:
            name = f"第{link.position}环（{KIND_NAMES[link.kind]} #{link.record_id}）"
            if link.position != expected:  # the link after a gap cannot be checked: its predecessor is gone
                verdict.problems.append(f"第{expected}环至第{link.position - 1}环缺失：封存记录被删除")
                previous = None
            record = facts[link.kind].get(link.record_id)
            if record is None:
                verdict.problems.append(f"{name}：记录已被删除")
            elif previous is not None and digest(previous, link.kind, record, link.sealed_at) != link.digest:
                verdict.problems.append(f"{name}：记录内容与封存时不符，已被改动")
            if link.sealed_at - link.record_at > LATE:
                verdict.problems.append(
                    f"{name}：记录产生{(link.sealed_at - link.record_at) // timedelta(minutes=1)}分钟后才封存"
                    "（调度器当时停止运行则属正常，否则可能是删除封存后改动记录再重新封存）"
                )
            noted = expect.pop(link.position, None)
            if noted is not None and noted != link.digest:
                verdict.problems.append(f"{name}：摘要与此前记下的不符，哈希链在此处或之前被重写")
            previous, expected = link.digest, link.position + 1
            verdict.links += 1
        verdict.head, verdict.head_position = previous, expected - 1
    for position in sorted(expect):
        verdict.problems.append(f"第{position}环已不存在：哈希链被截短（此前记下的摘要 {expect[position][:12]}…）")
    head = _head(campaign_id)
    if head is not None:
        # Records older than what the job has looked at, yet never sealed: written in afterwards.
        late = _unsealed(campaign_id, None, head.record_at - SEAL_WINDOW)
        for at, kind, facts in late:
            verdict.problems.append(f"{KIND_NAMES[kind]} #{facts[0]}（{at.isoformat()}）未被封存：可能是事后插入的记录")
        verdict.pending = len(_unsealed(campaign_id, head.record_at - SEAL_WINDOW, now))
    else:
        verdict.pending = len(_unsealed(campaign_id, None, now))
    return verdict
