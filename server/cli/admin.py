"""`flask admin create`: a bureau account of the console."""

from __future__ import annotations

import click

from ..auth import accounts
from . import Group

cli = Group("admin", help="Bureau accounts.")


@cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(accounts.ROLES), default="admin", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def admin_create(username: str, role: str, password: str) -> None:
    """Create a bureau account (password prompted, or --password for scripts)."""
    accounts.create_admin(username, password, role)
    click.echo(f"已创建账号 {username}（{role}）")
