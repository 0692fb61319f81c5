"""The console's pages do what they show: merchant reviews (audited) and the dashboard's figures."""

from __future__ import annotations

import re

import sqlalchemy as sa

from server.admin import coupons, dashboard
from server.extensions import db
from server.models import AuditEntry, Campaign
from tests.helpers import auth, csrf_token, enrolment_id, enrolment_status, paycode, redeem


def test_approving_an_application_shows_its_binding_code_once_and_is_audited(app, console, make_till, make_campaign):
    make_campaign()
    merchant_id, _ = make_till("hotel", status="applied")
    client = console("operator")
    page = client.get("/admin/merchants?status=applied").get_data(as_text=True)
    assert "演示商户1" in page and 'data-action="approve"' in page
    path = f"/admin/merchants/enrolments/{enrolment_id(app, merchant_id)}/approve"
    answer = client.post(path, data={"csrf_token": csrf_token(page)}, follow_redirects=True)
    shown = answer.get_data(as_text=True)
    assert re.search(r"演示商户1（测试消费券）：已审核通过。店员绑定码 [A-Z0-9]{8}（只显示这一次", shown)
    assert enrolment_status(app, merchant_id) == "approved"
    with app.app_context():
        entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "merchant_approve"))
        assert (entry.admin_name, entry.target_type, entry.target_id) == (
            "operator-user",
            "merchants",
            str(merchant_id),
        )
        assert (entry.before, entry.after) == (
            {"status": "applied", "campaign": "test-campaign"},
            {"status": "approved", "campaign": "test-campaign"},
        )
    log = client.get("/admin/audit").get_data(as_text=True)
    assert "审核通过商户" in log and "operator-user" in log


def test_a_review_the_state_does_not_allow_is_refused_in_words(app, console, make_till, make_campaign):
    make_campaign()
    merchant_id, _ = make_till("hotel")
    client = console("admin")
    token = csrf_token(client.get("/admin/merchants").get_data(as_text=True))
    path = f"/admin/merchants/enrolments/{enrolment_id(app, merchant_id)}"
    answer = client.post(f"{path}/reject", data={"csrf_token": token, "reason": "资料不全"})
    shown = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "报名当前状态为「已通过」，不能驳回" in shown
    answer = client.post(f"{path}/suspend", data={"csrf_token": token, "reason": ""})
    assert "请填写暂停的理由" in client.get(answer.headers["Location"]).get_data(as_text=True)
    assert enrolment_status(app, merchant_id) == "approved"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
            AuditEntry.action.like("merchant_%"))) == 0  # fmt: skip


def test_the_merchant_list_filters_by_status_and_name_and_pages(console, make_till, make_campaign):
    make_campaign()
    for _ in range(3):
        make_till("hotel")
    make_till("fuel", status="applied")
    client = console("admin")
    page = client.get("/admin/merchants?status=approved").get_data(as_text=True)
    assert "共 3 条" in page and "演示商户4" not in page
    page = client.get("/admin/merchants?q=商户4").get_data(as_text=True)
    assert "共 1 条" in page and "演示商户4" in page


def test_the_dashboard_counts_claims_redemptions_refunds_and_leverage(
    app, client, console, make_campaign, make_resident, make_till, clock
):
    campaign_id = make_campaign()
    _, hotel_till = make_till("hotel")
    spent = []
    for n in range(4):
        _, token = make_resident()
        won = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).get_json()["coupon"]
        if n < 3:  # three spent at four times the face value
            answer = redeem(client, hotel_till, paycode(client, token, won["id"]), won["face_fen"] * 4)
            spent.append((won, answer.get_json()["redemption"]["id"]))
    # One of the three refunded: still a redemption, and its face shows as refunded.
    refunded, redemption_id = spent[0]
    client.post(
        f"/api/v1/merchant/redemptions/{redemption_id}/refund", json={"reason": "退货"}, headers=auth(hotel_till)
    )
    with app.app_context():
        board = dashboard.figures_of(db.session.get(Campaign, campaign_id))
        faces = sum(w["face_fen"] for w, _ in spent)
        assert (board.total.issued, board.total.claimed, board.total.redeemed) == (100, 4, 3)
        assert board.total.redeemed_fen == faces and board.total.order_fen == faces * 4
        assert board.total.refunded_fen == refunded["face_fen"]
        assert board.total.leverage == 4 and board.total.rate == 0.75 and board.total.merchants == 1
        assert list(board.by_day) == ["2026-06-25"]
        hotel = next(f for f in board.by_category.values() if f.claimed)
        assert (hotel.issued, hotel.claimed, hotel.redeemed) == (70, 4, 3)
        # The pool's accounts on the dashboard are the ledger's: they add up to the budget.
        assert sum(v for k, v in board.balances.items() if k != "budget") == 10000000
        assert board.balances["redeemed"] == faces - refunded["face_fen"]  # the refund returned to the pool
    page = console("auditor").get("/admin/").get_data(as_text=True)
    assert "75.0%" in page and "4.00" in page and 'id="chart-categories"' in page
    assert "echarts.common.min.js" in page


def test_coupon_management_counts_each_round_and_tier_by_state(
    app, client, console, make_campaign, make_resident, clock
):
    from server.models import Campaign as CampaignModel

    campaign_id = make_campaign()
    for _ in range(3):
        _, token = make_resident()
        client.post("/api/v1/draw", json={"category": "fuel"}, headers=auth(token))
    with app.app_context():
        rows = coupons.coupon_table(db.session.get(CampaignModel, campaign_id))
    fuel = next(r for r in rows if r.category == "加油")
    assert (fuel.round_number, fuel.face_fen, fuel.quantity, fuel.claimed, fuel.states["stock"]) == (
        1,
        10000,
        30,
        3,
        27,
    )
    assert sum(r.quantity for r in rows) == 100 and {r.round_number for r in rows} == {1}
    page = console("auditor").get("/admin/coupons").get_data(as_text=True)
    assert "第1轮" in page and "加油" in page


def test_the_residents_list_shows_each_residents_coupons(client, console, make_campaign, make_resident, clock):
    make_campaign()
    _, token = make_resident(phone="13955556666")
    client.post("/api/v1/draw", json={"category": "fuel"}, headers=auth(token))
    page = console("operator").get("/admin/lists/residents?phone=13955556666").get_data(as_text=True)
    assert re.search(r"<td>13955556666</td><td>[^<]+</td><td>1</td><td>0</td>", page)
    masked = console("auditor").get("/admin/lists/residents").get_data(as_text=True)
    assert "139****6666" in masked and "13955556666" not in masked


def test_one_assistant_is_unbound_and_their_token_ends_at_once(app, client, console, make_till, make_campaign):
    from server.models import Staff

    make_campaign()
    merchant_id, token = make_till("hotel", phone="13700000077")
    _, colleague = make_till("hotel")
    assert client.get("/api/v1/merchant/redemptions", headers=auth(token)).status_code == 200
    admin = console("admin")
    page = admin.get("/admin/merchants").get_data(as_text=True)
    assert "13700000077" in page and 'data-action="unbind"' in page
    with app.app_context():
        staff_id = db.session.scalar(sa.select(Staff.id).where(Staff.phone == "13700000077"))
    answer = admin.post(f"/admin/merchants/staff/{staff_id}/unbind", data={"csrf_token": csrf_token(page)})
    assert "已解绑店员" in admin.get(answer.headers["Location"]).get_data(as_text=True)
    refused = client.get("/api/v1/merchant/redemptions", headers=auth(token))
    assert refused.status_code == 401 and refused.get_json()["error"]["message"] == "店员身份已失效，请重新绑定"
    assert client.get("/api/v1/merchant/redemptions", headers=auth(colleague)).status_code == 200  # only them
    assert "13700000077" not in admin.get("/admin/merchants").get_data(as_text=True)
    with app.app_context():
        entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "staff_unbind"))
        assert (entry.target_type, entry.target_id) == ("staff", str(staff_id))
    # The phone may bind again, with a new binding code.
    page = admin.get("/admin/merchants").get_data(as_text=True)
    path = f"/admin/merchants/enrolments/{enrolment_id(app, merchant_id)}/code"
    issued = admin.post(path, data={"csrf_token": csrf_token(page)})
    shown = admin.get(issued.headers["Location"]).get_data(as_text=True)
    code = re.search(r"店员绑定码 ([A-Z0-9]{8})", shown).group(1)
    client.post("/api/v1/auth/sms", json={"phone": "13700000077", "purpose": "staff"})
    sms = client.get("/api/v1/dev/sms-outbox?phone=13700000077").get_json()["items"][0]["code"]
    body = {"binding_code": code, "name": "店员小李", "phone": "13700000077", "sms_code": sms}
    assert client.post("/api/v1/merchant/bind", json=body).status_code == 200


def test_blacklisting_asks_for_confirmation_and_only_an_admin_reverses_it_with_a_reason(
    app, client, console, make_till, make_campaign
):
    import html

    make_campaign()
    merchant_id, _ = make_till("hotel")
    operator, admin = console("operator"), console("admin")
    page = operator.get("/admin/merchants").get_data(as_text=True)
    assert '<input type="checkbox" name="confirm" value="1" required>确认列入黑名单' in page
    path = f"/admin/merchants/enrolments/{enrolment_id(app, merchant_id)}"
    form = {"csrf_token": csrf_token(page), "reason": "虚假交易"}

    def said(answer) -> str:
        return html.unescape(operator.get(answer.headers["Location"]).get_data(as_text=True))

    unconfirmed = operator.post(f"{path}/blacklist", data=form)
    assert "演示商户1（测试消费券）：请勾选「确认列入黑名单」后再提交" in said(unconfirmed)
    assert enrolment_status(app, merchant_id) == "approved"
    assert operator.post(f"{path}/blacklist", data=form | {"confirm": "1"}).status_code == 302
    assert enrolment_status(app, merchant_id) == "blacklisted"
    listed = "/api/v1/categories/hotel/merchants"  # where residents find the shops taking coupons
    assert client.get(listed).get_json()["items"] == []

    # An operator blacklists but cannot reverse it; nor does "reinstate" (for a suspension) do it.
    assert 'data-action="unblacklist"' not in operator.get("/admin/merchants").get_data(as_text=True)
    assert operator.post(f"{path}/unblacklist", data=form | {"reason": "误列"}).status_code == 403
    refused = operator.post(f"{path}/reinstate", data=form | {"reason": "误列"})
    assert "报名当前状态为「已列入黑名单」，不能改为「已通过」" in said(refused)
    assert enrolment_status(app, merchant_id) == "blacklisted"

    page = admin.get("/admin/merchants").get_data(as_text=True)
    assert 'data-action="unblacklist"' in page and 'placeholder="撤销理由"' in page
    token = csrf_token(page)
    no_reason = admin.post(f"{path}/unblacklist", data={"csrf_token": token, "reason": " "})
    assert "请填写撤销黑名单的理由" in admin.get(no_reason.headers["Location"]).get_data(as_text=True)
    answer = admin.post(
        f"{path}/unblacklist", data={"csrf_token": token, "reason": "核实为误列"}, follow_redirects=True
    )
    assert "演示商户1（测试消费券）：已撤销黑名单，恢复为已通过" in answer.get_data(as_text=True)
    assert enrolment_status(app, merchant_id) == "approved"
    assert [m["id"] for m in client.get(listed).get_json()["items"]] == [merchant_id]
    with app.app_context():
        entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "merchant_unblacklist"))
        assert (entry.admin_name, entry.before["status"], entry.after) == (
            "admin-user",
            "blacklisted",
            {"status": "approved", "campaign": "test-campaign", "reason": "核实为误列"},
        )
    log = html.unescape(admin.get("/admin/audit").get_data(as_text=True))
    assert "将商户「演示商户1」（测试消费券）列入黑名单，理由：虚假交易" in log
    assert "撤销商户「演示商户1」（测试消费券）的黑名单，恢复为已通过，理由：核实为误列" in log
    # Lifting applies only to a blacklisted enrolment.
    again = admin.post(f"{path}/unblacklist", data={"csrf_token": token, "reason": "再来"})
    assert "不能改为「已通过」" in html.unescape(admin.get(again.headers["Location"]).get_data(as_text=True))
