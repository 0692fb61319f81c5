"""Risk flags for the bureau (防范套现、刷单、黄牛): patterns worth a look, not verdicts.

Each rule is a query over a period's redemptions or bindings, with its thresholds in RULES:
- a merchant redeeming many coupons within minutes (empty orders run through one till);
- a merchant whose spends sit at exactly the threshold again and again (套现: the bill is made
  to fit the coupon, not the purchase);
- one shop assistant's phone redeeming for many residents in a day (coupons collected from
  residents and redeemed by the shop);
- many residents bound from one network address in a day, or from one device (scalpers with
  borrowed phone numbers; an address may be a carrier's shared exit, so the page says so);
- redemptions far from the merchant, where both positions are known;
- refunds after redemption, per merchant (a forfeited refund is a way to turn a coupon into cash:
  the sale is taken back and the shop would still be paid);
- one resident's coupons redeemed at one merchant within minutes (一次消费限用一张券: a bill split
  to use two).

What the rules over redemptions and refunds count is stored per hour as the hours close
(pool/risk.py): the page adds up the stored hours of the period and reads the rest (its first
and last hour or so, and any hour a revocation made stale) from the source rows, all from one
snapshot, so that any period is read in the time of a few thousand rows and flags exactly what
the whole period's rows say. Bindings and positions are read from their rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import render_template, request
from flask_login import current_user

from ..campaign import geo
from ..core.db import snapshot
from ..core.money import yuan
from ..core.time import utcnow
from ..models import Merchant, Redemption, Resident, Staff
from ..pool import risk as figures
from ..pool import rollup
from . import bp
from .access import READ, role_required
from .lists import phone_text

DAYS = (1, 7, 30)  # the periods the page offers

# The thresholds: pool/risk.py counts bursts and repeats into the stored hourly figures with them.
RULES = figures.RULES


@dataclass
class Flag:
    subject: str  # who: a merchant, an assistant, an address
    detail: str  # what was seen, in a sentence
    first: datetime | None = None
    last: datetime | None = None
    link: dict = field(default_factory=dict)  # filters of the redemption list that show it


@dataclass
class Rule:
    kind: str
    title: str
    explain: str
    flags: list[Flag]


_day = figures.day_of


def _merchant_names(connection: sa.Connection, ids) -> dict[int, str]:
    ids = set(ids)
    if not ids:
        return {}
    return dict(connection.execute(sa.select(Merchant.id, Merchant.name).where(Merchant.id.in_(ids))).all())


def _ranked(found: dict, count=lambda values: values[0]) -> list:
    """Flags' figures, the most first (then by what they are of, so that the order is one)."""
    return sorted(found.items(), key=lambda item: (-count(item[1]), item[0]))


def _standing(since: datetime, until: datetime):
    return sa.and_(Redemption.created_at >= since, Redemption.created_at <= until, Redemption.revoked_at.is_(None))


def bursts(connection: sa.Connection, split: figures.Split) -> list[Flag]:
    count, minutes = RULES["burst"]["count"], RULES["burst"]["minutes"]
    found = figures.bursts(connection, split, count, minutes)
    names = _merchant_names(connection, (m for (m,) in found))
    return [
        Flag(names[m], f"{minutes}分钟内核销达到{count}张，共出现{n}次", first, last, {"merchant": m})
        for (m,), (n, first, last) in _ranked(found)
    ]


def exact_thresholds(connection: sa.Connection, split: figures.Split) -> list[Flag]:
    count, percent = RULES["exact"]["count"], RULES["exact"]["percent"]
    found = {
        key: values
        for key, values in figures.merchants(connection, split).items()
        if values[1] >= count and values[1] * 100 >= values[0] * percent
    }
    names = _merchant_names(connection, (m for (m,) in found))
    return [
        Flag(
            names[m],
            f"{n}笔消费金额恰好等于使用门槛，占该店核销的{n * 100 // t}%（共{t}笔）",
            first,
            last,
            {"merchant": m},
        )  # fmt: skip
        for (m,), (t, n, first, last) in _ranked(found, lambda values: values[1])
    ]


def staff_for_many(connection: sa.Connection, split: figures.Split, role: str) -> list[Flag]:
    limit = RULES["staff"]["residents"]
    found = {key: values for key, values in figures.staff_days(connection, split).items() if values[0] >= limit}
    staff = {
        staff_id: (name, phone)
        for staff_id, name, phone in connection.execute(
            sa.select(Staff.id, Staff.name, phone_text(Staff.phone, role)).where(
                Staff.id.in_({staff_id for staff_id, _, _ in found})
            )
        )
    }
    names = _merchant_names(connection, (merchant for _, merchant, _ in found))
    return [
        Flag(
            f"{names[merchant]} 店员{staff[staff_id][0]}（{staff[staff_id][1]}）",
            f"{on}一天内为{n}位不同居民核销",
            first,
            last,
            {"merchant": merchant, "staff": staff_id, "from": on, "to": on},
        )
        for (staff_id, merchant, on), (n, first, last) in _ranked(found)
    ]


def shared_origins(connection: sa.Connection, since: datetime, until: datetime) -> tuple[list[Flag], list[Flag]]:
    window = sa.and_(Resident.bound_at >= since, Resident.bound_at <= until)
    day = _day(Resident.bound_at)
    per_address = connection.execute(
        sa.select(
            Resident.bound_address, day, sa.func.count(), sa.func.min(Resident.bound_at), sa.func.max(Resident.bound_at)
        )  # fmt: skip
        .where(window, Resident.bound_address.is_not(None))
        .group_by(Resident.bound_address, day)
        .having(sa.func.count() >= RULES["address"]["residents"])
        .order_by(sa.func.count().desc())
    ).all()
    per_device = connection.execute(
        sa.select(
            Resident.bound_device, sa.func.count(), sa.func.min(Resident.bound_at), sa.func.max(Resident.bound_at)
        )
        .where(window, Resident.bound_device.is_not(None))
        .group_by(Resident.bound_device)
        .having(sa.func.count() >= RULES["device"]["residents"])
        .order_by(sa.func.count().desc())
    ).all()
    return (
        [
            Flag(f"网络地址 {address}", f"{on}一天内绑定了{n}位居民", first, last)
            for address, on, n, first, last in per_address
        ],
        [Flag(f"设备 {device}", f"绑定了{n}位居民", first, last) for device, n, first, last in per_device],
    )


def far_from_shop(connection: sa.Connection, since: datetime, until: datetime) -> list[Flag]:
    metres = RULES["far"]["metres"]
    # Inside the square inscribed in the circle nothing is far: only the rest is measured.
    near = metres / math.sqrt(2) / 111_320
    rows = connection.execute(
        sa.select(
            Redemption.merchant_id, Redemption.created_at, Redemption.lat, Redemption.lng, Merchant.lat, Merchant.lng
        )  # fmt: skip
        .join(Merchant, Merchant.id == Redemption.merchant_id)
        .where(
            _standing(since, until),
            Redemption.lat.is_not(None),
            Merchant.lat.is_not(None),
            sa.or_(
                sa.func.abs(Redemption.lat - Merchant.lat) > near, sa.func.abs(Redemption.lng - Merchant.lng) > near
            ),
        )
    ).all()
    found: dict[int, list] = {}
    for merchant, at, lat, lng, shop_lat, shop_lng in rows:
        distance = geo.distance_m(lat, lng, shop_lat, shop_lng)
        if distance > metres:
            found.setdefault(merchant, []).append((at, distance))
    names = _merchant_names(connection, found)
    flags = []
    for merchant, seen in sorted(found.items(), key=lambda item: -len(item[1])):
        times = [at for at, _ in seen]
        farthest = max(d for _, d in seen) / 1000
        flags.append(
            Flag(
                names[merchant],
                f"{len(seen)}笔核销时收银手机距门店超过{metres / 1000:g}公里（最远{farthest:.1f}公里）",
                min(times),
                max(times),
                {"merchant": merchant},
            )  # fmt: skip
        )
    return flags


def refunds_after_redemption(connection: sa.Connection, split: figures.Split) -> list[Flag]:
    """Every merchant's refunds of the period: how many, of how many sales, and the coupons' shares
    returned to the pool or withheld from its settlement."""
    found = {
        key: values
        for key, values in figures.refunds(connection, split).items()
        if values[0] >= RULES["refund"]["count"]
    }
    names = _merchant_names(connection, (m for (m,) in found))
    flags = []
    for (merchant,), (n, sales, spend, share, kept, first, last) in _ranked(found):
        detail = f"{n}次退货（{sales}笔核销），退货金额{yuan(spend, cents=True)}元，对应券值{yuan(share, cents=True)}元"
        if kept:
            detail += f"，其中{yuan(kept, cents=True)}元视为已用、不予结算"
        flags.append(Flag(names[merchant], detail, first, last, {"merchant": merchant, "state": "refunded"}))
    return flags


def repeated_at_one_shop(connection: sa.Connection, split: figures.Split, role: str) -> list[Flag]:
    """One resident's coupons redeemed at one merchant within minutes of each other."""
    minutes = RULES["repeat"]["minutes"]
    found = figures.repeats(connection, split, minutes)
    phones = {
        resident: (raw, phone)
        for resident, raw, phone in connection.execute(
            sa.select(Resident.id, Resident.phone, phone_text(Resident.phone, role)).where(
                Resident.id.in_({resident for _, resident in found})
            )
        )
    }
    names = _merchant_names(connection, (merchant for merchant, _ in found))
    flags = []
    for (merchant, resident), (n, first, last) in _ranked(found):
        raw, phone = phones[resident]
        flags.append(
            Flag(
                f"{names[merchant]} · 居民{phone}",
                f"{n + 1}张券在{minutes}分钟内先后核销（每次消费限用一张券）"
                if n == 1
                else f"{n}次在{minutes}分钟内接连核销第二张券",
                first,
                last,
                {"merchant": merchant} | ({"phone": raw} if phone == raw else {}),  # a masked phone is no filter
            )
        )
    return flags


def flags(days: int, now: datetime, role: str) -> list[Rule]:
    """Every rule's flags over the last `days` days."""
    since, until = now - timedelta(days=days), now
    with snapshot() as connection:  # every figure from one moment
        # The stored hourly figures where they hold, the source rows for the rest (pool/risk.py).
        split = figures.split(connection, since, until)
        found = {
            "burst": bursts(connection, split),
            "exact": exact_thresholds(connection, split),
            "staff": staff_for_many(connection, split, role),
            "far": far_from_shop(connection, since, until),
            "refund": refunds_after_redemption(connection, split),
            "repeat": repeated_at_one_shop(connection, split, role),
        }
        addresses, devices = shared_origins(connection, since, until)
    burst, exact, staff, address, device, far, repeat = (
        RULES[k] for k in ("burst", "exact", "staff", "address", "device", "far", "repeat")
    )
    rules = [
        Rule(
            "burst",
            "短时间大量核销",
            f"同一商户{burst['minutes']}分钟内核销{burst['count']}张及以上（可能刷单）",
            found["burst"],
        ),
        Rule(
            "exact",
            "消费金额恰好等于门槛",
            f"同一商户至少{exact['count']}笔、且不少于{exact['percent']}%的核销金额恰好等于门槛（可能套现）",
            found["exact"],
        ),  # fmt: skip
        Rule(
            "staff",
            "一名店员为大量居民核销",
            f"同一店员一天内为{staff['residents']}位及以上不同居民核销（可能代收代用）",
            found["staff"],
        ),  # fmt: skip
        Rule(
            "address",
            "同一网络地址大量绑定",
            f"同一网络地址一天内绑定{address['residents']}位及以上居民（可能是黄牛；运营商共享出口也会出现，请结合其他迹象判断）",
            addresses,
        ),  # fmt: skip
        Rule("device", "同一设备绑定多人", f"同一设备绑定{device['residents']}位及以上居民", devices),
        Rule(
            "far",
            "核销地点远离门店",
            f"收银手机位置距门店超过{far['metres'] / 1000:g}公里（双方位置已知时）",
            found["far"],
        ),  # fmt: skip
        Rule(
            "refund",
            "核销后退货",
            "商户在核销后办理的退货（按商户汇总）；退货视为已用时，券值不予结算",
            found["refund"],
        ),  # fmt: skip
        Rule(
            "repeat",
            "同一顾客同店连用多券",
            f"同一居民的消费券在同一商户{repeat['minutes']}分钟内先后核销（每次消费限用一张券，可能拆单）",
            found["repeat"],
        ),  # fmt: skip
    ]
    for rule in rules:  # a link without days of its own shows the flag's days
        for flag in rule.flags:
            if flag.link and flag.first and "from" not in flag.link:
                flag.link |= {"from": rollup.local_date(flag.first), "to": rollup.local_date(flag.last)}
    return rules


@bp.get("/risk")
@role_required(*READ)
def risk_page():
    """Patterns worth the bureau's look: bursts, spends at the threshold, shared tills and phones."""
    days = request.args.get("days", type=int)
    days = days if days in DAYS else 7
    rules = flags(days, utcnow(), current_user.role)
    return render_template("admin/risk.html", rules=rules, days=days, choices=DAYS)
