"""The audit log of the console: who changed what, the state before and after, and when.

Operations that change something on a bureau member's behalf call `record` before they flush; the
entry is committed with the change or not at all. The log's page lists it, newest first, filtered
by account, action and local day: each entry as a sentence in words, naming the merchants,
accounts, campaigns and batches it is about (loaded a kind at a time for the whole page, never
a query per row), with the recorded before and after kept beside it for auditors.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import has_request_context, render_template, request
from flask_login import current_user

from ..core.bank import mask_account
from ..core.money import coupon_label, tier_name, yuan
from ..core.time import local_midnight
from ..extensions import db
from ..models import (
    VEHICLE_KINDS,
    AdminUser,
    AuditEntry,
    Campaign,
    Category,
    Coupon,
    Merchant,
    Round,
    SettlementBatch,
    SettlementLine,
    SubsidyApplication,
    Tier,
)
from . import bp
from .access import READ, ROLE_NAMES, role_required, sees_phones
from .console import page_of

ACTION_NAMES = {
    "login": "登录",
    "login_failed": "登录失败",
    "logout": "退出",
    "merchant_approve": "审核通过商户",
    "merchant_reject": "驳回商户申请",
    "merchant_suspend": "暂停商户",
    "merchant_blacklist": "商户列入黑名单",
    "merchant_reinstate": "恢复商户",
    "merchant_unblacklist": "撤销商户黑名单",
    "binding_code": "签发店员绑定码",
    "staff_unbind": "解绑店员",
    "export": "导出数据",
    "phone_search": "按手机号查询",
    "claim_revoke": "撤销领取",
    "campaign_import": "导入活动方案",
    "round_quota": "调整轮次配额",
    "campaign_publish": "公示活动结果",
    "campaign_default": "设为默认活动",
    "campaign_unpublish": "撤回结果公示",
    "subsidy_approve": "批准购车补贴",
    "subsidy_reject": "驳回购车补贴",
    "settlement_freeze": "生成结算批次",
    "settlement_invalid": "认定核销无效",
    "settlement_audit": "出具结算审计意见",
    "settlement_approve": "批准结算批次",
    "settlement_pay": "登记结算付款",
    "settlement_recover": "登记追回款",
    "merchant_bank": "登记商户收款账户",
    "account_create": "新建账号",
    "account_disable": "停用账号",
    "account_enable": "启用账号",
    "account_password": "重置账号密码",
}

# Who the log names for a change made with `flask` on the server (server/cli), not in the console.
COMMAND_LINE = "命令行"

TARGET_NAMES = {
    "merchants": "商户",
    "admin_users": "账号",
    "staff": "店员",
    "rounds": "轮次",
    "campaigns": "活动",
    "coupons": "消费券",
    "subsidy_applications": "补贴申请",
    "settlement_batches": "结算批次",
    "settlement_lines": "结算明细",
}


def record(
    admin: AdminUser | None,
    action: str,
    now: datetime,
    *,
    target: Any = None,
    before: dict | None = None,
    after: dict | None = None,
    name: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        admin_id=admin.id if admin else None,
        admin_name=admin.username if admin else (name or "?")[:40],
        action=action,
        target_type=type(target).__tablename__ if target is not None else None,
        target_id=str(target.id) if target is not None else None,
        before=before,
        after=after,
        address=request.remote_addr if has_request_context() else None,
        created_at=now,
    )
    db.session.add(entry)
    return entry


PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def masked(value: Any) -> Any:
    """A before/after record with every mobile number in it masked (138****5678), for the roles
    that see phones masked: an export's filters or a search name the numbers searched for. A bank
    account recorded is masked as the settlement pages mask it for them."""
    if isinstance(value, str):
        return PHONE.sub(r"\1****\2", value)
    if isinstance(value, dict):
        return {
            k: mask_account(v) if k == "bank_account" and isinstance(v, str) else masked(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


# ---------------------------------------------------------------- the entries in words

# Why a sign-in was refused, as auth.accounts.authenticate records it.
LOGIN_REFUSALS = {
    "unknown": "用户名不存在",
    "wrong_password": "密码错误",
    "locked_now": "密码错误，连续输错，账号已锁定",
    "locked": "账号锁定中",
    "disabled": "账号已停用",
}
# The console's lists and what an export or a search names in them (admin/lists.py, which
# imports this module, has the same names).
LIST_NAMES = {"claims": "领取记录", "redemptions": "核销记录", "residents": "居民"}
FORMAT_NAMES = {"csv": "CSV", "xlsx": "XLSX", "bank": "银行批量付款文件"}
FILTER_NAMES = {
    "from": "起始日期",
    "to": "截止日期",
    "campaign": "活动",
    "merchant": "商户",
    "staff": "店员",
    "resident": "姓名",
    "phone": "手机号",
    "category": "品类",
    "state": "状态",
    "sample": "抽样种子",
}
STATE_NAMES = {
    "valid": "有效",
    "revoked": "已撤回",
    "refunded": "有退货",
    "unused": "未使用",
    "used": "已使用",
    "expired": "已过期",
    "void": "已撤销/已退货",
}


def _id(value: Any) -> int | None:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    return int(text) if text.isascii() and text.isdigit() and int(text) < 2**63 else None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


@dataclass
class Names:
    """What the entries of one page name, each kind loaded in one query for the page."""

    merchants: dict[int, str] = field(default_factory=dict)
    accounts: dict[int, str] = field(default_factory=dict)
    campaigns: dict[int, str] = field(default_factory=dict)
    campaign_codes: dict[str, str] = field(default_factory=dict)
    categories: dict[str, str] = field(default_factory=dict)
    rounds: dict[int, str] = field(default_factory=dict)  # 「测试消费券」第2轮
    tiers: dict[int, str] = field(default_factory=dict)
    coupons: dict[int, str] = field(default_factory=dict)
    subsidies: dict[int, str] = field(default_factory=dict)
    batches: dict[int, str] = field(default_factory=dict)  # 「测试消费券」第1批（6月25日）
    lines: dict[int, str] = field(default_factory=dict)  # the line's batch, as above

    @classmethod
    def of(cls, entries: list[AuditEntry]) -> Names:
        wanted: dict[str, set] = defaultdict(set)
        for entry in entries:
            before, after = _dict(entry.before), _dict(entry.after)
            if entry.target_type and _id(entry.target_id) is not None:
                wanted[entry.target_type].add(_id(entry.target_id))
            for payload in (before, after):
                for key in ("campaign", "default"):
                    if isinstance(payload.get(key), str):
                        wanted["campaign_codes"].add(payload[key])
            if entry.action == "staff_unbind" and _id(after.get("merchant")) is not None:
                wanted["merchants"].add(_id(after["merchant"]))
            if entry.action == "round_quota":
                wanted["tiers"] |= {_id(k) for k in (*before, *after)} - {None}
            filters = _dict(after.get("filters"))
            for key, kind in (("merchant", "merchants"), ("campaign", "campaigns")):
                if _id(filters.get(key)) is not None:
                    wanted[kind].add(_id(filters[key]))
            if isinstance(filters.get("category"), str):
                wanted["categories"].add(filters["category"])
        return cls._load(wanted)

    @classmethod
    def _load(cls, wanted: dict[str, set]) -> Names:
        names = cls()

        def rows(kind: str, key, *columns, joins=()) -> list:
            """The rows of this kind the page names, in one query (none when it names none)."""
            if not wanted.get(kind):
                return []
            query = sa.select(key, *columns)
            for table, on in joins:
                query = query.join(table, on)
            return db.session.execute(query.where(key.in_(wanted[kind]))).all()

        names.merchants = dict(rows("merchants", Merchant.id, Merchant.name))
        names.accounts = dict(rows("admin_users", AdminUser.id, AdminUser.username))
        names.categories = dict(rows("categories", Category.code, Category.name))
        if wanted.get("campaigns") or wanted.get("campaign_codes"):
            query = sa.select(Campaign.id, Campaign.code, Campaign.name).where(
                sa.or_(Campaign.id.in_(wanted["campaigns"]), Campaign.code.in_(wanted["campaign_codes"]))
            )
            for id_, code, name in db.session.execute(query):
                names.campaigns[id_], names.campaign_codes[code] = name, name
        campaign_of = {
            "rounds": (Campaign, Campaign.id == Round.campaign_id),
            "settlement_batches": (Campaign, Campaign.id == SettlementBatch.campaign_id),
        }
        for id_, number, campaign in rows(
            "rounds", Round.id, Round.number, Campaign.name, joins=[campaign_of["rounds"]]
        ):
            names.rounds[id_] = f"「{campaign}」第{number}轮"
        for id_, category, face in rows(
            "tiers", Tier.id, Category.name, Tier.face_fen, joins=[(Category, Category.id == Tier.category_id)]
        ):
            names.tiers[id_] = tier_name(category, face)
        for id_, category, face, threshold in rows(
            "coupons",
            Coupon.id,
            Category.name,
            Coupon.face_fen,
            Coupon.threshold_fen,
            joins=[(Category, Category.id == Coupon.category_id)],
        ):
            names.coupons[id_] = f"{category} {coupon_label(face, threshold)}"
        for id_, kind, plate in rows(
            "subsidy_applications", SubsidyApplication.id, SubsidyApplication.vehicle_kind, SubsidyApplication.plate
        ):
            names.subsidies[id_] = f"{VEHICLE_KINDS.get(kind, kind)} {plate}"
        batch = (SettlementBatch.number, SettlementBatch.label, Campaign.name)
        for id_, number, label, campaign in rows(
            "settlement_batches", SettlementBatch.id, *batch, joins=[campaign_of["settlement_batches"]]
        ):
            names.batches[id_] = f"「{campaign}」第{number}批（{label}）"
        for id_, number, label, campaign in rows(
            "settlement_lines",
            SettlementLine.id,
            *batch,
            joins=[(SettlementBatch, SettlementBatch.id == SettlementLine.batch_id), campaign_of["settlement_batches"]],
        ):
            names.lines[id_] = f"「{campaign}」第{number}批（{label}）"
        return names


@dataclass
class Reading:
    """One entry as the page reads it: its names, and whether the reader sees numbers in clear."""

    entry: AuditEntry
    names: Names
    clear: bool

    @property
    def before(self) -> dict:
        return _dict(self.entry.before)

    @property
    def after(self) -> dict:
        return _dict(self.entry.after)

    @property
    def target(self) -> int | None:
        return _id(self.entry.target_id)

    def merchant(self, merchant_id: Any = None) -> str:
        found = _known(_id(merchant_id) if merchant_id is not None else self.target)
        return f"「{self.names.merchants.get(found, f'编号{found}')}」"

    def campaign(self) -> str:
        """（测试消费券） for an entry that recorded the campaign's code."""
        code = self.after.get("campaign") or self.before.get("campaign")
        return f"（{self.names.campaign_codes.get(code, code)}）" if isinstance(code, str) else ""

    def campaign_target(self) -> str:
        found = _known(self.target)
        return f"「{self.names.campaigns.get(found, f'编号{found}')}」"

    def account(self) -> str:
        found = _known(self.target)
        return f"「{self.names.accounts.get(found, self.after.get('username') or f'编号{found}')}」"

    def batch(self) -> str:
        if self.entry.target_type == "settlement_lines":
            found = self.names.lines.get(self.target)
        else:
            found = self.names.batches.get(self.target)
        return _known(found or self.after.get("batch"))

    def bank_account(self, number: Any) -> str:
        number = str(number or "")
        return number if self.clear else mask_account(number)


def _known(value: Any) -> Any:
    """A name or id the sentence cannot do without: an entry without it reads as its action."""
    if value is None:
        raise KeyError("not recorded")
    return value


def _why(text: Any, label: str = "理由") -> str:
    return f"，{label}：{text}" if text else ""


def _money(amount_fen: Any) -> str:
    if not isinstance(amount_fen, int):
        raise TypeError("no amount recorded")
    return f"{yuan(amount_fen, grouped=True, cents=True)} 元"


def _filters(r: Reading, filters: dict) -> str:
    said = []
    for key, value in filters.items():
        if key not in FILTER_NAMES or value in ("", None):
            continue
        if key == "merchant" and _id(value) in r.names.merchants:
            value = r.names.merchants[_id(value)]
        elif key == "campaign" and _id(value) in r.names.campaigns:
            value = r.names.campaigns[_id(value)]
        elif key == "category":
            value = r.names.categories.get(value, value)
        elif key == "state":
            value = STATE_NAMES.get(value, value)
        said.append(f"{FILTER_NAMES[key]} {value}")
    return f"，筛选条件：{'；'.join(said)}" if said else "，未设筛选条件"


def _export(r: Reading) -> str:
    after = r.after
    if "list" in after:
        listed = LIST_NAMES.get(after["list"], after["list"])
        kind = FORMAT_NAMES.get(after.get("format"), after.get("format") or "")
        return f"导出{listed}（{kind}）" + _filters(r, _dict(after.get("filters")))
    if "statement" in after:
        return f"下载商户{r.merchant(after['statement'])}的结算单（{after.get('period', '')}）"
    if "monthly_report" in after:
        year, _, month = str(after["monthly_report"]).partition("-")
        month = f"{year}年{int(month)}月" if month.isdigit() else after["monthly_report"]
        return f"下载{r.campaign_target()}{month}月报"
    if "batch" in after:
        if after.get("format") == "bank":
            return f"导出结算{r.batch()}的银行批量付款文件"
        return f"导出结算{r.batch()}的结算表（{FORMAT_NAMES.get(after.get('format'), 'XLSX')}）"
    return "导出数据"


def _round_quota(r: Reading) -> str:
    changed = [
        f"{r.names.tiers.get(_id(tier), f'券种{tier}')} {r.before.get(tier)}→{after}张"
        for tier, after in r.after.items()
    ]
    return f"调整{r.names.rounds.get(r.target, '轮次')}配额：{'；'.join(changed)}"


def _campaign_default(r: Reading) -> str:
    old = r.before.get("default")
    was = f"（原默认活动为「{r.names.campaign_codes.get(old, old)}」）" if isinstance(old, str) else ""
    return f"将{r.campaign_target()}设为默认活动{was}"


def _subsidy(r: Reading, approved: bool) -> str:
    what = f"购车补贴申请 #{r.target}（{r.names.subsidies.get(r.target, '')}）".replace("（）", "")
    if approved:
        return f"批准{what}，补贴 {_money(r.after.get('subsidy_fen'))}" + _why(r.after.get("note"), "备注")
    return f"驳回{what}" + _why(r.after.get("note"))


def _payment(r: Reading, verb: str) -> str:
    after = r.after
    details = [r.batch(), f"付款日期 {after['date']}" if after.get("date") else "", f"流水号 {after['reference']}"]
    return f"{verb}：{after['merchant']} {_money(after.get('amount_fen'))}（{'，'.join(d for d in details if d)}）"


def _freeze(r: Reading) -> str:
    after, batch = r.after, r.batch()
    if "merchants" in after:
        return f"生成结算{batch}：{after['merchants']} 家商户，应付 {_money(after.get('payable_fen'))}"
    return f"生成结算{batch}"


def _merchant_bank(r: Reading) -> str:
    old = r.before.get("bank_account")
    was = f"（原为 {r.bank_account(old)}）" if old else ""
    return f"登记商户{r.merchant()}的收款账户 {r.bank_account(r.after.get('bank_account'))}{was}"


SENTENCES: dict[str, Callable[[Reading], str]] = {
    "login": lambda r: "登录管理后台",
    "login_failed": lambda r: f"登录失败（{LOGIN_REFUSALS.get(r.after.get('reason'), '原因未记录')}）",
    "logout": lambda r: "退出登录",
    "merchant_approve": lambda r: f"审核通过商户{r.merchant()}{r.campaign()}" + _why(r.after.get("reason"), "备注"),
    "merchant_reject": lambda r: f"驳回商户{r.merchant()}{r.campaign()}的报名" + _why(r.after.get("reason")),
    "merchant_suspend": lambda r: f"暂停商户{r.merchant()}{r.campaign()}" + _why(r.after.get("reason")),
    "merchant_blacklist": lambda r: f"将商户{r.merchant()}{r.campaign()}列入黑名单" + _why(r.after.get("reason")),
    "merchant_reinstate": lambda r: f"恢复商户{r.merchant()}{r.campaign()}" + _why(r.after.get("reason")),
    "merchant_unblacklist": lambda r: (
        f"撤销商户{r.merchant()}{r.campaign()}的黑名单，恢复为已通过" + _why(r.after.get("reason"))
    ),
    "binding_code": lambda r: f"为商户{r.merchant()}{r.campaign()}签发新的店员绑定码",
    "staff_unbind": lambda r: f"解绑商户{r.merchant(r.after.get('merchant'))}的店员 {r.after.get('name', '')}",
    "export": _export,
    "phone_search": lambda r: (
        f"在{LIST_NAMES.get(r.after.get('list'), '列表')}中按手机号 {r.after.get('phone', '')} 查询"
    ),
    "claim_revoke": lambda r: (
        f"撤销券号 {r.target}（{r.names.coupons.get(r.target, '')}）的领取".replace("（）", "")
        + _why(r.after.get("reason"))
    ),
    "campaign_import": lambda r: (
        f"导入活动方案{r.campaign_target()}（代码 {r.after.get('code', '')}）"
        + ("，作为草稿" if r.after.get("status") == "draft" else "")
    ),
    "round_quota": _round_quota,
    "campaign_publish": lambda r: f"公示{r.campaign_target()}的活动结果",
    "campaign_unpublish": lambda r: f"撤回{r.campaign_target()}的结果公示",
    "campaign_default": _campaign_default,
    "subsidy_approve": lambda r: _subsidy(r, True),
    "subsidy_reject": lambda r: _subsidy(r, False),
    "settlement_freeze": _freeze,
    "settlement_invalid": lambda r: (
        f"认定核销 #{r.after.get('redemption', '')} 无效（结算{r.batch()}）" + _why(r.after.get("reason"))
    ),
    "settlement_audit": lambda r: (
        f"对结算{r.batch()}出具审计意见"
        + (f"（抽查 {r.after['sample']} 笔）" if "sample" in r.after else "")
        + _why(r.after.get("opinion"), "意见")
    ),
    "settlement_approve": lambda r: f"批准结算{r.batch()}，可以付款",
    "settlement_pay": lambda r: _payment(r, "登记结算付款"),
    "settlement_recover": lambda r: _payment(r, "登记追回款"),
    "merchant_bank": _merchant_bank,
    "account_create": lambda r: f"新建账号{r.account()}（{ROLE_NAMES.get(r.after.get('role'), '')}）",
    "account_disable": lambda r: f"停用账号{r.account()}，其已登录的会话全部失效",
    "account_enable": lambda r: f"启用账号{r.account()}",
    "account_password": lambda r: f"重置账号{r.account()}的密码，其已登录的会话全部失效",
}


def sentence(entry: AuditEntry, names: Names, clear: bool) -> str:
    """The entry in words, as the reader's role may see it (phone numbers masked for some)."""
    said = SENTENCES.get(entry.action)
    reading = Reading(entry, names, clear)
    try:
        text = said(reading) if said else ""
    except (KeyError, TypeError, ValueError, AttributeError):  # a record of an older shape: say less
        text = ""
    if not text:
        text = ACTION_NAMES.get(entry.action, entry.action)
        if entry.target_type:
            text += f"：{TARGET_NAMES.get(entry.target_type, entry.target_type)} #{entry.target_id}"
    return text if clear else masked(text)


# ---------------------------------------------------------------- the page

FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2199, 12, 31)


def _day(name: str) -> date | None:
    try:
        day = date.fromisoformat((request.args.get(name) or "").strip()[:10])
    except ValueError:
        return None
    return day if FIRST_DAY <= day <= LAST_DAY else None


def log_filters() -> dict:
    """The page's filters from the query string; what does not parse is left out."""
    filters: dict = {}
    who = (request.args.get("who") or "").strip()[:40]
    if who:
        filters["who"] = who
    if request.args.get("action") in ACTION_NAMES:
        filters["action"] = request.args["action"]
    for name in ("from", "to"):
        if (day := _day(name)) is not None:
            filters[name] = day
    return filters


def log_query(filters: dict) -> sa.Select:
    query = sa.select(AuditEntry)
    if "who" in filters:
        query = query.where(AuditEntry.admin_name == filters["who"])
    if "action" in filters:
        query = query.where(AuditEntry.action == filters["action"])
    if "from" in filters:
        query = query.where(AuditEntry.created_at >= local_midnight(filters["from"]))
    if "to" in filters:
        query = query.where(AuditEntry.created_at < local_midnight(filters["to"] + timedelta(days=1)))
    return query.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())


@bp.get("/audit")
@role_required(*READ)
def audit_log():
    """Every change made in the console, newest first, in words; phone numbers masked for the
    roles that see them masked elsewhere."""
    filters = log_filters()
    shown = page_of(log_query(filters), scalars=True)
    clear = sees_phones(current_user.role)
    names = Names.of(shown.rows)
    return render_template(
        "admin/audit.html",
        raw=lambda record: json.dumps(record if clear else masked(record), ensure_ascii=False),
        entries=[(e, sentence(e, names, clear)) for e in shown.rows],
        total=shown.total,
        page=shown.number,
        pages=shown.pages,
        filters=filters,
        accounts=db.session.scalars(sa.select(AdminUser.username).order_by(AdminUser.username)).all(),
        actions=ACTION_NAMES,
        command_line=COMMAND_LINE,
    )
