"""Operator commands (`flask --app server ...`), one group per file. Each command commits once
when it returns and rolls back on any error; a refusal is one Chinese line on stderr and exit 1."""

from __future__ import annotations

import functools
import sys

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from ..core.commit import commits
from ..core.errors import Refusal
from ..extensions import db
from ..models import Campaign


def runs_once(command):
    """The command's one commit; a refusal said in one line, exit 1."""
    committed = commits(command)

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return committed(*args, **kwargs)
        except Refusal as refused:
            # A refusal's kind may head its line (未调整：...); whom it is about is for the console.
            head = type(refused).subject or "错误"
            click.echo(f"{head}：{refused.message}", err=True)
            sys.exit(1)

    return run


class Group(AppGroup):
    """A command group whose commands run in an app context and commit once (`runs_once`)."""

    def command(self, *args, **kwargs):
        wrap = super().command

        def decorate(callback):
            return wrap(*args, **kwargs)(runs_once(callback))

        return decorate


def command(name: str, **kwargs):
    """A command of its own (no group), in an app context, committing once."""

    def decorate(callback):
        return click.command(name, **kwargs)(with_appcontext(runs_once(callback)))

    return decorate


def campaigns_or_exit(code: str | None) -> list[Campaign]:
    """Every campaign, or the one with this code; exit 2 when there is none."""
    query = sa.select(Campaign).order_by(Campaign.id)
    if code:
        query = query.where(Campaign.code == code)
    found = db.session.scalars(query).all()
    if not found:
        click.echo("没有活动" if not code else f"找不到活动「{code}」", err=True)
        sys.exit(2)
    return found


def register(app: Flask) -> None:
    from . import admin, audit, backup, campaign, merchant, pool, seed, settlement

    for group in (
        audit.cli,
        pool.ledger,
        pool.rounds,
        pool.scheduler,
        merchant.cli,
        campaign.cli,
        admin.cli,
        settlement.cli,
        backup.cli,
    ):
        app.cli.add_command(group)
    app.cli.add_command(seed.seed_demo)
