"""`flask admin create | password | reset-password | disable | enable`: the bureau's accounts of
the console. Each change is written to the audit log, as made from the command line."""

from __future__ import annotations

import click

from ..admin import audit
from ..auth import accounts
from ..core.time import utcnow
from . import Group

cli = Group("admin", help="Bureau accounts.")


def _audited(action: str, user, **what) -> None:
    audit.record(None, action, utcnow(), target=user, name=audit.COMMAND_LINE, **what)


@cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(accounts.ROLES), default="admin", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def admin_create(username: str, role: str, password: str) -> None:
    """Create a bureau account (password prompted, or --password for scripts)."""
    user = accounts.create_admin(username, password, role)
    _audited("account_create", user, after={"username": username, "role": role})
    click.echo(f"已创建账号 {username}（{role}）")


@cli.command("password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def admin_password(username: str, password: str) -> None:
    """Set an account's password; every session of the account ends."""
    user = accounts.find(username)
    accounts.set_password(user, password)
    _audited("account_password", user)
    click.echo(f"已为 {username} 设置新密码，该账号已登录的会话全部失效")


@cli.command("reset-password")
@click.argument("username")
def admin_reset_password(username: str) -> None:
    """A lost password: print a new generated one, once; a lockout is lifted and every session
    of the account ends."""
    user = accounts.find(username)
    password = accounts.reset_password(user)
    _audited("account_password", user)
    click.echo(f"账号 {username} 的新密码：{password}")
    click.echo("这个密码只显示这一次，请立即记下；该账号已登录的会话全部失效。")
    if user.disabled_at is not None:
        click.echo(f"该账号已停用，启用后才能登录：flask --app server admin enable {username}")


@cli.command("disable")
@click.argument("username")
def admin_disable(username: str) -> None:
    """Disable an account: it can no longer sign in, and every session of it ends."""
    user = accounts.find(username)
    accounts.disable(user, utcnow())
    _audited("account_disable", user, before={"disabled": False}, after={"disabled": True})
    click.echo(f"已停用账号 {username}，该账号已登录的会话全部失效")


@cli.command("enable")
@click.argument("username")
def admin_enable(username: str) -> None:
    """Enable a disabled account: it may sign in again with its password."""
    user = accounts.find(username)
    accounts.enable(user)
    _audited("account_enable", user, before={"disabled": True}, after={"disabled": False})
    click.echo(f"已启用账号 {username}")
