"""The console's searchable lists, each declared once and used for its page and its exports.

A listing turns the request's filters into one SQL query with a stable order (newest first, id
as the tie-break, both covered by an index) and names its columns once: the page shows a slice of
the query, the CSV and XLSX exports stream all of it. So an export's rows are exactly the
filtered list's rows, whatever its size, with memory flat: rows are fetched in batches from a
server-side cursor and written out as they come.
"""

from __future__ import annotations

import csv
import hashlib
import io
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from ..draw.services import coupon_status, status_clause
from ..extensions import db
from ..models import Category, Coupon, Merchant, Redemption, Resident, Round, Staff
from ..timeutil import local_midnight, utcnow, zone
from .access import phone_for

TZ = "Asia/Shanghai"
BATCH = 2000
# A page counts its matches up to this many: an exact count of a million joined rows costs a
# second, and "more than 10,000" answers the question a page is asked. Exports take them all.
COUNT_LIMIT = 10_000


@dataclass(frozen=True)
class Column:
    title: str
    value: Callable  # (row, role) -> str | int


@dataclass(frozen=True)
class Listing:
    name: str
    title: str
    filters: tuple[str, ...]
    build: Callable[[dict], sa.Select]  # filters -> select, ordered
    columns: tuple[Column, ...]

    def query(self, filters: dict) -> sa.Select:
        return self.build(filters)

    def page(self, filters: dict, page: int, per_page: int) -> tuple[list, int]:
        """A page of rows, and the number of matches (COUNT_LIMIT + 1 meaning "more than that")."""
        query = self.query(filters)
        bounded = query.order_by(None).limit(COUNT_LIMIT + 1).subquery()
        total = db.session.scalar(sa.select(sa.func.count()).select_from(bounded))
        rows = db.session.execute(query.limit(per_page).offset((page - 1) * per_page)).all()
        return rows, total

    def rows(self, filters: dict) -> Iterator:
        """Every row of the filtered list, fetched in batches (server-side cursor on PostgreSQL)."""
        connection = db.session.connection()
        if connection.dialect.name == "postgresql":
            # A cursor's plan is chosen for its first tenth by default (nested loops over indexes);
            # an export reads all of it, which a hash join does several times faster.
            connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
        yield from connection.execute(self.query(filters).execution_options(yield_per=BATCH))

    def cells(self, row, role: str) -> list:
        return [column.value(row, role) for column in self.columns]


# ---------------------------------------------------------------- filters


def day_range(filters: dict) -> tuple[datetime | None, datetime | None]:
    """The filters' local dates (inclusive) as a half-open UTC range."""
    tz = zone(TZ)
    start = end = None
    if isinstance(filters.get("from"), date):
        start = local_midnight(filters["from"], tz)
    if isinstance(filters.get("to"), date):
        end = local_midnight(filters["to"] + timedelta(days=1), tz)
    return start, end


def within_days(query: sa.Select, column, filters: dict) -> sa.Select:
    """Restrict a listing's query to the filters' local date range on `column`."""
    start, end = day_range(filters)
    if start:
        query = query.where(column >= start)
    if end:
        query = query.where(column < end)
    return query


def parse_filters(args, names: tuple[str, ...]) -> dict:
    """Read the listing's filters from the query string; what does not parse is ignored.

    `now` is not a filter anyone types: it fixes "unused" and "expired" to one moment for the
    page and its export alike.
    """
    filters: dict = {"now": utcnow()}
    for name in names:
        raw = (args.get(name) or "").strip()[:60]
        if not raw:
            continue
        if name in ("from", "to"):
            try:
                filters[name] = date.fromisoformat(raw)
            except ValueError:
                continue
        elif name in ("merchant", "staff", "campaign"):
            if raw.isdigit():
                filters[name] = int(raw)
        else:
            filters[name] = raw
    return filters


def _local(instant: datetime | None) -> str:
    return instant.astimezone(zone(TZ)).strftime("%Y-%m-%d %H:%M:%S") if instant else ""


def _yuan(fen: int | None) -> str:
    return "" if fen is None else f"{fen / 100:.2f}"


# ---------------------------------------------------------------- redemptions (核销记录)

REDEMPTION_STATES = {"valid": "有效", "revoked": "已撤回", "refunded": "已退货"}


# The auditors' sample: a fixed tenth of the redemptions, chosen by a seeded hash of the id that
# both databases compute, so the same seed gives the same sample on any day, and the sample pages
# and exports like any list. ((id * a + b) mod p) is a permutation of the ids for a prime p, and
# the tenth of it below p / 10 is the sample.
SAMPLE_PRIME = 2_147_483_647


def sample_terms(seed: str) -> tuple[int, int]:
    digest = hashlib.sha256(f"huigou-audit-sample:{seed}".encode()).digest()
    a = 1 + int.from_bytes(digest[:8], "big") % (SAMPLE_PRIME - 1)
    b = int.from_bytes(digest[8:16], "big") % SAMPLE_PRIME
    return a, b


def in_sample(column, seed: str):
    a, b = (sa.literal(n, sa.BigInteger) for n in sample_terms(seed))
    return ((sa.cast(column, sa.BigInteger) * a + b) % SAMPLE_PRIME) < SAMPLE_PRIME // 10


def _redemptions(filters: dict) -> sa.Select:
    buyer = sa.orm.aliased(Resident)
    query = (
        sa.select(
            Redemption.id,
            Redemption.created_at,
            Merchant.name.label("merchant"),
            Staff.name.label("staff"),
            Staff.phone.label("staff_phone"),
            buyer.name.label("buyer"),
            buyer.phone.label("buyer_phone"),
            Category.name.label("category"),
            Round.number.label("round"),
            Redemption.coupon_id,
            Redemption.face_fen,
            Redemption.threshold_fen,
            Redemption.spend_fen,
            Redemption.spend_category,
            Redemption.revoked_at,
            Redemption.refunded_at,
            Redemption.refund_policy,
        )
        .join(Merchant, Merchant.id == Redemption.merchant_id)
        .join(Staff, Staff.id == Redemption.staff_id)
        .join(buyer, buyer.id == Redemption.resident_id)
        .join(Category, Category.id == Redemption.category_id)
        .join(Coupon, Coupon.id == Redemption.coupon_id)
        .join(Round, Round.id == Coupon.round_id)
    )
    query = within_days(query, Redemption.created_at, filters)
    if "merchant" in filters:
        query = query.where(Redemption.merchant_id == filters["merchant"])
    if "staff" in filters:
        query = query.where(Redemption.staff_id == filters["staff"])
    if "phone" in filters:
        query = query.where(buyer.phone == filters["phone"])
    if "category" in filters:
        query = query.where(Category.code == filters["category"])
    if "campaign" in filters:
        query = query.where(Round.campaign_id == filters["campaign"])
    if "sample" in filters:
        query = query.where(in_sample(Redemption.id, filters["sample"]))
    state = filters.get("state")
    if state == "valid":
        query = query.where(Redemption.revoked_at.is_(None), Redemption.refunded_at.is_(None))
    elif state == "revoked":
        query = query.where(Redemption.revoked_at.is_not(None))
    elif state == "refunded":
        query = query.where(Redemption.refunded_at.is_not(None))
    return query.order_by(Redemption.created_at.desc(), Redemption.id.desc())


def _redemption_state(row) -> str:
    if row.revoked_at:
        return "已撤回"
    if row.refunded_at:
        return "已退货（退回资金池）" if row.refund_policy == "return" else "已退货（视为已用）"
    return "有效"


REDEMPTIONS = Listing(
    name="redemptions",
    title="核销记录",
    filters=("from", "to", "merchant", "staff", "phone", "category", "state", "campaign", "sample"),
    build=_redemptions,
    columns=(
        Column("核销编号", lambda r, _: r.id),
        Column("核销时间", lambda r, _: _local(r.created_at)),
        Column("商户", lambda r, _: r.merchant),
        Column("店员", lambda r, _: r.staff),
        Column("店员手机", lambda r, role: phone_for(r.staff_phone, role)),
        Column("购买人", lambda r, _: r.buyer or ""),
        Column("购买人手机", lambda r, role: phone_for(r.buyer_phone, role)),
        Column("品类", lambda r, _: r.category),
        Column("轮次", lambda r, _: r.round),
        Column("券号", lambda r, _: r.coupon_id),
        Column("面额(元)", lambda r, _: _yuan(r.face_fen)),
        Column("门槛(元)", lambda r, _: _yuan(r.threshold_fen)),
        Column("消费金额(元)", lambda r, _: _yuan(r.spend_fen)),
        Column("消费品类", lambda r, _: r.spend_category),
        Column("状态", lambda r, _: _redemption_state(r)),
    ),
)


# ---------------------------------------------------------------- claims (领取记录)

CLAIM_STATES = {"unused": "未使用", "used": "已使用", "expired": "已过期", "void": "已撤销/已退货"}


def _claims(filters: dict) -> sa.Select:
    now = filters.get("now")
    query = (
        sa.select(
            Coupon.id,
            Coupon.claimed_at,
            Resident.name.label("name"),
            Resident.phone.label("phone"),
            Category.name.label("category"),
            Round.number.label("round"),
            Coupon.face_fen,
            Coupon.threshold_fen,
            Coupon.valid_until,
            Coupon.state,
        )
        .join(Resident, Resident.id == Coupon.resident_id)
        .join(Category, Category.id == Coupon.category_id)
        .join(Round, Round.id == Coupon.round_id)
        .where(Coupon.claimed_at.is_not(None))
    )
    query = within_days(query, Coupon.claimed_at, filters)
    if "resident" in filters:  # a name, or part of one ("name" is the list's own in the URL)
        query = query.where(Resident.name.contains(filters["resident"], autoescape=True))
    if "phone" in filters:
        query = query.where(Resident.phone == filters["phone"])
    if "category" in filters:
        query = query.where(Category.code == filters["category"])
    if "campaign" in filters:
        query = query.where(Round.campaign_id == filters["campaign"])
    if filters.get("state") in CLAIM_STATES:
        query = query.where(status_clause(filters["state"], now))
    return query.order_by(Coupon.claimed_at.desc(), Coupon.id.desc())


def claim_state(row, now: datetime) -> str:
    return CLAIM_STATES[coupon_status(row, now)]


CLAIMS = Listing(
    name="claims",
    title="领取记录",
    filters=("from", "to", "resident", "phone", "category", "state", "campaign"),
    build=_claims,
    columns=(
        Column("券号", lambda r, _: r.id),
        Column("领取时间", lambda r, _: _local(r.claimed_at)),
        Column("姓名", lambda r, _: r.name or ""),
        Column("手机号", lambda r, role: phone_for(r.phone, role)),
        Column("品类", lambda r, _: r.category),
        Column("轮次", lambda r, _: r.round),
        Column("面额(元)", lambda r, _: _yuan(r.face_fen)),
        Column("门槛(元)", lambda r, _: _yuan(r.threshold_fen)),
        Column("有效期至", lambda r, _: _local(r.valid_until)),
        Column("状态", lambda r, _: claim_state(r, utcnow())),
    ),
)


# ---------------------------------------------------------------- residents (居民)


def _residents(filters: dict) -> sa.Select:
    held = (
        sa.select(sa.func.count())
        .where(Coupon.resident_id == Resident.id, Coupon.claimed_at.is_not(None))
        .correlate(Resident)
        .scalar_subquery()
    )
    used = (
        sa.select(sa.func.count())
        .where(Coupon.resident_id == Resident.id, Coupon.state == "used")
        .correlate(Resident)
        .scalar_subquery()
    )
    query = sa.select(
        Resident.id, Resident.name, Resident.phone, Resident.bound_at, held.label("held"), used.label("used")
    ).where(Resident.bound_at.is_not(None))
    query = within_days(query, Resident.bound_at, filters)
    if "resident" in filters:
        query = query.where(Resident.name.contains(filters["resident"], autoescape=True))
    if "phone" in filters:
        query = query.where(Resident.phone == filters["phone"])
    return query.order_by(Resident.bound_at.desc(), Resident.id.desc())


RESIDENTS = Listing(
    name="residents",
    title="居民",
    filters=("from", "to", "resident", "phone"),
    build=_residents,
    columns=(
        Column("编号", lambda r, _: r.id),
        Column("姓名", lambda r, _: r.name or ""),
        Column("手机号", lambda r, role: phone_for(r.phone, role)),
        Column("绑定时间", lambda r, _: _local(r.bound_at)),
        Column("领取张数", lambda r, _: r.held),
        Column("使用张数", lambda r, _: r.used),
    ),
)


LISTINGS = {listing.name: listing for listing in (REDEMPTIONS, CLAIMS, RESIDENTS)}


# ---------------------------------------------------------------- exports


def csv_stream(listing: Listing, filters: dict, role: str) -> Iterator[bytes]:
    """UTF-8 with a BOM, so that Excel opens the Chinese correctly; written as rows come."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([c.title for c in listing.columns])
    yield "\ufeff".encode() + _drain(buffer)
    for n, row in enumerate(listing.rows(filters), start=1):
        writer.writerow(listing.cells(row, role))
        if n % 500 == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode("utf-8")
    buffer.seek(0)
    buffer.truncate()
    return data


def xlsx_file(listing: Listing, filters: dict, role: str):
    """The list as an XLSX workbook in a temporary file (openpyxl's write-only mode keeps memory
    flat); the caller streams the file and it is deleted when closed."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(listing.title)
    sheet.append([c.title for c in listing.columns])
    for row in listing.rows(filters):
        sheet.append(listing.cells(row, role))
    handle = tempfile.TemporaryFile(suffix=".xlsx")  # noqa: SIM115 - closed by the response
    workbook.save(handle)
    handle.seek(0)
    return handle


def filter_options() -> dict:
    """Choices for the filter fields: categories and merchants."""
    categories = db.session.execute(sa.select(Category.code, Category.name).distinct().order_by(Category.code)).all()
    merchants = db.session.execute(sa.select(Merchant.id, Merchant.name).order_by(Merchant.name)).all()
    return {"categories": categories, "merchants": merchants}


def statement_xlsx(merchant, period: str, rows, tz_name: str = TZ):
    """A merchant's settlement statement for a period as XLSX (write-only): the redemptions, then
    the total the bureau owes. Returns an open temporary file."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("结算单")
    sheet.append([f"{merchant.name} 消费券结算单"])
    sheet.append(["统一社会信用代码", merchant.credit_code])
    sheet.append(["结算期间", period])
    sheet.append([])
    sheet.append(["核销编号", "核销时间", "券号", "面额(元)", "消费金额(元)", "消费品类", "店员"])
    count = owed = spend = 0
    for row in rows:
        sheet.append([row.id, _local(row.created_at), row.coupon_id, row.face_fen / 100, row.spend_fen / 100,
                      row.spend_category, row.name])  # fmt: skip
        count, owed, spend = count + 1, owed + row.face_fen, spend + row.spend_fen
    sheet.append([])
    sheet.append(["合计笔数", count])
    sheet.append(["应结算金额(元)", owed / 100])
    sheet.append(["带动消费金额(元)", spend / 100])
    handle = tempfile.TemporaryFile(suffix=".xlsx")  # noqa: SIM115 - closed by the response
    workbook.save(handle)
    handle.seek(0)
    return handle, count, owed
