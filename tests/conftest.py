"""Fixtures: an app on a fresh database per test, a client, a CLI runner, and builders.

The database is SQLite (a new file per test) unless TEST_DATABASE_URL names a PostgreSQL
database; there the schema is created once per session and every table is emptied after
each test. Concurrency tests use real threads, each with its own connection.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
import time_machine

from server import create_app, tokens
from server.campaigns import forget_snapshot
from server.extensions import db
from server.models import Resident
from tests.helpers import ON_POSTGRES, PG_URL, T0, assert_books_count_the_coupons, campaign_doc

# The page tests' fixtures (live_server, browser) live in tests/browser.py.
pytest_plugins = ["tests.browser"]


def pytest_report_header(config):
    return f"database: {'PostgreSQL ' + PG_URL if ON_POSTGRES else 'SQLite (a file per test)'}"


@pytest.fixture(scope="session")
def _pg_schema():
    """Create the schema once per session on PostgreSQL."""
    if not ON_POSTGRES:
        yield None
        return
    app = create_app({"SQLALCHEMY_DATABASE_URI": PG_URL, "SECRET_KEY": "t", "TESTING": True})
    with app.app_context():
        db.drop_all()
        db.create_all()
        db.engine.dispose()
    yield PG_URL


@pytest.fixture
def app(tmp_path, _pg_schema, request):
    """The app on a fresh database; rate limits off unless the test is marked `rate_limits`."""
    uri = _pg_schema or f"sqlite:///{tmp_path / 'test.sqlite3'}"
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "SQLALCHEMY_DATABASE_URI": uri,
            "SMS_BACKEND": "outbox",
            "WECHAT_BACKEND": "dev",
            "CAMPAIGN_CACHE_SECONDS": 0,
            "DRAW_SEED": 20220625,
            "RATELIMIT_ENABLED": request.node.get_closest_marker("rate_limits") is not None,
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    with app.app_context():
        if not ON_POSTGRES:
            db.create_all()
    forget_snapshot()
    yield app
    with app.app_context():
        db.session.remove()
        if ON_POSTGRES:
            tables = ", ".join(t.name for t in db.metadata.sorted_tables)
            with db.engine.begin() as conn:
                conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        db.engine.dispose()
    forget_snapshot()


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
    from server import campaign_file

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

    def make(*, bound: bool = True, phone: str | None = None) -> tuple[int, str]:
        n = next(counter)
        with app.app_context():
            resident = Resident(openid=f"openid-{n}")
            if bound:
                resident.name = "测试居民"
                resident.phone = phone or f"139{n:08d}"
                resident.bound_at = datetime.now(UTC)
            db.session.add(resident)
            db.session.commit()
            return resident.id, tokens.issue("resident", resident.id, bound=bound)

    return make


@pytest.fixture
def make_till(app):
    """A factory of approved merchants of a category, each with one staff token: (merchant id, token)."""
    from server import credit_code
    from server.models import BindingCode, Category, Merchant, Staff

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
                status=status,
                categories=[cat],
            )
            db.session.add(merchant)
            db.session.flush()
            code = BindingCode(merchant_id=merchant.id, code_hash=f"test-{n}", expires_at=T0, used_at=T0)
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
    from server import ledger
    from server.models import Campaign

    def check(campaign_id: int) -> dict[str, int]:
        with app.app_context():
            report = ledger.verify(db.session.get(Campaign, campaign_id))
            assert report.problems == []
            assert_books_count_the_coupons(campaign_id)
            return report.totals

    return check
