"""Operator commands (`flask --app server ...`), one group per area."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from . import accounts, campaign_file, campaigns, subsidy
from .extensions import db
from .models import Allocation, Coupon, Round
from .timeutil import isoformat, utcnow, zone

campaign_cli = AppGroup("campaign", help="Check and import campaigns described in JSON or XLSX.")
admin_cli = AppGroup("admin", help="Bureau accounts.")
merchant_cli = AppGroup("merchant", help="Review merchant applications and issue binding codes.")


def _read_and_check(path: str):
    try:
        doc = campaign_file.read(path)
    except campaign_file.CampaignFileError as exc:
        click.echo(f"错误：{exc}", err=True)
        sys.exit(2)
    plan, problems = campaign_file.check(doc)
    if problems:
        click.echo(f"{doc.source}：发现 {len(problems)} 处问题", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
    return plan, problems


@campaign_cli.command("check")
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
            f"预算 {campaign_file.yuan(plan.campaign['budget_fen'])} 元，受理期 {len(plan.rounds)} 段。"
        )
        return
    kind = {"wheel": "幸运转盘", "grab": "抢券"}[plan.campaign["kind"]] + (
        "（现场大屏扫码）" if plan.campaign["screen_qr"] else ""
    )
    click.echo(
        f"{path}：检查通过。{kind}，{len(plan.categories)} 个品类，{len(plan.tiers)} 个券种，"
        f"每次投放 {coupons} 张共 {campaign_file.yuan(value)} 元，{len(plan.rounds)} 轮。"
    )


@campaign_cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--draft", is_flag=True, help="Import as a draft, not shown to residents yet.")
def campaign_import(path: str, draft: bool) -> None:
    """Create a campaign from a file; a file with any inconsistency changes nothing."""
    plan, problems = _read_and_check(path)
    if problems:
        click.echo("未导入任何内容。", err=True)
        sys.exit(1)
    campaign = campaign_file.create(plan, status="draft" if draft else "active")
    db.session.commit()
    campaigns.forget_snapshot()
    _describe(campaign)


def _describe(campaign) -> None:
    tz = zone(campaign.timezone)
    budget = campaign_file.yuan(campaign.budget_fen)
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
            f"  第{round_.number}轮：{isoformat(round_.opens_at, tz)} 开抽，有效至 {isoformat(round_.valid_until, tz)}"
            + (f"，投放 {count} 张共 {campaign_file.yuan(value)} 元" if count else "")
        )
    first = campaign.rounds[0].id if campaign.rounds else None
    quantity = dict(
        db.session.execute(sa.select(Allocation.tier_id, Allocation.quantity).where(Allocation.round_id == first)).all()
    )
    for category in campaign.categories:
        tiers = sorted((t for t in campaign.tiers if t.category_id == category.id), key=lambda t: t.face_fen)
        shown = "、".join(
            f"{campaign_file.yuan(t.face_fen)}元×{quantity.get(t.id, 0)}"
            + (f"（满{campaign_file.yuan(t.threshold_fen)}可用）" if t.threshold_fen else "（无门槛）")
            for t in tiers
        )
        click.echo(f"  {category.name}（{category.code}）" + (f"：{shown}" if shown else ""))
    for row in subsidy.bracket_rows(campaign.subsidy_brackets):
        click.echo(f"  补贴：{row['vehicle_name']} {row['span']} → {campaign_file.yuan(row['subsidy_fen'])} 元")


@admin_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(accounts.ROLES), default="admin", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def admin_create(username: str, role: str, password: str) -> None:
    """Create a bureau account (password prompted, or --password for scripts)."""
    try:
        accounts.create_admin(username, password, role)
    except accounts.AccountError as exc:
        click.echo(f"错误：{exc}", err=True)
        sys.exit(1)
    db.session.commit()
    click.echo(f"已创建账号 {username}（{role}）")


@click.command("seed-demo")
@with_appcontext
@click.option(
    "--base-url", default="http://127.0.0.1:5000", show_default=True, help="Where the server answers, for the printout."
)
def seed_demo(base_url: str) -> None:
    """Load the Qian'an demo campaign (rounds from today), its 12 merchants and an admin."""
    from .seed import seed_demo as run

    result = run(utcnow())
    db.session.commit()
    campaigns.forget_snapshot()
    campaign = result["campaign"]
    if not result["created"]:
        click.echo(f"演示活动「{campaign.name}」已存在，未重复创建。")
    else:
        _describe(campaign)
        click.echo(f"  商户 {len(result['merchants'])} 家（已审核通过，绑定码30天内有效、仅可使用一次）：")
        for merchant, code in result["merchants"]:
            click.echo(
                f"    [{merchant.id}] {merchant.name}（{merchant.categories[0].name}，{merchant.address}）绑定码 {code}"
            )
    if result["admin_password"]:
        click.echo(f"管理员账号：admin  密码：{result['admin_password']}  （请妥善保存，只显示这一次）")
    click.echo(f"管理后台：{base_url}/admin/   （用上面的管理员账号登录）")
    click.echo(f"居民页面：{base_url}/h5/   店员核销页面：{base_url}/h5/staff   （用上面的商户绑定码绑定店员）")
    click.echo(f"居民接口：{base_url}/api/v1/campaign   接口文档：{base_url}/api/v1/docs")


def _merchant(merchant_id: int):
    from .models import Merchant

    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None:
        click.echo(f"错误：没有编号为 {merchant_id} 的商户", err=True)
        sys.exit(1)
    return merchant


def _review(action) -> None:
    from .merchant.services import ReviewError

    try:
        action()
    except ReviewError as exc:
        db.session.rollback()
        click.echo(f"错误：{exc}", err=True)
        sys.exit(1)
    db.session.commit()


@merchant_cli.command("approve")
@click.argument("merchant_id", type=int)
@click.option("--note", default=None, help="Review note kept with the decision.")
def merchant_approve(merchant_id: int, note: str | None) -> None:
    """Approve an application and print its one-time binding code."""
    from .merchant import services

    merchant = _merchant(merchant_id)
    codes = []
    _review(lambda: codes.append(services.approve(merchant, utcnow(), note)))
    click.echo(f"已通过：{merchant.name}  绑定码：{codes[0]}（30天内有效，仅可使用一次）")


@merchant_cli.command("reject")
@click.argument("merchant_id", type=int)
@click.option("--reason", required=True, help="Why, e.g. 列入失信名单.")
def merchant_reject(merchant_id: int, reason: str) -> None:
    """Reject an application, with the reason."""
    from .merchant import services

    merchant = _merchant(merchant_id)
    _review(lambda: services.reject(merchant, utcnow(), reason))
    click.echo(f"已驳回：{merchant.name}（{reason}）")


@merchant_cli.command("code")
@click.argument("merchant_id", type=int)
def merchant_code(merchant_id: int) -> None:
    """Issue a new binding code for an approved merchant (earlier unused codes stop working)."""
    from .merchant import services

    merchant = _merchant(merchant_id)
    codes = []
    _review(lambda: codes.append(services.issue_binding_code(merchant, utcnow())))
    click.echo(f"{merchant.name}  新绑定码：{codes[0]}（30天内有效，仅可使用一次）")


def _standing(status: str, done: str):
    def command(merchant_id: int, reason: str) -> None:
        from .merchant import services

        merchant = _merchant(merchant_id)
        _review(lambda: services.set_standing(merchant, status, utcnow(), reason))
        click.echo(f"{done}：{merchant.name}（{reason}）")

    return command


for _name, _status, _done, _help in (
    ("suspend", "suspended", "已暂停", "Suspend an approved merchant: its tills can no longer redeem."),
    ("blacklist", "blacklisted", "已列入黑名单", "Blacklist a merchant (bad credit record): out for good."),
    ("reinstate", "approved", "已恢复", "Reinstate a suspended merchant."),
):
    merchant_cli.command(_name, help=_help)(
        click.argument("merchant_id", type=int)(click.option("--reason", required=True)(_standing(_status, _done)))
    )


# ---------------------------------------------------------------- the ledger, rounds, scheduler

round_cli = AppGroup("round", help="Rounds: quotas between rounds.")
scheduler_cli = AppGroup("scheduler", help="The round, expiry, rollover and treasury jobs.")


def _campaigns_or_exit(code: str | None) -> list:
    """Every campaign, or the one with this code; exit 2 when there is none."""
    from .models import Campaign

    query = sa.select(Campaign).order_by(Campaign.id)
    if code:
        query = query.where(Campaign.code == code)
    found = db.session.scalars(query).all()
    if not found:
        click.echo("没有活动" if not code else f"找不到活动「{code}」", err=True)
        sys.exit(2)
    return found


@click.command("ledger")
@click.option("--campaign", "code", help="Only this campaign (its code).")
@with_appcontext
def ledger_command(code: str | None) -> None:
    """Print the pool's balances per campaign, round and category; exit 1 if they do not balance."""
    from . import ledger

    broken = False
    for campaign in _campaigns_or_exit(code):
        report = ledger.verify(campaign)
        click.echo(ledger.report_text(report))
        broken = broken or not report.balanced
    sys.exit(1 if broken else 0)


@round_cli.command("adjust")
@click.option("--campaign", "code", required=True, help="The campaign's code.")
@click.option("--round", "number", type=int, required=True, help="The round's number (not yet open).")
@click.option("--by", "actor", default="admin", show_default=True, help="Who decided (kept in the ledger).")
@click.argument("quotas", nargs=-1, required=True)
@with_appcontext
def round_adjust(code: str, number: int, actor: str, quotas: tuple[str, ...]) -> None:
    """Set a future round's quotas: QUOTAS like hotel:100=1500 restaurant:200=300 (category:face_yuan=count)."""
    from . import ledger, rounds
    from .models import Campaign

    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.code == code))
    round_ = campaign and next((r for r in campaign.rounds if r.number == number), None)
    if round_ is None:
        click.echo(f"找不到活动「{code}」的第{number}轮", err=True)
        sys.exit(2)
    wanted: dict[int, int] = {}
    for quota in quotas:
        try:
            tier_part, count = quota.split("=")
            category, face = tier_part.split(":")
            face_fen, count_n = round(float(face) * 100), int(count)
        except ValueError:
            click.echo(f"看不懂「{quota}」：应写成 品类代码:面额元=张数，如 hotel:100=1500", err=True)
            sys.exit(2)
        tiers = [t for t in campaign.tiers if t.category.code == category and t.face_fen == face_fen]
        if len(tiers) != 1:
            click.echo(f"找不到唯一的券种「{tier_part}」", err=True)
            sys.exit(2)
        wanted[tiers[0].id] = count_n
    try:
        changes = rounds.adjust_quotas(round_.id, wanted, f"admin:{actor}", utcnow())
        db.session.commit()
    except rounds.QuotaError as exc:
        db.session.rollback()
        click.echo(f"未调整：{exc}", err=True)
        sys.exit(1)
    for change in changes:
        click.echo(f"第{number}轮 {ledger.tier_label(change.tier)}：{change.before} → {change.after} 张")
    click.echo(f"资金池余额 {ledger.yuan(ledger.pool_fen(campaign.id))} 元")


@scheduler_cli.command("run")
@with_appcontext
def scheduler_run() -> None:
    """Run the jobs as their own process, until stopped; only the leader of several does the work."""
    import logging

    from flask import current_app

    from .scheduler import JOBS, build

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = current_app._get_current_object()
    scheduler, leader = build(app, blocking=True)
    for job in JOBS:
        click.echo(f"  {job.name}: 每 {job.every_s} 秒  {job.description}")
    click.echo("调度器已启动（Ctrl+C 停止）；启动时先补跑错过的任务")
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        leader.release()


@scheduler_cli.command("tick")
@with_appcontext
def scheduler_tick() -> None:
    """Run every job once now (for cron, or to catch up by hand)."""
    from flask import current_app

    from .scheduler import run_all

    results = run_all(current_app._get_current_object())
    for name, result in results.items():
        click.echo(f"  {name}: {result if result else '无'}")


# ---------------------------------------------------------------- tamper evidence

audit_cli = AppGroup("audit", help="The tamper-evident chain of claims and redemptions.")


@audit_cli.command("seal")
@with_appcontext
def audit_seal() -> None:
    """Seal the records not yet in the chain (the scheduler does this every 30 s)."""
    from . import chain

    sealed = chain.seal(utcnow())
    db.session.commit()
    click.echo(f"已封存 {sum(sealed.values())} 条记录")


@audit_cli.command("verify")
@click.option("--campaign", "code", help="Only this campaign (its code).")
@click.option("--expect", multiple=True, metavar="POSITION:DIGEST", help="A head noted earlier (with --campaign).")
@with_appcontext
def audit_verify(code: str | None, expect: tuple[str, ...]) -> None:
    """Recompute every campaign's chain; name each broken link, first first; exit 1 if any."""
    from . import chain

    noted = {}
    for item in expect:
        position, _, value = item.partition(":")
        if not (code and position.isdigit() and len(value) == 64):
            click.echo("--expect 须与 --campaign 同用，格式为 环序号:64位摘要", err=True)
            sys.exit(2)
        noted[int(position)] = value
    broken = False
    for campaign in _campaigns_or_exit(code):
        verdict = chain.verify(campaign.id, utcnow(), noted)
        name = f"活动「{campaign.name}」（{campaign.code}）"
        click.echo(f"{name}：已封存 {verdict.links} 条，待封存 {verdict.pending} 条")
        if verdict.head:
            click.echo(f"  链尾 {verdict.head_position}:{verdict.head}（请记下，日后以 --expect 核对）")
        for problem in verdict.problems:
            click.echo(f"  ✗ {problem}")
        click.echo("  哈希链完整" if verdict.intact else f"  哈希链被破坏：{len(verdict.problems)} 处")
        broken = broken or not verdict.intact
    sys.exit(1 if broken else 0)


def register(app: Flask) -> None:
    app.cli.add_command(audit_cli)
    app.cli.add_command(ledger_command)
    app.cli.add_command(round_cli)
    app.cli.add_command(scheduler_cli)
    app.cli.add_command(merchant_cli)
    app.cli.add_command(campaign_cli)
    app.cli.add_command(admin_cli)
    app.cli.add_command(seed_demo)
