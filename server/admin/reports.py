"""The monthly report (月报): a campaign's dashboard figures for one calendar month, as XLSX.

Jincheng's plan (section 10) asks the platform for the issued, redeemed and refunded figures and
the coverage; Huating's for each month's progress by the 4th of the next. A month's report is
available from the 1st of the next month (local time), when its figures no longer change: a month
not over is refused in words, not served half-counted. The figures are the dashboard's
(`dashboard.figures_of` over the month's local days), so the report and the page never disagree.
"""

from __future__ import annotations

import tempfile

import sqlalchemy as sa
from flask import abort, url_for
from flask_login import current_user

from ..core.errors import ReportNotReady
from ..core.time import local, local_day, utcnow
from ..extensions import db
from ..models import Campaign, Category, Round
from ..pool import ledger, rollup
from . import audit, bp
from .access import READ, role_required
from .console import refusals_go_to, text_row, xlsx
from .dashboard import Dashboard, Figures, Month, figures_of

# ---------------------------------------------------------------- the workbook

COLUMNS = (
    ("计划投放(张)", "planned", None),
    ("计划投放金额(元)", "planned_fen", "yuan"),
    ("投放量(张，含滚动再投放)", "issued", None),
    ("投放金额(元)", "issued_fen", "yuan"),
    ("其中滚动再投放(张)", "reissued", None),
    ("滚动再投放金额(元)", "reissued_fen", "yuan"),
    ("领取量(张)", "claimed", None),
    ("累计领取人数(截至月末)", "claimants", None),
    ("覆盖率(截至月末)", "coverage", "rate"),
    ("核销量(张)", "redeemed", None),
    ("核销率", "rate", "rate"),
    ("订单金额(元)", "order_fen", "yuan"),
    ("核销金额(元)", "redeemed_fen", "yuan"),
    ("核销退款金额(元)", "refunded_fen", "yuan"),
    ("核销商家数", "merchants", None),
    ("直接带动比", "leverage", "times"),
)
FORMATS = {"yuan": "#,##0.00", "rate": "0.0%", "times": "0.00"}
NOTES = (
    "口径说明：时间按北京时间；计划投放为各轮方案投放，滚动再投放为到期、撤销、退货与未领取收回的资金再次投放；",
    "覆盖率 = 截至月末领取过消费券的居民数 ÷ 月末已绑定居民数（分品类同）；核销不含撤回，含退货；",
    "核销率 = 核销量 ÷ 领取量；直接带动比 = 订单金额 ÷ 核销金额。",
)


def _cells(figures: Figures, issued: bool = True) -> list:
    values = []
    for _, name, kind in COLUMNS:
        value = getattr(figures, name)
        if not issued and name in ("planned", "planned_fen", "issued", "issued_fen", "reissued", "reissued_fen"):
            value = None
        values.append(value / 100 if kind == "yuan" and value is not None else value)
    return values


def _table(sheet, first_row: int, rows: list[tuple[str, list]]) -> None:
    text_row(sheet, ["项目", *(title for title, _, _ in COLUMNS)])
    for label, values in rows:
        text_row(sheet, [label, *values])
    for offset, (_, _, kind) in enumerate(COLUMNS, start=2):
        if kind:
            for (cell,) in sheet.iter_rows(
                min_row=first_row + 1, max_row=first_row + len(rows), min_col=offset, max_col=offset
            ):
                cell.number_format = FORMATS[kind]
    sheet.column_dimensions["A"].width = 16


def report_xlsx(board: Dashboard, month: Month):
    """The month's workbook: the figures in total, per category and per round (月报), per day
    (按日), and the pool's accounts at the month's end (资金池). Returns an open temporary file."""
    from openpyxl import Workbook

    campaign = board.campaign
    categories = list(db.session.scalars(sa.select(Category).where(Category.campaign_id == campaign.id)
                                         .order_by(Category.position)))  # fmt: skip
    rounds = {r.id: r for r in db.session.scalars(sa.select(Round).where(Round.campaign_id == campaign.id))}
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "月报"
    text_row(sheet, [f"{campaign.name} {month.label}消费券月报"])
    text_row(sheet, ["统计期间", f"{month.first.isoformat()} 至 {month.last.isoformat()}（北京时间）"])
    text_row(sheet, ["月末已绑定居民(人)", board.bound])
    text_row(sheet, ["生成时间", local(utcnow())])
    text_row(sheet, [])
    rows = [("合计", _cells(board.total))]
    rows += [(c.name, _cells(board.by_category[c.id])) for c in categories if c.id in board.by_category]
    rows += [
        (f"第{rounds[k].number}轮", _cells(board.by_round[k]))
        for k in sorted(board.by_round, key=lambda k: rounds[k].number)
    ]
    _table(sheet, 6, rows)
    text_row(sheet, [])
    for note in NOTES:
        text_row(sheet, [note])

    days = workbook.create_sheet("按日")
    _table(days, 1, [(day, _cells(f, issued=False)) for day, f in board.by_day.items()])

    pool = workbook.create_sheet("资金池")
    text_row(pool, [f"{month.last.isoformat()} 24:00 资金池各账户余额(元)"])
    for account in ledger.ACCOUNTS:
        text_row(pool, [ledger.ACCOUNT_NAMES[account], board.balances.get(account, 0) / 100])
    text_row(pool, ["总预算", campaign.budget_fen / 100])
    pool.column_dimensions["A"].width = 24

    handle = tempfile.TemporaryFile(suffix=".xlsx")  # noqa: SIM115 - closed by the response
    workbook.save(handle)
    handle.seek(0)
    return handle


@bp.get("/campaigns/<id:campaign_id>/reports/<month>.xlsx")
@role_required(*READ)
def monthly_report(campaign_id: int, month: str):
    """A month's report as XLSX, from the 1st of the next month; the download is audited."""
    campaign = db.session.get(Campaign, campaign_id)
    wanted = Month.parse(month)
    if campaign is None or wanted is None:
        abort(404)
    refusals_go_to(url_for("admin.dashboard", campaign=campaign.id))
    if not wanted.ready(local_day(utcnow())):
        raise ReportNotReady(f"{wanted.label}尚未结束，月报{wanted.available}起提供", subject=campaign.name)
    board = figures_of(campaign, rollup.Period(wanted.first, wanted.last))
    handle = report_xlsx(board, wanted)
    what = {"monthly_report": wanted.key, "campaign": campaign.code}
    audit.record(current_user._get_current_object(), "export", utcnow(), target=campaign, after=what)
    return xlsx(handle, f"月报-{campaign.name}-{wanted.label}.xlsx")
