"""The database, and every place SQL differs between PostgreSQL and SQLite.

PostgreSQL in production, SQLite embedded: the helpers below are where the two differ (row and
advisory locks, upserts, snapshots, exports, local time and yuan formatted in SQL, errors that
pass). The one statement of a PostgreSQL draw is in pool/coupons.py, beside the guarantee it
keeps; it asks `on_postgres()` here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime

import psycopg
import sqlalchemy as sa
from flask import Flask
from psycopg.rows import namedtuple_row, tuple_row
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ..extensions import db
from .time import UTCDateTime, utcnow, zone

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgresql_settings)

    @app.teardown_appcontext
    def end_session(_error=None) -> None:
        """End the request's session before Flask-SQLAlchemy's own teardown does (teardowns run
        last-registered first). If the database went away meanwhile (a restart), ending it fails
        on the dead connection: that connection is discarded, and the answer already made stands,
        instead of becoming a 500 page from the server."""
        try:
            db.session.remove()
        except DBAPIError as exc:
            log.warning("session ended on a lost connection: %s", exc.orig)
            db.session.registry.clear()


def engine_url(uri: str) -> str:
    """psycopg 3 is the driver; accept the plain postgresql:// URL people write."""
    if uri.startswith("postgresql://"):
        return "postgresql+psycopg://" + uri.removeprefix("postgresql://")
    return uri


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers run beside the one writer; the busy timeout makes writers queue, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _postgresql_settings(dbapi_connection, _record) -> None:
    # No JIT: it compiled the dashboard's live hours for 1.8 s to run them in 0.8 s, and never pays
    # for itself on short statements (bench/console.py, README "Performance"). Committed, so that
    # the pool's rollback on return does not undo it.
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET jit = off")
    dbapi_connection.commit()


def rollback_quietly() -> None:
    """Roll the session back; on a connection that died meanwhile, just let it go."""
    try:
        db.session.rollback()
    except DBAPIError:
        db.session.close()


def transient(error: sa.exc.OperationalError) -> bool:
    """A failure that passes: the connection lost or refused, the server shutting down, a
    deadlock or serialization failure, too many connections, SQLite busy or not reachable."""
    if error.connection_invalidated:
        return True
    orig = error.orig
    if hasattr(orig, "sqlstate"):  # psycopg; no SQLSTATE means the connection itself failed
        state = orig.sqlstate
        return state is None or state.startswith(("08", "57P")) or state in ("40001", "40P01", "53300")
    text = str(orig)
    return "database is locked" in text or "unable to open database" in text


# ---------------------------------------------------------------- which database


def on_postgres(bind=None) -> bool:
    """Whether the session's (or this engine's) database is PostgreSQL rather than SQLite."""
    return (bind or db.session.get_bind()).dialect.name == "postgresql"


def insert(table):
    """An INSERT with the dialect's ON CONFLICT clauses (both speak PostgreSQL's upsert)."""
    if on_postgres():
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table)


def lock_row(table: sa.Table, row_id: int) -> None:
    """Serialise writers on one row: PostgreSQL FOR NO KEY UPDATE, which does not conflict with the
    KEY SHARE lock a foreign key to the row takes (so inserts that reference it do not wait);
    SQLite, which has one writer at a time, takes the database's write lock."""
    if on_postgres():
        # SQLAlchemy spells FOR NO KEY UPDATE as key_share=True.
        db.session.execute(sa.select(table.c.id).where(table.c.id == row_id).with_for_update(key_share=True))
    else:
        db.session.execute(sa.update(table).where(table.c.id == row_id).values(id=table.c.id))


def advisory_lock(key: int, sub: int) -> None:
    """A lock named by two numbers, held to the end of the transaction (PostgreSQL); SQLite's one
    writer needs none."""
    if on_postgres():
        db.session.execute(sa.text("SELECT pg_advisory_xact_lock(:key, :sub)"), {"key": key, "sub": sub})


def try_session_lock(connection: sa.Connection, key: int) -> bool:
    """PostgreSQL: take a lock held as long as `connection` lives (released if the process dies)."""
    return bool(connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())


def release_session_lock(connection: sa.Connection, key: int) -> None:
    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})


@contextlib.contextmanager
def snapshot() -> Iterator[sa.Connection]:
    """A connection whose reads all see one moment (REPEATABLE READ on PostgreSQL)."""
    engine = db.engine
    level = "REPEATABLE READ" if on_postgres(engine) else "SERIALIZABLE"
    with engine.connect().execution_options(isolation_level=level) as connection, connection.begin():
        yield connection


def stream(query: sa.Select, batch: int) -> Iterator:
    """Every row of a query, fetched in batches (a server-side cursor on PostgreSQL)."""
    connection = db.session.connection()
    if on_postgres(connection):
        # A cursor's plan is chosen for its first tenth by default (nested loops over indexes);
        # an export reads all of it, which a hash join does several times faster.
        connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
    yield from connection.execute(query.execution_options(yield_per=batch))


def copy_csv(query: sa.Select, block: int) -> Iterator[bytes] | None:
    """The query's rows as CSV by PostgreSQL's COPY, in the session's transaction, passed on in
    blocks of `block` bytes (COPY hands them over a row at a time); None on SQLite."""
    connection = db.session.connection()
    if not on_postgres(connection):
        return None

    def blocks() -> Iterator[bytes]:
        compiled = query.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
        statement = f"COPY ({compiled.string}) TO STDOUT WITH (FORMAT csv)"
        driver = connection.connection.driver_connection
        pending = bytearray()
        with driver.cursor() as cursor, cursor.copy(statement, compiled.params) as copy:
            for data in copy:
                pending += data
                if len(pending) >= block:
                    yield bytes(pending)
                    pending.clear()
        yield bytes(pending)

    return blocks()


# ---------------------------------------------------------------- SQL functions, per dialect


class _LocalText(FunctionElement):
    type = sa.String()
    inherit_cache = True


def local_text(column) -> _LocalText:
    """A UTC timestamp as local time in the reporting zone, "YYYY-MM-DD HH:MM:SS" ('' for none).

    The zone is a parameter: PostgreSQL converts by its name; SQLite, which has no zone database,
    adds the zone's offset now (China keeps one offset all year, +8)."""
    return _LocalText(column, *_zone_literals())


def _zone_literals() -> tuple:
    """The reporting zone's name (PostgreSQL) and its offset now (SQLite), rendered into the SQL,
    not bound: a query that selects and groups by a local day must say the same expression twice,
    which two placeholders are not."""
    tz = zone()
    offset = int(tz.utcoffset(utcnow().replace(tzinfo=None)).total_seconds() // 60)
    return sa.literal(str(tz), literal_execute=True), sa.literal(f"{offset:+d} minutes", literal_execute=True)


@compiles(_LocalText, "postgresql")
def _local_text_pg(element, compiler, **kw):
    column, name, _ = (compiler.process(c, **kw) for c in element.clauses)
    return f"coalesce(to_char({column} AT TIME ZONE {name}, 'YYYY-MM-DD HH24:MI:SS'), '')"


@compiles(_LocalText, "sqlite")
def _local_text_sqlite(element, compiler, **kw):
    column, _, offset = (compiler.process(c, **kw) for c in element.clauses)
    return f"coalesce(strftime('%Y-%m-%d %H:%M:%S', {column}, {offset}), '')"


class _DeadlineText(FunctionElement):
    type = sa.String()
    inherit_cache = True


def deadline_text(column) -> _DeadlineText:
    """A deadline as the pages write it (core.time.moment), in SQL: "YYYY-MM-DD HH:MM" local, and
    a deadline at local midnight as the day before's 24:00 ('' for none)."""
    return _DeadlineText(column, *_zone_literals())


@compiles(_DeadlineText, "postgresql")
def _deadline_text_pg(element, compiler, **kw):
    column, name, _ = (compiler.process(c, **kw) for c in element.clauses)
    at = f"({column} AT TIME ZONE {name})"
    return (
        f"coalesce(CASE WHEN to_char({at}, 'HH24:MI:SS') = '00:00:00'"
        f" THEN to_char({at} - interval '1 day', 'YYYY-MM-DD') || ' 24:00'"
        f" ELSE to_char({at}, 'YYYY-MM-DD HH24:MI') END, '')"
    )


@compiles(_DeadlineText, "sqlite")
def _deadline_text_sqlite(element, compiler, **kw):
    column, _, offset = (compiler.process(c, **kw) for c in element.clauses)
    return (
        f"coalesce(CASE WHEN strftime('%H:%M:%S', {column}, {offset}) = '00:00:00'"
        f" THEN strftime('%Y-%m-%d', {column}, {offset}, '-1 day') || ' 24:00'"
        f" ELSE strftime('%Y-%m-%d %H:%M', {column}, {offset}) END, '')"
    )


class yuan_text(FunctionElement):  # noqa: N801 - reads as the SQL function it stands for
    """Fen as yuan with two decimals ("50.00"; '' for none): core.money.yuan(cents=True), in SQL."""

    type = sa.String()
    inherit_cache = True


@compiles(yuan_text, "postgresql")
def _yuan_text_pg(element, compiler, **kw):
    (column,) = element.clauses
    return f"coalesce(to_char(({compiler.process(column, **kw)}) / 100.0, 'FM999999999990.00'), '')"


@compiles(yuan_text, "sqlite")
def _yuan_text_sqlite(element, compiler, **kw):
    (column,) = element.clauses
    return f"coalesce(printf('%.2f', ({compiler.process(column, **kw)}) / 100.0), '')"


class hour_of(FunctionElement):  # noqa: N801
    """The UTC hour a timestamp falls in."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(hour_of, "postgresql")
def _hour_of_pg(element, compiler, **kw):
    (column,) = element.clauses
    return f"date_trunc('hour', {compiler.process(column, **kw)}, 'UTC')"


@compiles(hour_of, "sqlite")
def _hour_of_sqlite(element, compiler, **kw):
    (column,) = element.clauses  # the text SQLAlchemy stores for a datetime, to the hour
    return f"strftime('%Y-%m-%d %H:00:00.000000', {compiler.process(column, **kw)})"


class epoch_of(FunctionElement):  # noqa: N801
    """Seconds since 1970 of a timestamp, as a number both dialects can subtract."""

    type = sa.Float()
    inherit_cache = True


@compiles(epoch_of, "postgresql")
def _epoch_pg(element, compiler, **kw):
    (column,) = element.clauses
    return f"extract(epoch from {compiler.process(column, **kw)})"


@compiles(epoch_of, "sqlite")
def _epoch_sqlite(element, compiler, **kw):
    (column,) = element.clauses
    return f"((julianday({compiler.process(column, **kw)}) - 2440587.5) * 86400.0)"


def utc_param(name: str, value: datetime | None = None) -> sa.BindParameter:
    """A bound UTC instant for text SQL."""
    return sa.bindparam(name, value, type_=UTCDateTime)


# ---------------------------------------------------------------- the hot paths' statements


class Prepared:
    """A hot path's statement, run on PostgreSQL through the driver itself, on the session's
    connection and in its transaction: SQLAlchemy's execution layers (the session's, the
    connection's, the result's) cost more CPU than the database spends on such a statement.

    The SQL is compiled once per dialect, with its bound and selected columns' type processors;
    rows come back as tuples (`named`: named tuples). Listeners of the engine's
    `before_cursor_execute` still see the statement (the statement counts of
    tests/pool/test_statements.py), and a driver's error is SQLAlchemy's, as for any statement.
    Elsewhere (SQLite) it runs as any statement does, through the session.
    """

    __slots__ = ("statement", "named", "_compiled")

    def __init__(self, statement: sa.Executable, *, named: bool = False) -> None:
        self.statement = statement
        self.named = named
        self._compiled: tuple | None = None

    def _for(self, connection: sa.Connection) -> tuple[str, dict, list | None]:
        if self._compiled is None:
            dialect = connection.dialect
            compiled = self.statement.compile(dialect=dialect)
            binds = {
                name: processor
                for name, bind in compiled.binds.items()
                if (processor := bind.type.bind_processor(dialect)) is not None
            }
            selected = getattr(self.statement, "selected_columns", ())
            results = [column.type.result_processor(dialect, None) for column in selected]
            self._compiled = (compiled.string, binds, results if any(results) else None)
        return self._compiled

    def all(self, params: dict) -> list:
        """The statement's rows."""
        connection = db.session.connection()
        if connection.dialect.name != "postgresql":
            return db.session.execute(self.statement, params).all()
        sql, binds, results = self._for(connection)
        if binds:
            params = params | {name: process(params[name]) for name, process in binds.items() if name in params}
        driver = connection.connection.driver_connection
        try:
            with driver.cursor(row_factory=namedtuple_row if self.named else tuple_row) as cursor:
                if connection.dispatch.before_cursor_execute:
                    connection.dispatch.before_cursor_execute(connection, cursor, sql, params, None, False)
                rows = cursor.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            # As SQLAlchemy would: its own exception (the handlers of errors.py know it), and a
            # connection lost is not given back to the pool.
            lost = connection.dialect.is_disconnect(exc, driver, None)
            if lost:
                connection.invalidate(exc)
            raise sa.exc.DBAPIError.instance(sql, params, exc, psycopg.Error, connection_invalidated=lost) from exc
        if results:
            rows = [tuple(p(v) if p else v for p, v in zip(results, row, strict=True)) for row in rows]
        return rows

    def first(self, params: dict):
        """The statement's first row, or None."""
        rows = self.all(params)
        return rows[0] if rows else None

    def one(self, params: dict):
        """The statement's one row."""
        rows = self.all(params)
        if len(rows) != 1:
            raise sa.exc.NoResultFound("Prepared.one: not exactly one row")
        return rows[0]
