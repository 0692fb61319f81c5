"""`flask backup verify FILE`: prove that a backup restores, and that what it holds checks out.

A dump nobody has restored is a hope, not a backup. `verify` restores one into a scratch database
on the same PostgreSQL server (`huigou_verify_<random>`, dropped afterwards), then runs on it the
two checks production answers to: the ledger against the coupons (`flask ledger`, pool/ledger.py)
and the tamper-evident chain (`flask audit verify`, pool/chain.py). The chain's key is CHAIN_KEY
(or SECRET_KEY) from these settings, never from the dump: the host that verifies needs
production's environment, and whoever changed a dump cannot make it verify.

The app's own database is never opened, let alone written: the checks run in an app context of
their own whose `db.session` is bound to the scratch copy (they read through `db.session` and
nothing else, so they run there unchanged). That is why this group is a plain `AppGroup`, not the
house `Group`: a command that touches no session of the app has nothing to commit.

    flask --app server backup verify /var/backups/huigou/huigou-20260625-0900.dump [--server URL] [--keep]

Exit status 0 when every campaign's ledger balances and chain is intact, 1 when one does not,
2 when the file cannot be restored (or the copy is not a Huigou database this code can read).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import click
import psycopg
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from ..core.db import engine_url
from ..core.ready import migration_heads
from ..core.time import local, utcnow, zone
from ..extensions import db
from ..models import Campaign, Coupon, Redemption
from ..pool import chain
from ..pool import ledger as books

cli = AppGroup("backup", help="Backups: prove a dump restores and that its books and chain check out.")

# What a file is, told by its first bytes.
FORMATS = {
    b"PGDMP": "custom",  # pg_dump -Fc, restored by pg_restore
    b"--\n-- PostgreSQL database dump": "plain",  # pg_dump's plain SQL, run by psql
    b"SQLite format 3\x00": "sqlite",  # a development (or small county's) database file
}
FORMAT_NAMES = {"custom": "pg_dump 自定义格式", "plain": "pg_dump 纯 SQL 格式", "sqlite": "SQLite 数据库文件"}


class Unrestorable(Exception):
    """The file cannot be restored, or its copy cannot be checked: one line, exit status 2."""


@cli.command("verify")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--server",
    metavar="URL",
    help="PostgreSQL server and role (with CREATEDB) to restore with; its database part is not used."
    " Default: DATABASE_URL's.",
)
@click.option("--keep", is_flag=True, help="Keep the scratch database afterwards and print its name.")
def backup_verify(file: Path, server: str | None, keep: bool) -> None:
    """Restore FILE (pg_dump -Fc, plain SQL or SQLite) into a scratch database and check its ledger
    and chain there; exit 0 if both pass, 1 if one fails, 2 if it cannot be restored."""
    try:
        kind = backup_format(file)
        click.echo(f"备份 {file}：{FORMAT_NAMES[kind]}，{size(file.stat().st_size)}")
        scratch = sqlite_copy(file, keep) if kind == "sqlite" else postgres_copy(file, kind, server, keep)
        with ending_on_sigterm(), scratch as url:
            passed = check(url)
    except Unrestorable as refused:
        click.echo(f"错误：{refused}", err=True)
        sys.exit(2)
    sys.exit(0 if passed else 1)


def backup_format(file: Path) -> str:
    try:
        with file.open("rb") as handle:
            head = handle.read(64)
    except FileNotFoundError:
        raise Unrestorable(f"找不到文件 {file}") from None
    except IsADirectoryError:
        raise Unrestorable(f"{file} 是目录，不是备份文件") from None
    except OSError as error:
        raise Unrestorable(f"读不到 {file}（{error.strerror}）") from None
    kind = next((kind for magic, kind in FORMATS.items() if head.startswith(magic)), None)
    if kind is None:
        raise Unrestorable(f"{file} 不是备份文件：既不是 pg_dump 的备份（自定义格式或纯 SQL），也不是 SQLite 数据库")
    return kind


@contextlib.contextmanager
def ending_on_sigterm() -> Iterator[None]:
    """SIGTERM (systemd stopping the unit, or its timeout) ends the command as an exception would,
    so that the scratch copy is still removed. Signals are the main thread's alone to handle."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def size(n: int) -> str:
    return f"{n / 1024:.0f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# ---------------------------------------------------------------- the scratch copy


@contextlib.contextmanager
def postgres_copy(file: Path, kind: str, server: str | None, keep: bool) -> Iterator[str]:
    """A scratch database on the server with FILE restored into it: its URL; dropped afterwards
    (whatever happened) unless kept."""
    try:
        target = make_url(engine_url(server or current_app.config["SQLALCHEMY_DATABASE_URI"]))
    except sa.exc.ArgumentError:
        raise Unrestorable(f"--server 不是数据库 URL：{server}") from None
    if target.get_backend_name() != "postgresql":
        raise Unrestorable("本程序用的是 SQLite 数据库：恢复 PostgreSQL 备份须以 --server 指定一台 PostgreSQL 服务器")
    scratch = target.set(database=f"huigou_verify_{secrets.token_hex(4)}")
    where = f"{target.host or '本机'}:{target.port or 5432}"
    on_server(target, f'CREATE DATABASE "{scratch.database}" TEMPLATE template0', f"无法在 {where} 上建临时数据库")
    try:
        click.echo(f"恢复到临时数据库 {scratch.database}（{where}）")
        started = time.perf_counter()
        restore(file, kind, scratch)
        click.echo(f"  恢复用时 {time.perf_counter() - started:.1f} 秒")
        yield scratch.render_as_string(hide_password=False)
    finally:
        if keep:
            click.echo(f"已保留临时数据库 {scratch.database}（用完请删除：dropdb {scratch.database}）")
        else:
            # FORCE: a connection the checks left behind must not keep the copy alive.
            drop = f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)'
            on_server(target, drop, f"无法删除临时数据库 {scratch.database}")
            click.echo(f"已删除临时数据库 {scratch.database}")


def on_server(server: URL, statement: str, failure: str) -> None:
    """A statement outside any transaction (CREATE and DROP DATABASE), from the server's
    maintenance database `postgres`, never from the app's own."""
    maintenance = server.set(drivername="postgresql", database="postgres")
    try:
        with psycopg.connect(maintenance.render_as_string(hide_password=False), autocommit=True) as connection:
            connection.execute(statement)
    except psycopg.Error as error:
        raise Unrestorable(f"{failure}：{first_line(error)}") from None


def restore(file: Path, kind: str, scratch: URL) -> None:
    """pg_restore (or psql, for plain SQL) into the scratch database; the password by environment,
    not on a command line every user of the host can read."""
    dbname = scratch.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    env = os.environ | {"PGOPTIONS": "-c client_min_messages=warning"}
    if scratch.password:
        env["PGPASSWORD"] = scratch.password
    if kind == "custom":
        command = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
        command += [f"--dbname={dbname}", str(file)]
    else:
        command = ["psql", "--no-psqlrc", "--quiet", "--single-transaction", "--set=ON_ERROR_STOP=1"]
        command += [f"--dbname={dbname}", f"--file={file}"]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise Unrestorable(f"找不到 {command[0]}：请安装 PostgreSQL 客户端（与服务器同一大版本）") from None
    if done.returncode != 0:
        said = [line for line in done.stderr.splitlines() if "error" in line.lower()] or done.stderr.splitlines()
        raise Unrestorable(f"{file} 无法恢复：{said[0].strip() if said else f'{command[0]} 退出码 {done.returncode}'}")


@contextlib.contextmanager
def sqlite_copy(file: Path, keep: bool) -> Iterator[str]:
    """A copy of a SQLite file, read through SQLite's backup (a live database's WAL included, and
    the original opened read-only): its URL; removed afterwards unless kept."""
    folder = Path(tempfile.mkdtemp(prefix="huigou_verify_"))
    copy = folder / file.name
    try:
        try:
            with (
                contextlib.closing(sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)) as source,
                contextlib.closing(sqlite3.connect(copy)) as target,
            ):
                source.backup(target)
        except sqlite3.Error as error:
            raise Unrestorable(f"{file} 无法读取：{first_line(error)}") from None
        click.echo(f"复制到临时文件 {copy}")
        yield f"sqlite:///{copy}"
    finally:
        if keep:
            click.echo(f"已保留临时文件 {copy}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
            click.echo(f"已删除临时文件 {copy}")


# ---------------------------------------------------------------- the checks


@contextlib.contextmanager
def session_on(url: str) -> Iterator[None]:
    """An app context of this app whose `db.session` works on another database. The checks read
    through `db.session` alone, so they run there unchanged, with this app's settings (the chain's
    key, the reporting zone); this app's own session, in the outer context, stays unopened."""
    # JIT off, as on the app's engine (core/db.py): it costs the checks' aggregates more than it saves.
    options = {"connect_args": {"options": "-c jit=off"}} if url.startswith("postgresql") else {}
    engine = sa.create_engine(url, **options)
    try:
        with current_app._get_current_object().app_context():
            db.session.registry.set(Session(bind=engine))
            yield
    finally:
        engine.dispose()


def check(url: str) -> bool:
    """What the copy holds, then every campaign's ledger and chain; True when all pass."""
    started = time.perf_counter()
    failed = []
    try:
        with session_on(url):
            describe()
            campaigns = db.session.scalars(sa.select(Campaign).order_by(Campaign.id)).all()
            if not campaigns:
                click.echo("备份中没有活动：没有需要核对的账本与哈希链")
            for campaign in campaigns:
                click.echo(f"活动「{campaign.name}」（{campaign.code}）")
                if not ledger_passes(campaign):
                    failed.append(f"活动 {campaign.code} 的账本账实不符")
                if not chain_passes(campaign):
                    failed.append(f"活动 {campaign.code} 的哈希链被破坏")
    except sa.exc.DBAPIError as error:
        raise Unrestorable(
            f"备份已恢复，但无法在其上核对（不是惠购的数据库，或表结构与本程序不符）：{first_line(error.orig)}"
        ) from None
    took = f"核对用时 {time.perf_counter() - started:.1f} 秒"
    if failed:
        click.echo(f"核对未通过：{'；'.join(failed)}（{took}）")
    else:
        click.echo(f"核对通过：账本账实相符，哈希链完整（{took}）")
    return not failed


def describe() -> None:
    """The copy in a few figures: tables and migration, campaigns, coupons, redemptions, and how
    recent it is (its newest redemption)."""
    tables = sa.inspect(db.session.connection()).get_table_names()
    if "alembic_version" in tables:
        revisions = set(db.session.scalars(sa.text("SELECT version_num FROM alembic_version")))
        at = "，".join(sorted(revisions)) or "空"
        matches = "与本程序一致" if revisions == migration_heads() else "与本程序不同：真正恢复后先 flask db upgrade"
        click.echo(f"  数据表 {len(tables)} 张，迁移版本 {at}（{matches}）")
    else:
        click.echo(f"  数据表 {len(tables)} 张，没有迁移版本记录")
    campaigns = db.session.scalar(sa.select(sa.func.count()).select_from(Campaign))
    coupons, claimed = db.session.execute(sa.select(sa.func.count(), sa.func.count(Coupon.draw_id))).one()
    redemptions, newest = db.session.execute(sa.select(sa.func.count(), sa.func.max(Redemption.created_at))).one()
    click.echo(f"  活动 {campaigns} 个，券 {coupons:,} 张（已领 {claimed:,} 张），核销 {redemptions:,} 笔")
    if newest is not None:
        where = "北京时间" if zone().key == "Asia/Shanghai" else zone().key
        click.echo(f"  最新一笔核销于 {local(newest, '%Y-%m-%d %H:%M:%S')}（{where}）")


def ledger_passes(campaign: Campaign) -> bool:
    """`flask ledger`'s check (pool/ledger.py), said in a line, with every problem."""
    report = books.verify(campaign)
    if report.balanced:
        click.echo("  账本：账实相符")
    else:
        click.echo(f"  账本：账实不符 {len(report.problems)} 处")
        for problem in report.problems:
            click.echo(f"    ✗ {problem}")
    return report.balanced


def chain_passes(campaign: Campaign) -> bool:
    """`flask audit verify`'s check (pool/chain.py), said in a line, with every broken link."""
    verdict = chain.verify(campaign.id, utcnow())
    counted = f"已封存 {verdict.links:,} 条，待封存 {verdict.pending:,} 条"
    if verdict.intact:
        head = f"，链尾 {verdict.head_position}:{verdict.head}" if verdict.links else ""
        click.echo(f"  哈希链：完整，{counted}{head}")
    else:
        click.echo(f"  哈希链：被破坏 {len(verdict.problems)} 处（{counted}）")
        for problem in verdict.problems:
            click.echo(f"    ✗ {problem}")
    return verdict.intact
