"""The audit log (操作日志) reads in words: every action a sentence naming its merchant, account,
campaign or batch, the recorded before and after kept beside it, phones and bank accounts masked
for auditors, filtered by account, action and local day, at a cost that does not grow with the page."""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.admin import audit
from server.admin import console as pages
from server.auth import accounts
from server.extensions import db
from server.models import (
    AdminUser,
    AuditEntry,
    Campaign,
    Coupon,
    Merchant,
    Round,
    SettlementBatch,
    SettlementLine,
    Staff,
    SubsidyApplication,
    Tier,
)
from tests.helpers import T0


def log_every_action(app, make_campaign, make_till, make_resident, now: datetime = T0) -> dict[str, list[str]]:
    """One entry of every action the console records, in the shape its code records it, about
    real rows; returns what the log must say of each (as an admin reads it)."""
    make_campaign()
    first, _ = make_till("hotel")
    second, _ = make_till("fuel")
    resident_id, _ = make_resident(phone="13955556666")
    with app.app_context():
        admin = db.session.scalar(sa.select(AdminUser).where(AdminUser.username == "admin-user"))
        if admin is None:
            admin = accounts.create_admin("admin-user", "a-long-password", "admin")
        li = accounts.create_admin("lina", "a-long-password", "auditor")
        campaign = db.session.scalar(sa.select(Campaign))
        merchant, other = db.session.get(Merchant, first), db.session.get(Merchant, second)
        staff = db.session.scalar(sa.select(Staff).where(Staff.merchant_id == first))
        round_2 = db.session.scalar(sa.select(Round).where(Round.number == 2))
        tier = db.session.scalar(sa.select(Tier).where(Tier.face_fen == 10000).order_by(Tier.id))
        coupon = db.session.scalar(sa.select(Coupon).where(Coupon.tier_id == tier.id).order_by(Coupon.id))
        application = SubsidyApplication(
            campaign_id=campaign.id, resident_id=resident_id, vehicle_kind="fuel", vehicle_class="car",
            invoice_no="26140000000012340001", invoice_fen=15_000_000, vin="LGXC16DF9P0000001", plate="晋E00001",
            registered_on=date(2026, 6, 25), image=b"x", image_type="png", subsidy_fen=300_000,
        )  # fmt: skip
        batch = SettlementBatch(
            campaign_id=campaign.id, number=1, label="第1轮", period_to=date(2026, 6, 29), created_by=admin.id
        )
        db.session.add_all([application, batch])
        db.session.flush()
        line = SettlementLine(batch_id=batch.id, merchant_id=other.id)
        db.session.add(line)
        db.session.flush()
        batch_name = "「测试消费券」第1批（第1轮）"
        terms = f"宾馆 满{coupon.threshold_fen // 100}减{coupon.face_fen // 100}"
        at = "「演示商户1」（测试消费券）"
        plain = [
            ("login", admin, {}, "登录管理后台"),
            ("logout", admin, {}, "退出登录"),
            ("merchant_approve", merchant, {"after": {"status": "approved", "campaign": "test-campaign"}},
             f"审核通过商户{at}"),
            ("merchant_reject", merchant, {"after": {"status": "rejected", "campaign": "test-campaign",
                                                     "reason": "资料不全"}},
             f"驳回商户{at}的报名，理由：资料不全"),
            ("merchant_suspend", merchant, {"after": {"status": "suspended", "campaign": "test-campaign",
                                                      "reason": "核查"}}, f"暂停商户{at}，理由：核查"),
            ("merchant_blacklist", merchant, {"after": {"status": "blacklisted", "campaign": "test-campaign",
                                                        "reason": "虚假交易"}},
             f"将商户{at}列入黑名单，理由：虚假交易"),
            ("merchant_reinstate", merchant, {"after": {"status": "approved", "campaign": "test-campaign",
                                                        "reason": "核查无误"}}, f"恢复商户{at}，理由：核查无误"),
            ("merchant_unblacklist", merchant, {"after": {"status": "approved", "campaign": "test-campaign",
                                                          "reason": "误列"}},
             f"撤销商户{at}的黑名单，恢复为已通过，理由：误列"),
            ("binding_code", merchant, {"after": {"status": "approved", "campaign": "test-campaign"}},
             f"为商户{at}签发新的店员绑定码"),
            ("staff_unbind", staff, {"after": {"merchant": merchant.id, "name": "店员"}},
             "解绑商户「演示商户1」的店员 店员"),
            ("phone_search", None, {"after": {"list": "residents", "phone": "13955556666"}},
             "在居民中按手机号 13955556666 查询"),
            ("claim_revoke", coupon, {"before": {"state": "claimed"}, "after": {"state": "void", "reason": "冒领"}},
             f"撤销券号 {coupon.id}（{terms}）的领取，理由：冒领"),
            ("campaign_import", campaign, {"after": {"code": "test-campaign", "status": "active"}},
             "导入活动方案「测试消费券」（代码 test-campaign）"),
            ("round_quota", round_2, {"before": {str(tier.id): 20}, "after": {str(tier.id): 15}},
             "调整「测试消费券」第2轮配额：宾馆100元券 20→15张"),
            ("campaign_publish", campaign, {"before": {"published_at": None},
                                            "after": {"published_at": "2026-07-30T00:00:00+00:00"}},
             "公示「测试消费券」的活动结果"),
            ("campaign_unpublish", campaign, {"before": {"published_at": "2026-07-30T00:00:00+00:00"},
                                              "after": {"published_at": None}}, "撤回「测试消费券」的结果公示"),
            ("campaign_default", campaign, {"before": {"default": None}, "after": {"default": "test-campaign"}},
             "将「测试消费券」设为默认活动"),
            ("subsidy_approve", application, {"before": {"status": "pending"},
                                              "after": {"status": "approved", "subsidy_fen": 300_000, "note": None}},
             f"批准购车补贴申请 #{application.id}（燃油汽车 晋E00001），补贴 3,000.00 元"),
            ("subsidy_reject", application, {"before": {"status": "pending"},
                                             "after": {"status": "rejected", "subsidy_fen": 300_000,
                                                       "note": "发票不清"}},
             f"驳回购车补贴申请 #{application.id}（燃油汽车 晋E00001），理由：发票不清"),
            ("settlement_freeze", batch, {"after": {"batch": "第1批（第1轮）", "campaign": "test-campaign",
                                                    "merchants": 2, "payable_fen": 123_456}},
             f"生成结算{batch_name}：2 家商户，应付 1,234.56 元"),
            ("settlement_invalid", batch, {"after": {"redemption": 7, "reason": "同一人多次"}},
             f"认定核销 #7 无效（结算{batch_name}），理由：同一人多次"),
            ("settlement_audit", batch, {"after": {"batch": "第1批（第1轮）", "sample": 3, "opinion": "抽查无误"}},
             f"对结算{batch_name}出具审计意见（抽查 3 笔），意见：抽查无误"),
            ("settlement_approve", batch, {"after": {"batch": "第1批（第1轮）"}}, f"批准结算{batch_name}，可以付款"),
            ("settlement_pay", line, {"after": {"merchant": "演示商户2", "amount_fen": 10_000, "date": "2026-07-25",
                                                "reference": "B1-fuel"}},
             f"登记结算付款：演示商户2 100.00 元（{batch_name}，付款日期 2026-07-25，流水号 B1-fuel）"),
            ("settlement_recover", line, {"after": {"merchant": "演示商户2", "amount_fen": 2_050, "date": "2026-08-01",
                                                    "reference": "R1"}},
             f"登记追回款：演示商户2 20.50 元（{batch_name}，付款日期 2026-08-01，流水号 R1）"),
            ("merchant_bank", merchant, {"before": {"bank_account": None},
                                         "after": {"bank_account": "6222020200112233445"}},
             "登记商户「演示商户1」的收款账户 6222020200112233445"),
            ("account_create", li, {"after": {"username": "lina", "role": "auditor"}}, "新建账号「lina」（审计）"),
            ("account_disable", li, {"before": {"disabled": False}, "after": {"disabled": True}},
             "停用账号「lina」，其已登录的会话全部失效"),
            ("account_enable", li, {"before": {"disabled": True}, "after": {"disabled": False}}, "启用账号「lina」"),
            ("account_password", li, {}, "重置账号「lina」的密码，其已登录的会话全部失效"),
        ]  # fmt: skip
        exports = [
            (None, {"list": "redemptions", "filters": {"merchant": str(merchant.id), "category": "hotel",
                                                       "state": "valid"}, "format": "xlsx"},
             "导出核销记录（XLSX），筛选条件：商户 演示商户1；品类 宾馆；状态 有效"),
            (None, {"list": "claims", "filters": {}, "format": "csv"}, "导出领取记录（CSV），未设筛选条件"),
            (merchant, {"statement": merchant.id, "period": "2026-06-25 至 2026-06-30"},
             "下载商户「演示商户1」的结算单（2026-06-25 至 2026-06-30）"),
            (campaign, {"monthly_report": "2026-06", "campaign": "test-campaign"}, "下载「测试消费券」2026年6月月报"),
            (batch, {"batch": "第1批（第1轮）", "format": "xlsx"}, f"导出结算{batch_name}的结算表（XLSX）"),
            (batch, {"batch": "第1批（第1轮）", "format": "bank"}, f"导出结算{batch_name}的银行批量付款文件"),
        ]  # fmt: skip
        said: dict[str, list[str]] = {}
        audit.record(None, "login_failed", now, name="nobody", after={"reason": "wrong_password"})
        said["login_failed"] = ["登录失败（密码错误）"]
        for action, target, what, sentence in plain:
            audit.record(admin, action, now, target=target, **what)
            said.setdefault(action, []).append(sentence)
        for target, after, sentence in exports:
            audit.record(admin, "export", now, target=target, after=after)
            said.setdefault("export", []).append(sentence)
        db.session.commit()
    return said


def page_text(client, query: str = "") -> str:
    answer = client.get(f"/admin/audit{query}")
    assert answer.status_code == 200
    return html.unescape(answer.get_data(as_text=True))


def sentences(page: str) -> list[str]:
    """The 内容 cells' sentences, newest first."""
    return [s.strip() for s in re.findall(r'<td class="said">([^<]*)', page)]


def test_every_action_of_the_console_reads_as_a_sentence_with_names(
    app, console, make_campaign, make_till, make_resident, monkeypatch
):
    monkeypatch.setattr(pages, "PER_PAGE", 100)
    client = console("admin")
    said = log_every_action(app, make_campaign, make_till, make_resident)
    assert set(said) == set(audit.ACTION_NAMES), "log_every_action lacks an action the console records"
    shown = sentences(page_text(client))
    for action, expected in said.items():
        for sentence in expected:
            assert sentence in shown, (action, sentence, shown)
    assert not any("商户 #" in s or "{" in s or "None" in s for s in shown), shown  # no raw ids or JSON


def test_the_recorded_before_and_after_stay_beside_each_sentence(app, console, make_campaign, make_till):
    make_campaign()
    merchant_id, _ = make_till("hotel")
    client = console("admin")
    with app.app_context():
        merchant = db.session.get(Merchant, merchant_id)
        audit.record(None, "merchant_suspend", T0, target=merchant, name="admin-user",
                     before={"status": "approved", "campaign": "test-campaign"},
                     after={"status": "suspended", "campaign": "test-campaign", "reason": "核查"})  # fmt: skip
        db.session.commit()
    page = page_text(client, "?action=merchant_suspend")
    row = re.search(r'<td class="said">.*?</td>', page, re.S).group(0)
    assert "暂停商户「演示商户1」（测试消费券），理由：核查" in row
    assert "<details><summary>原始记录</summary>" in row
    assert '之前 <code>{"status": "approved", "campaign": "test-campaign"}</code>' in row
    assert '"reason": "核查"' in row  # readable, not \u escapes


def test_auditors_read_phones_and_bank_accounts_masked_in_sentence_and_record(
    app, console, make_campaign, make_till, make_resident
):
    log_every_action(app, make_campaign, make_till, make_resident)
    auditor = page_text(console("auditor"), "?page=1")
    assert "在居民中按手机号 139****6666 查询" in auditor
    assert "13955556666" not in auditor
    assert "登记商户「演示商户1」的收款账户 6222***********3445" in auditor
    assert "6222020200112233445" not in auditor
    admin = page_text(console("operator"))
    assert "13955556666" in admin and "6222020200112233445" in admin


def _entry(app, action: str, name: str, when: datetime) -> None:
    with app.app_context():
        admin = db.session.scalar(sa.select(AdminUser).where(AdminUser.username == name))
        audit.record(admin, action, when, target=admin, name=name)
        db.session.commit()


def test_the_log_filters_by_account_action_and_local_day(app, console, make_account):
    client = console("admin")
    make_account("operator", "zhao")
    with app.app_context():
        db.session.execute(sa.delete(AuditEntry))  # the admin's own sign-in
        db.session.commit()
    # 2026-06-25 23:30 in Shanghai is 15:30 UTC: the 25th, not the 26th.
    late_on_25th = datetime(2026, 6, 25, 15, 30, tzinfo=UTC)
    _entry(app, "login", "zhao", late_on_25th)
    _entry(app, "logout", "zhao", late_on_25th + timedelta(minutes=5))
    _entry(app, "login", "admin-user", datetime(2026, 6, 26, 1, 0, tzinfo=UTC))
    _entry(app, "login", "admin-user", datetime(2026, 6, 24, 1, 0, tzinfo=UTC))

    def shown(query: str) -> list[tuple[str, str]]:
        page = page_text(client, query)
        return re.findall(r'<td class="when">([^<]*)</td>\s*<td class="who">([^<]*)</td>', page)

    assert len(shown("")) == 4
    assert shown("?who=zhao") == [("2026-06-25 23:35:00", "zhao"), ("2026-06-25 23:30:00", "zhao")]
    assert [w for _, w in shown("?action=login")] == ["admin-user", "zhao", "admin-user"]
    assert shown("?from=2026-06-25&to=2026-06-25") == shown("?who=zhao")
    assert [d[:10] for d, _ in shown("?from=2026-06-26")] == ["2026-06-26"]
    assert [d[:10] for d, _ in shown("?to=2026-06-24")] == ["2026-06-24"]
    assert shown("?who=zhao&action=logout&from=2026-06-25&to=2026-06-25") == [("2026-06-25 23:35:00", "zhao")]
    page = page_text(client, "?who=zhao&action=logout")
    assert '<option value="zhao" selected>' in page and '<option value="logout" selected>' in page
    assert "没有符合条件的记录" in page_text(client, "?who=nobody")


@pytest.mark.parametrize(
    "query",
    ["?action=drop_tables", "?from=yesterday", "?to=9999-99-99", "?from=0001-01-01", "?who=" + "x" * 300, "?page=²"],
)
def test_filters_that_do_not_parse_are_ignored(console, query):
    assert console("admin").get(f"/admin/audit{query}").status_code == 200


def test_an_entry_of_an_older_or_unknown_shape_still_reads(app, console):
    client = console("admin")
    with app.app_context():
        audit.record(None, "merchant_approve", T0, name="admin-user")  # no target, nothing recorded
        audit.record(None, "settlement_pay", T0, name="admin-user", after={"amount_fen": "lots"})
        entry = audit.record(None, "something_new", T0, name="admin-user", after={"x": 1})
        entry.target_type, entry.target_id = "merchants", "99"
        db.session.commit()
    shown = sentences(page_text(client))
    assert "审核通过商户" in shown  # its action, where the record does not say whom
    assert "登记结算付款" in shown
    assert "something_new：商户 #99" in shown


def test_a_page_of_the_log_costs_the_same_whatever_its_size(
    app, console, make_campaign, make_till, make_resident, count_queries, monkeypatch
):
    """Names are loaded a kind at a time for the page: a page of every kind of entry costs the
    same whether it shows each kind once or three times."""
    client = console("admin")
    with app.app_context():
        db.session.execute(sa.delete(AuditEntry))  # the sign-in: every page below is whole cycles
        db.session.commit()
    log_every_action(app, make_campaign, make_till, make_resident, T0)
    for n in (1, 2):  # three times every action, each time in the same order
        _again(app, T0 + timedelta(minutes=n))
    cycle = len(audit.ACTION_NAMES) + 6  # every action once, and the export's five other shapes
    assert client.get("/admin/audit").status_code == 200
    counts = {}
    for size in (cycle, 3 * cycle):
        monkeypatch.setattr(pages, "PER_PAGE", size)
        with count_queries() as count:
            assert client.get("/admin/audit").status_code == 200
        counts[size] = count()
    assert counts[cycle] == counts[3 * cycle], counts


def _again(app, when: datetime) -> None:
    """The first cycle's entries, recorded again at a later moment (the same rows named)."""
    with app.app_context():
        first = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.created_at == T0).order_by(AuditEntry.id))
        for entry in list(first):
            db.session.add(
                AuditEntry(
                    admin_id=entry.admin_id, admin_name=entry.admin_name, action=entry.action,
                    target_type=entry.target_type, target_id=entry.target_id, before=entry.before,
                    after=entry.after, created_at=when,
                )
            )  # fmt: skip
        db.session.commit()
