"""`flask admin create | password | disable`: the bureau's accounts of the console."""

from __future__ import annotations

import click

from ..auth import accounts
from ..core.time import utcnow
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


@cli.command("password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def admin_password(username: str, password: str) -> None:
    """Set an account's password; every session of the account ends."""
    accounts.set_password(accounts.find(username), password)
    click.echo(f"已为 {username} 设置新密码，该账号已登录的会话全部失效")


@cli.command("disable")
@click.argument("username")
def admin_disable(username: str) -> None:
    """Disable an account: it can no longer sign in, and every session of it ends."""
    accounts.disable(accounts.find(username), utcnow())
    click.echo(f"已停用账号 {username}，该账号已登录的会话全部失效")
