"""`flask merchant approve|reject|code|suspend|blacklist|reinstate ID`: the bureau's review of a
merchant from the command line, as the console does it (campaign/enrolment.py)."""

from __future__ import annotations

import sys

import click

from ..campaign import enrolment
from ..core.time import utcnow
from ..extensions import db
from ..models import Merchant
from . import Group

cli = Group("merchant", help="Review merchant applications and issue binding codes.")


def _merchant(merchant_id: int) -> Merchant:
    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None:
        click.echo(f"错误：没有编号为 {merchant_id} 的商户", err=True)
        sys.exit(1)
    return merchant


@cli.command("approve")
@click.argument("merchant_id", type=int)
@click.option("--note", default=None, help="Review note kept with the decision.")
def merchant_approve(merchant_id: int, note: str | None) -> None:
    """Approve an application and print its one-time binding code."""
    merchant = _merchant(merchant_id)
    code = enrolment.approve(merchant, utcnow(), note)
    click.echo(f"已通过：{merchant.name}  绑定码：{code}（30天内有效，仅可使用一次）")


@cli.command("reject")
@click.argument("merchant_id", type=int)
@click.option("--reason", required=True, help="Why, e.g. 列入失信名单.")
def merchant_reject(merchant_id: int, reason: str) -> None:
    """Reject an application, with the reason."""
    merchant = _merchant(merchant_id)
    enrolment.reject(merchant, utcnow(), reason)
    click.echo(f"已驳回：{merchant.name}（{reason}）")


@cli.command("code")
@click.argument("merchant_id", type=int)
def merchant_code(merchant_id: int) -> None:
    """Issue a new binding code for an approved merchant (earlier unused codes stop working)."""
    merchant = _merchant(merchant_id)
    code = enrolment.issue_binding_code(merchant, utcnow())
    click.echo(f"{merchant.name}  新绑定码：{code}（30天内有效，仅可使用一次）")


def _standing(status: str, done: str):
    def command(merchant_id: int, reason: str) -> None:
        merchant = _merchant(merchant_id)
        enrolment.set_standing(merchant, status, utcnow(), reason)
        click.echo(f"{done}：{merchant.name}（{reason}）")

    return command


for _name, _status, _done, _help in (
    ("suspend", "suspended", "已暂停", "Suspend an approved merchant: its tills can no longer redeem."),
    ("blacklist", "blacklisted", "已列入黑名单", "Blacklist a merchant (bad credit record): out for good."),
    ("reinstate", "approved", "已恢复", "Reinstate a suspended merchant."),
):
    cli.command(_name, help=_help)(
        click.argument("merchant_id", type=int)(click.option("--reason", required=True)(_standing(_status, _done)))
    )
