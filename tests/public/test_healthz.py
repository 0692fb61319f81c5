"""GET /healthz (API.md): 200 {"status": "ok"} while the process answers, no database touched."""

from __future__ import annotations

import pytest

from server import create_app


def test_healthz_answers_while_the_process_runs(client):
    answer = client.get("/healthz")
    assert (answer.status_code, answer.get_json()) == (200, {"status": "ok"})


def test_healthz_touches_no_database():
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": "postgresql://nobody@127.0.0.1:1/nothing", "SECRET_KEY": "k" * 40, "TESTING": True}
    )
    answer = app.test_client().get("/healthz")  # the database is unreachable
    assert (answer.status_code, answer.get_json()) == (200, {"status": "ok"})


@pytest.fixture
def migrated(tmp_path):
    """An app on a database made by the migrations themselves (the suite's schema is made from the
    models, without alembic's version table)."""
    from flask_migrate import upgrade

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'migrated.sqlite3'}",
            "SECRET_KEY": "k" * 40,
            "TESTING": True,
        }
    )
    with app.app_context():
        upgrade()
    return app


def test_readyz_answers_ready_when_the_database_answers_at_the_migrations_head(migrated):
    answer = migrated.test_client().get("/readyz")
    assert (answer.status_code, answer.get_json()) == (200, {"status": "ready"})


def test_readyz_names_migrations_behind_the_code(migrated):
    """A host whose database is not yet migrated to the code's head takes no traffic."""
    from flask_migrate import downgrade

    with migrated.app_context():
        downgrade(revision="-1")
    answer = migrated.test_client().get("/readyz")
    assert (answer.status_code, answer.get_json()) == (503, {"status": "unready", "failing": ["migrations"]})


def test_readyz_names_an_unreachable_database_and_redis():
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": "postgresql://nobody@127.0.0.1:1/nothing",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "SECRET_KEY": "k" * 40,
            "TESTING": True,
        }
    )
    answer = app.test_client().get("/readyz")
    assert (answer.status_code, answer.get_json()) == (503, {"status": "unready", "failing": ["database", "redis"]})


def test_readyz_sees_a_configured_redis_that_answers(migrated):
    migrated.config["REDIS_URL"] = "redis://127.0.0.1:6379/15"
    answer = migrated.test_client().get("/readyz")
    assert (answer.status_code, answer.get_json()) == (200, {"status": "ready"})


def test_readyz_names_a_database_never_migrated(client):
    """The suite's own database is made from the models, without the migrations' version table:
    reachable, but not at the head (on PostgreSQL too, under its statement timeout)."""
    answer = client.get("/readyz")
    assert (answer.status_code, answer.get_json()) == (503, {"status": "unready", "failing": ["migrations"]})
