"""Settlement batches in the console (结算批次, pool/settlement.py): the list and the freezing form,
a batch with its lines, its audit sample and the step each role may take, and what a finance
office takes away: the batch's workbook (a summary sheet and a statement per merchant, money as
numbers) and the bank's batch payment file. `flask settlement` does the same from a terminal."""

from __future__ import annotations

import csv
import io
import re
import tempfile
from datetime import date

import sqlalchemy as sa
import sqlalchemy.orm
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..core.bank import mask_account
from ..core.errors import InvalidInput
from ..core.money import fen, yuan
from ..core.time import local, local_day, utcnow
from ..extensions import db
from ..models import AdminUser, Campaign, SettlementBatch, SettlementItem, SettlementLine
from ..pool import settlement
from . import audit, bp
from .access import READ, role_required
from .console import attachment, refusals_go_to, text_cells, widths, xlsx
from .forms import ActionForm
from .lists import csv_cell
from .settlement import money_cells

INVALIDATE_ROLES = ("auditor", "admin")  # an admin only once the batch is audited (pool/settlement.py)


def _form() -> dict:
    """The posted form, once its CSRF token is good."""
    form = ActionForm()
    if not form.validate_on_submit():
        raise InvalidInput("；".join(e for errors in form.errors.values() for e in errors) or "提交无效")
    return request.form


def _day(value: str | None, what: str, *, required: bool = True) -> date | None:
    value = (value or "").strip()
    if not value and not required:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"请填写{what}（如 2026-07-31）") from None
    if not date(2000, 1, 1) <= day <= date(2199, 12, 31):
        raise InvalidInput(f"{what}应在2000年至2199年之间")
    return day


def _amount(value: str | None) -> int:
    amount = fen((value or "").strip()) if re.fullmatch(r"[0-9]{1,12}(\.[0-9]{1,2})?", (value or "").strip()) else None
    if not amount:
        raise InvalidInput("请填写金额（元，最多两位小数），如 1234.50")
    return amount


def _batch_or_404(batch_id: int) -> SettlementBatch:
    batch = db.session.get(SettlementBatch, batch_id)
    if batch is None:
        abort(404)
    return batch


def _me() -> AdminUser:
    return current_user._get_current_object()


def _audited(action: str, target, after: dict) -> None:
    audit.record(_me(), action, utcnow(), target=target, after=after)


# ---------------------------------------------------------------- pages


@bp.get("/settlement/batches")
@role_required(*READ)
def batches():
    """Every batch, newest first (of one campaign if asked), and the form to freeze the next."""
    campaigns = list(db.session.scalars(sa.select(Campaign).order_by(Campaign.id.desc())))
    wanted = request.args.get("campaign", "")
    query = (
        sa.select(SettlementBatch)
        .options(sa.orm.selectinload(SettlementBatch.lines), sa.orm.joinedload(SettlementBatch.campaign))
        .order_by(SettlementBatch.created_at.desc(), SettlementBatch.id.desc())
    )
    chosen = next((c for c in campaigns if str(c.id) == wanted), None)
    if chosen is not None:
        query = query.where(SettlementBatch.campaign_id == chosen.id)
    shown = list(db.session.scalars(query.limit(200)))
    totals = {b.id: settlement.Totals.of(b.lines) for b in shown}
    return render_template(
        "admin/batches.html",
        batches=shown,
        totals=totals,
        campaigns=campaigns,
        chosen=chosen,
        states=settlement.STATE_NAMES,
        can_freeze=current_user.role in settlement.FREEZE_ROLES,
        today=local_day(utcnow()),
    )


@bp.post("/settlement/batches")
@role_required(*settlement.FREEZE_ROLES)
def batch_freeze():
    refusals_go_to(url_for("admin.batches"))
    form = _form()
    campaign = db.session.get(Campaign, int(form["campaign"])) if form.get("campaign", "").isdigit() else None
    if campaign is None:
        raise InvalidInput("请选择活动")
    period_from = _day(form.get("from"), "开始日期", required=False)
    period_to = _day(form.get("to"), "结束日期")
    batch, new = settlement.freeze(campaign, period_from, period_to, form.get("label", ""), _me(), utcnow())
    if new:
        totals = settlement.Totals.of(batch.lines)
        name = settlement.batch_name(batch)
        what = {
            "batch": name,
            "campaign": campaign.code,
            "merchants": len(batch.lines),
            "payable_fen": totals.payable_fen,
        }
        _audited("settlement_freeze", batch, what)
        flash(f"已生成{name}：{len(batch.lines)} 家商户，应付 {yuan(totals.payable_fen, grouped=True)} 元", "info")
    else:
        flash(f"该期间已生成过{settlement.batch_name(batch)}，未重复生成", "info")
    return redirect(url_for("admin.batch", batch_id=batch.id))


@bp.get("/settlement/batches/<id:batch_id>")
@role_required(*READ)
def batch(batch_id: int):
    """A batch: its steps so far, its lines with payments, its sample and exceptions."""
    batch = _batch_or_404(batch_id)
    lines = batch.lines
    sampled = settlement.sample(batch)
    item = SettlementItem
    names = dict(db.session.execute(sa.select(AdminUser.id, AdminUser.username)).all())
    role = current_user.role
    return render_template(
        "admin/batch.html",
        batch=batch,
        name=settlement.batch_name(batch),
        states=settlement.STATE_NAMES,
        lines=lines,
        totals=settlement.Totals.of(lines),
        payments=settlement.payments_of(line.id for line in lines),
        sample=settlement.items_of(batch.id, item.kind == "sale", item.redemption_id.in_(sampled)),
        merchants={line.merchant_id: line.merchant for line in lines},
        exceptions=settlement.items_of(batch.id, item.invalid_at.is_not(None)),
        changes=settlement.items_of(batch.id, item.kind != "sale"),
        names=names,
        account=(lambda n: n or "") if role != "auditor" else mask_account,
        can_audit=role in settlement.AUDIT_ROLES and batch.state == "draft",
        can_invalidate=role in settlement.AUDIT_ROLES or (role == "admin" and batch.state != "draft"),
        can_approve=role in settlement.APPROVE_ROLES and batch.state == "audited",
        can_pay=role in settlement.PAY_ROLES and batch.state in ("approved", "paid"),
        can_recover=role in settlement.PAY_ROLES,
        today=local_day(utcnow()),
    )


# ---------------------------------------------------------------- steps


@bp.post("/settlement/batches/<id:batch_id>/invalid")
@role_required(*INVALIDATE_ROLES)
def batch_invalid(batch_id: int):
    batch = _batch_or_404(batch_id)
    refusals_go_to(url_for("admin.batch", batch_id=batch.id))
    form = _form()
    wanted = form.get("redemption", "").strip()
    if not wanted.isdigit() or len(wanted) > 18:
        raise InvalidInput("请填写核销编号")
    item = settlement.sale_item(batch.campaign_id, int(wanted))
    settlement.mark_invalid(item, form.get("reason", ""), _me(), utcnow())
    _audited("settlement_invalid", batch, {"redemption": item.redemption_id, "reason": item.invalid_reason})
    flash(f"核销 {item.redemption_id} 已认定无效：{item.invalid_reason}", "info")
    return redirect(url_for("admin.batch", batch_id=batch.id))


@bp.post("/settlement/batches/<id:batch_id>/audit")
@role_required(*settlement.AUDIT_ROLES)
def batch_audit(batch_id: int):
    batch = _batch_or_404(batch_id)
    refusals_go_to(url_for("admin.batch", batch_id=batch.id))
    form = _form()
    checked = len(settlement.sample(batch))
    settlement.audit(batch, form.get("opinion", ""), _me(), utcnow())
    _audited(
        "settlement_audit", batch, {"batch": settlement.batch_name(batch), "sample": checked, "opinion": batch.opinion}
    )
    flash(f"{settlement.batch_name(batch)}已出具审计意见，待管理员批准", "info")
    return redirect(url_for("admin.batch", batch_id=batch.id))


@bp.post("/settlement/batches/<id:batch_id>/approve")
@role_required(*settlement.APPROVE_ROLES)
def batch_approve(batch_id: int):
    batch = _batch_or_404(batch_id)
    refusals_go_to(url_for("admin.batch", batch_id=batch.id))
    _form()
    settlement.approve(batch, _me(), utcnow())
    _audited("settlement_approve", batch, {"batch": settlement.batch_name(batch)})
    flash(f"{settlement.batch_name(batch)}已批准，可以付款", "info")
    return redirect(url_for("admin.batch", batch_id=batch.id))


def _line_or_404(line_id: int) -> SettlementLine:
    line = db.session.get(SettlementLine, line_id)
    if line is None:
        abort(404)
    return line


@bp.post("/settlement/lines/<id:line_id>/<any(pay, recover):step>")
@role_required(*settlement.PAY_ROLES)
def line_payment(line_id: int, step: str):
    """A payment to the merchant of a line (付款), or a clawback it paid back (追回)."""
    line = _line_or_404(line_id)
    refusals_go_to(url_for("admin.batch", batch_id=line.batch_id))
    form = _form()
    amount, paid_on = _amount(form.get("amount")), _day(form.get("date"), "付款日期")
    reference = form.get("reference", "")
    record = settlement.pay if step == "pay" else settlement.recover
    record(line, amount, paid_on, reference, _me(), utcnow())
    what = {
        "merchant": line.merchant.name,
        "amount_fen": amount,
        "date": paid_on.isoformat(),
        "reference": reference.strip(),
    }
    _audited(f"settlement_{step}", line, what)
    done = "已登记付款" if step == "pay" else "已登记追回"
    flash(f"{line.merchant.name}：{done} {yuan(amount, grouped=True, cents=True)} 元（{reference.strip()}）", "info")
    return redirect(url_for("admin.batch", batch_id=line.batch_id))


# ---------------------------------------------------------------- what finance takes away


SUMMARY_TITLES = ["商户", "统一社会信用代码", "户名", "开户银行", "账号", "结算笔数", "核销结算额(元)",
                  "审计剔除(元)", "前批扣减(元)", "上批结转扣减(元)", "本批应付(元)", "已付(元)", "暂扣(元)",
                  "应追回(元)", "付款日期", "银行流水号"]  # fmt: skip
SUMMARY_MONEY = (6, 7, 8, 9, 10, 11, 12, 13)
ITEM_TITLES = ["核销编号", "类型", "核销时间", "券号", "面额(元)", "消费金额(元)", "本批金额(元)", "计入",
               "说明", "消费品类", "备注"]  # fmt: skip
KIND_NAMES = {"sale": "核销", "deduct": "扣减", "disallow": "审计剔除"}


SHEET_UNSAFE = re.compile(r"[\[\]:*?/\\]")  # what Excel refuses in a sheet's name


def _sheet_name(n: int, name: str) -> str:
    return f"{n}-{SHEET_UNSAFE.sub('', name)}"[:31]


def batch_xlsx(batch: SettlementBatch, role: str):
    """The batch's workbook: a summary sheet (a line per merchant, then the totals), then a
    statement per merchant with every item. Returns an open temporary file."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    campaign = batch.campaign
    lines = batch.lines
    payments = settlement.payments_of(line.id for line in lines)
    account = mask_account if role == "auditor" else (lambda n: n or "")
    summary = workbook.create_sheet("汇总")
    widths(summary, 30, 22, 24, 22, 24, 10, 14, 12, 12, 14, 13, 12, 12, 12, 12, 30)
    summary.append(text_cells(summary, [f"{campaign.name} 消费券结算 {settlement.batch_name(batch)}"]))
    summary.append(text_cells(summary, ["状态", settlement.STATE_NAMES[batch.state], "结算期间",
                                        f"{batch.period_from or '活动开始'} 至 {batch.period_to}"]))  # fmt: skip
    summary.append([])
    summary.append(text_cells(summary, SUMMARY_TITLES))
    for line in lines:
        m, paid = line.merchant, [p for p in payments.get(line.id, []) if p.kind == "pay"]
        claim = line.clawback_fen
        summary.append(money_cells(summary, [m.name, m.credit_code, m.bank_payee or "", m.bank_name or "",
                                        account(m.bank_account), line.sales, line.gross_fen, line.excluded_fen,
                                        line.deducted_fen, line.carried_fen, line.payable_fen, line.paid_fen,
                                        line.withheld_fen, claim, paid[-1].paid_on.isoformat() if paid else "",
                                        "、".join(p.reference for p in paid)], SUMMARY_MONEY))  # fmt: skip
    t = settlement.Totals.of(lines)
    summary.append(money_cells(summary, ["合计", "", "", "", "", t.sales, t.gross_fen, t.excluded_fen, t.deducted_fen,
                                    t.carried_fen, t.payable_fen, t.paid_fen, t.withheld_fen, t.clawback_fen],
                          SUMMARY_MONEY))  # fmt: skip
    by_merchant: dict[int, list] = {}
    for item, redemption in settlement.items_of(batch.id):
        by_merchant.setdefault(item.merchant_id, []).append((item, redemption))
    for n, line in enumerate(lines, start=1):
        m = line.merchant
        sheet = workbook.create_sheet(_sheet_name(n, m.name))
        widths(sheet, 16, 10, 18, 10, 10, 13, 13, 6, 30, 12, 24)
        sheet.append(text_cells(sheet, [f"{m.name} 消费券结算单"]))
        sheet.append(text_cells(sheet, ["统一社会信用代码", m.credit_code]))
        sheet.append(text_cells(sheet, ["结算批次", f"{campaign.name} {settlement.batch_name(batch)}"]))
        sheet.append([])
        sheet.append(text_cells(sheet, ITEM_TITLES))
        for item, r in by_merchant.get(line.merchant_id, []):
            why = item.invalid_reason if item.invalid_at and not item.counted else (item.reason or "")
            sheet.append(money_cells(sheet, [r.id, KIND_NAMES[item.kind], local(r.created_at), r.coupon_id, r.face_fen,
                                        r.spend_fen, item.amount_fen, "否" if not item.counted else "是", why,
                                        r.spend_category, r.note or ""], (4, 5, 6)))  # fmt: skip
        sheet.append([])
        for label, value in (("核销结算额(元)", line.gross_fen), ("审计剔除(元)", line.excluded_fen),
                             ("前批扣减(元)", line.deducted_fen), ("上批结转扣减(元)", line.carried_fen),
                             ("本批应付(元)", line.payable_fen), ("已付(元)", line.paid_fen),
                             ("暂扣(元)", line.withheld_fen)):  # fmt: skip
            sheet.append(money_cells(sheet, [label, value], (1,)))
    handle = tempfile.TemporaryFile(suffix=".xlsx")  # noqa: SIM115 - closed by the response
    workbook.save(handle)
    handle.seek(0)
    return handle


def bank_rows(batch: SettlementBatch) -> list[list[str]]:
    """The bank's batch payment file: a row per merchant with something to pay now (not withheld):
    payee, account, bank, amount in yuan with two decimals, purpose. Refused while the batch is not
    approved, or while a payee has no account on file (named, so the bureau can ask for it)."""
    if batch.state not in ("approved", "paid"):
        raise settlement.SettlementRefused(f"{settlement.batch_name(batch)}批准后才能生成银行批量付款文件")
    due = [line for line in batch.lines if line.unpaid_fen > 0]
    missing = settlement.merchants_missing_bank(due)
    if missing:
        raise settlement.SettlementRefused(f"以下商户未登记收款账户：{'、'.join(m.name for m in missing)}")
    purpose = f"消费券结算 {batch.campaign.name} {batch.label}"
    return [
        [line.merchant.bank_payee, line.merchant.bank_account, line.merchant.bank_name,
         yuan(line.unpaid_fen, cents=True), purpose]
        for line in due
    ]  # fmt: skip


BANK_TITLES = ["收款人户名", "收款账号", "开户银行", "金额(元)", "用途"]


def bank_csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(BANK_TITLES)
    writer.writerows([[csv_cell(cell) for cell in row] for row in rows])
    return "\ufeff".encode() + buffer.getvalue().encode()


@bp.get("/settlement/batches/<id:batch_id>.xlsx")
@role_required(*READ)
def batch_workbook(batch_id: int):
    batch = _batch_or_404(batch_id)
    handle = batch_xlsx(batch, current_user.role)
    _audited("export", batch, {"batch": settlement.batch_name(batch), "format": "xlsx"})
    return xlsx(handle, f"结算批次-{batch.campaign.name}-第{batch.number}批.xlsx")


@bp.get("/settlement/batches/<id:batch_id>/bank.csv")
@role_required(*settlement.PAY_ROLES, "admin")
def batch_bank_file(batch_id: int):
    batch = _batch_or_404(batch_id)
    refusals_go_to(url_for("admin.batch", batch_id=batch.id))
    body = bank_csv(bank_rows(batch))
    _audited("export", batch, {"batch": settlement.batch_name(batch), "format": "bank"})
    from flask import Response

    response = Response(body, mimetype="text/csv; charset=utf-8")
    return attachment(response, f"银行批量付款-{batch.campaign.name}-第{batch.number}批.csv")
