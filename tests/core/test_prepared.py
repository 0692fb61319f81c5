"""The hot paths' statements run through the driver (core.db.Prepared): the same rows, values and
errors as through the session, in the session's transaction, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from server.core.commit import commits
from server.core.db import Prepared, utc_param
from server.extensions import db
from server.models import Resident

_RESIDENTS = Resident.__table__
BY_PHONE = Prepared(
    sa.select(_RESIDENTS.c.id, _RESIDENTS.c.openid, _RESIDENTS.c.bound_at).where(
        _RESIDENTS.c.phone == sa.bindparam("phone")
    )
)
INSERT = Prepared(
    sa.text(
        "INSERT INTO residents (openid, phone, created_at) VALUES (:openid, :phone, :created_at) RETURNING id"
    ).bindparams(utc_param("created_at")),
    named=True,
)
BOUND = datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)


@pytest.fixture
def resident(make_resident, app):
    resident_id, _ = make_resident(phone="13900000001")
    with app.app_context():
        db.session.execute(sa.update(Resident).where(Resident.id == resident_id).values(bound_at=BOUND))
        db.session.commit()
    return resident_id


def test_rows_and_values_are_those_the_session_reads(app, resident):
    with app.app_context():
        row = BY_PHONE.one({"phone": "13900000001"})
        through_session = db.session.execute(BY_PHONE.statement, {"phone": "13900000001"}).one()
        assert tuple(row) == tuple(through_session) == (resident, "openid-0", BOUND)
        assert row[2].tzinfo is not None and row[2].utcoffset().total_seconds() == 0  # UTC, aware
        assert BY_PHONE.first({"phone": "13900000009"}) is None
        assert BY_PHONE.all({"phone": "13900000009"}) == []
        with pytest.raises(sa.exc.NoResultFound):
            BY_PHONE.one({"phone": "13900000009"})


def test_a_write_is_in_the_requests_transaction_committed_or_rolled_back_with_it(app):
    def write(phone: str, fail: bool = False):
        def work():
            made = INSERT.one({"openid": f"o-{phone}", "phone": phone, "created_at": BOUND})
            assert made.id > 0  # named: the row's columns by name
            if fail:
                raise RuntimeError("after the write")

        return commits(work)

    with app.app_context():
        write("13900000002")()
        with pytest.raises(RuntimeError):
            write("13900000003", fail=True)()
        db.session.remove()
        phones = set(db.session.scalars(sa.select(Resident.phone)))
    assert "13900000002" in phones and "13900000003" not in phones


def test_a_drivers_error_is_sqlalchemys_and_the_session_goes_on(app, resident, count_queries):
    with app.app_context():
        with count_queries() as count, pytest.raises(sa.exc.IntegrityError):
            INSERT.one({"openid": "o-dup", "phone": "13900000001", "created_at": BOUND})  # phone taken
        assert count() == 1  # seen by the engine's listeners, as any statement
        db.session.rollback()
        assert BY_PHONE.one({"phone": "13900000001"})[0] == resident
