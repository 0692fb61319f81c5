"""Account management (账号管理): an admin lists, creates, disables, enables and resets accounts in
the console, each generated password shown once and each change audited; `flask admin
reset-password` is the way back for a lost admin password."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.admin import audit
from server.extensions import db
from server.models import AdminUser, AuditEntry
from tests.helpers import PASSWORD, csrf_token, sign_in

GENERATED = re.compile(r"[2-9a-zA-Z]{4}-[2-9a-zA-Z]{4}-[2-9a-zA-Z]{4}")


def account_id(app, username: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(AdminUser.id).where(AdminUser.username == username))


def account(app, username: str) -> AdminUser:
    with app.app_context():
        user = db.session.scalar(sa.select(AdminUser).where(AdminUser.username == username))
        db.session.expunge(user)
        return user


def post(client, path: str, **form):
    token = csrf_token(client.get("/admin/accounts").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **form}, follow_redirects=True)


def flashed(answer) -> str:
    return html.unescape(
        " ".join(re.findall(r'<p class="flash[^"]*" role="status">([^<]*)</p>', answer.get_data(as_text=True)))
    )


def audited(app, action: str) -> list[tuple[str, str | None]]:
    with app.app_context():
        entries = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))
        return [(e.admin_name, e.target_id) for e in entries]


def signed_in(app, username: str, password: str = PASSWORD):
    browser = app.test_client()
    assert sign_in(browser, username, password).status_code == 302
    return browser


def ended(browser) -> bool:
    return browser.get("/admin/").status_code == 302


def test_an_admin_creates_an_account_whose_password_is_shown_once(app, console):
    admin = console("admin")
    answer = post(admin, "/admin/accounts", username="li.na", role="auditor")
    said = flashed(answer)
    assert "已新建账号 li.na（审计）。初始密码" in said and "只显示这一次" in said
    password = GENERATED.search(said).group(0)
    assert password not in admin.get("/admin/accounts").get_data(as_text=True)  # once
    page = html.unescape(admin.get("/admin/accounts").get_data(as_text=True))
    assert re.search(r"<td>li\.na</td>\s*<td>审计</td>", page) and "从未登录" in page
    newcomer = signed_in(app, "li.na", password)
    assert newcomer.get("/admin/audit").status_code == 200
    assert newcomer.get("/admin/accounts").status_code == 403  # an auditor
    assert audited(app, "account_create") == [("admin-user", str(account_id(app, "li.na")))]
    with app.app_context():
        entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "account_create"))
        assert entry.after == {"username": "li.na", "role": "auditor"}  # never the password
    assert "新建账号「li.na」（审计）" in html.unescape(admin.get("/admin/audit").get_data(as_text=True))


@pytest.mark.parametrize(
    ("form", "said"),
    [
        ({"username": "admin-user", "role": "operator"}, "用户名 admin-user 已存在"),
        ({"username": "张三", "role": "operator"}, "用户名须为3至40位字母、数字或 _ . -"),
        ({"username": "zhao", "role": "root"}, "请选择角色"),
    ],
)
def test_a_taken_or_bad_name_or_an_unknown_role_is_refused_in_words(app, console, form, said):
    admin = console("admin")
    answer = post(admin, "/admin/accounts", **form)
    assert said in flashed(answer)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AdminUser)) == 1
    assert audited(app, "account_create") == []


def test_disabling_ends_every_session_and_enabling_lets_the_account_back_in(app, console, make_account):
    admin = console("admin")
    make_account("operator", "zhao")
    zhao = signed_in(app, "zhao")
    answer = post(admin, f"/admin/accounts/{account_id(app, 'zhao')}/disable")
    assert "已停用账号 zhao，该账号已登录的会话全部失效" in flashed(answer)
    assert ended(zhao)
    assert sign_in(app.test_client(), "zhao").status_code == 401
    page = html.unescape(admin.get("/admin/accounts").get_data(as_text=True))
    assert re.search(r"<td>zhao</td>\s*<td>运营</td>\s*<td><span class=\"status-blacklisted\">已停用</span>", page)
    again = post(admin, f"/admin/accounts/{account_id(app, 'zhao')}/disable")
    assert "zhao：该账号已停用" in flashed(again)

    answer = post(admin, f"/admin/accounts/{account_id(app, 'zhao')}/enable")
    assert "已启用账号 zhao" in flashed(answer)
    assert sign_in(app.test_client(), "zhao").status_code == 302  # with the password it had
    assert [a for a, _ in audited(app, "account_disable")] == ["admin-user"]
    assert [a for a, _ in audited(app, "account_enable")] == ["admin-user"]
    log = html.unescape(admin.get("/admin/audit").get_data(as_text=True))
    assert "停用账号「zhao」，其已登录的会话全部失效" in log and "启用账号「zhao」" in log


def test_an_admin_cannot_disable_their_own_account(app, console, make_account):
    admin = console("admin")
    me = account_id(app, "admin-user")
    page = admin.get("/admin/accounts").get_data(as_text=True)
    assert f"/admin/accounts/{me}/disable" not in page  # no button for one's own account
    answer = post(admin, f"/admin/accounts/{me}/disable")
    assert "admin-user：不能停用自己正在使用的账号" in flashed(answer)
    assert account(app, "admin-user").disabled_at is None
    make_account("admin", "wang")
    wang = signed_in(app, "wang")
    assert "已停用账号 admin-user" in flashed(post(wang, f"/admin/accounts/{me}/disable"))  # another admin may
    assert audited(app, "account_disable") == [("wang", str(me))]


def test_the_last_enabled_admin_is_never_disabled(app, console, make_account):
    """Two admins disabling each other at once would leave none: the second to reach the rule
    finds the other already disabled (the enabled admins are locked while counted)."""
    from server.admin.accounts import disable_account
    from server.auth.accounts import AccountRefused
    from server.core.time import utcnow

    console("admin")
    make_account("admin", "wang")
    make_account("operator", "zhao")
    with app.test_request_context(), app.app_context():
        first, wang = (
            db.session.scalar(sa.select(AdminUser).where(AdminUser.username == n)) for n in ("admin-user", "wang")
        )
        disable_account(first, wang, utcnow())
        with pytest.raises(AccountRefused, match="这是最后一个可用的管理员账号，不能停用"):
            disable_account(wang, first, utcnow())  # wang's request, begun before its account was disabled
        zhao = db.session.scalar(sa.select(AdminUser).where(AdminUser.username == "zhao"))
        disable_account(first, zhao, utcnow())  # an operator is no admin: the rule does not hold it


def test_resetting_a_password_shows_a_new_one_once_unlocks_and_ends_sessions(app, console, make_account):
    admin = console("admin")
    make_account("operator", "zhao")
    zhao = signed_in(app, "zhao")
    for _ in range(5):  # locked by someone guessing
        sign_in(app.test_client(), "zhao", "wrong-password")
    page = html.unescape(admin.get("/admin/accounts").get_data(as_text=True))
    assert "已锁定" in page and "连续输错密码" in page
    answer = post(admin, f"/admin/accounts/{account_id(app, 'zhao')}/password")
    said = flashed(answer)
    assert "已重置账号 zhao 的密码。新密码" in said and "该账号已登录的会话全部失效" in said
    password = GENERATED.search(said).group(0)
    assert ended(zhao)
    assert sign_in(app.test_client(), "zhao", PASSWORD).status_code == 401
    assert sign_in(app.test_client(), "zhao", password).status_code == 302  # and no longer locked
    assert password not in admin.get("/admin/accounts").get_data(as_text=True)
    assert audited(app, "account_password") == [("admin-user", str(account_id(app, "zhao")))]
    assert "重置账号「zhao」的密码" in html.unescape(admin.get("/admin/audit").get_data(as_text=True))


def test_resetting_ones_own_password_keeps_this_session_and_ends_the_others(app, console):
    admin = console("admin")
    elsewhere = signed_in(app, "admin-user")
    answer = post(admin, f"/admin/accounts/{account_id(app, 'admin-user')}/password")
    assert "本次登录保留" in flashed(answer)
    password = GENERATED.search(flashed(answer)).group(0)
    assert admin.get("/admin/accounts").status_code == 200
    assert ended(elsewhere)
    assert sign_in(app.test_client(), "admin-user", password).status_code == 302


def test_the_list_shows_every_account_with_its_role_last_sign_in_and_state(app, console, make_account, clock):
    admin = console("admin")
    make_account("auditor", "qian")
    make_account("operator", "sun")
    signed_in(app, "qian")
    sign_in(app.test_client(), "sun", "wrong-password")
    page = html.unescape(admin.get("/admin/accounts").get_data(as_text=True))
    rows = [[" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r'<tr id="account-\d+">(.*?)</tr>', page, re.S)]  # fmt: skip
    assert [row[:2] for row in rows] == [["admin-user （当前账号）", "管理员"], ["sun", "运营"], ["qian", "审计"]]
    assert [row[2] for row in rows] == ["正常", "正常 已连续输错 1 次", "正常"]
    assert [row[3] for row in rows] == ["2026-06-25 09:00", "从未登录", "2026-06-25 09:00"]  # Shanghai time
    clock.shift(timedelta(minutes=20))
    make_account("operator", "zhou")
    for _ in range(5):
        sign_in(app.test_client(), "zhou", "wrong-password")
    page = html.unescape(admin.get("/admin/accounts").get_data(as_text=True))
    assert "已锁定 至 09:35（连续输错密码）" in re.sub(r"<[^>]+>", "", page)


def test_a_form_without_its_csrf_token_changes_nothing(app, console, make_account):
    admin = console("admin")
    make_account("operator", "zhao")
    for path in (
        f"/admin/accounts/{account_id(app, 'zhao')}/disable",
        f"/admin/accounts/{account_id(app, 'zhao')}/password",
    ):
        assert admin.post(path).status_code == 400
    answer = admin.post("/admin/accounts", data={"username": "newbie", "role": "admin"})
    assert answer.status_code == 400
    assert account(app, "zhao").disabled_at is None and account(app, "zhao").session_version == 0
    assert account_id(app, "newbie") is None


def test_an_unknown_account_is_a_404(console):
    admin = console("admin")
    token = csrf_token(admin.get("/admin/accounts").get_data(as_text=True))
    assert admin.post("/admin/accounts/999999/disable", data={"csrf_token": token}).status_code == 404


# ---------------------------------------------------------------- the command line


def test_reset_password_prints_a_new_password_once_for_a_lost_one(app, runner, make_account):
    make_account("admin", "zhang")
    browser = signed_in(app, "zhang")
    result = runner.invoke(args=["admin", "reset-password", "zhang"])
    assert result.exit_code == 0, result.output
    password = GENERATED.search(result.output).group(0)
    assert "账号 zhang 的新密码" in result.output and "只显示这一次" in result.output
    assert ended(browser)
    assert sign_in(app.test_client(), "zhang", password).status_code == 302
    assert audited(app, "account_password") == [(audit.COMMAND_LINE, str(account_id(app, "zhang")))]
    again = runner.invoke(args=["admin", "reset-password", "zhang"])
    assert GENERATED.search(again.output).group(0) != password

    unknown = runner.invoke(args=["admin", "reset-password", "nobody"])
    assert unknown.exit_code == 1 and "没有账号 nobody" in unknown.output


def test_a_disabled_account_is_told_how_to_enable_it(app, runner, make_account):
    make_account("admin", "zhang")
    assert runner.invoke(args=["admin", "disable", "zhang"]).exit_code == 0
    result = runner.invoke(args=["admin", "reset-password", "zhang"])
    assert "flask --app server admin enable zhang" in result.output
    password = GENERATED.search(result.output).group(0)
    assert sign_in(app.test_client(), "zhang", password).status_code == 401
    enabled = runner.invoke(args=["admin", "enable", "zhang"])
    assert enabled.exit_code == 0 and "已启用账号 zhang" in enabled.output
    assert sign_in(app.test_client(), "zhang", password).status_code == 302
    assert [a for a, _ in audited(app, "account_disable")] == [audit.COMMAND_LINE]
    assert [a for a, _ in audited(app, "account_enable")] == [audit.COMMAND_LINE]
