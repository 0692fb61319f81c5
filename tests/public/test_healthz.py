"""GET /healthz (API.md): 200 {"status": "ok"} while the process answers, no database touched."""

from __future__ import annotations

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
