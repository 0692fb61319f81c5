"""Per-backend connection settings."""

from __future__ import annotations

import logging

from flask import Flask
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from .extensions import db


def init_app(app: Flask) -> None:
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)

    @app.teardown_appcontext
    def end_session(_error=None) -> None:
        """End the request's session before Flask-SQLAlchemy's own teardown does (teardowns run
        last-registered first). If the database went away meanwhile (a restart), ending it fails
        on the dead connection: that connection is discarded, and the answer already made stands,
        instead of becoming a 500 page from the server."""
        try:
            db.session.remove()
        except DBAPIError as exc:
            logging.getLogger(__name__).warning("session ended on a lost connection: %s", exc.orig)
            db.session.registry.clear()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers run beside the one writer; the busy timeout makes writers queue, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
