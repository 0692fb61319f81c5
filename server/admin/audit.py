"""The audit log of the console: who changed what, the state before and after, and when.

Operations that change something on a bureau member's behalf call `record` before they flush; the
entry is committed with the change or not at all. The log's page lists it, newest first.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import has_request_context, render_template, request
from flask_login import current_user

from ..extensions import db
from ..models import AdminUser, AuditEntry
from . import bp
from .access import READ, role_required, sees_phones
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
}

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
    that see phones masked: an export's filters or a search name the numbers searched for."""
    if isinstance(value, str):
        return PHONE.sub(r"\1****\2", value)
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


@bp.get("/audit")
@role_required(*READ)
def audit_log():
    """Every change made in the console, newest first; phone numbers masked for the roles that
    see them masked elsewhere."""
    shown = page_of(sa.select(AuditEntry).order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc()), scalars=True)
    mask = (lambda v: v) if sees_phones(current_user.role) else masked
    return render_template(
        "admin/audit.html",
        mask=mask,
        items=shown.rows,
        total=shown.total,
        page=shown.number,
        pages=shown.pages,
        actions=ACTION_NAMES,
        targets=TARGET_NAMES,
    )
