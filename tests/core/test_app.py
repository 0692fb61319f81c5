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
    ("get", "/api/v1/survey"),
    ("post", "/api/v1/survey"),
}


def test_openapi_document_covers_every_endpoint(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    documented = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert documented >= API_PATHS
    draw = spec["paths"]["/api/v1/draw"]["post"]
    assert draw["security"] == [{"BearerAuth": []}]
    assert {"200", "400", "401", "409"} <= set(draw["responses"])
    assert spec["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"


def test_the_document_says_what_the_api_does(client, make_campaign, make_resident, make_till, clock):
    """The contract gaps a fuzzer found: ALREADY_DRAWN's coupon_id outside the error schema, the
    403 of a token of the other kind undocumented, /auth/bind's token marked required."""
    spec = client.get("/api/v1/openapi.json").get_json()
    fields = spec["components"]["schemas"]["ErrorDetail"]["properties"]
    assert {"coupon_id", "opens_at", "next_release_at", "retry_after_s", "detail"} <= set(fields)
    secured = [
        op for ops in spec["paths"].values() for op in ops.values() if isinstance(op, dict) and op.get("security")
    ]
    assert secured and all("403" in op["responses"] for op in secured)
    assert spec["paths"]["/api/v1/auth/bind"]["post"]["security"] == [{"BearerAuth": []}, {}]
    # And the API does what the document says.
    make_campaign()
    _, resident = make_resident()
    _, staff = make_till("hotel")
    assert client.get("/api/v1/merchant/redemptions", headers=auth(resident)).status_code == 403
    assert client.get("/api/v1/coupons", headers=auth(staff)).status_code == 403
    client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(resident))
    again = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(resident)).get_json()["error"]
    assert again["code"] == "ALREADY_DRAWN" and set(again) <= set(fields)


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
    ('{"category": "ho\\u0000tel"}', "application/json"),  # NUL: PostgreSQL keeps no such text
    ('{"category": "\\ud800"}', "application/json"),  # a lone surrogate: not UTF-8
]


@pytest.mark.parametrize("depth", [33, 500, 5000])
@pytest.mark.parametrize("path", ["/api/v1/auth/sms", "/api/v1/draw", "/api/v1/merchant/apply"])
def test_json_nested_deeper_than_any_body_is_refused_in_words(client, path, depth):
    """[[[...]]] 500 deep (1 KB) made the parsers recurse to a 500; no login is needed to send it."""
    answer = client.post(path, data="[" * depth + "]" * depth, content_type="application/json")
    assert answer.status_code == 400
    assert answer.get_json()["error"] == {"code": "INVALID_INPUT", "message": "提交的内容层级过深，请检查后重试"}
    # Brackets inside a string are text, not nesting: that body goes on to be checked as usual.
    quoted = '{"phone": "13912345678", "purpose": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\""}'
    said = client.post("/api/v1/auth/sms", data=quoted, content_type="application/json").get_json()["error"]
    assert said["code"] == "INVALID_INPUT" and "purpose" in said["detail"]["json"]


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
    request_id = answer.headers["X-Request-Id"]
    assert answer.get_json() == {
        "error": {"code": "INTERNAL_ERROR", "message": "系统繁忙，请稍后重试", "request_id": request_id}
    }
    assert "secret internals" not in answer.get_data(as_text=True)
    assert "secret internals" in caplog.text
    assert f"(request {request_id})" in caplog.text  # the log of the crash names the request


def test_a_database_out_of_reach_answers_503_to_retry(tmp_path, caplog):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "t",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'no-such-directory' / 'huigou.sqlite3'}",
            "CAMPAIGN_CACHE_SECONDS": 0,
        }
    )
    answer = app.test_client().get("/api/v1/campaign")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert answer.get_json()["error"] == {"code": "SERVICE_UNAVAILABLE", "message": "服务暂不可用，请稍后重试"}
    assert "database unavailable on GET /api/v1/campaign" in caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.skipif(not ON_POSTGRES, reason="a server that can end a connection: PostgreSQL")
def test_an_answer_made_before_the_database_went_away_stands(app, client):
    @app.get("/api/v1/read-then-lose-the-connection")
    def read_then_lose():
        pid = db.session.execute(sa.text("SELECT pg_backend_pid()")).scalar()  # a transaction is open
        with db.engine.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return {"read": True}

    answer = client.get("/api/v1/read-then-lose-the-connection")
    assert (answer.status_code, answer.get_json()) == (200, {"read": True})
    assert client.get("/api/v1/campaign").get_json()["error"]["code"] == "NO_CAMPAIGN"  # the pool recovered


def test_a_database_error_that_is_a_defect_stays_a_500_with_its_stack(app, client, caplog):
    @app.get("/api/v1/no-such-table")
    def no_such_table():
        db.session.execute(sa.text("SELECT * FROM no_such_table"))

    answer = client.get("/api/v1/no-such-table")
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (500, "INTERNAL_ERROR")
    assert "no_such_table" in caplog.text and "Traceback" in caplog.text


def test_secret_key_is_generated_once_and_kept_when_unset(tmp_path):
    from server.config import instance_secret as _instance_secret

    first = _instance_secret(tmp_path)
    assert len(first) > 40
    assert _instance_secret(tmp_path) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def _migration_uri(tmp_path, schema: str) -> str:
    """An empty database to migrate: a SQLite file, or a fresh PostgreSQL schema."""
    if not ON_POSTGRES:
        return f"sqlite:///{tmp_path / (schema + '.sqlite3')}"
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return PG_URL + ("&" if "?" in PG_URL else "?") + f"options=-csearch_path%3D{schema}"


def test_migrations_build_the_schema_the_models_describe(tmp_path):
    """`flask db upgrade` on an empty database leaves nothing for autogenerate to add."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from flask_migrate import upgrade

    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": _migration_uri(tmp_path, "migration_check"), "SECRET_KEY": "x", "TESTING": True}
    )
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
        db.engine.dispose()
    assert diff == []


def test_upgrading_a_running_campaign_opens_its_ledger_with_the_coupons_as_they_stand(tmp_path):
    """A database from before the ledger, with coupons in stock, held, spent and refunded: the
    upgrade copes with the tables it rebuilds and writes opening entries that balance."""
    from flask_migrate import upgrade

    from server.models import Campaign
    from server.pool import ledger

    uri = _migration_uri(tmp_path, "migration_data")
    app = create_app({"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": "x", "TESTING": True})
    t = "'2026-06-01 02:00:00+00:00'"
    rows = [
        "INSERT INTO campaigns (id, code, name, region, budget_fen, timezone, draw_strategy, thanks_weight,"
        f" validity_kind, refund_policy, status, created_at) VALUES (1, 'old', '旧活动', '乾安县', 100000,"
        f" 'Asia/Shanghai', 'weighted', 0, 'round_deadline', 'return', 'active', {t})",
        "INSERT INTO categories (id, campaign_id, code, name, position) VALUES (1, 1, 'hotel', '宾馆', 0)",
        "INSERT INTO tiers (id, campaign_id, category_id, face_fen, threshold_fen, threshold_explicit)"
        " VALUES (1, 1, 1, 5000, 15000, false)",
        "INSERT INTO rounds (id, campaign_id, number, opens_at, closes_at, valid_until)"
        " VALUES (1, 1, 1, '2026-06-01 01:00:00+00:00', '2026-06-05 16:00:00+00:00', '2026-06-05 16:00:00+00:00')",
        "INSERT INTO allocations (id, round_id, tier_id, quantity) VALUES (1, 1, 1, 4)",
        "INSERT INTO coupons (id, round_id, tier_id, category_id, face_fen, threshold_fen, seq, state)"
        " VALUES (1, 1, 1, 1, 5000, 15000, 0, 'stock')",
    ]
    for n, state in ((2, "claimed"), (3, "used"), (4, "void")):
        rows += [
            f"INSERT INTO residents (id, openid, created_at) VALUES ({n}, 'o{n}', {t})",
            f"INSERT INTO draws (id, resident_id, round_id, category_id, outcome, created_at)"
            f" VALUES ({n}, {n}, 1, 1, 'won', {t})",
            "INSERT INTO coupons (id, round_id, tier_id, category_id, face_fen, threshold_fen, seq, state,"
            f" resident_id, draw_id, claimed_at, valid_until) VALUES ({n}, 1, 1, 1, 5000, 15000, {n}, '{state}',"
            f" {n}, {n}, {t}, '2026-06-05 16:00:00+00:00')",
        ]
    with app.app_context():
        upgrade(revision="20da48ba0d26")
        with db.engine.begin() as conn:
            for row in rows:
                conn.execute(sa.text(row))
        upgrade()
        report = ledger.verify(db.session.get(Campaign, 1))
        assert report.problems == []
        # 1,000 yuan: 800 never allocated + 50 refunded in the pool, 50 in stock, 50 held, 50 spent.
        assert report.totals == {
            "pool": 85000, "stock": 5000, "claimed": 5000, "redeemed": 5000, "forfeited": 0, "treasury": 0,
            "carried": 0, "subsidy": 0, "budget": -100000,
            "payable": 0, "paid": 0, "withheld": 0, "disallowed": 0,
        }  # fmt: skip
        db.session.remove()
        db.engine.dispose()


def test_security_headers_and_the_pages_policy(client):
    api = client.get("/api/v1/campaign")
    assert api.headers["X-Content-Type-Options"] == "nosniff" and api.headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" not in api.headers  # JSON, and the docs page loads Swagger UI's CDN
    for path in ("/h5/", "/h5/staff", "/admin/login"):
        policy = client.get(path).headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
    assert "camera=(self)" in client.get("/h5/staff").headers["Permissions-Policy"]
