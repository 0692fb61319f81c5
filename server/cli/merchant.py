"""`flask merchant approve|reject|code|suspend|blacklist|reinstate ID [--campaign CODE]`: the
bureau's review of a merchant's enrolment from the command line, as the console does it
(campaign/enrolment.py). A merchant enrolled in one campaign needs no --campaign."""

from __future__ import annotations

import sys

import click

from ..campaign import enrolment
from ..core.time import utcnow
from ..extensions import db
from ..models import Enrolment, Merchant
from . import Group

cli = Group("merchant", help="Review merchant applications and issue binding codes.")


CAMPAIGN = click.option(
    "--campaign", "campaign_code", default=None, help="The campaign's code, when it applied to several."
)


def _enrolment(merchant_id: int, campaign_code: str | None) -> Enrolment:
    """The merchant's enrolment in the campaign of that code, or its only one."""
    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None:
        click.echo(f"错误：没有编号为 {merchant_id} 的商户", err=True)
        sys.exit(1)
    found = [e for e in merchant.enrolments if campaign_code in (None, e.campaign.code)]
    if len(found) != 1:
        codes = "、".join(e.campaign.code for e in merchant.enrolments) or "无"
        what = f"没有报名活动 {campaign_code}" if campaign_code else "报名了多个活动，请用 --campaign 指明"
        click.echo(f"错误：商户 {merchant.name} {what}（已报名：{codes}）", err=True)
        sys.exit(1)
    return found[0]


@cli.command("approve")
@click.argument("merchant_id", type=int)
@CAMPAIGN
@click.option("--note", default=None, help="Review note kept with the decision.")
def merchant_approve(merchant_id: int, campaign_code: str | None, note: str | None) -> None:
    """Approve an application and print its one-time binding code."""
    enrolled = _enrolment(merchant_id, campaign_code)
    code = enrolment.approve(enrolled, utcnow(), note)
    click.echo(f"已通过：{enrolment.label(enrolled)}  绑定码：{code}（30天内有效，仅可使用一次）")


@cli.command("reject")
@click.argument("merchant_id", type=int)
@CAMPAIGN
@click.option("--reason", required=True, help="Why, e.g. 列入失信名单.")
def merchant_reject(merchant_id: int, campaign_code: str | None, reason: str) -> None:
    """Reject an application, with the reason."""
    enrolled = _enrolment(merchant_id, campaign_code)
    enrolment.reject(enrolled, utcnow(), reason)
    click.echo(f"已驳回：{enrolment.label(enrolled)}（{reason}）")


@cli.command("code")
@click.argument("merchant_id", type=int)
@CAMPAIGN
def merchant_code(merchant_id: int, campaign_code: str | None) -> None:
    """Issue a new binding code for an approved enrolment (earlier unused codes stop working)."""
    enrolled = _enrolment(merchant_id, campaign_code)
    code = enrolment.issue_binding_code(enrolled, utcnow())
    click.echo(f"{enrolment.label(enrolled)}  新绑定码：{code}（30天内有效，仅可使用一次）")


def _standing(status: str, done: str):
    def command(merchant_id: int, campaign_code: str | None, reason: str) -> None:
        enrolled = _enrolment(merchant_id, campaign_code)
        enrolment.set_standing(enrolled, status, utcnow(), reason)
        click.echo(f"{done}：{enrolment.label(enrolled)}（{reason}）")

    return command


for _name, _status, _done, _help in (
    ("suspend", "suspended", "已暂停", "Suspend an approved merchant: its tills can no longer redeem."),
    ("blacklist", "blacklisted", "已列入黑名单", "Blacklist a merchant (bad credit record): out for good."),
    ("reinstate", "approved", "已恢复", "Reinstate a suspended merchant."),
):
    cli.command(_name, help=_help)(
        click.argument("merchant_id", type=int)(
            CAMPAIGN(click.option("--reason", required=True)(_standing(_status, _done)))
        )
    )
