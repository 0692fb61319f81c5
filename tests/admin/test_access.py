"""Who gets in, with which role, and what a forged or stale form does."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.auth.accounts import REFUSED
from server.extensions import db
from server.models import AdminUser, AuditEntry
from tests.helpers import PASSWORD, csrf_token, enrolment_id, enrolment_status, sign_in

PAGES = [
    "/admin/",
    "/admin/merchants",
    "/admin/audit",
    "/admin/survey",
    "/admin/lists/redemptions",
    "/admin/lists/claims",
    "/admin/settlement",
    "/admin/coupons",
    "/admin/lists/residents",
    "/admin/campaigns",
    "/admin/lists/redemptions/export.csv",
]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(client, path):
    answer = client.get(path)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/admin/login?next=")


@pytest.mark.parametrize("role", ["admin", "auditor", "operator"])
@pytest.mark.parametrize("path", PAGES)
def test_every_role_reads_every_page(console, make_campaign, role, path):
    make_campaign()
    answer = console(role).get(path)
    assert answer.status_code == 200
    if path.endswith(".csv"):
        assert answer.mimetype == "text/csv" and answer.get_data().startswith("\ufeff".encode())
    else:
        assert answer.mimetype == "text/html" and "惠购" in answer.get_data(as_text=True)


def test_a_wrong_password_counts_and_five_lock_the_account_for_fifteen_minutes(app, client, make_account, clock):
    make_account("admin", "zhang")
    for _ in range(5):
        answer = sign_in(client, "zhang", "wrong-password")
        assert answer.status_code == 401 and REFUSED in answer.get_data(as_text=True)
    # Locked: even the right password is refused until the time is up.
    answer = sign_in(client, "zhang", PASSWORD)
    assert answer.status_code == 401 and REFUSED in answer.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(AdminUser.locked_until).where(AdminUser.username == "zhang"))
    clock.shift(timedelta(minutes=15, seconds=1))
    assert sign_in(client, "zhang", PASSWORD).status_code == 302
    with app.app_context():
        actions = db.session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["login_failed"] * 6 + ["login"]


def test_an_unknown_name_gets_the_same_answer_as_a_wrong_password(client, make_account, clock):
    """The page never tells which names exist: an unknown name, a wrong password (the first or
    the fourth) and a locked account all get the one sentence that states the rule."""
    make_account("admin", "zhang")

    def said(username: str, password: str) -> str:
        page = sign_in(client, username, password).get_data(as_text=True)
        return re.sub(r'value="[^"]*"', "", page)  # the CSRF token and the name typed differ, nothing else

    unknown = said("nobody", PASSWORD)
    assert REFUSED in unknown
    for _ in range(4):
        assert said("zhang", "wrong-password") == unknown
    assert said("zhang", "wrong-password") == unknown  # the fifth: now locked
    assert said("zhang", PASSWORD) == unknown


def test_after_login_only_a_console_address_is_followed(client, make_account):
    make_account("admin", "zhang")
    assert sign_in(client, "zhang", next_="/admin/audit").headers["Location"] == "/admin/audit"
    assert sign_in(client, "zhang", next_="https://evil.example/").headers["Location"] == "/admin/"


def test_a_form_without_its_csrf_token_changes_nothing(app, console, make_till, make_campaign):
    make_campaign()
    merchant_id, _ = make_till("hotel")
    client = console("admin")
    path = f"/admin/merchants/enrolments/{enrolment_id(app, merchant_id)}/suspend"
    answer = client.post(path, data={"reason": "核查"})
    assert answer.status_code == 400 and "操作未执行" in answer.get_data(as_text=True)
    answer = client.post(path, data={"reason": "核查", "csrf_token": "forged"})
    assert answer.status_code == 400
    assert enrolment_status(app, merchant_id) == "approved"


@pytest.mark.parametrize(("role", "allowed"), [("admin", True), ("operator", True), ("auditor", False)])
def test_only_admins_and_operators_review_merchants(app, console, make_till, make_campaign, role, allowed):
    make_campaign()
    merchant_id, _ = make_till("hotel")
    client = console(role)
    token = csrf_token(client.get("/admin/merchants").get_data(as_text=True))
    path = f"/admin/merchants/enrolments/{enrolment_id(app, merchant_id)}/suspend"
    answer = client.post(path, data={"reason": "核查", "csrf_token": token})
    assert answer.status_code == (302 if allowed else 403)
    assert enrolment_status(app, merchant_id) == ("suspended" if allowed else "approved")


def test_auditors_see_contact_phones_masked(console, make_till, make_campaign):
    make_campaign()
    make_till("hotel")
    assert "13900000000" in console("operator").get("/admin/merchants").get_data(as_text=True)
    page = console("auditor").get("/admin/merchants").get_data(as_text=True)
    assert "13900000000" not in page and "139****0000" in page


def test_signing_out_ends_the_session(console):
    client = console("admin")
    token = csrf_token(client.get("/admin/").get_data(as_text=True))
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302


def test_the_consoles_json_answers_401_in_the_api_envelope_to_anyone_not_signed_in(client, console, make_campaign):
    make_campaign()
    anonymous = client.get("/api/v1/admin/dashboard")
    assert anonymous.status_code == 401
    assert anonymous.get_json() == {"error": {"code": "UNAUTHORIZED", "message": "请先登录"}}
    figures = console("auditor").get("/api/v1/admin/dashboard").get_json()
    assert figures["campaign"]["code"] == "test-campaign" and figures["total"]["issued"] == 100
    assert sum(figures["balances_fen"].values()) == 10000000


def _saved_cookie(client) -> str:
    return client.get_cookie("session").value


def _replayed(app, cookie: str):
    """A browser elsewhere holding a copy of the session cookie."""
    other = app.test_client()
    other.set_cookie("session", cookie)
    return other


def test_a_session_cookie_saved_before_logout_is_not_served_after_it(app, client, make_account):
    make_account("admin", "zhang")
    assert sign_in(client, "zhang").status_code == 302
    saved = _saved_cookie(client)
    assert _replayed(app, saved).get("/admin/").status_code == 200  # the copy works while signed in
    elsewhere = app.test_client()
    assert sign_in(elsewhere, "zhang").status_code == 302  # a second session of the same account
    token = csrf_token(client.get("/admin/").get_data(as_text=True))
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    for stale in (_replayed(app, saved), elsewhere):  # every session of the account has ended
        answer = stale.get("/admin/")
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/admin/login")
    assert sign_in(app.test_client(), "zhang").status_code == 302  # signing in again works


def test_a_lockout_a_new_password_and_a_disabled_account_end_every_session(app, client, runner, make_account):
    make_account("admin", "zhang")

    def signed_in():
        browser = app.test_client()
        assert sign_in(browser, "zhang").status_code == 302
        return browser

    def ended(browser) -> bool:
        return browser.get("/admin/").status_code == 302

    victim = signed_in()
    for _ in range(5):  # someone else guesses: the account locks, and its sessions end
        sign_in(client, "zhang", "wrong-password")
    assert ended(victim)
    with app.app_context():
        db.session.execute(sa.update(AdminUser).values(locked_until=None))
        db.session.commit()

    browser = signed_in()
    result = runner.invoke(args=["admin", "password", "zhang", "--password", "another-password-1"])
    assert result.exit_code == 0 and "会话全部失效" in result.output
    assert ended(browser)
    browser = app.test_client()
    assert sign_in(browser, "zhang", "another-password-1").status_code == 302

    result = runner.invoke(args=["admin", "disable", "zhang"])
    assert result.exit_code == 0 and "已停用账号 zhang" in result.output
    assert ended(browser)
    answer = sign_in(app.test_client(), "zhang", "another-password-1")
    assert answer.status_code == 401 and REFUSED in answer.get_data(as_text=True)
    with app.app_context():
        reasons = db.session.scalars(
            sa.select(AuditEntry.after).where(AuditEntry.action == "login_failed").order_by(AuditEntry.id)
        ).all()
    assert [r["reason"] for r in reasons] == ["wrong_password"] * 4 + ["locked_now", "disabled"]


def test_a_role_that_sees_phones_masked_cannot_search_by_a_full_phone(app, console, make_campaign, make_resident):
    """An auditor sees 139****6666; searching ?phone= for each of the 10,000 hidden digits would
    recover it. Refused in words, list page and export alike; nothing listed."""
    make_campaign()
    make_resident(phone="13955556666")
    auditor = console("auditor")
    for path in ("/admin/lists/residents?phone=13955556666", "/admin/lists/residents/export.csv?phone=13955556666"):
        answer = auditor.get(path)
        assert answer.status_code == 302 and answer.headers["Location"] == "/admin/lists/residents"
        shown = auditor.get(answer.headers["Location"]).get_data(as_text=True)
        assert "您的账号只能看到打码的手机号，不能按完整手机号查询" in shown
    assert auditor.get("/admin/lists/claims?phone=13955556666").status_code == 302
    assert auditor.get("/admin/lists/redemptions?phone=13955556666").status_code == 302


def test_searches_by_phone_are_audited_and_auditors_read_them_masked(app, console, make_campaign, make_resident):
    make_campaign()
    make_resident(phone="13955556666")
    operator = console("operator")
    assert "13955556666" in operator.get("/admin/lists/residents?phone=13955556666").get_data(as_text=True)
    assert operator.get("/admin/lists/claims/export.csv?phone=13955556666").status_code == 200
    with app.app_context():
        entries = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
        logged = [(e.admin_name, e.action, e.after) for e in entries if e.action in ("phone_search", "export")]
    assert logged[0] == ("operator-user", "phone_search", {"list": "residents", "phone": "13955556666"})
    assert ("operator-user", "phone_search", {"list": "claims", "phone": "13955556666"}) in logged
    log = console("auditor").get("/admin/audit").get_data(as_text=True)
    assert "139****6666" in log and "13955556666" not in log
    assert "13955556666" in console("admin").get("/admin/audit").get_data(as_text=True)


@pytest.mark.rate_limits
def test_console_searches_are_limited_per_account(app, console, make_campaign):
    make_campaign()
    busy, other = console("auditor"), console("operator")
    answers = [busy.get("/admin/lists/claims?resident=张") for _ in range(61)]
    assert [a.status_code for a in answers[:60]] == [200] * 60 and answers[60].status_code == 429
    assert answers[60].mimetype == "text/html" and "查询太频繁" in answers[60].get_data(as_text=True)  # a page
    assert "查询太频繁，请稍后再试" in busy.get("/admin/lists/claims").get_data(as_text=True)
    assert other.get("/admin/lists/claims").status_code == 200  # another account is not held up


@pytest.mark.parametrize(
    "path",
    [
        "/admin/lists/redemptions?merchant=99999999999999999999",
        "/admin/lists/redemptions?staff=%C2%B2",  # "²": a digit to str.isdigit(), not to int()
        "/admin/lists/redemptions?from=0001-01-01",
        "/admin/lists/redemptions?to=9999-12-31",
        "/admin/lists/claims/export.csv?from=0001-01-01&to=9999-12-31",
        "/admin/settlement?from=0001-01-01&to=9999-12-31",
    ],
)
def test_out_of_range_console_parameters_are_ignored_not_a_500(console, make_campaign, path):
    make_campaign()
    assert console("admin").get(path).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "form"),
    [
        ("get", "/admin/lists/redemptions?resident=%00", None),
        ("get", "/admin/lists/claims/export.csv?phone=139%00", None),
        ("get", "/public/%00", None),
        ("get", "/admin/lists/redemptions?%00=1", None),
        ("post", "/admin/login", {"username": "ad\x00min", "password": "x"}),
    ],
)
def test_a_nul_character_anywhere_in_a_page_request_is_a_400_page(client, console, method, path, form):
    browser = console("admin")
    answer = browser.post(path, data=form) if method == "post" else browser.get(path)
    assert answer.status_code == 400 and answer.mimetype == "text/html"


def test_a_line_break_in_where_to_go_back_is_ignored_and_nothing_half_done(app, console, make_campaign, make_till):
    make_campaign()
    merchant_id, _ = make_till("hotel")
    client = console("admin")
    token = csrf_token(client.get("/admin/merchants").get_data(as_text=True))
    path = f"/admin/merchants/enrolments/{enrolment_id(app, merchant_id)}/suspend"
    answer = client.post(path, data={"csrf_token": token, "reason": "核查", "back": "/admin/merchants\r\nX-Evil: 1"})
    assert answer.status_code == 302 and "\n" not in answer.headers["Location"]
    assert "X-Evil" not in answer.headers
    assert enrolment_status(app, merchant_id) == "suspended"


@pytest.mark.parametrize("role", ["auditor", "operator"])
def test_only_admins_manage_accounts(app, console, make_account, role):
    client = console(role)
    make_account("operator", "zhao")
    with app.app_context():
        zhao = db.session.scalar(sa.select(AdminUser).where(AdminUser.username == "zhao"))
    assert "账号管理" not in client.get("/admin/").get_data(as_text=True)
    assert client.get("/admin/accounts").status_code == 403
    token = csrf_token(client.get("/admin/").get_data(as_text=True))
    for path, form in (
        ("/admin/accounts", {"username": "newbie", "role": "admin"}),
        (f"/admin/accounts/{zhao.id}/disable", {}),
        (f"/admin/accounts/{zhao.id}/password", {}),
        (f"/admin/accounts/{zhao.id}/enable", {}),
    ):
        assert client.post(path, data={"csrf_token": token, **form}).status_code == 403, path
    with app.app_context():
        after = db.session.scalar(sa.select(AdminUser).where(AdminUser.username == "zhao"))
        assert (after.disabled_at, after.session_version, after.password_hash) == (None, 0, zhao.password_hash)
        assert db.session.scalar(sa.select(AdminUser.id).where(AdminUser.username == "newbie")) is None
    assert "账号管理" in console("admin").get("/admin/").get_data(as_text=True)


def test_anonymous_visitors_cannot_reach_the_accounts(client):
    answer = client.get("/admin/accounts")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/admin/login")
