"""What every console page shares: the templates' globals, paging, downloads, the campaign picker,
where a refused action goes back to, and the console's error pages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

import sqlalchemy as sa
from flask import Response, flash, g, redirect, render_template, request, send_file
from flask_wtf.csrf import CSRFError

from ..campaign.enrolment import STATUS_NAMES
from ..core.errors import Refusal, page_errors
from ..core.money import yuan
from ..core.time import local, moment
from ..extensions import db
from ..models import Campaign
from . import bp
from .access import ROLE_NAMES

PER_PAGE = 50
# A page counts its matches up to this many: an exact count of a million joined rows costs a
# second, and "more than 10,000" answers the question a page is asked. Exports take them all.
COUNT_LIMIT = 10_000
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ERROR_PAGES = {
    400: ("操作未执行", "提交的内容有误，操作未执行。请返回上一页检查后重试。"),
    403: ("无权访问", "您的角色不能使用这个页面或操作。"),
    404: ("找不到页面", "您要找的页面不存在，或已被移走。"),
    405: ("操作无效", "这个页面不支持这个操作。"),
    413: ("文件过大", "上传的文件过大，操作未执行。活动方案文件请不超过5MB。"),
    429: ("查询太频繁", "查询太频繁，请稍后再试：每个账号每分钟最多查询60次，请稍等一分钟。"),
    500: ("系统出错", "系统处理时出错，操作未完成。请稍后重试；如果一再出现，请联系技术支持。"),
}


@bp.app_context_processor
def console_globals():
    return {
        "ROLE_NAMES": ROLE_NAMES,
        "STATUS_NAMES": STATUS_NAMES,
        "yuan": lambda fen: yuan(fen, grouped=True),
        "money": lambda fen: yuan(fen, grouped=True, cents=True),  # finance's tables: always two decimals
        "local": local,
        "moment": moment,
        "COUNT_LIMIT": COUNT_LIMIT,
    }


def page_number() -> int:
    page = request.args.get("page", "1")
    return max(int(page), 1) if re.fullmatch(r"[0-9]{1,9}", page) else 1  # not "²", which isdigit() takes


def paging() -> tuple[int, int]:
    """The page asked for, and how many rows a page holds."""
    return page_number(), PER_PAGE


@dataclass(frozen=True)
class Page:
    rows: list
    total: int
    number: int  # this page's, from 1
    pages: int


def page_of(query: sa.Select, *, scalars: bool = False) -> Page:
    """The page of a query's rows the request asks for (`?page=`), with the count of all of them."""
    number, size = paging()
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery()))
    result = db.session.execute(query.limit(size).offset((number - 1) * size))
    rows = result.scalars().all() if scalars else result.all()
    return Page(rows, total, number, page_count(total, number, len(rows)))


def page_count(total: int, page: int, shown: int) -> int:
    """How many pages; past the bounded count, one more as long as this page is full."""
    if total > COUNT_LIMIT:
        return page + 1 if shown == PER_PAGE else page
    return max((total + PER_PAGE - 1) // PER_PAGE, 1)


def safe_next(target: str | None) -> str | None:
    """Only a path inside the console: never an address elsewhere."""
    if target and target.startswith("/admin") and not target.startswith("//") and target.isprintable():
        return target  # no CR, LF or other control character: it goes into a Location header
    return None


def refusals_go_to(target: str) -> None:
    """Where this request's refusal (a flash) sends the browser back to."""
    g.console_back = target


def query_args(filters: dict) -> dict:
    """Parsed filters back as query-string arguments (for export and statement links)."""
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in filters.items() if k != "now"}


def attachment(response: Response, filename: str) -> Response:
    """A download: the Chinese file name as RFC 5987 asks, and never kept in a cache."""
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
    response.headers["Cache-Control"] = "no-store"
    return response


def xlsx(handle, filename: str) -> Response:
    return attachment(send_file(handle, mimetype=XLSX, as_attachment=True, download_name=filename), filename)


def text_cells(sheet, values) -> list:
    """A row for an XLSX sheet with every string a text cell, never a formula: a staff name, a
    spend category or a merchant's name "=HYPERLINK(...)" stays text. Numbers and dates stay."""
    from openpyxl.cell import WriteOnlyCell

    row = []
    for value in values:
        if isinstance(value, str):
            value = WriteOnlyCell(sheet, value=value)
            value.data_type = "s"
        row.append(value)
    return row


def text_row(sheet, values) -> None:
    sheet.append(text_cells(sheet, values))


MONEY_FORMAT = "#,##0.00"


def money_cell(sheet, yuan_value: float):
    """Money as a number in yuan with two decimals shown, so that Excel sums it."""
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=yuan_value)
    cell.number_format = MONEY_FORMAT
    return cell


def widths(sheet, *columns: int) -> None:
    """Column widths in characters (a CJK character counts two), set before any row is written."""
    from openpyxl.utils import get_column_letter

    for n, width in enumerate(columns, start=1):
        sheet.column_dimensions[get_column_letter(n)].width = width


def campaign_choice() -> tuple[Campaign | None, list[Campaign]]:
    """The campaign a page is about (`?campaign=ID`, else the newest), and the ones to pick from."""
    choices = list(
        db.session.scalars(sa.select(Campaign).where(Campaign.status != "draft").order_by(Campaign.id.desc()))
    )
    wanted = request.args.get("campaign", "")
    return next((c for c in choices if str(c.id) == wanted), choices[0] if choices else None), choices


def message(title: str, text: str, status: int = 200):
    return render_template("admin/message.html", title=title, message=text), status


@bp.errorhandler(Refusal)
def refused(refusal: Refusal):
    """A refused action: nothing changed (the commit point rolled back); say why where it came from."""
    flash(refusal.flash, "error")
    return redirect(g.get("console_back") or request.path)


@bp.errorhandler(CSRFError)
def csrf_failed(_error):
    return message("操作未执行", "页面已过期或来源不明，操作未执行。请刷新页面后重试。", 400)


def error_page(status: int):
    title, text = ERROR_PAGES.get(status) or ERROR_PAGES[500 if status >= 500 else 400]
    if status >= 500 and g.get("request_id"):  # the same id as in X-Request-Id and the log
        text += f" 如需报告问题，请提供请求编号 {g.request_id}。"
    return message(title, text, status)


@bp.errorhandler(403)
def forbidden(_error):
    return error_page(403)


page_errors("/admin", error_page)
