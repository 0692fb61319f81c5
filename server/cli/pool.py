"""The money pool from the command line: `flask ledger` (the books checked against the coupons),
`flask round adjust` (a future round's quotas) and `flask scheduler run|tick` (the jobs)."""

from __future__ import annotations

import logging
import sys

import click
import sqlalchemy as sa
from flask import current_app

from ..core.money import fen, yuan
from ..core.time import utcnow
from ..extensions import db
from ..models import Campaign
from ..pool import jobs
from ..pool import ledger as books
from ..pool import rounds as quotas
from . import Group, campaigns_or_exit, command

rounds = Group("round", help="Rounds: quotas between rounds.")
scheduler = Group("scheduler", help="The round, expiry, rollover and treasury jobs.")


@command("ledger")
@click.option("--campaign", "code", help="Only this campaign (its code).")
def ledger(code: str | None) -> None:
    """Print the pool's balances per campaign, round and category; exit 1 if they do not balance."""
    broken = False
    for campaign in campaigns_or_exit(code):
        report = books.verify(campaign)
        click.echo(books.report_text(report))
        broken = broken or not report.balanced
    sys.exit(1 if broken else 0)


@rounds.command("adjust")
@click.option("--campaign", "code", required=True, help="The campaign's code.")
@click.option("--round", "number", type=int, required=True, help="The round's number (not yet open).")
@click.option("--by", "actor", default="admin", show_default=True, help="Who decided (kept in the ledger).")
@click.argument("wanted", nargs=-1, required=True)
def round_adjust(code: str, number: int, actor: str, wanted: tuple[str, ...]) -> None:
    """Set a future round's quotas: WANTED like hotel:100=1500 restaurant:200=300 (category:face_yuan=count)."""
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.code == code))
    round_ = campaign and next((r for r in campaign.rounds if r.number == number), None)
    if round_ is None:
        click.echo(f"找不到活动「{code}」的第{number}轮", err=True)
        sys.exit(2)
    quantities: dict[int, int] = {}
    for quota in wanted:
        try:
            tier_part, count = quota.split("=")
            category, face = tier_part.split(":")
            face_fen, count_n = fen(face), int(count)
        except ValueError:
            face_fen = None
        if face_fen is None:
            click.echo(f"看不懂「{quota}」：应写成 品类代码:面额元=张数，如 hotel:100=1500", err=True)
            sys.exit(2)
        tiers = [t for t in campaign.tiers if t.category.code == category and t.face_fen == face_fen]
        if len(tiers) != 1:
            click.echo(f"找不到唯一的券种「{tier_part}」", err=True)
            sys.exit(2)
        quantities[tiers[0].id] = count_n
    changes = quotas.adjust_quotas(round_.id, quantities, f"admin:{actor}", utcnow())
    for change in changes:
        click.echo(f"第{number}轮 {books.tier_label(change.tier)}：{change.before} → {change.after} 张")
    click.echo(f"资金池余额 {yuan(books.pool_fen(campaign.id), grouped=True)} 元")


@scheduler.command("run")
def scheduler_run() -> None:
    """Run the jobs as their own process, until stopped; only the leader of several does the work."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = current_app._get_current_object()
    running, leader = jobs.build(app, blocking=True)
    for job in jobs.JOBS:
        click.echo(f"  {job.name}: 每 {job.every_s} 秒  {job.description}")
    if app.config.get("SCHEDULER_METRICS"):
        # This process's figures (job runs and failures, leadership) for Prometheus, on its own port.
        from prometheus_client import start_http_server

        host, _, port = app.config["SCHEDULER_METRICS"].rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1")
        click.echo(f"调度器指标：http://{host or '127.0.0.1'}:{port}/metrics")
    click.echo("调度器已启动（Ctrl+C 停止）；启动时先补跑错过的任务")
    try:
        running.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        leader.release()


@scheduler.command("tick")
def scheduler_tick() -> None:
    """Run every job once now (for cron, or to catch up by hand)."""
    for name, result in jobs.run_all(current_app._get_current_object()).items():
        click.echo(f"  {name}: {result if result else '无'}")
