"""Readiness (API.md "Operations", `GET /readyz`): whether this host should take traffic. The
database answers within a short timeout and its migrations are at the code's head; Redis, when
configured (shared rate limits), answers too. Liveness is `GET /healthz`, which touches nothing."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from .db import on_postgres

TIMEOUT_S = 2


def migration_heads() -> set[str]:
    """The revisions the code's migrations end at, read once per process."""
    cached = current_app.extensions.get("huigou_migration_heads")
    if cached is None:
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", current_app.extensions["migrate"].directory)
        cached = set(ScriptDirectory.from_config(config).get_heads())
        current_app.extensions["huigou_migration_heads"] = cached
    return cached


def failing() -> list[str]:
    """The parts that fail, by name: "database", "migrations", "redis" (empty: ready)."""
    parts = []
    try:
        with db.engine.connect() as connection:
            if on_postgres(connection):
                connection.execute(sa.text(f"SET statement_timeout = {TIMEOUT_S * 1000}"))
            connection.execute(sa.text("SELECT 1"))
            try:
                current = set(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
            except sa.exc.DBAPIError:  # never migrated: no version table
                current = set()
            if current != migration_heads():
                parts.append("migrations")
            connection.rollback()
    except sa.exc.SQLAlchemyError:
        parts.append("database")
    url = current_app.config.get("REDIS_URL")
    if url:
        import redis

        try:
            redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S).ping()
        except redis.RedisError:
            parts.append("redis")
    return parts
