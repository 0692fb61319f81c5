"""Fixtures: an app on a fresh database per test, a client, a CLI runner, and builders.

The database is SQLite (a new file per test) unless TEST_DATABASE_URL names a PostgreSQL
database; there the schema is created once per session and every table is emptied after
each test. Concurrency tests use real threads, each with its own connection.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from server import create_app
from server.auth import accounts, tokens
from server.core.cache import forget as forget_snapshot
from server.extensions import db
from server.models import Resident
from tests.helpers import (
    ON_POSTGRES,
    PASSWORD,
    PG_URL,
    T0,
    TEST_CONFIG,
    assert_books_count_the_coupons,
    auth,
    campaign_doc,
    paycode,
    redeem,
    sign_in,
)

# The page tests' fixtures (live_server, browser) live in tests/browser.py.
pytest_plugins = ["tests.browser"]


def pytest_report_header(config):
    return f"database: {'PostgreSQL ' + PG_URL if ON_POSTGRES else 'SQLite (a file per test)'}"


@pytest.fixture(scope="session")
def _schema(tmp_path_factory):
    """The schema, made once per session: on PostgreSQL in the worker's database, with the script
    that empties it after each test; on SQLite in a template file each test's database copies."""
    if ON_POSTGRES:
        _create_database(PG_URL)
        url = PG_URL
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('schema') / 'template.sqlite3'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "t", "TESTING": True})
    with app.app_context():
        db.drop_all()
        db.create_all()
        # Emptying by DELETE and a sequence reset is several times faster than TRUNCATE on tables
        # this small, in one round trip.
        sequences = (
            db.session.scalars(sa.text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")).all()
            if ON_POSTGRES
            else []
        )
        db.session.remove()
        db.engine.dispose()
    empty = "; ".join(
        [f"DELETE FROM {table.name}" for table in reversed(db.metadata.sorted_tables)]
        + ["SELECT " + ", ".join(f"setval('{name}', 1, false)" for name in sequences)]
    )
    yield url, empty


def _create_database(url: str) -> None:
    """The worker's database, made on its server if it is not there yet."""
    import psycopg
    from sqlalchemy.engine import make_url

    target = make_url(url)
    server = target.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.database,)).fetchone():
            connection.execute(f'CREATE DATABASE "{target.database}"')


@pytest.fixture
def app(tmp_path, _schema, request):
    """The app on a fresh database; rate limits off unless the test is marked `rate_limits`."""
    url, empty = _schema
    if not ON_POSTGRES:
        shutil.copyfile(url.removeprefix("sqlite:///"), tmp_path / "test.sqlite3")
        url = f"sqlite:///{tmp_path / 'test.sqlite3'}"
    app = create_app(
        TEST_CONFIG
        | {
            "SQLALCHEMY_DATABASE_URI": url,
            "DRAW_SEED": 20220625,
            "RATELIMIT_ENABLED": request.node.get_closest_marker("rate_limits") is not None,
        }
    )
    forget_snapshot()
    yield app
    with app.app_context():
        db.session.remove()
        if ON_POSTGRES:
            with db.engine.begin() as conn:
                conn.exec_driver_sql(empty)
        db.engine.dispose()
    forget_snapshot()


@pytest.fixture
def count_queries(app):
    """Count the SQL statements the app sends (as indico's fixture does): `with count_queries() as
    count: ...` then `count()`; `count.statements` lists them. Every round trip counts: savepoints,
    locks, the ledger's entries."""
    import contextlib

    from sqlalchemy import event

    @contextlib.contextmanager
    def counting():
        statements: list[str] = []

        def seen(_conn, _cursor, statement, _parameters, _context, _many):
            statements.append(statement)

        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", seen)
        try:

            def count() -> int:
                return len(statements)

            count.statements = statements
            yield count
        finally:
            event.remove(engine, "before_cursor_execute", seen)

    return counting


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def clock():
    """Time stands still at T0 (inside round 1) unless a test moves it."""
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def make_campaign(app):
    """Create a campaign from a document (default: campaign_doc()) and return its id."""
    from server.campaign import file as campaign_file

    def make(doc: dict | None = None, **overrides):
        doc = doc or campaign_doc(**overrides)
        with app.app_context():
            plan, problems = campaign_file.check(campaign_file.Document(doc, "test"))
            assert problems == [], problems
            campaign = campaign_file.create(plan)
            db.session.commit()
            forget_snapshot()
            return campaign.id

    return make


@pytest.fixture
def make_resident(app):
    """A bound resident, returning (id, bearer token)."""
    counter = iter(range(10**6))

    def make(*, bound: bool = True, phone: str | None = None, id_card: str | None = None) -> tuple[int, str]:
        """`id_card`: the resident gave that ID card too (a campaign of identity id_card)."""
        from server.core.idcard import id_digest, mask_id

        n = next(counter)
        with app.app_context():
            resident = Resident(openid=f"openid-{n}")
            if bound:
                resident.name = "测试居民"
                resident.phone = phone or f"139{n:08d}"
                resident.bound_at = datetime.now(UTC)
            if id_card:
                resident.id_hash, resident.id_masked = id_digest(id_card), mask_id(id_card)
            db.session.add(resident)
            db.session.commit()
            return resident.id, tokens.issue("resident", resident.id, bound=bound, identified=bool(id_card))

    return make


@pytest.fixture
def make_till(app):
    """A factory of approved merchants of a category (of the newest campaign that has it), each
    with one staff token: (merchant id, token)."""
    from server.merchant import credit_code
    from server.models import BindingCode, Category, Enrolment, Merchant, Staff

    counter = iter(range(1, 1000))

    def make(category="hotel", status="approved", phone=None):
        n = next(counter)
        with app.app_context():
            cat = db.session.scalar(sa.select(Category).where(Category.code == category).order_by(Category.id.desc()))
            merchant = Merchant(
                name=f"演示商户{n}",
                credit_code=credit_code.make("220723", f"MB{n:06d}"),
                address="乾安县",
                contact_name="演示联系人",
                contact_phone="13900000000",
                categories=[cat],
            )
            enrolled = Enrolment(merchant=merchant, campaign_id=cat.campaign_id, status=status)
            db.session.add_all([merchant, enrolled])
            db.session.flush()
            code = BindingCode(
                merchant_id=merchant.id, enrolment_id=enrolled.id, code_hash=f"test-{n}", expires_at=T0, used_at=T0
            )
            db.session.add(code)
            db.session.flush()
            staff = Staff(
                merchant_id=merchant.id, name="店员", phone=phone or f"1370000{n:04d}", binding_code_id=code.id
            )
            db.session.add(staff)
            db.session.commit()
            return merchant.id, tokens.issue("staff", staff.id, bound=True)

    return make


@pytest.fixture
def balanced(app):
    """Check the campaign's ledger against its coupons; returns the balances per account."""
    from server.models import Campaign
    from server.pool import ledger

    def check(campaign_id: int) -> dict[str, int]:
        with app.app_context():
            report = ledger.verify(db.session.get(Campaign, campaign_id))
            assert report.problems == []
            assert_books_count_the_coupons(campaign_id)
            return report.totals

    return check


@pytest.fixture
def make_account(app):
    def make(role: str = "admin", username: str | None = None) -> str:
        username = username or f"{role}-user"
        with app.app_context():
            accounts.create_admin(username, PASSWORD, role)
            db.session.commit()
        return username

    return make


@pytest.fixture
def console(app, make_account):
    """A client signed in with the given role: console("auditor")."""

    def signed_in(role: str = "admin"):
        client = app.test_client()
        answer = sign_in(client, make_account(role))
        assert answer.status_code == 302, answer.get_data(as_text=True)
        return client

    return signed_in


@pytest.fixture
def redemptions(app, client, make_campaign, make_resident, make_till, clock):
    """Six redemptions over two days at a hotel and a fuel station; one revoked, one refunded."""
    make_campaign()
    tills = {"hotel": make_till("hotel"), "fuel": make_till("fuel")}
    made = []
    for day in range(2):
        for n, category in enumerate(("hotel", "hotel", "fuel")):
            _, token = make_resident(phone=f"1391000{day}{n:03d}")
            won = client.post("/api/v1/draw", json={"category": category}, headers=auth(token)).get_json()
            coupon = won["coupon"]
            answer = redeem(client, tills[category][1], paycode(client, token, coupon["id"]), coupon["threshold_fen"])
            made.append((category, answer.get_json()["redemption"]["id"], f"1391000{day}{n:03d}"))
        clock.shift(timedelta(days=1))
    clock.shift(timedelta(days=-1))
    hotel_staff = tills["hotel"][1]
    for (_, redemption_id, _), action in ((made[4], "revoke"), (made[3], "refund")):
        path = f"/api/v1/merchant/redemptions/{redemption_id}/{action}"
        assert client.post(path, json={"reason": "核对"}, headers=auth(hotel_staff)).status_code == 200
    return {
        "made": made,
        "merchants": {k: v[0] for k, v in tills.items()},
        "staff": {k: v[1] for k, v in tills.items()},
    }
