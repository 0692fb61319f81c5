"""The app as a whole: one error envelope, the OpenAPI document, migrations that match the models."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from server import create_app
from server.extensions import db
from tests.helpers import ON_POSTGRES, PG_URL, auth

API_PATHS = {
    ("post", "/api/v1/auth/wechat"),
    ("post", "/api/v1/auth/sms"),
    ("post", "/api/v1/auth/bind"),
    ("get", "/api/v1/campaign"),
    ("get", "/api/v1/draw/{category}/wheel"),
    ("post", "/api/v1/draw"),
    ("get", "/api/v1/coupons"),
    ("get", "/api/v1/categories/{category}/merchants"),
    ("get", "/api/v1/dev/sms-outbox"),
    ("post", "/api/v1/merchant/apply"),
    ("post", "/api/v1/merchant/bind"),
    ("post", "/api/v1/merchant/scan"),
    ("post", "/api/v1/merchant/redeem"),
    ("post", "/api/v1/merchant/redemptions/{redemption_id}/revoke"),
    ("post", "/api/v1/merchant/redemptions/{redemption_id}/refund"),
    ("get", "/api/v1/merchant/redemptions"),
    ("get", "/api/v1/merchant/settlement"),
    ("get", "/api/v1/coupons/{coupon_id}/paycode"),
    ("get", "/api/v1/coupons/{coupon_id}/paycode.{kind}"),
}


def test_openapi_document_covers_every_endpoint(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    documented = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert documented >= API_PATHS
    draw = spec["paths"]["/api/v1/draw"]["post"]
    assert draw["security"] == [{"BearerAuth": []}]
    assert {"200", "400", "401", "409"} <= set(draw["responses"])
    assert spec["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"


BAD_BODIES = [
    ("not json", "text/plain"),
    ("{broken", "application/json"),
    ('["a list"]', "application/json"),
    ('{"category": 5}', "application/json"),
    ('{"category": "hotel", "extra": 1}', "application/json"),
    ('{"category": "' + "x" * 100000 + '"}', "application/json"),
    ('{"category": "hotel", "location": {"lat": "north", "lng": 1}}', "application/json"),
    ('{"category": "hotel", "location": {"lat": 91, "lng": 1}}', "application/json"),
    ('{"category": "hotel", "location": {"lat": NaN, "lng": 1}}', "application/json"),
    ("{}", "application/json"),
]


@pytest.mark.parametrize(("body", "content_type"), BAD_BODIES)
def test_bad_input_is_a_400_in_the_envelope_never_a_500(client, make_resident, body, content_type):
    _, token = make_resident()
    answer = client.post("/api/v1/draw", data=body, content_type=content_type, headers=auth(token))
    assert answer.status_code in (400, 413)
    assert answer.is_json
    error = answer.get_json()["error"]
    assert error["code"] in ("INVALID_INPUT", "PAYLOAD_TOO_LARGE")
    assert error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/wechat", {"code": ""}),
        ("/api/v1/auth/wechat", {"code": "x" * 200}),
        ("/api/v1/auth/sms", {"phone": 13912345678}),
        ("/api/v1/auth/bind", {"name": "张三", "phone": "13912345678"}),
        ("/api/v1/auth/bind", {"name": ["张三"], "phone": "13912345678", "sms_code": "1"}),
    ],
)
def test_every_endpoint_validates_its_body(client, path, body):
    answer = client.post(path, json=body)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "INVALID_INPUT"


def test_unknown_paths_and_methods_answer_json(client):
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "NOT_FOUND"
    wrong = client.delete("/api/v1/draw")
    assert wrong.status_code == 405 and wrong.get_json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_a_crash_answers_500_without_a_stack_trace(app, client, caplog):
    @app.get("/api/v1/boom")
    def boom():
        raise RuntimeError("secret internals")

    answer = client.get("/api/v1/boom")
    assert answer.status_code == 500
    assert answer.get_json() == {"error": {"code": "INTERNAL_ERROR", "message": "系统繁忙，请稍后重试"}}
    assert "secret internals" not in answer.get_data(as_text=True)
    assert "secret internals" in caplog.text


def test_secret_key_is_generated_once_and_kept_when_unset(tmp_path):
    from server import _instance_secret

    first = _instance_secret(tmp_path)
    assert len(first) > 40
    assert _instance_secret(tmp_path) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_migrations_build_the_schema_the_models_describe(tmp_path):
    """`flask db upgrade` on an empty database leaves nothing for autogenerate to add."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from flask_migrate import upgrade

    if ON_POSTGRES:
        schema = "migration_check"
        engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        engine.dispose()
        uri = PG_URL + ("&" if "?" in PG_URL else "?") + f"options=-csearch_path%3D{schema}"
    else:
        uri = f"sqlite:///{tmp_path / 'migrated.sqlite3'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": "x", "TESTING": True})
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
        db.engine.dispose()
    assert diff == []
