"""The risk flags' stored hourly figures (pool/risk.py): over a history where every rule fires, with
near misses beside each, the flags read from the stored figures are the flags the source rows give,
for a day, a week and the whole campaign, before and after revocations that change hours after
their own."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.admin import risk
from server.core.time import local_midnight
from server.extensions import db
from server.models import (
    Category,
    Coupon,
    Draw,
    HourMark,
    HourMerchantRisk,
    Merchant,
    Redemption,
    Refund,
    Resident,
    Round,
    Staff,
    Tier,
)
from server.pool import risk as figures
from server.pool import rollup

# Now: 2026-07-04 11:25 in Shanghai. The day's period starts at 2026-07-03 11:25, inside an hour;
# the week's at 2026-06-27 11:25; the history begins on 2026-06-25.
NOW = datetime(2026, 7, 4, 3, 25, tzinfo=UTC)
PERIODS = (1, 7, 30)
FAR = (45.0987, 124.0244)  # ten kilometres north of the shops
SHOP = (45.0087, 124.0244)


def local(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A moment in Shanghai on a day of June or July 2026 (day 25..30 June, then 1.. as July)."""
    month, day = (6, day) if day >= 25 else (7, day)
    midnight = local_midnight(datetime(2026, month, day).date())
    return midnight + timedelta(hours=hour, minutes=minute, seconds=second)


class History:
    """Redemptions, refunds and bindings written as rows, at the moments a pattern needs."""

    def __init__(self, app, make_till):
        self.app = app
        self.serial = itertools.count(1)
        self.shops = {}
        for name in "ABCDEFGHIJ":
            merchant_id, _ = make_till("hotel")
            self.shops[name] = merchant_id
        with app.app_context():
            self.category = db.session.scalar(sa.select(Category.id).where(Category.code == "hotel"))
            tier = db.session.scalars(sa.select(Tier).where(Tier.category_id == self.category)).first()
            self.tier = (tier.id, tier.face_fen, tier.threshold_fen)
            self.round = db.session.scalar(sa.select(Round.id).where(Round.number == 1))
            self.staff = dict(db.session.execute(sa.select(Staff.merchant_id, Staff.id)).all())
            merchant = db.session.get(Merchant, self.shops["J"])
            merchant.lat, merchant.lng = SHOP
            db.session.commit()

    def resident(self, bound_at=None, address=None, device=None) -> int:
        n = next(self.serial)
        with self.app.app_context():
            resident = Resident(
                openid=f"history-{n}",
                name="居民",
                phone=f"135{n:08d}",
                bound_at=bound_at or local(25, 8),
                bound_address=address,
                bound_device=device,
            )
            db.session.add(resident)
            db.session.commit()
            return resident.id

    def redeem(self, shop: str, at: datetime, *, resident=None, exact=False, location=None) -> int:
        resident = resident or self.resident()
        n = next(self.serial)
        tier_id, face_fen, threshold_fen = self.tier
        with self.app.app_context():
            draw = Draw(
                resident_id=resident,
                round_id=self.round,
                category_id=self.category,
                slot=n,
                outcome="won",
                created_at=at,
            )
            db.session.add(draw)
            db.session.flush()
            coupon = Coupon(
                round_id=self.round,
                tier_id=tier_id,
                category_id=self.category,
                face_fen=face_fen,
                threshold_fen=threshold_fen,
                seq=10**6 + n,
                state="used",
                resident_id=resident,
                draw_id=draw.id,
                claimed_at=at - timedelta(minutes=30),
                valid_until=at + timedelta(days=5),
            )
            db.session.add(coupon)
            db.session.flush()
            merchant = self.shops[shop]
            redemption = Redemption(
                coupon_id=coupon.id,
                category_id=self.category,
                merchant_id=merchant,
                staff_id=self.staff[merchant],
                resident_id=resident,
                face_fen=face_fen,
                paid_fen=face_fen,
                threshold_fen=threshold_fen,
                spend_fen=threshold_fen + (0 if exact else 500),
                spend_category="住宿",
                lat=location[0] if location else None,
                lng=location[1] if location else None,
                created_at=at,
            )
            db.session.add(redemption)
            db.session.commit()
            return redemption.id

    def refund(self, redemption_id: int, at: datetime, policy="return") -> None:
        with self.app.app_context():
            redemption = db.session.get(Redemption, redemption_id)
            db.session.add(
                Refund(
                    redemption_id=redemption_id,
                    merchant_id=redemption.merchant_id,
                    staff_id=redemption.staff_id,
                    spend_fen=1000,
                    share_fen=300,
                    policy=policy,
                    reason="退货",
                    created_at=at,
                )
            )
            db.session.commit()

    def revoke(self, redemption_id: int, at: datetime) -> None:
        """As a till's revocation does: the redemption no longer stands, its hour is stale."""
        with self.app.app_context():
            redemption = db.session.get(Redemption, redemption_id)
            redemption.revoked_at, redemption.revoke_reason = at, "撤回"
            rollup.mark_stale(redemption.created_at)
            db.session.commit()


def burst(history, shop, start, count, every_s, **kw) -> list[int]:
    return [history.redeem(shop, start + timedelta(seconds=every_s * i), **kw) for i in range(count)]


def assistant_day(history, shop, day, residents, twice=(), hours=range(8, 21)) -> None:
    """`residents` distinct residents redeemed for by the shop's assistant on a day, one an hour
    round the hours given, the first `twice` of them again later that day."""
    hours = list(hours)
    made = [history.resident() for _ in range(residents)]
    for i, resident in enumerate(made):
        history.redeem(shop, local(day, hours[i % len(hours)], 7 + i % 40), resident=resident)
    for i, resident in enumerate(made[:twice]):
        history.redeem(shop, local(day, hours[-1], 45 + i), resident=resident)


@pytest.fixture
def history(app, make_campaign, make_till, clock):
    """Every rule fires somewhere, with near misses beside it; patterns sit across the hours, the
    local midnights and the starts of the day's and the week's periods."""
    make_campaign(refund_policy="forfeit")
    history = History(app, make_till)
    made = {}
    # Bursts: 22 redemptions 25 s apart across a local midnight (the 20th to 22nd end a burst, in
    # the hour after it); 20 at 32 s apart (19 gaps: 608 s) are none; 25 at 20 s round the day's
    # start (11:25): 6 bursts, none in the day (only 10 are in it); 20 at 30 s from 11:52 end one
    # at 12:01:30; the same 25 round the week's start at C: none in the week.
    made["midnight"] = burst(history, "A", local(29, 23, 55), 22, 25)
    burst(history, "B", local(30, 10), 20, 32)
    burst(history, "A", local(3, 11, 20), 25, 20)
    burst(history, "A", local(3, 11, 52), 20, 30)
    burst(history, "C", local(27, 11, 20), 25, 20)
    # Spends at the threshold: 6 of 10 (flagged); 5 of 11 and 4 of 4 (not).
    for i in range(10):
        history.redeem("D", local(1, 9 + i), exact=i < 6)
    for i in range(11):
        history.redeem("E", local(2, 9 + i), exact=i < 5)
    for i in range(4):
        history.redeem("F", local(2, 9 + i), exact=True)
    # An assistant for many residents: 30 in a day, 3 of them twice (flagged); 29 with 5 twice (not).
    assistant_day(history, "G", 28, 30, twice=3)
    assistant_day(history, "G", 30, 29, twice=5)
    # Round the day's start (2026-07-03 11:25), at H: 4 residents at 11:10 and again at 15:00, 2 at
    # 11:40 and again at 16:00, 1 at 09:00 and again at 17:00, 23 more after the start, and one
    # only at 10:30. The day counts 30 residents (the 11:10 ones by their 15:00 redemption), the
    # week 31. The same round the week's start at I (2026-06-27).
    for shop, day in (("H", 3), ("I", 27)):
        early = [history.resident() for _ in range(4)]
        for resident in early:
            history.redeem(shop, local(day, 11, 10), resident=resident)
            history.redeem(shop, local(day, 15), resident=resident)
        for resident in [history.resident() for _ in range(2)]:
            history.redeem(shop, local(day, 11, 40), resident=resident)
            history.redeem(shop, local(day, 16), resident=resident)
        resident = history.resident()
        made[f"first of {shop}"] = history.redeem(shop, local(day, 9), resident=resident)
        history.redeem(shop, local(day, 17), resident=resident)
        for i in range(23):
            history.redeem(shop, local(day, 12 + i % 8, 5 + i), resident=history.resident())
        history.redeem(shop, local(day, 10, 30))
    # Two coupons of one resident within minutes at one shop: across an hour (flagged), 5 min 1 s
    # apart (not), round the day's start (the day sees one of the two).
    for shop, first, gap in (("J", local(1, 10, 58), 299), ("J", local(1, 14), 301), ("F", local(3, 11, 23), 180)):
        resident = history.resident()
        history.redeem(shop, first, resident=resident)
        history.redeem(shop, first + timedelta(seconds=gap), resident=resident)
    # Refunds: one redemption refunded at 11:15 on the day's start and again at 15:00 (the day
    # counts one sale, by the later one); another twice in one stored hour; one withheld.
    twice = history.redeem("D", local(2, 20))
    history.refund(twice, local(3, 11, 15))
    history.refund(twice, local(3, 15), policy="forfeit")
    again = history.redeem("E", local(28, 20))
    history.refund(again, local(29, 10, 5))
    history.refund(again, local(29, 10, 50))
    history.refund(history.redeem("C", local(1, 12)), local(1, 13))
    # Far from the shop: two of J's redemptions 10 km away, one near.
    history.redeem("J", local(2, 10), location=FAR)
    history.redeem("J", local(30, 10), location=FAR)
    history.redeem("J", local(30, 11), location=SHOP)
    # Bindings: 20 from one address on a day (flagged), 19 from another (not); 3 on one device.
    for i in range(20):
        history.resident(bound_at=local(3, 12, i), address="10.0.0.1")
    for i in range(19):
        history.resident(bound_at=local(3, 12, i), address="10.0.0.2")
    for i in range(3):
        history.resident(bound_at=local(1, 12, i), device="device-shared")
    # A revoked redemption in a burst, before any hour is stored: it neither counts nor ends one.
    history.revoke(burst(history, "B", local(26, 10), 20, 20)[5], local(26, 10, 20))
    clock.move_to(NOW)
    return history, made


def flags_of(app, days: int, role: str = "admin", now: datetime = NOW) -> list:
    with app.app_context():
        return [(rule.kind, rule.flags) for rule in risk.flags(days, now, role)]


def from_source_rows(app, days: int, role: str = "admin", now: datetime = NOW) -> list:
    """The flags with every hour stale: nothing read from the stored figures."""
    with app.app_context():
        marks = db.session.execute(sa.select(HourMark.hour, HourMark.fresh)).all()
        db.session.execute(sa.update(HourMark).values(fresh=False))
        db.session.commit()
    try:
        return flags_of(app, days, role, now)
    finally:
        with app.app_context():
            for hour, fresh in marks:
                db.session.execute(sa.update(HourMark).where(HourMark.hour == hour).values(fresh=fresh))
            db.session.commit()


def close_hours(app) -> int:
    with app.app_context():
        closed = rollup.close_hours(NOW)
        db.session.commit()
        return closed


def stored_hours(app, days: int) -> int:
    with app.app_context(), db.engine.connect() as connection:
        split = figures.split(connection, NOW - timedelta(days=days), NOW)
        return sum((end - start) // rollup.HOUR for start, end in split.stored)


def test_flags_from_stored_hours_are_the_flags_of_the_source_rows(app, history):
    _, made = history
    live = {days: flags_of(app, days) for days in PERIODS}  # nothing stored yet
    fired = {kind for days in PERIODS for kind, found in live[days] if found}
    assert fired == {"burst", "exact", "staff", "address", "device", "far", "refund", "repeat"}
    while close_hours(app):
        pass
    assert stored_hours(app, 1) == 23 and stored_hours(app, 7) == 167  # the rest is read live
    for days in PERIODS:
        assert flags_of(app, days) == live[days], days
        assert flags_of(app, days, "auditor") == from_source_rows(app, days, "auditor"), days

    week, day, campaign = dict(live[7]), dict(live[1]), dict(live[30])
    bursts = {days: [(f.subject, f.detail) for f in dict(live[days])["burst"]] for days in PERIODS}
    assert bursts[30] == [
        ("演示商户1", "10分钟内核销达到20张，共出现10次"),  # 3 after midnight, 6 round the day's start, 1
        ("演示商户3", "10分钟内核销达到20张，共出现6次"),
    ]
    assert bursts[7] == bursts[30][:1]
    assert bursts[1] == [("演示商户1", "10分钟内核销达到20张，共出现1次")]
    staff = {days: [(f.subject[:5], f.detail) for f in dict(live[days])["staff"]] for days in PERIODS}
    assert staff[7] == [
        ("演示商户1", "2026-07-03一天内为45位不同居民核销"),
        ("演示商户8", "2026-07-03一天内为31位不同居民核销"),
        ("演示商户7", "2026-06-28一天内为30位不同居民核销"),  # and 29 on 2026-06-30: no flag
        ("演示商户9", "2026-06-27一天内为30位不同居民核销"),  # the part of the day in the week
    ]
    assert ("演示商户9", "2026-06-27一天内为31位不同居民核销") in staff[30]
    assert staff[1] == [  # 30 after 11:25: the 11:10 residents counted by their 15:00 redemption
        ("演示商户1", "2026-07-03一天内为30位不同居民核销"),
        ("演示商户8", "2026-07-03一天内为30位不同居民核销"),
    ]
    assert [f.detail for f in day["refund"]] == [
        "1次退货（1笔核销），退货金额10.00元，对应券值3.00元，其中3.00元视为已用、不予结算"
    ]
    assert [f.detail for f in week["refund"]][:2] == [
        "2次退货（1笔核销），退货金额20.00元，对应券值6.00元，其中3.00元视为已用、不予结算",
        "2次退货（1笔核销），退货金额20.00元，对应券值6.00元",
    ]
    assert [f.subject for f in week["repeat"]] == [f.subject for f in campaign["repeat"]]
    assert len(week["repeat"]) == 2 and day["repeat"] == []
    assert [f.subject for f in week["exact"]] == ["演示商户4"] and day["exact"] == []

    # A revocation after its hour is stored changes the hours after it: the burst across midnight
    # loses a redemption (in the hour after, one redemption ends no burst any more); H's assistant
    # a resident's first of 2026-07-03 (the same resident's at 17:00 becomes it, and still counts).
    # Read at once, and after the job again.
    history[0].revoke(made["midnight"][3], NOW)
    history[0].revoke(made["first of H"], NOW)
    for days in PERIODS:
        assert flags_of(app, days) == from_source_rows(app, days), days
    assert close_hours(app) == 2  # the two stale hours (and those after them, counted again)
    for days in PERIODS:
        assert flags_of(app, days) == from_source_rows(app, days), days
    week = dict(flags_of(app, 7))
    assert [(f.subject, f.detail) for f in week["burst"]] == [("演示商户1", "10分钟内核销达到20张，共出现9次")]
    assert ("演示商户8", "2026-07-03一天内为31位不同居民核销") in [(f.subject[:5], f.detail) for f in week["staff"]]


def test_a_period_that_starts_minutes_before_an_hour_reads_that_hour_from_the_source_rows(app, history):
    """The day from 2026-07-03 11:55: A's burst of 20 from 11:52 ends at 12:01:30, but 6 of it came
    before the period, so within the period there is none; the stored hour 12:00 counts it."""
    while close_hours(app):
        pass
    later = NOW + timedelta(minutes=30)
    for days in PERIODS:
        assert flags_of(app, days, now=later) == from_source_rows(app, days, now=later), days
    assert dict(flags_of(app, 1, now=later))["burst"] == []


def test_the_stored_figures_are_what_is_read(app, history):
    """Alter the stored bursts and the page shows them: the stored rows are read, not the source."""
    while close_hours(app):
        pass
    before = dict(flags_of(app, 7))["burst"]
    with app.app_context():
        db.session.execute(sa.update(HourMerchantRisk).where(HourMerchantRisk.bursts > 0).values(bursts=0))
        db.session.commit()
    assert dict(flags_of(app, 7))["burst"] != before
    assert dict(from_source_rows(app, 7))["burst"] == before


def test_other_thresholds_than_the_stored_ones_are_counted_from_the_source_rows(app, history, monkeypatch):
    while close_hours(app):
        pass
    rules = {**risk.RULES, "burst": {"count": 22, "minutes": 10}, "repeat": {"minutes": 2}}
    monkeypatch.setattr(risk, "RULES", rules)
    campaign = dict(flags_of(app, 30))
    assert [(f.subject, f.detail) for f in campaign["burst"]] == [
        ("演示商户1", "10分钟内核销达到22张，共出现5次"),  # 1 after midnight, 4 round the day's start
        ("演示商户3", "10分钟内核销达到22张，共出现4次"),
    ]
    assert campaign["repeat"] == []
    for days in PERIODS:
        assert flags_of(app, days) == from_source_rows(app, days)
