"""The console's searchable lists, each declared once and used for its page and its exports.

A listing turns the request's filters into one SQL query with a stable order (newest first, id
as the tie-break, both covered by an index) whose columns are the cells as shown: times in
Shanghai, yuan with two decimals, states in words, phone numbers masked for roles that need not
see them, all formatted by the database. So a page shows a slice of the query and the exports
stream all of it, and an export's rows are exactly the filtered list's rows, whatever its size,
with memory flat. On PostgreSQL the CSV export is the database's own `COPY (query) TO STDOUT`
passed through in blocks; elsewhere rows are fetched in batches and written as they come.
"""

from __future__ import annotations

import csv
import hashlib
import io
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ..draw.services import status_clause
from ..extensions import db
from ..models import Category, Coupon, Merchant, Redemption, Resident, Round, Staff
from ..rollup import ZONE, Period
from ..timeutil import utcnow
from .access import sees_phones

TZ = ZONE  # the console shows and filters by the reporting days of rollup.py
BATCH = 2000
COPY_BLOCK = 64 * 1024  # bytes of CSV passed on at a time
# A page counts its matches up to this many: an exact count of a million joined rows costs a
# second, and "more than 10,000" answers the question a page is asked. Exports take them all.
COUNT_LIMIT = 10_000


@dataclass(frozen=True)
class Listing:
    name: str
    title: str
    filters: tuple[str, ...]
    build: Callable[[dict, str], sa.Select]  # (filters, role) -> select of the cells, ordered
    titles: tuple[str, ...]
    states: dict[str, str] | None = None  # the "state" filter's choices

    def query(self, filters: dict, role: str) -> sa.Select:
        return self.build(filters, role)

    def page(self, filters: dict, role: str, page: int, per_page: int) -> tuple[list, int]:
        """A page of rows, and the number of matches (COUNT_LIMIT + 1 meaning "more than that")."""
        query = self.query(filters, role)
        bounded = query.order_by(None).limit(COUNT_LIMIT + 1).subquery()
        total = db.session.scalar(sa.select(sa.func.count()).select_from(bounded))
        rows = db.session.execute(query.limit(per_page).offset((page - 1) * per_page)).all()
        return [list(row) for row in rows], total

    def rows(self, filters: dict, role: str) -> Iterator:
        """Every row of the filtered list, fetched in batches (server-side cursor on PostgreSQL)."""
        connection = db.session.connection()
        if connection.dialect.name == "postgresql":
            # A cursor's plan is chosen for its first tenth by default (nested loops over indexes);
            # an export reads all of it, which a hash join does several times faster.
            connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
        for row in connection.execute(self.query(filters, role).execution_options(yield_per=BATCH)):
            yield list(row)


# ---------------------------------------------------------------- cells formatted in SQL


class local_text(FunctionElement):  # noqa: N801 - reads as the SQL function it stands for
    """A UTC timestamp as Shanghai time, "YYYY-MM-DD HH:MM:SS" ('' for none)."""

    type = sa.String()
    inherit_cache = True


@compiles(local_text, "postgresql")
def _local_text_pg(element, compiler, **kw):
    (column,) = element.clauses
    value = compiler.process(column, **kw)
    return f"coalesce(to_char({value} AT TIME ZONE '{TZ}', 'YYYY-MM-DD HH24:MI:SS'), '')"


@compiles(local_text, "sqlite")
def _local_text_sqlite(element, compiler, **kw):
    (column,) = element.clauses  # SQLite keeps UTC text; China has one offset, no daylight saving
    return f"coalesce(strftime('%Y-%m-%d %H:%M:%S', {compiler.process(column, **kw)}, '+8 hours'), '')"


class yuan_text(FunctionElement):  # noqa: N801
    """Fen as yuan with two decimals ("50.00"; '' for none)."""

    type = sa.String()
    inherit_cache = True


@compiles(yuan_text, "postgresql")
def _yuan_text_pg(element, compiler, **kw):
    (column,) = element.clauses
    return f"coalesce(to_char({compiler.process(column, **kw)} / 100.0, 'FM999999999990.00'), '')"


@compiles(yuan_text, "sqlite")
def _yuan_text_sqlite(element, compiler, **kw):
    (column,) = element.clauses
    value = compiler.process(column, **kw)
    return f"coalesce(printf('%.2f', {value} / 100.0), '')"


def text(column):
    return sa.func.coalesce(column, "")


def phone_text(column, role: str):
    """A phone number as this role may see it (access.phone_for, in SQL)."""
    if sees_phones(role):
        return text(column)
    masked = sa.func.substr(column, 1, 3) + "****" + sa.func.substr(column, sa.func.length(column) - 3)
    return sa.case((column.is_(None), ""), (sa.func.length(column) < 7, column), else_=masked)


# ---------------------------------------------------------------- filters


def day_range(filters: dict) -> tuple[datetime | None, datetime | None]:
    """The filters' local dates (inclusive) as a half-open UTC range."""
    return Period(filters.get("from"), filters.get("to")).bounds()


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


def _redemption_state():
    refunded = Redemption.refunded_at.is_not(None)
    return sa.case(
        (Redemption.revoked_at.is_not(None), "已撤回"),
        (sa.and_(refunded, Redemption.refund_policy == "return"), "已退货（退回资金池）"),
        (refunded, "已退货（视为已用）"),
        else_="有效",
    )


def _redemptions(filters: dict, role: str) -> sa.Select:
    buyer = sa.orm.aliased(Resident)
    query = (
        sa.select(
            Redemption.id,
            local_text(Redemption.created_at),
            Merchant.name,
            Staff.name,
            phone_text(Staff.phone, role),
            text(buyer.name),
            phone_text(buyer.phone, role),
            Category.name,
            Round.number,
            Redemption.coupon_id,
            yuan_text(Redemption.face_fen),
            yuan_text(Redemption.threshold_fen),
            yuan_text(Redemption.spend_fen),
            Redemption.spend_category,
            _redemption_state(),
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


REDEMPTIONS = Listing(
    name="redemptions",
    title="核销记录",
    filters=("from", "to", "merchant", "staff", "phone", "category", "state", "campaign", "sample"),
    build=_redemptions,
    titles=(
        "核销编号",
        "核销时间",
        "商户",
        "店员",
        "店员手机",
        "购买人",
        "购买人手机",
        "品类",
        "轮次",
        "券号",
        "面额(元)",
        "门槛(元)",
        "消费金额(元)",
        "消费品类",
        "状态",
    ),  # fmt: skip
    states=REDEMPTION_STATES,
)


# ---------------------------------------------------------------- claims (领取记录)

CLAIM_STATES = {"unused": "未使用", "used": "已使用", "expired": "已过期", "void": "已撤销/已退货"}


def claim_state(now: datetime):
    """A coupon's status in words, by the resident API's own rule (draw.services.status_clause)."""
    return sa.case(*((status_clause(key, now), name) for key, name in CLAIM_STATES.items()), else_="")


def _claims(filters: dict, role: str) -> sa.Select:
    now = filters.get("now") or utcnow()
    query = (
        sa.select(
            Coupon.id,
            local_text(Coupon.claimed_at),
            text(Resident.name),
            phone_text(Resident.phone, role),
            Category.name,
            Round.number,
            yuan_text(Coupon.face_fen),
            yuan_text(Coupon.threshold_fen),
            local_text(Coupon.valid_until),
            claim_state(now),
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


CLAIMS = Listing(
    name="claims",
    title="领取记录",
    filters=("from", "to", "resident", "phone", "category", "state", "campaign"),
    build=_claims,
    titles=("券号", "领取时间", "姓名", "手机号", "品类", "轮次", "面额(元)", "门槛(元)", "有效期至", "状态"),
    states=CLAIM_STATES,
)


# ---------------------------------------------------------------- residents (居民)


def _residents(filters: dict, role: str) -> sa.Select:
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
        Resident.id,
        text(Resident.name),
        phone_text(Resident.phone, role),
        local_text(Resident.bound_at),
        held,
        used,
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
    titles=("编号", "姓名", "手机号", "绑定时间", "领取张数", "使用张数"),
)


LISTINGS = {listing.name: listing for listing in (REDEMPTIONS, CLAIMS, RESIDENTS)}


# ---------------------------------------------------------------- exports


def csv_stream(listing: Listing, filters: dict, role: str) -> Iterator[bytes]:
    """UTF-8 with a BOM, so that Excel opens the Chinese correctly; written as rows come."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(listing.titles)
    yield "\ufeff".encode() + _drain(buffer)
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        yield from _copy_csv(connection, listing.query(filters, role))
        return
    for n, row in enumerate(listing.rows(filters, role), start=1):
        writer.writerow(row)
        if n % 500 == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _copy_csv(connection: sa.Connection, query: sa.Select) -> Iterator[bytes]:
    """The query's rows as CSV by PostgreSQL's COPY, in the session's transaction, passed on in
    blocks (COPY hands them over a row at a time)."""
    compiled = query.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    statement = f"COPY ({compiled.string}) TO STDOUT WITH (FORMAT csv)"
    driver = connection.connection.driver_connection
    block = bytearray()
    with driver.cursor() as cursor, cursor.copy(statement, compiled.params) as copy:
        for data in copy:
            block += data
            if len(block) >= COPY_BLOCK:
                yield bytes(block)
                block.clear()
    yield bytes(block)


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
    sheet.append(listing.titles)
    for row in listing.rows(filters, role):
        sheet.append(row)
    handle = tempfile.TemporaryFile(suffix=".xlsx")  # noqa: SIM115 - closed by the response
    workbook.save(handle)
    handle.seek(0)
    return handle


def filter_options() -> dict:
    """Choices for the filter fields: categories and merchants."""
    categories = db.session.execute(sa.select(Category.code, Category.name).distinct().order_by(Category.code)).all()
    merchants = db.session.execute(sa.select(Merchant.id, Merchant.name).order_by(Merchant.name)).all()
    return {"categories": categories, "merchants": merchants}


def statement_xlsx(merchant, period: str, rows):
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
        sheet.append([row.id, row.created_at, row.coupon_id, row.face_fen / 100, row.spend_fen / 100,
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
