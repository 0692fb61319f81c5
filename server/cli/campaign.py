"""`flask campaign check FILE` and `flask campaign import FILE`: a campaign described in JSON or XLSX."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa

from ..campaign import file as campaign_file
from ..campaign.subsidy import bracket_rows
from ..core import cache
from ..core.money import yuan
from ..core.time import isoformat
from ..extensions import db
from ..models import Allocation, Coupon, Round
from . import Group

cli = Group("campaign", help="Check and import campaigns described in JSON or XLSX.")


def _read_and_check(path: str):
    try:
        doc = campaign_file.read(path)
    except campaign_file.CampaignFileError as exc:
        click.echo(f"错误：{exc}", err=True)
        sys.exit(2)
    plan, problems = campaign_file.check(doc)
    for note in doc.notes:
        click.echo(f"注意：{note}", err=True)
    if problems:
        click.echo(f"{doc.source}：发现 {len(problems)} 处问题", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
    return plan, problems


@cli.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def campaign_check(path: str) -> None:
    """Report every inconsistency of a campaign file; exit non-zero if there is any."""
    plan, problems = _read_and_check(path)
    if problems:
        sys.exit(1)
    coupons = sum(t["quantity"] for t in plan.tiers)
    value = sum(t["quantity"] * t["face_fen"] for t in plan.tiers)
    if plan.campaign["kind"] == "subsidy":
        click.echo(
            f"{path}：检查通过。购车补贴，{len(plan.categories)} 个品类，"
            f"{len(plan.campaign['subsidy_brackets'])} 档补贴标准，"
            f"预算 {yuan(plan.campaign['budget_fen'])} 元，受理期 {len(plan.rounds)} 段。"
        )
        return
    kind = (
        {"wheel": "幸运转盘", "grab": "抢券"}[plan.campaign["kind"]]
        + ("（现场大屏扫码）" if plan.campaign["screen_qr"] else "")
        + ("，实名参与（一证一户）" if plan.campaign["identity"] == "id_card" else "")
    )
    click.echo(
        f"{path}：检查通过。{kind}，{len(plan.categories)} 个品类，{len(plan.tiers)} 个券种，"
        f"每次投放 {coupons} 张共 {yuan(value)} 元，{len(plan.rounds)} 轮。"
    )


@cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--draft", is_flag=True, help="Import as a draft, not shown to residents yet.")
def campaign_import(path: str, draft: bool) -> None:
    """Create a campaign from a file; a file with any inconsistency changes nothing."""
    if campaign_file.existing_codes() is None:
        click.echo(f"错误：{campaign_file.NO_DATABASE}，未导入任何内容。", err=True)
        sys.exit(2)
    plan, problems = _read_and_check(path)
    if problems:
        click.echo("未导入任何内容。", err=True)
        sys.exit(1)
    campaign = campaign_file.create(plan, status="draft" if draft else "active")
    cache.forget()
    describe(campaign)


def describe(campaign) -> None:
    budget = yuan(campaign.budget_fen)
    click.echo(f"活动「{campaign.name}」（{campaign.code}，{campaign.region}），预算 {budget} 元")
    stock = dict(
        (round_id, (count, value))
        for round_id, count, value in db.session.execute(
            sa.select(Coupon.round_id, sa.func.count(), sa.func.sum(Coupon.face_fen))
            .join(Round)
            .where(Round.campaign_id == campaign.id)
            .group_by(Coupon.round_id)
        )
    )
    for round_ in campaign.rounds:
        count, value = stock.get(round_.id, (0, 0))
        click.echo(
            f"  第{round_.number}轮：{isoformat(round_.opens_at)} 开抽，有效至 {isoformat(round_.valid_until)}"
            + (f"，投放 {count} 张共 {yuan(value)} 元" if count else "")
        )
    first = campaign.rounds[0].id if campaign.rounds else None
    quantity = dict(
        db.session.execute(sa.select(Allocation.tier_id, Allocation.quantity).where(Allocation.round_id == first)).all()
    )
    for category in campaign.categories:
        tiers = sorted((t for t in campaign.tiers if t.category_id == category.id), key=lambda t: t.face_fen)
        shown = "、".join(
            f"{yuan(t.face_fen)}元×{quantity.get(t.id, 0)}"
            + (f"（满{yuan(t.threshold_fen)}可用）" if t.threshold_fen else "（无门槛）")
            for t in tiers
        )
        click.echo(f"  {category.name}（{category.code}）" + (f"：{shown}" if shown else ""))
    for row in bracket_rows(campaign.subsidy_brackets):
        click.echo(f"  补贴：{row['vehicle_name']} {row['span']} → {yuan(row['subsidy_fen'])} 元")
