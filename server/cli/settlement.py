"""`flask settlement ...`: the settlement cycle from a terminal, for a finance office without a
browser on its machines (pool/settlement.py; the console's pages do the same). Each step names the
console account taking it (`--as NAME`): its role decides what it may do, exactly as in the
console, and the audit log records it.

    flask settlement freeze CAMPAIGN --to 2026-07-31 [--from 2026-07-01] [--label 2026年7月] --as cashier
    flask settlement list [CAMPAIGN]          flask settlement show BATCH      flask settlement sample BATCH
    flask settlement invalid BATCH REDEMPTION --reason 无真实交易 --as auditor-li
    flask settlement audit BATCH --opinion "抽查12笔，均有小票" --as auditor-li
    flask settlement approve BATCH --as director
    flask settlement pay BATCH CREDIT_CODE --amount 1234.50 --date 2026-08-20 --reference 回单号 --as cashier
    flask settlement recover BATCH CREDIT_CODE --amount 20 --date ... --reference ... --as cashier
    flask settlement export BATCH --xlsx 批次.xlsx [--bank 付款.csv]
    flask settlement bank CREDIT_CODE --payee 户名 --bank 开户行 --account 账号 --as admin
"""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa

from ..admin import audit
from ..admin.batches import bank_csv, bank_rows, batch_xlsx
from ..core.bank import check_details
from ..core.errors import InvalidInput
from ..core.money import fen, yuan
from ..core.time import local, utcnow
from ..extensions import db
from ..models import AdminUser, Campaign, Merchant, SettlementBatch, SettlementItem, SettlementLine
from ..pool import settlement
from . import Group

cli = Group("settlement", help="Settlement batches: freeze, audit, approve, pay, export.")

AS = click.option("--as", "username", required=True, help="The console account taking the step.")


def _fail(text: str, code: int = 1):
    click.echo(f"错误：{text}", err=True)
    sys.exit(code)


def _user(username: str) -> AdminUser:
    user = db.session.scalar(sa.select(AdminUser).where(AdminUser.username == username))
    if user is None or user.disabled_at is not None:
        _fail(f"没有可用的账号「{username}」")
    return user


def _batch(batch_id: int) -> SettlementBatch:
    batch = db.session.get(SettlementBatch, batch_id)
    if batch is None:
        _fail(f"没有编号为 {batch_id} 的结算批次")
    return batch


def _line(batch: SettlementBatch, credit_code: str) -> SettlementLine:
    line = next((x for x in batch.lines if x.merchant.credit_code == credit_code.strip().upper()), None)
    if line is None:
        _fail(f"{settlement.batch_name(batch)}没有统一社会信用代码为 {credit_code} 的商户")
    return line


def _amount(text: str) -> int:
    amount = fen(text)
    if not amount:
        raise InvalidInput("金额应为大于0的元数，最多两位小数")
    return amount


def _summary(batch: SettlementBatch) -> str:
    t = settlement.Totals.of(batch.lines)
    return (
        f"{batch.id}\t{batch.campaign.code}\t{settlement.batch_name(batch)}\t{settlement.STATE_NAMES[batch.state]}\t"
        f"商户 {len(batch.lines)}  笔数 {t.sales}  应付 {yuan(t.payable_fen, grouped=True)}  "
        f"已付 {yuan(t.paid_fen, grouped=True)}  暂扣 {yuan(t.withheld_fen, grouped=True)}"
    )


@cli.command("freeze")
@click.argument("campaign_code")
@click.option("--to", "period_to", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last local day.")
@click.option("--from", "period_from", default=None, type=click.DateTime(["%Y-%m-%d"]), help="First local day.")
@click.option("--label", default="", help="The period's name, e.g. 第1轮 or 2026年7月.")
@AS
def settlement_freeze(campaign_code: str, period_to, period_from, label: str, username: str) -> None:
    """Freeze the campaign's batch for a period that is over (the same period again: the batch it has)."""
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.code == campaign_code))
    if campaign is None:
        _fail(f"找不到活动「{campaign_code}」", 2)
    user, now = _user(username), utcnow()
    start = period_from.date() if period_from else None
    batch, new = settlement.freeze(campaign, start, period_to.date(), label, user, now)
    if new:
        audit.record(user, "settlement_freeze", now, target=batch, after={"batch": settlement.batch_name(batch)})
    click.echo(("已生成 " if new else "该期间已有批次，未重复生成：") + _summary(batch))


@cli.command("list")
@click.argument("campaign_code", required=False)
def settlement_list(campaign_code: str | None) -> None:
    """Every batch, newest first."""
    query = sa.select(SettlementBatch).join(Campaign).order_by(SettlementBatch.id.desc())
    if campaign_code:
        query = query.where(Campaign.code == campaign_code)
    for batch in db.session.scalars(query):
        click.echo(_summary(batch))


@cli.command("show")
@click.argument("batch_id", type=int)
def settlement_show(batch_id: int) -> None:
    """A batch's steps and its lines."""
    batch = _batch(batch_id)
    names = dict(db.session.execute(sa.select(AdminUser.id, AdminUser.username)).all())
    click.echo(_summary(batch))
    start = batch.period_from or "活动开始"
    click.echo(f"期间 {start} 至 {batch.period_to}；生成 {names.get(batch.created_by)} {local(batch.created_at)}")
    if batch.audited_at:
        click.echo(f"审计 {names.get(batch.audited_by)} {local(batch.audited_at)}：{batch.opinion}")
    if batch.approved_at:
        click.echo(f"批准 {names.get(batch.approved_by)} {local(batch.approved_at)}")
    for line in batch.lines:
        m = line.merchant
        claim = line.clawback_fen
        click.echo(
            f"  {m.credit_code}  {m.name}  笔数 {line.sales}  核销 {yuan(line.gross_fen)}"
            f"  剔除 {yuan(line.excluded_fen)}  扣减 {yuan(line.deducted_fen + line.carried_fen)}"
            f"  应付 {yuan(line.payable_fen)}  已付 {yuan(line.paid_fen)}  暂扣 {yuan(line.withheld_fen)}"
            + (f"  应追回 {yuan(claim)}" if claim else "")
        )


@cli.command("sample")
@click.argument("batch_id", type=int)
def settlement_sample(batch_id: int) -> None:
    """The batch's reproducible 10% audit sample."""
    batch = _batch(batch_id)
    sale, chosen = SettlementItem.kind == "sale", SettlementItem.redemption_id.in_(settlement.sample(batch))
    for item, r in settlement.items_of(batch.id, sale, chosen):
        money = f"面额 {yuan(r.face_fen)}\t消费 {yuan(r.spend_fen)}\t本批 {yuan(item.amount_fen)}"
        cells = [r.id, local(r.created_at), f"券{r.coupon_id}", money, r.spend_category, r.note or ""]
        click.echo("\t".join(str(c) for c in cells))


@cli.command("invalid")
@click.argument("batch_id", type=int)
@click.argument("redemption_id", type=int)
@click.option("--reason", required=True)
@AS
def settlement_invalid(batch_id: int, redemption_id: int, reason: str, username: str) -> None:
    """Mark a redemption of the batch's campaign invalid (an audit exception)."""
    batch, user, now = _batch(batch_id), _user(username), utcnow()
    item = settlement.sale_item(batch.campaign_id, redemption_id)
    settlement.mark_invalid(item, reason, user, now)
    audit.record(user, "settlement_invalid", now, target=batch, after={"redemption": redemption_id, "reason": reason})
    click.echo(f"核销 {redemption_id} 已认定无效：{reason}")


@cli.command("audit")
@click.argument("batch_id", type=int)
@click.option("--opinion", required=True)
@AS
def settlement_audit(batch_id: int, opinion: str, username: str) -> None:
    """The auditor's opinion: draft -> audited."""
    batch, user, now = _batch(batch_id), _user(username), utcnow()
    settlement.audit(batch, opinion, user, now)
    audit.record(user, "settlement_audit", now, target=batch, after={"opinion": batch.opinion})
    click.echo(f"已审计：{_summary(batch)}")


@cli.command("approve")
@click.argument("batch_id", type=int)
@AS
def settlement_approve(batch_id: int, username: str) -> None:
    """An admin's approval (not the auditor's): audited -> approved."""
    batch, user, now = _batch(batch_id), _user(username), utcnow()
    settlement.approve(batch, user, now)
    audit.record(user, "settlement_approve", now, target=batch, after={"batch": settlement.batch_name(batch)})
    click.echo(f"已批准：{_summary(batch)}")


def _payment(step: str, batch_id: int, credit_code: str, amount: str, paid_on, reference: str, username: str):
    batch, user, now = _batch(batch_id), _user(username), utcnow()
    line, amount_fen = _line(batch, credit_code), _amount(amount)
    record = settlement.pay if step == "pay" else settlement.recover
    record(line, amount_fen, paid_on.date(), reference, user, now)
    what = {"merchant": line.merchant.name, "amount_fen": amount_fen, "reference": reference}
    audit.record(user, f"settlement_{step}", now, target=line, after=what)
    click.echo(
        f"{line.merchant.name}：{'已登记付款' if step == 'pay' else '已登记追回'} {yuan(amount_fen, cents=True)} 元"
    )


PAYMENT = [
    click.argument("batch_id", type=int),
    click.argument("credit_code"),
    click.option("--amount", required=True, help="Yuan, e.g. 1234.50"),
    click.option("--date", "paid_on", required=True, type=click.DateTime(["%Y-%m-%d"])),
    click.option("--reference", required=True, help="The bank's reference."),
    AS,
]


def _with_payment_options(command):
    for option in reversed(PAYMENT):
        command = option(command)
    return command


@cli.command("pay")
@_with_payment_options
def settlement_pay(batch_id, credit_code, amount, paid_on, reference, username) -> None:
    """Record a payment to a merchant of an approved batch (partial payments add up)."""
    _payment("pay", batch_id, credit_code, amount, paid_on, reference, username)


@cli.command("recover")
@_with_payment_options
def settlement_recover(batch_id, credit_code, amount, paid_on, reference, username) -> None:
    """Record a clawback the merchant paid back."""
    _payment("recover", batch_id, credit_code, amount, paid_on, reference, username)


@cli.command("export")
@click.argument("batch_id", type=int)
@click.option("--xlsx", "xlsx_path", type=click.Path(dir_okay=False, writable=True), default=None)
@click.option("--bank", "bank_path", type=click.Path(dir_okay=False, writable=True), default=None)
def settlement_export(batch_id: int, xlsx_path: str | None, bank_path: str | None) -> None:
    """Write the batch's workbook and/or the bank's batch payment file."""
    batch = _batch(batch_id)
    if not (xlsx_path or bank_path):
        _fail("请用 --xlsx 或 --bank 指定要写出的文件", 2)
    if bank_path:
        body = bank_csv(bank_rows(batch))
        with open(bank_path, "wb") as out:
            out.write(body)
        click.echo(f"已写出银行批量付款文件：{bank_path}")
    if xlsx_path:
        handle = batch_xlsx(batch, "admin")
        with open(xlsx_path, "wb") as out:
            out.write(handle.read())
        click.echo(f"已写出结算表：{xlsx_path}")


@cli.command("bank")
@click.argument("credit_code")
@click.option("--payee", required=True, help="户名")
@click.option("--bank", "bank_name", required=True, help="开户银行")
@click.option("--account", required=True, help="账号")
@AS
def settlement_bank(credit_code: str, payee: str, bank_name: str, account: str, username: str) -> None:
    """Set a merchant's settlement account (the bureau's step: an application cannot change it)."""
    user, now = _user(username), utcnow()
    if user.role not in ("admin", "operator"):
        _fail("登记收款账户须由管理员或运营人员办理")
    merchant = db.session.scalar(sa.select(Merchant).where(Merchant.credit_code == credit_code.strip().upper()))
    if merchant is None:
        _fail(f"没有统一社会信用代码为 {credit_code} 的商户")
    details = check_details(payee, bank_name, account)
    before = {"bank_account": merchant.bank_account}
    for name, value in details.items():
        setattr(merchant, name, value)
    audit.record(
        user, "merchant_bank", now, target=merchant, before=before, after={"bank_account": details["bank_account"]}
    )
    click.echo(
        f"{merchant.name}：收款账户已登记（{details['bank_payee']} {details['bank_name']} {details['bank_account']}）"
    )
