"""`flask audit seal|verify`: the tamper-evident chain of claims and redemptions (pool/chain.py)."""

from __future__ import annotations

import sys

import click

from ..core.time import utcnow
from ..pool import chain
from . import Group, campaigns_or_exit

cli = Group("audit", help="The tamper-evident chain of claims and redemptions.")


@cli.command("seal")
def audit_seal() -> None:
    """Seal the records not yet in the chain (the scheduler does this every 30 s)."""
    sealed = chain.seal(utcnow())
    click.echo(f"已封存 {sum(sealed.values())} 条记录")


@cli.command("verify")
@click.option("--campaign", "code", help="Only this campaign (its code).")
@click.option("--expect", multiple=True, metavar="POSITION:DIGEST", help="A head noted earlier (with --campaign).")
def audit_verify(code: str | None, expect: tuple[str, ...]) -> None:
    """Recompute every campaign's chain; name each broken link, first first; exit 1 if any."""
    noted = {}
    for item in expect:
        position, _, value = item.partition(":")
        if not (code and position.isdigit() and len(value) == 64):
            click.echo("--expect 须与 --campaign 同用，格式为 环序号:64位摘要", err=True)
            sys.exit(2)
        noted[int(position)] = value
    broken = False
    for campaign in campaigns_or_exit(code):
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
