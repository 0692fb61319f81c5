"""`backup verify`: a backup restored into a scratch database, its ledger and chain checked there.

On PostgreSQL each test builds its campaign in a source database of its own
(`huigou_backup_src_<worker>_<random>`, dropped afterwards), dumps it with `pg_dump -Fc` as the
backup job does, and verifies the dump; on SQLite the source is a file, and the file is the backup.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from server import create_app
from server.core.cache import forget as forget_snapshot
from server.extensions import db
from server.models import Coupon, Redemption, Seal
from tests.helpers import ON_POSTGRES, PG_URL, TEST_CONFIG, WORKER, claims_and_redemptions

on_postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="needs TEST_DATABASE_URL on PostgreSQL")


def on_server(statement: str, *params) -> list[tuple]:
    """A statement on the test server's maintenance database, outside a transaction."""
    maintenance = make_url(PG_URL).set(drivername="postgresql", database="postgres")
    with psycopg.connect(maintenance.render_as_string(hide_password=False), autocommit=True) as connection:
        cursor = connection.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else []


def database_exists(name: str) -> bool:
    return bool(on_server("SELECT 1 FROM pg_database WHERE datname = %s", name))


@pytest.fixture
def app(tmp_path):
    """The app on a source database of the test's own (this overrides conftest's `app`, so its
    builders, client and runner work on it): on PostgreSQL one made for the test and dropped
    after it, never the worker's database; on SQLite a file."""
    if ON_POSTGRES:
        source = make_url(PG_URL).set(database=f"huigou_backup_src_{WORKER or 'main'}_{secrets.token_hex(3)}")
        on_server(f'CREATE DATABASE "{source.database}"')
        url = source.render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{tmp_path / 'source.sqlite3'}"
    app = create_app(TEST_CONFIG | {"SQLALCHEMY_DATABASE_URI": url, "RATELIMIT_ENABLED": False})
    with app.app_context():
        db.create_all()
    forget_snapshot()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    forget_snapshot()
    if ON_POSTGRES:
        on_server(f'DROP DATABASE IF EXISTS "{source.database}" WITH (FORCE)')


@pytest.fixture
def history(app, client, runner, make_campaign, make_resident, make_till, clock):
    """Five claims and two redemptions at 09:00, sealed a minute later: (coupon ids, redemption ids)."""
    made = claims_and_redemptions(client, make_campaign, make_resident, make_till, clock)
    assert runner.invoke(args=["audit", "seal"]).output == "已封存 7 条记录\n"
    return made


def backup(app, folder: Path) -> Path:
    """The source as the backup job keeps it: `pg_dump -Fc` on PostgreSQL; on SQLite, its file."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if not ON_POSTGRES:
        return Path(url.database)
    path = folder / "huigou.dump"
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    subprocess.run(["pg_dump", "-Fc", f"--file={path}", f"--dbname={libpq}"], check=True)
    return path


def scratch_of(output: str) -> str:
    """The scratch database (or, on SQLite, file) a run said it made."""
    found = re.search(r"(?:临时数据库|临时文件) ([^\s（]*huigou_verify_[^\s（]+)", output)
    assert found, output
    return found.group(1)


def assert_scratch_gone(output: str) -> None:
    scratch = scratch_of(output)
    assert not (database_exists(scratch) if ON_POSTGRES else Path(scratch).exists())


def test_verify_restores_the_backup_and_reports_it_and_both_checks(app, runner, history, tmp_path):
    _, redemptions = history
    path = backup(app, tmp_path)
    with app.app_context():
        tables = len(sa.inspect(db.engine).get_table_names())
        coupons = db.session.scalar(sa.select(sa.func.count()).select_from(Coupon))
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Redemption)) == len(redemptions) == 2
        engine = db.engine
    touched = []
    event.listen(engine, "before_cursor_execute", lambda *args: touched.append(args[2]))

    result = runner.invoke(args=["backup", "verify", str(path)])

    assert result.exit_code == 0, result.output
    assert touched == []  # the app's own database: not written, not even read
    out = result.stdout
    assert f"数据表 {tables} 张，没有迁移版本记录" in out  # (the tests' schema comes from create_all)
    assert f"活动 1 个，券 {coupons} 张（已领 5 张），核销 2 笔" in out
    assert "最新一笔核销于 2026-06-25 09:00:00（北京时间）" in out
    checked = "活动「测试消费券」（test-campaign）\n  账本：账实相符\n  哈希链：完整，已封存 7 条，待封存 0 条，链尾 7:"
    assert checked in out
    assert "核对通过：账本账实相符，哈希链完整" in out
    assert result.stderr == ""
    assert_scratch_gone(out)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        pytest.param(
            "UPDATE redemptions SET spend_fen = spend_fen + 100 WHERE id = :redemption",
            ["  账本：账实相符", "  哈希链：被破坏 1 处", "已被改动", "活动 test-campaign 的哈希链被破坏"],
            id="a sealed redemption changed",
        ),
        pytest.param(
            "UPDATE coupons SET state = 'expired' WHERE id = :coupon",
            ["  账本：账实不符", "账上已领未用", "  哈希链：完整", "活动 test-campaign 的账本账实不符"],
            id="a coupon moved without its ledger entry",
        ),
    ],
)
def test_verify_exits_1_naming_the_check_a_tampered_backup_fails(app, runner, history, tmp_path, change, said):
    coupons, redemptions = history
    with app.app_context():
        db.session.execute(sa.text(change), {"redemption": redemptions[1], "coupon": coupons[4]})
        db.session.commit()

    result = runner.invoke(args=["backup", "verify", str(backup(app, tmp_path))])

    assert result.exit_code == 1, result.output
    for words in said:
        assert words in result.stdout
    assert "核对未通过：" in result.stdout
    if "redemptions" in change:
        with app.app_context():
            link = sa.select(Seal.position).where(Seal.kind == "redemption", Seal.record_id == redemptions[1])
            position = db.session.scalar(link)
        assert f"    ✗ 第{position}环（核销记录 #{redemptions[1]}）：记录内容与封存时不符，已被改动\n" in result.stdout
    assert_scratch_gone(result.stdout)


def test_a_file_that_is_not_a_backup_is_refused_with_exit_2(app, runner, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("这不是备份\n", encoding="utf-8")

    result = runner.invoke(args=["backup", "verify", str(path)])

    assert result.exit_code == 2
    said = "不是备份文件：既不是 pg_dump 的备份（自定义格式或纯 SQL），也不是 SQLite 数据库"
    assert result.stderr == f"错误：{path} {said}\n"
    missing = runner.invoke(args=["backup", "verify", str(tmp_path / "nowhere.dump")])
    assert (missing.exit_code, missing.stderr) == (2, f"错误：找不到文件 {tmp_path / 'nowhere.dump'}\n")


@on_postgres_only
def test_a_damaged_dump_exits_2_and_leaves_no_scratch_database(app, runner, make_campaign, tmp_path):
    make_campaign()
    whole = backup(app, tmp_path).read_bytes()
    damaged = tmp_path / "damaged.dump"
    damaged.write_bytes(whole[: len(whole) // 2])  # a copy cut short: the disk filled up, say

    result = runner.invoke(args=["backup", "verify", str(damaged)])

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"错误：{damaged} 无法恢复：pg_restore: error:")
    assert_scratch_gone(result.stdout)


def test_keep_leaves_the_scratch_copy_and_names_it(app, runner, make_campaign, tmp_path):
    make_campaign()

    result = runner.invoke(args=["backup", "verify", "--keep", str(backup(app, tmp_path))])

    assert result.exit_code == 0, result.output
    scratch = scratch_of(result.stdout)
    try:
        if ON_POSTGRES:
            assert f"已保留临时数据库 {scratch}（用完请删除：dropdb {scratch}）" in result.stdout
            assert database_exists(scratch)
        else:
            assert f"已保留临时文件 {scratch}" in result.stdout
            assert Path(scratch).exists()
    finally:
        if ON_POSTGRES:
            on_server(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        else:
            shutil.rmtree(Path(scratch).parent, ignore_errors=True)
