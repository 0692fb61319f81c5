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
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from flask import Response, abort, flash, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user

from ..auth.limits import limited
from ..core import db as database
from ..core.db import deadline_text, local_text, yuan_text
from ..core.errors import InvalidInput, refusal
from ..core.time import local, utcnow
from ..extensions import db
from ..models import AdminUser, BindingCode, Category, Coupon, Enrolment, Merchant, Redemption, Resident, Round, Staff
from ..pool import coupons
from ..pool.rollup import Period
from . import audit, bp, console
from .access import MERCHANTS, READ, role_required, sees_phones
from .console import attachment, page_count, paging, query_args, refusals_go_to, safe_next, xlsx
from .forms import ActionForm

BATCH = 2000
COPY_BLOCK = 64 * 1024  # bytes of CSV passed on at a time


@dataclass(frozen=True)
class Listing:
    name: str
    title: str
    filters: tuple[str, ...]
    build: Callable[[dict, str], sa.Select]  # (filters, role) -> select of the cells, ordered
    titles: tuple[str, ...]
    states: dict[str, str] | None = None  # the "state" filter's choices
    # The page's column headings, where the titles are too long for a laptop's width (the
    # exports keep the titles; the page shows each title as its heading's tooltip).
    headings: tuple[str, ...] = ()

    def columns(self) -> list[tuple[str, str]]:
        """(heading, title) of each column, as the page heads its table."""
        return list(zip(self.headings or self.titles, self.titles, strict=True))

    def query(self, filters: dict, role: str) -> sa.Select:
        return self.build(filters, role)

    def page(self, filters: dict, role: str, page: int, per_page: int) -> tuple[list, int]:
        """A page of rows, and the number of matches (console.COUNT_LIMIT + 1 meaning "more than that")."""
        query = self.query(filters, role)
        bounded = query.order_by(None).limit(console.COUNT_LIMIT + 1).subquery()
        total = db.session.scalar(sa.select(sa.func.count()).select_from(bounded))
        rows = db.session.execute(query.limit(per_page).offset((page - 1) * per_page)).all()
        return [list(row) for row in rows], total

    def rows(self, filters: dict, role: str) -> Iterator:
        """Every row of the filtered list, fetched in batches (server-side cursor on PostgreSQL)."""
        for row in database.stream(self.query(filters, role), BATCH):
            yield list(row)


# ---------------------------------------------------------------- cells formatted in SQL


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


FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2199, 12, 31)  # the dates a filter can mean


def digits(value: str) -> bool:
    return value.isascii() and value.isdigit()  # not "²", which is a digit to isdigit()


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
                day = date.fromisoformat(raw)
            except ValueError:
                continue
            if FIRST_DAY <= day <= LAST_DAY:  # 0001-01-01 less eight hours is no instant at all
                filters[name] = day
        elif name in ("merchant", "campaign"):
            if digits(raw) and int(raw) < 2**63:
                filters[name] = int(raw)
        else:
            filters[name] = raw
    return filters


# ---------------------------------------------------------------- redemptions (核销记录)


def staff_phone(filters: dict) -> str | None:
    """The staff filter when it is a phone number (digits only): matched in full, never in part,
    so it is a search by phone like the buyer's (see _phone_search)."""
    value = filters.get("staff") or ""
    return value if digits(value) else None


def staff_match(value: str):
    """The shop assistants the staff filter names: the one phone in full, or a name containing
    the text. The staff table is small; its matches' redemptions are found through
    ix_redemptions_staff_created."""
    if digits(value):
        return Staff.phone == value
    return Staff.name.contains(value, autoescape=True)


REDEMPTION_STATES = {"valid": "有效", "revoked": "已撤回", "refunded": "有退货（全部或部分）"}


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
        (refunded, "已退货（视为已用，不予结算）"),
        (Redemption.refunded_spend_fen > 0, "部分退货"),
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
            yuan_text(Redemption.paid_fen),
            yuan_text(Redemption.refunded_spend_fen),
            yuan_text(Redemption.owed_fen),
            Redemption.spend_category,
            _redemption_state(),
            text(Redemption.note),  # the till's 备注 (e.g. 店内收款191元)
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
    if "staff" in filters:  # a full phone number, or a name or part of one
        query = query.where(staff_match(filters["staff"]))
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
        query = query.where(Redemption.revoked_at.is_(None), Redemption.refunded_spend_fen == 0)
    elif state == "revoked":
        query = query.where(Redemption.revoked_at.is_not(None))
    elif state == "refunded":
        query = query.where(Redemption.refunded_spend_fen > 0)
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
        "券抵扣(元)",
        "退货金额(元)",
        "应结算(元)",
        "消费品类",
        "状态",
        "备注",
    ),  # fmt: skip
    states=REDEMPTION_STATES,
    headings=(
        "编号",
        "核销时间",
        "商户",
        "店员",
        "店员手机",
        "购买人",
        "购买人手机",
        "品类",
        "轮次",
        "券号",
        "面额",
        "门槛",
        "消费额",
        "抵扣",
        "退货额",
        "应结算",
        "消费品类",
        "状态",
        "备注",
    ),  # fmt: skip
)


# ---------------------------------------------------------------- claims (领取记录)

CLAIM_STATES = {"unused": "未使用", "used": "已使用", "expired": "已过期", "void": "已撤销/已退货"}


def claim_state(now: datetime):
    """A coupon's status in words, by the resident API's own rule (pool.coupons.status_clause)."""
    return sa.case(*((coupons.status_clause(key, now), name) for key, name in CLAIM_STATES.items()), else_="")


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
            deadline_text(Coupon.valid_until),
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
        query = query.where(coupons.status_clause(filters["state"], now))
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
        .where(Coupon.resident_id == Resident.id, Coupon.state == coupons.State.USED)
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
        sa.func.coalesce(Resident.id_masked, ""),  # only the masked number exists (core/idcard.py)
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
    titles=("编号", "姓名", "手机号", "绑定时间", "领取张数", "使用张数", "身份证"),
)


LISTINGS = {listing.name: listing for listing in (REDEMPTIONS, CLAIMS, RESIDENTS)}


# ---------------------------------------------------------------- exports


# A spreadsheet opening a CSV takes a cell that starts with one of these for a formula
# (=HYPERLINK(...), +cmd|...): such a text cell goes out with a leading apostrophe, which the
# spreadsheet shows as text. A number ("-5", "+8.00") is left as it is.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"^[+-]?[0-9][0-9.,]*$")


def csv_cell(value):
    if isinstance(value, str) and value.startswith(FORMULA_START) and not NUMBER.match(value):
        return "'" + value
    return value


def _csv_guarded(query: sa.Select) -> sa.Select:
    """The listing's query with csv_cell applied to its text cells in SQL (for COPY)."""

    def guard(column):
        if not isinstance(column.type, sa.String):
            return column
        risky = sa.and_(sa.func.substr(column, 1, 1).in_(FORMULA_START), sa.not_(column.regexp_match(NUMBER.pattern)))
        return sa.case((risky, sa.literal("'") + column), else_=column)

    return query.with_only_columns(*(guard(c) for c in query.selected_columns), maintain_column_froms=True)


def csv_stream(listing: Listing, filters: dict, role: str) -> Iterator[bytes]:
    """UTF-8 with a BOM, so that Excel opens the Chinese correctly; written as rows come; no cell
    a spreadsheet would take for a formula (csv_cell)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(listing.titles)
    yield "\ufeff".encode() + _drain(buffer)
    copied = database.copy_csv(_csv_guarded(listing.query(filters, role)), COPY_BLOCK)
    if copied is not None:
        yield from copied
        return
    for n, row in enumerate(listing.rows(filters, role), start=1):
        writer.writerow([csv_cell(cell) for cell in row])
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
    console.widths(sheet, *(max(10, 2 * len(title) + 2) for title in listing.titles))  # the title fits
    sheet.append(listing.titles)
    # Money columns (titled "(元)") hold numbers with two decimals, so that Excel sums them.
    money = [i for i, title in enumerate(listing.titles) if title.endswith("(元)")]
    for row in listing.rows(filters, role):
        cells = console.text_cells(sheet, row)
        for i in money:
            if row[i] not in (None, ""):
                cells[i] = console.money_cell(sheet, float(row[i]))
        sheet.append(cells)
    handle = tempfile.TemporaryFile(suffix=".xlsx")  # noqa: SIM115 - closed by the response
    workbook.save(handle)
    handle.seek(0)
    return handle


# A merchant can have redemptions once approved: approved, suspended or blacklisted since, with
# the binding code its approval issued (campaign/enrolment.approve) -- not an application still
# open, rejected, or blacklisted before it was ever approved.
REDEEMING = ("approved", "suspended", "blacklisted")


def filter_options() -> dict:
    """Choices for the filter fields: categories, and the merchants that can have redemptions."""
    categories = db.session.execute(sa.select(Category.code, Category.name).distinct().order_by(Category.code)).all()
    merchants = db.session.execute(
        sa.select(Merchant.id, Merchant.name)
        .where(
            sa.exists().where(Enrolment.merchant_id == Merchant.id, Enrolment.status.in_(REDEEMING)),
            sa.exists().where(BindingCode.merchant_id == Merchant.id),
        )
        .order_by(Merchant.name, Merchant.id)
    ).all()
    return {"categories": categories, "merchants": merchants}


# ---------------------------------------------------------------- pages


def _listing(name: str) -> Listing:
    listing = LISTINGS.get(name)
    if listing is None:
        abort(404)
    return listing


PhoneFilterRefused = refusal(
    "PHONE_FILTER_REFUSED", 403, "您的账号只能看到打码的手机号，不能按完整手机号查询", api=False
)


def _phone_search(name: str, filters: dict) -> None:
    """A search by a full phone number: only for the roles that see phones in clear (else a
    masked phone could be recovered by trying its four hidden digits), and written to the audit
    log, whoever makes it: one entry per number, the assistant's marked as such."""
    searched = [{"phone": filters["phone"]}] if "phone" in filters else []  # the buyer's, the resident's
    if staff_phone(filters):
        searched.append({"phone": staff_phone(filters), "of": "staff"})
    if not searched:
        return
    if not sees_phones(current_user.role):
        refusals_go_to(url_for("admin.listing_page", name=name))
        raise PhoneFilterRefused()
    for phone in searched:
        audit.record(current_user._get_current_object(), "phone_search", utcnow(), after={"list": name, **phone})


@bp.get("/lists/<name>")
@role_required(*READ)
@limited("console_search")
def listing_page(name: str):
    """A searchable list: filters in the query string, a page of rows, export links."""
    listing = _listing(name)
    filters = parse_filters(request.args, listing.filters)
    _phone_search(name, filters)
    page, per_page = paging()
    role = current_user.role
    rows, total = listing.page(filters, role, page, per_page)
    return render_template(
        f"admin/list_{name}.html",
        listing=listing,
        filters=filters,
        rows=rows,
        total=total,
        page=page,
        pages=page_count(total, page, len(rows)),
        options=filter_options(),
        sees_phones=sees_phones(role),
        export_args=query_args(filters),
        form=ActionForm(),
        can_revoke=role in MERCHANTS,
    )


@bp.get("/lists/<name>/export.<kind>")
@role_required(*READ)
@limited("console_search")
def listing_export(name: str, kind: str):
    """The whole filtered list, streamed: CSV (UTF-8 with BOM) or XLSX; the export is audited."""
    listing = _listing(name)
    if kind not in ("csv", "xlsx"):
        abort(404)
    filters = parse_filters(request.args, listing.filters)
    _phone_search(name, filters)
    role = current_user.role
    filename = f"{listing.title}-{local(utcnow(), '%Y%m%d-%H%M')}.{kind}"
    what = {"list": name, "filters": request.args.to_dict(), "format": kind}
    audit.record(current_user._get_current_object(), "export", utcnow(), after=what)
    if kind == "xlsx":
        return xlsx(xlsx_file(listing, filters, role), filename)
    stream = stream_with_context(csv_stream(listing, filters, role))
    return attachment(Response(stream, mimetype="text/csv; charset=utf-8"), filename)


# ---------------------------------------------------------------- taking back a claim

ClaimNotRevoked = refusal("CLAIM_NOT_REVOKED", 409, "不能撤销这张消费券", api=False)


def revoke_claim(admin: AdminUser, coupon_id: int, reason: str, now: datetime) -> Coupon:
    """Take back a coupon a resident holds unused (e.g. won by fraud): void, its value to the pool
    (pool.coupons.revoke_claim), audited."""
    reason = (reason or "").strip()
    if not reason:
        raise ClaimNotRevoked("请填写撤销的理由")
    revoked = coupons.revoke_claim(coupon_id, now)
    coupon = db.session.get(Coupon, coupon_id, populate_existing=True)
    if coupon is None or coupon.resident_id is None:
        raise ClaimNotRevoked("找不到这张已领取的消费券")
    if not revoked:
        raise ClaimNotRevoked(f"券号 {coupon_id} 已使用、已过期或已撤销，不能撤销")
    audit.record(
        admin,
        "claim_revoke",
        now,
        target=coupon,
        before={"state": coupons.State.CLAIMED},
        after={"state": coupons.State.VOID, "reason": reason},
    )
    db.session.flush()
    return coupon


@bp.post("/claims/<id:coupon_id>/revoke")
@role_required(*MERCHANTS)
def claim_revoke(coupon_id: int):
    """Take back a coupon a resident holds unused; its value returns to the pool."""
    back = safe_next(request.form.get("back")) or url_for("admin.listing_page", name="claims")
    refusals_go_to(back)
    form = ActionForm()
    if not form.validate_on_submit():
        raise InvalidInput("提交无效，请刷新页面后重试")
    revoke_claim(current_user._get_current_object(), coupon_id, form.reason.data, utcnow())
    flash(f"已撤销券号 {coupon_id}，面额退回资金池", "info")
    return redirect(back)
