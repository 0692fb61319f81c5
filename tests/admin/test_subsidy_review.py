"""The bureau reviews purchase subsidies in the console: the queue, an application beside its
invoice photo and the bracket applied, approval paid through the ledger, rejection with a reason."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from server.extensions import db
from server.models import AuditEntry, LedgerEntry, SubsidyApplication
from tests.browser import screenshot
from tests.draw.test_subsidy import JINCHENG, PHOTO, apply, form
from tests.helpers import PASSWORD, csrf_token


@pytest.fixture
def applications(client, make_campaign, make_resident):
    """Two applications: a new-energy car for 60,000 yuan exactly, and a used car for 150,000."""
    campaign_id = make_campaign(JINCHENG)
    made = []
    for n, changes in ((1, {"invoice_fen": 6_000_000}), (2, {"vehicle_kind": "used"})):
        _, token = make_resident(phone=f"1391234567{n}")
        answer = apply(client, token, form(n, **changes))
        assert answer.status_code == 201, answer.get_json()
        made.append(answer.get_json()["application"])
    return campaign_id, made


def test_the_queue_and_an_application_with_its_photo_and_bracket(console, applications):
    _, (first, second) = applications
    client = console("auditor")
    queue = client.get("/admin/subsidies").get_data(as_text=True)
    assert "待审核（2）" in queue and "晋E00001" in queue and "60,000" in queue and "2,000" in queue
    assert "139****5671" in queue and "13912345671" not in queue  # auditors see masked phones
    page = client.get(f"/admin/subsidies/{first['id']}").get_data(as_text=True)
    assert "新能源汽车 6万（含）—10万以下" in page and 'id="subsidy-amount">2,000<' in page
    assert "批准，发放" not in page  # auditors only read
    photo = client.get(f"/admin/subsidies/{first['id']}/invoice")
    assert photo.status_code == 200 and photo.data == PHOTO and photo.headers["Content-Type"] == "image/png"
    assert client.get("/admin/subsidies/999999").status_code == 404


def test_reviewing_pays_or_refuses_and_is_in_the_audit_log(app, console, applications, balanced):
    campaign_id, (first, second) = applications
    client = console("operator")
    page = client.get(f"/admin/subsidies/{first['id']}").get_data(as_text=True)
    token = csrf_token(page)
    approved = client.post(f"/admin/subsidies/{first['id']}/approve", data={"csrf_token": token})
    assert approved.status_code == 302 and approved.headers["Location"].endswith(f"/admin/subsidies/{second['id']}")
    shown = client.get(approved.headers["Location"]).get_data(as_text=True)
    assert f"申请 #{first['id']} 已批准，补贴 2,000 元已记入资金台账" in shown
    no_reason = client.post(f"/admin/subsidies/{second['id']}/reject", data={"csrf_token": token, "reason": ""})
    assert "驳回须写明原因" in client.get(no_reason.headers["Location"]).get_data(as_text=True)
    rejected = client.post(
        f"/admin/subsidies/{second['id']}/reject", data={"csrf_token": token, "reason": "发票金额与照片不符"}
    )
    assert rejected.headers["Location"].endswith("/admin/subsidies")
    again = client.post(f"/admin/subsidies/{first['id']}/approve", data={"csrf_token": token})
    assert "不能重复审核" in client.get(again.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        states = dict(db.session.execute(sa.select(SubsidyApplication.id, SubsidyApplication.status)).all())
        assert states == {first["id"]: "approved", second["id"]: "rejected"}
        paid = db.session.scalars(sa.select(LedgerEntry.amount_fen).where(LedgerEntry.kind == "subsidy")).all()
        assert paid == [200000]
        actions = db.session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)).all()
        assert actions[-2:] == ["subsidy_approve", "subsidy_reject"]
    assert balanced(campaign_id)["subsidy"] == 200000
    # The audit log reads in words.
    log = console("admin").get("/admin/audit").get_data(as_text=True)
    assert "批准购车补贴" in log and "驳回购车补贴" in log


def test_auditors_cannot_review(app, console, applications):
    _, (first, _) = applications
    client = console("auditor")
    token = csrf_token(client.get("/admin/subsidies").get_data(as_text=True))
    assert client.post(f"/admin/subsidies/{first['id']}/approve", data={"csrf_token": token}).status_code == 403
    with app.app_context():
        assert db.session.get(SubsidyApplication, first["id"]).status == "pending"


@pytest.mark.browser
def test_a_reviewer_approves_and_rejects_in_the_browser(app, browser, live_server, make_account, applications):
    _, (first, second) = applications
    make_account("operator", "zhao")
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")
    page = context.new_page()
    refused = []
    page.on("console", lambda message: "Content Security Policy" in message.text and refused.append(message.text))
    page.goto(f"{live_server}/admin/login")
    page.fill("input[name=username]", "zhao")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/admin/**")

    page.click("nav >> text=购车补贴")
    rows = page.locator("#subsidies tr")
    assert rows.count() == 3  # the header and two applications
    assert "6万" not in rows.nth(1).inner_text() and "60,000" in rows.nth(1).inner_text()
    screenshot(page, "subsidy-queue")
    rows.nth(1).get_by_role("link", name="审核").click()
    page.wait_for_url(f"{live_server}/admin/subsidies/{first['id']}")
    page.wait_for_function("() => document.querySelector('img.invoice').naturalWidth > 0")
    assert page.locator("img.invoice").evaluate("img => img.naturalWidth") == 900
    assert "新能源汽车 6万（含）—10万以下" in page.locator(".subsidy").inner_text()
    screenshot(page, "subsidy-review")
    page.click("button[data-action=approve]")
    page.wait_for_url(f"{live_server}/admin/subsidies/{second['id']}")  # on to the next in the queue
    assert "已批准，补贴 2,000 元已记入资金台账" in page.locator(".flash.info").inner_text()
    page.fill("input[name=reason]", "二手车过户登记不在本区")
    page.click("button[data-action=reject]")
    page.wait_for_url(f"{live_server}/admin/subsidies")
    assert "已驳回：二手车过户登记不在本区" in page.locator(".flash.info").inner_text()
    page.select_option("select[name=status]", "all")
    page.click("form.bar button[type=submit]")
    table = page.locator("#subsidies").inner_text()
    assert "已批准" in table and "已驳回" in table and "二手车过户登记不在本区" in table
    screenshot(page, "subsidy-reviewed")
    assert refused == []
    context.close()
