"""The one commit point: work that returns is committed once; any exception rolls it all back,
except what a refusal marked keep_changes records about itself."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from server.core.commit import commits
from server.core.errors import NotFound, SmsCodeInvalid
from server.extensions import db
from server.models import Resident


def residents(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(sa.select(Resident.openid)))


def work(openid: str, then=None):
    def run():
        db.session.add(Resident(openid=openid))
        db.session.flush()
        if then is not None:
            raise then

    return run


def test_work_that_returns_is_committed(app):
    with app.app_context():
        commits(work("kept"))()
        db.session.remove()
    assert residents(app) == {"kept"}


@pytest.mark.parametrize("error", [NotFound(), RuntimeError("a defect"), KeyboardInterrupt()])
def test_any_exception_rolls_the_work_back(app, error):
    with app.app_context():
        with pytest.raises(type(error)):
            commits(work("lost", error))()
        db.session.remove()
    assert residents(app) == set()


def test_a_refusal_that_keeps_its_record_is_committed_with_it(app):
    with app.app_context():
        with pytest.raises(SmsCodeInvalid):
            commits(work("counted", SmsCodeInvalid("验证码不正确，还可尝试4次", keep_changes=True)))()
        db.session.remove()
    assert residents(app) == {"counted"}


def test_services_never_commit_on_their_own():
    """Only the commit point (and the session's own teardown) ends a transaction: no service,
    view or job of the house calls commit() or rollback() itself."""
    from tests.helpers import ROOT

    allowed = {"server/core/commit.py", "server/core/db.py"}
    found = []
    for path in sorted((ROOT / "server").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        if name not in allowed and ("session.commit()" in text or "session.rollback()" in text):
            found.append(name)
    assert found == []
