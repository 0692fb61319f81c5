"""Settlement (结算): what the bureau owes each merchant for a period -- 100% of what the coupons of
its settled redemptions (pool.coupons.settled_clause) paid, less their shares of refunds
(Redemption.owed_fen) -- and each merchant's statement as XLSX."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import sqlalchemy as sa
from flask import abort, render_template, request
from flask_login import current_user

from ..core.db import local_text, snapshot
from ..core.time import local_day, utcnow
from ..extensions import db
from ..models import Campaign, Category, Merchant, Redemption, Staff
from ..pool import rollup
from ..pool.coupons import settled_clause
from . import audit, bp
from .access import READ, role_required
from .console import money_cell, query_args, text_cells, text_row, widths, xlsx
from .lists import parse_filters, within_days


@dataclass
class MerchantPeriod:
    merchant: Merchant
    redeemed: int = 0  # redemptions that stand (not revoked)
    order_fen: int = 0
    settled: int = 0  # what the bureau pays for (pool.coupons.settled_clause)
    owed_fen: int = 0
    refunded: int = 0


def merchant_periods(period: dict) -> list[MerchantPeriod]:
    """Per merchant for the period (filters "from"/"to", local days, and "campaign": each campaign
    is settled on its own): redemptions, order amount, and what the bureau owes it; hours that are
    over from their stored figures, the rest live."""
    merchants = {m.id: m for m in db.session.scalars(sa.select(Merchant))}
    measures = ("redeemed", "order_fen", "settled", "owed_fen", "refunded")
    with snapshot() as connection:
        hours = rollup.figures(connection, "redemptions", rollup.Period(period.get("from"), period.get("to")))
        query = sa.select(hours.c.merchant_id, *(sa.func.sum(hours.c[name]) for name in measures))
        if period.get("campaign"):
            query = query.where(hours.c.campaign_id == period["campaign"])
        totals = connection.execute(query.group_by(hours.c.merchant_id)).all()
    rows = [MerchantPeriod(merchants[merchant_id], *(int(v) for v in values)) for merchant_id, *values in totals]
    return sorted(rows, key=lambda p: (-p.owed_fen, p.merchant.id))


def statement_rows(merchant_id: int, period: dict):
    """The settled redemptions of one merchant in the period, oldest first, for its statement."""
    query = within_days(
        (
            sa.select(
                Redemption.id,
                local_text(Redemption.created_at).label("created_at"),
                Redemption.coupon_id,
                Redemption.face_fen,
                Redemption.spend_fen,
                Redemption.paid_fen,
                Redemption.refunded_spend_fen,
                (Redemption.returned_fen + Redemption.withheld_fen).label("refund_share_fen"),
                Redemption.owed_fen.label("owed_fen"),
                Redemption.spend_category,
                Staff.name,
                Redemption.note,
            )
            .join(Staff, Staff.id == Redemption.staff_id)
            .join(Category, Category.id == Redemption.category_id)
            .where(Redemption.merchant_id == merchant_id, settled_clause())
            .where(Category.campaign_id == period["campaign"] if period.get("campaign") else sa.true())
        ),
        Redemption.created_at,
        period,
    )
    return db.session.execute(query.order_by(Redemption.created_at, Redemption.id).execution_options(yield_per=2000))


def money_cells(sheet, values, money: tuple[int, ...] = ()) -> list:
    """A row of text and numbers for an XLSX sheet: the money columns (fen) as yuan numbers
    (console.money_cell); every text a text cell, never a formula."""
    row = text_cells(sheet, values)
    for i in money:
        if values[i] is not None:
            row[i] = money_cell(sheet, values[i] / 100)
    return row


def statement_xlsx(merchant, period: str, rows):
    """A merchant's settlement statement for a period as XLSX (write-only): the redemptions, then
    the total the bureau owes. Returns an open temporary file."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("结算单")
    widths(sheet, 12, 18, 10, 10, 13, 11, 13, 13, 11, 12, 10, 24)
    text_row(sheet, [f"{merchant.name} 消费券结算单"])
    text_row(sheet, ["统一社会信用代码", merchant.credit_code])
    text_row(sheet, ["结算期间", period])
    text_row(sheet, [])
    text_row(sheet, ["核销编号", "核销时间", "券号", "面额(元)", "消费金额(元)", "券抵扣(元)", "退货金额(元)",
                  "退货扣减(元)", "应结算(元)", "消费品类", "店员", "备注"])  # fmt: skip
    count = owed = spend = 0
    for row in rows:
        values = [row.id, row.created_at, row.coupon_id, row.face_fen, row.spend_fen, row.paid_fen,
                  row.refunded_spend_fen, row.refund_share_fen, row.owed_fen, row.spend_category, row.name,
                  row.note or ""]  # fmt: skip
        sheet.append(money_cells(sheet, values, (3, 4, 5, 6, 7, 8)))
        count, owed, spend = count + 1, owed + row.owed_fen, spend + row.spend_fen
    text_row(sheet, [])
    text_row(sheet, ["合计笔数", count])
    sheet.append(money_cells(sheet, ["应结算金额(元)", owed], (1,)))
    sheet.append(money_cells(sheet, ["带动消费金额(元)", spend], (1,)))
    handle = tempfile.TemporaryFile(suffix=".xlsx")  # noqa: SIM115 - closed by the response
    workbook.save(handle)
    handle.seek(0)
    return handle, count, owed


def table_xlsx(label: str, rows: list[MerchantPeriod]):
    """The settlement page's whole table as XLSX: a line per merchant, then the totals."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("商户结算")
    widths(sheet, 30, 22, 10, 14, 10, 10, 14)
    text_row(sheet, [f"商户结算汇总 {label}"])
    text_row(sheet, [])
    text_row(sheet, ["商户", "统一社会信用代码", "核销笔数", "订单金额(元)", "退货笔数", "结算笔数", "应结算金额(元)"])
    for r in rows:
        values = [r.merchant.name, r.merchant.credit_code, r.redeemed, r.order_fen, r.refunded, r.settled, r.owed_fen]
        sheet.append(money_cells(sheet, values, (3, 6)))
    totals = ["合计", "", sum(r.redeemed for r in rows), sum(r.order_fen for r in rows),
              sum(r.refunded for r in rows), sum(r.settled for r in rows), sum(r.owed_fen for r in rows)]  # fmt: skip
    sheet.append(money_cells(sheet, totals, (3, 6)))
    handle = tempfile.TemporaryFile(suffix=".xlsx")  # noqa: SIM115 - closed by the response
    workbook.save(handle)
    handle.seek(0)
    return handle


def _period_args() -> tuple[dict, str]:
    """The settlement period's filters ("from", "to": local dates; "campaign"), and how to name it:
    the dates given, else the campaign's start and the day of the export."""
    filters = parse_filters(request.args, ("from", "to", "campaign"))
    to = filters.get("to") or f"{local_day(utcnow())}（导出当日）"
    label = f"{filters.get('from', '活动开始')} 至 {to}"
    campaign = db.session.get(Campaign, filters["campaign"]) if filters.get("campaign") else None
    return filters, (f"{campaign.name} " if campaign else "") + label


@bp.get("/settlement")
@role_required(*READ)
def settlement():
    """What the bureau owes each merchant for a period (what the coupons of its settled redemptions
    paid, less refunds' shares)."""
    period, label = _period_args()
    rows = merchant_periods(period)
    return render_template(
        "admin/settlement.html",
        rows=rows,
        label=label,
        filters=period,
        total_owed=sum(r.owed_fen for r in rows),
        total_order=sum(r.order_fen for r in rows),
        query=query_args(period),
        campaigns=db.session.execute(sa.select(Campaign.id, Campaign.name).order_by(Campaign.id.desc())).all(),
    )


@bp.get("/settlement.xlsx")
@role_required(*READ)
def settlement_table():
    """The settlement page's whole table for the period, as XLSX; the download is audited."""
    period, label = _period_args()
    handle = table_xlsx(label, merchant_periods(period))
    audit.record(current_user._get_current_object(), "export", utcnow(), after={"settlement": "table", "period": label})
    return xlsx(handle, f"商户结算汇总-{label.replace(' ', '')}.xlsx")


@bp.get("/settlement/<id:merchant_id>.xlsx")
@role_required(*READ)
def settlement_statement(merchant_id: int):
    """One merchant's statement for the period, as XLSX; the download is audited."""
    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None:
        abort(404)
    period, label = _period_args()
    handle, _, _ = statement_xlsx(merchant, label, statement_rows(merchant_id, period))
    what = {"statement": merchant_id, "period": label}
    audit.record(current_user._get_current_object(), "export", utcnow(), target=merchant, after=what)
    return xlsx(handle, f"结算单-{merchant.name}-{label.replace(' ', '')}.xlsx")
