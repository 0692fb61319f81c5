"""Campaigns (活动): the list, a plan uploaded and checked exactly as `flask campaign check` does
(then imported), and the publication of a campaign's results on its public page."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..campaign import file as campaign_file
from ..campaign import snapshot
from ..core import cache
from ..core.errors import InvalidInput, refusal
from ..core.time import local, utcnow
from ..extensions import db
from ..models import AdminUser, Campaign
from ..pool import rounds
from . import audit, bp
from .access import MERCHANTS, MONEY, READ, role_required
from .console import refusals_go_to
from .forms import ActionForm

# Console actions on a campaign's publication: (audit action, done message).
PUBLICATION = {
    "publish": ("campaign_publish", "已公示活动结果"),
    "withdraw": ("campaign_unpublish", "已撤回结果公示"),
}
PublicationRefused = refusal("PUBLICATION_REFUSED", 409, "公示未变更", api=False)


def check_campaign_file(upload) -> tuple[list, campaign_file.Plan | None]:
    """Check an uploaded JSON or XLSX plan exactly as `flask campaign check` does: (problems, plan)."""
    suffix = Path(upload.filename or "").suffix.lower()
    if suffix not in (".json", ".xlsx"):
        return [campaign_file.Problem("文件", "只接受 .json 或 .xlsx 格式的活动方案")], None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"plan{suffix}"
        upload.save(path)
        try:
            document = campaign_file.read(path)
        except campaign_file.CampaignFileError as exc:
            return [campaign_file.Problem("文件", str(exc))], None
        plan, problems = campaign_file.check(document)
    return problems, plan


def import_campaign(admin: AdminUser, plan: campaign_file.Plan, *, draft: bool, now: datetime) -> Campaign:
    """Create the campaign of a checked plan, audited."""
    campaign = campaign_file.create(plan, status="draft" if draft else "active")
    audit.record(
        admin, "campaign_import", now, target=campaign, after={"code": campaign.code, "status": campaign.status}
    )
    cache.forget()
    return campaign


def set_published(admin: AdminUser, campaign: Campaign, action: str, now: datetime) -> None:
    """Publish the results on the public page ("publish") or take them off ("withdraw"), audited."""
    if action not in PUBLICATION:
        raise PublicationRefused("未知的操作", subject=campaign.name)
    if campaign.status == "draft":
        raise PublicationRefused("草稿活动不公开，不能公示结果", subject=campaign.name)
    publish = action == "publish"
    if publish and not rounds.campaign_over(campaign, now):  # SPEC 8: results after the campaign
        end = local(max(r.valid_until for r in campaign.rounds))
        raise PublicationRefused(f"活动结束后才能公示结果：本活动的券有效至{end}", subject=campaign.name)
    if publish == (campaign.published_at is not None):
        raise PublicationRefused("结果已经公示" if publish else "结果尚未公示", subject=campaign.name)
    before = {"published_at": campaign.published_at.isoformat() if campaign.published_at else None}
    campaign.published_at = now if publish else None
    after = {"published_at": now.isoformat() if publish else None}
    audit.record(admin, PUBLICATION[action][0], now, target=campaign, before=before, after=after)
    db.session.flush()


DefaultRefused = refusal("DEFAULT_REFUSED", 409, "默认活动未变更", api=False)


def set_default(admin: AdminUser, campaign: Campaign, now: datetime) -> None:
    """Make the campaign the one residents see without naming one, audited."""
    if campaign.status != "active":
        raise DefaultRefused("只有进行中的活动可以设为默认活动", subject=campaign.name)
    if not snapshot.for_everyone(campaign):
        raise DefaultRefused("现场活动和购车补贴不能设为默认活动（居民须扫码或另行申请）", subject=campaign.name)
    if campaign.is_default:
        raise DefaultRefused("已经是默认活动", subject=campaign.name)
    before = db.session.scalar(sa.select(Campaign.code).where(Campaign.is_default.is_(True)))
    snapshot.make_default(campaign)
    audit.record(
        admin, "campaign_default", now, target=campaign, before={"default": before}, after={"default": campaign.code}
    )
    cache.forget()


@bp.route("/campaigns", methods=["GET", "POST"])
@role_required(*READ)
def campaigns_page():
    """The campaigns; an admin uploads a campaign file, checked exactly as `campaign check` does."""
    problems, checked = None, None
    form = ActionForm()
    if request.method == "POST":
        if current_user.role not in MONEY:
            abort(403)
        request.max_content_length = 5 * 1024 * 1024  # an XLSX plan is larger than an API body
        upload = request.files.get("file")
        refusals_go_to(url_for("admin.campaigns_page"))
        if not form.validate_on_submit() or upload is None or not upload.filename:
            raise InvalidInput("请选择活动方案文件（JSON 或 XLSX）")
        problems, checked = check_campaign_file(upload)
        if not problems and request.form.get("intent") == "import":
            campaign = import_campaign(
                current_user._get_current_object(), checked, draft=bool(request.form.get("draft")), now=utcnow()
            )
            flash(f"已导入活动「{campaign.name}」（{campaign.code}）", "info")
            return redirect(url_for("admin.campaigns_page"))
    campaigns = db.session.scalars(sa.select(Campaign).order_by(Campaign.id.desc())).all()
    now = utcnow()
    return render_template(
        "admin/campaigns.html",
        campaigns=campaigns,
        phases={c.id: snapshot.phase(c, now) for c in campaigns},  # the event screen's rule too
        problems=problems,
        checked=checked,
        form=form,
        can_change=current_user.role in MONEY,
        can_show_screen=current_user.role in MERCHANTS,  # who may open the event screen (screen.py)
    )


@bp.post("/campaigns/<id:campaign_id>/default")
@role_required(*MONEY)
def campaign_default(campaign_id: int):
    """Make a campaign the default: what the resident page and GET /api/v1/campaign show unnamed."""
    campaign = db.session.get(Campaign, campaign_id) or abort(404)
    refusals_go_to(url_for("admin.campaigns_page"))
    if not ActionForm().validate_on_submit():
        raise InvalidInput("提交无效，请刷新页面后重试")
    set_default(current_user._get_current_object(), campaign, utcnow())
    flash(f"已将「{campaign.name}」设为默认活动：居民打开页面时首先看到它", "info")
    return redirect(url_for("admin.campaigns_page"))


@bp.post("/campaigns/<id:campaign_id>/publication/<action>")
@role_required(*MONEY)
def campaign_publication(campaign_id: int, action: str):
    """Publish a campaign's results on its public page (/public/<code>), or withdraw them."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or action not in PUBLICATION:
        abort(404)
    refusals_go_to(url_for("admin.campaigns_page"))
    if not ActionForm().validate_on_submit():
        raise InvalidInput("提交无效，请刷新页面后重试")
    set_published(current_user._get_current_object(), campaign, action, utcnow())
    flash(f"{campaign.name}：{PUBLICATION[action][1]}", "info")
    return redirect(url_for("admin.campaigns_page"))
