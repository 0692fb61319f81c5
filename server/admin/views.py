"""Console pages. Each loads its arguments, checks the role, calls a service, commits once."""

from __future__ import annotations

import re
from urllib.parse import quote

import sqlalchemy as sa
from flask import (
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError

from .. import accounts, audit, ledger, publication, rounds, survey
from .. import campaigns as campaigns_service
from ..extensions import db
from ..merchant.services import STATUS_NAMES, ReviewError
from ..models import AuditEntry, Campaign, Category, Merchant, Round
from ..timeutil import utcnow, zone
from . import api, bp, lists, risk, services
from .access import MERCHANTS, MONEY, READ, ROLE_NAMES, phone_for, role_required
from .forms import ActionForm, LoginForm, tier_quantities

PER_PAGE = 50
RISK_DAYS = (1, 7, 30)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@bp.app_context_processor
def console_globals():
    return {
        "ROLE_NAMES": ROLE_NAMES,
        "STATUS_NAMES": STATUS_NAMES,
        "yuan": ledger.yuan,
        "local": _local,
        "COUNT_LIMIT": lists.COUNT_LIMIT,
    }


def _local(instant, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return instant.astimezone(zone("Asia/Shanghai")).strftime(fmt) if instant else ""


def _page() -> int:
    page = request.args.get("page", "1")
    return max(int(page), 1) if re.fullmatch(r"[0-9]{1,9}", page) else 1  # not "²", which isdigit() takes


def _safe_next(target: str | None) -> str | None:
    """Only a path inside the console: never an address elsewhere."""
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return None


@bp.errorhandler(403)
def forbidden(_error):
    return render_template("admin/message.html", title="无权访问", message="您的角色不能使用这个页面或操作。"), 403


@bp.errorhandler(CSRFError)
def csrf_failed(_error):
    db.session.rollback()
    message = "页面已过期或来源不明，操作未执行。请刷新页面后重试。"
    return render_template("admin/message.html", title="操作未执行", message=message), 400


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in; repeated wrong passwords lock the account for a while."""
    form = LoginForm()
    if form.validate_on_submit():
        now = utcnow()
        try:
            user = accounts.authenticate(form.username.data, form.password.data, now)
        except accounts.SignInError as refused:
            audit.record(None, "login_failed", now, name=form.username.data, after={"reason": str(refused)})
            db.session.commit()
            flash(str(refused), "error")
            return render_template("admin/login.html", form=form), 401
        login_user(user)
        audit.record(user, "login", now, target=user)
        db.session.commit()
        return redirect(_safe_next(request.args.get("next")) or url_for("admin.dashboard"))
    return render_template("admin/login.html", form=form)


@bp.post("/logout")
@role_required(*READ)
def logout():
    if not ActionForm().validate_on_submit():
        abort(400)
    user = current_user._get_current_object()
    audit.record(user, "logout", utcnow(), target=user)
    db.session.commit()
    logout_user()
    flash("已退出登录", "info")
    return redirect(url_for("admin.login"))


@bp.get("/")
@role_required(*READ)
def dashboard():
    """Figures and charts of a campaign: totals, per round, per category, per day, the pool."""
    campaign, choices = _campaign_choice()
    if campaign is None:
        return render_template("admin/message.html", title="数据看板", message="还没有活动。请先导入活动方案。")
    board = services.dashboard(campaign)
    rounds = {r.id: r for r in db.session.scalars(sa.select(Round).where(Round.campaign_id == campaign.id))}
    categories = {c.id: c for c in db.session.scalars(sa.select(Category).where(Category.campaign_id == campaign.id))}
    order = sorted(board.by_category, key=lambda k: categories[k].position)
    charts = {
        "categories": [categories[k].name for k in order],
        "issued": [board.by_category[k].issued for k in order],
        "claimed": [board.by_category[k].claimed for k in order],
        "redeemed": [board.by_category[k].redeemed for k in order],
        "days": list(board.by_day),
        "day_redeemed_yuan": [f.redeemed_fen / 100 for f in board.by_day.values()],
        "day_order_yuan": [f.order_fen / 100 for f in board.by_day.values()],
        "day_claimed": [f.claimed for f in board.by_day.values()],
        "pool": [{"name": ledger.ACCOUNT_NAMES[a], "value": board.balances.get(a, 0) / 100} for a in ledger.ACCOUNTS],
    }
    return render_template(
        "admin/dashboard.html",
        board=board,
        choices=choices,
        rounds=rounds,
        categories=categories,
        charts=charts,
        accounts=ledger.ACCOUNTS,
        account_names=ledger.ACCOUNT_NAMES,
    )


@bp.get("/merchants")
@role_required(*READ)
def merchants():
    status = request.args.get("status") or None
    if status and status not in STATUS_NAMES:
        status = None
    query = (request.args.get("q") or "").strip()[:50]
    page = _page()
    items, total = services.merchants_page(status, query, page, PER_PAGE)
    return render_template(
        "admin/merchants.html",
        items=items,
        total=total,
        page=page,
        pages=_pages(total, page, len(items)),
        status=status,
        query=query,
        counts=services.counts_by_status(),
        form=ActionForm(),
        phone=lambda p: phone_for(p, current_user.role),
        can_review=current_user.role in MERCHANTS,
    )


@bp.post("/merchants/<id:merchant_id>/<action>")
@role_required(*MERCHANTS)
def merchant_action(merchant_id: int, action: str):
    """Approve, reject, suspend, blacklist, reinstate, or issue a binding code."""
    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None or action not in services.MERCHANT_ACTIONS:
        abort(404)
    form = ActionForm()
    if not form.validate_on_submit():
        flash("；".join(e for errors in form.errors.values() for e in errors) or "提交无效", "error")
        return redirect(request.referrer or url_for("admin.merchants"))
    try:
        code = services.review_merchant(
            current_user._get_current_object(), merchant, action, form.reason.data, utcnow()
        )
    except ReviewError as refused:
        db.session.rollback()
        flash(f"{merchant.name}：{refused}", "error")
        return redirect(_safe_next(request.form.get("back")) or url_for("admin.merchants"))
    db.session.commit()
    done = services.MERCHANT_ACTIONS[action][2]
    flash(f"{merchant.name}：{done}" + (f"。店员绑定码 {code}（只显示这一次，30天内有效）" if code else ""), "info")
    return redirect(_safe_next(request.form.get("back")) or url_for("admin.merchants"))


@bp.get("/survey")
@role_required(*READ)
def survey_page():
    """The satisfaction survey's answers, counted per option (no names)."""
    total, tallies = survey.summary()
    return render_template("admin/survey.html", total=total, tallies=tallies)


@bp.get("/risk")
@role_required(*READ)
def risk_page():
    """Patterns worth the bureau's look: bursts, spends at the threshold, shared tills and phones."""
    days = request.args.get("days", type=int)
    days = days if days in RISK_DAYS else 7
    rules = risk.flags(days, utcnow(), current_user.role)
    return render_template("admin/risk.html", rules=rules, days=days, choices=RISK_DAYS)


@bp.get("/audit")
@role_required(*READ)
def audit_log():
    """Every change made in the console, newest first."""
    page = _page()
    total = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    items = db.session.scalars(
        sa.select(AuditEntry)
        .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
        .limit(PER_PAGE)
        .offset((page - 1) * PER_PAGE)
    ).all()
    return render_template(
        "admin/audit.html",
        items=items,
        total=total,
        page=page,
        pages=_pages(total, page, len(items)),
        actions=audit.ACTION_NAMES,
        targets=audit.TARGET_NAMES,
    )


def _pages(total: int, page: int, shown: int) -> int:
    """How many pages; past the bounded count, one more as long as this page is full."""
    if total > lists.COUNT_LIMIT:
        return page + 1 if shown == PER_PAGE else page
    return max((total + PER_PAGE - 1) // PER_PAGE, 1)


def _query_args(filters: dict) -> dict:
    """Parsed filters back as query-string arguments (for export and statement links)."""
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in filters.items() if k != "now"}


def _listing(name: str):
    listing = lists.LISTINGS.get(name)
    if listing is None:
        abort(404)
    return listing


@bp.get("/lists/<name>")
@role_required(*READ)
def listing_page(name: str):
    """A searchable list: filters in the query string, a page of rows, export links."""
    listing = _listing(name)
    filters = lists.parse_filters(request.args, listing.filters)
    page = _page()
    role = current_user.role
    rows, total = listing.page(filters, role, page, PER_PAGE)
    return render_template(
        f"admin/list_{name}.html",
        listing=listing,
        filters=filters,
        rows=rows,
        total=total,
        page=page,
        pages=_pages(total, page, len(rows)),
        options=lists.filter_options(),
        export_args=_query_args(filters),
        form=ActionForm(),
        can_revoke=role in MERCHANTS,
    )


@bp.get("/lists/<name>/export.<kind>")
@role_required(*READ)
def listing_export(name: str, kind: str):
    """The whole filtered list, streamed: CSV (UTF-8 with BOM) or XLSX."""
    listing = _listing(name)
    if kind not in ("csv", "xlsx"):
        abort(404)
    filters = lists.parse_filters(request.args, listing.filters)
    role = current_user.role
    stamp = utcnow().astimezone(zone("Asia/Shanghai")).strftime("%Y%m%d-%H%M")
    filename = f"{listing.title}-{stamp}.{kind}"
    what = {"list": name, "filters": request.args.to_dict(), "format": kind}
    audit.record(current_user._get_current_object(), "export", utcnow(), after=what)
    db.session.commit()
    if kind == "xlsx":
        return _xlsx(lists.xlsx_file(listing, filters, role), filename)
    stream = stream_with_context(lists.csv_stream(listing, filters, role))
    return _attachment(Response(stream, mimetype="text/csv; charset=utf-8"), filename)


@bp.post("/claims/<id:coupon_id>/revoke")
@role_required(*MERCHANTS)
def claim_revoke(coupon_id: int):
    """Take back a coupon a resident holds unused; its value returns to the pool."""
    form = ActionForm()
    back = _safe_next(request.form.get("back")) or url_for("admin.listing_page", name="claims")
    if not form.validate_on_submit():
        flash("提交无效，请刷新页面后重试", "error")
        return redirect(back)
    try:
        services.revoke_claim(current_user._get_current_object(), coupon_id, form.reason.data, utcnow())
    except services.ClaimError as refused:
        db.session.rollback()
        flash(str(refused), "error")
        return redirect(back)
    db.session.commit()
    flash(f"已撤销券号 {coupon_id}，面额退回资金池", "info")
    return redirect(back)


def _period_args() -> tuple[dict, str]:
    """The settlement period's filters ("from", "to": local dates), and how to name it."""
    filters = lists.parse_filters(request.args, ("from", "to"))
    return filters, f"{filters.get('from', '开始')} 至 {filters.get('to', '今')}"


def _attachment(response: Response, filename: str) -> Response:
    """A download: the Chinese file name as RFC 5987 asks, and never kept in a cache."""
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
    response.headers["Cache-Control"] = "no-store"
    return response


def _xlsx(handle, filename: str) -> Response:
    return _attachment(send_file(handle, mimetype=XLSX, as_attachment=True, download_name=filename), filename)


@bp.get("/settlement")
@role_required(*READ)
def settlement():
    """What the bureau owes each merchant for a period (100% of the face of settled redemptions)."""
    period, label = _period_args()
    rows = services.settlement(period)
    return render_template(
        "admin/settlement.html",
        rows=rows,
        label=label,
        filters=period,
        total_owed=sum(r.owed_fen for r in rows),
        total_order=sum(r.order_fen for r in rows),
        query=_query_args(period),
    )


@bp.get("/settlement/<id:merchant_id>.xlsx")
@role_required(*READ)
def settlement_statement(merchant_id: int):
    """One merchant's statement for the period, as XLSX."""
    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None:
        abort(404)
    period, label = _period_args()
    rows = services.statement_rows(merchant_id, period)
    handle, _, _ = lists.statement_xlsx(merchant, label, rows)
    what = {"statement": merchant_id, "period": label}
    audit.record(current_user._get_current_object(), "export", utcnow(), target=merchant, after=what)
    db.session.commit()
    return _xlsx(handle, f"结算单-{merchant.name}-{label.replace(' ', '')}.xlsx")


def _campaign_choice() -> tuple[Campaign | None, list[Campaign]]:
    choices = services.campaigns()
    wanted = request.args.get("campaign", "")
    return next((c for c in choices if str(c.id) == wanted), choices[0] if choices else None), choices


@bp.get("/coupons")
@role_required(*READ)
def coupons():
    """Coupon management: per round and tier, how many were put out, held, used, expired."""
    campaign, choices = _campaign_choice()
    if campaign is None:
        return render_template("admin/message.html", title="消费券管理", message="还没有活动。")
    return render_template(
        "admin/coupons.html", campaign=campaign, choices=choices, rows=services.coupon_table(campaign)
    )


# ---------------------------------------------------------------- campaigns and rounds


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
        if not form.validate_on_submit() or upload is None or not upload.filename:
            flash("请选择活动方案文件（JSON 或 XLSX）", "error")
            return redirect(url_for("admin.campaigns_page"))
        problems, checked = services.check_campaign_file(upload)
        if not problems and request.form.get("intent") == "import":
            campaign = services.import_campaign(
                current_user._get_current_object(), checked, draft=bool(request.form.get("draft")), now=utcnow()
            )
            db.session.commit()
            flash(f"已导入活动「{campaign.name}」（{campaign.code}）", "info")
            return redirect(url_for("admin.campaigns_page"))
        db.session.rollback()
    return render_template(
        "admin/campaigns.html",
        campaigns=db.session.scalars(sa.select(Campaign).order_by(Campaign.id.desc())).all(),
        problems=problems,
        checked=checked,
        form=form,
        can_change=current_user.role in MONEY,
    )


@bp.post("/campaigns/<id:campaign_id>/publication/<action>")
@role_required(*MONEY)
def campaign_publication(campaign_id: int, action: str):
    """Publish a campaign's results on its public page (/public/<code>), or withdraw them."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or action not in publication.ACTIONS:
        abort(404)
    if not ActionForm().validate_on_submit():
        flash("提交无效，请刷新页面后重试", "error")
        return redirect(url_for("admin.campaigns_page"))
    try:
        publication.set_published(current_user._get_current_object(), campaign, action, utcnow())
    except publication.PublicationError as refused:
        db.session.rollback()
        flash(f"{campaign.name}：{refused}", "error")
        return redirect(url_for("admin.campaigns_page"))
    db.session.commit()
    flash(f"{campaign.name}：{publication.ACTIONS[action][1]}", "info")
    return redirect(url_for("admin.campaigns_page"))


@bp.route("/campaigns/<id:campaign_id>/rounds/<id:number>", methods=["GET", "POST"])
@role_required(*READ)
def round_quotas(campaign_id: int, number: int):
    """A round's quota per tier; an admin changes a round that has not opened, paid from the pool."""
    round_ = db.session.scalar(sa.select(Round).where(Round.campaign_id == campaign_id, Round.number == number))
    if round_ is None:
        abort(404)
    form = ActionForm()
    if request.method == "POST":
        if current_user.role not in MONEY:
            abort(403)
        if not form.validate_on_submit():
            abort(400)
        wanted = tier_quantities(request.form)
        if wanted is None:
            flash("配额须为非负整数", "error")
            return redirect(request.path)
        try:
            changes = services.adjust_round(current_user._get_current_object(), round_, wanted, utcnow())
        except rounds.QuotaError as refused:
            db.session.rollback()
            flash(f"未调整：{refused}", "error")
            return redirect(request.path)
        db.session.commit()
        flash(
            "已调整："
            + ("；".join(f"{ledger.tier_label(c.tier)} {c.before}→{c.after}张" for c in changes) or "无变化"),
            "info",
        )
        return redirect(request.path)
    held = campaigns_service.remaining_by_tier(round_.id)
    tiers = sorted(round_.campaign.tiers, key=lambda t: (t.category.position, t.face_fen))
    return render_template(
        "admin/round.html",
        round=round_,
        tiers=tiers,
        held=held,
        pool=ledger.pool_fen(campaign_id),
        open=utcnow() >= round_.opens_at,
        form=form,
        can_change=current_user.role in MONEY,
    )


def _figures_json(f: services.Figures) -> dict:
    return {
        "issued": f.issued,
        "claimed": f.claimed,
        "redeemed": f.redeemed,
        "redemption_rate": f.rate,
        "order_fen": f.order_fen,
        "redeemed_fen": f.redeemed_fen,
        "refunded_fen": f.refunded_fen,
        "merchants": f.merchants,
        "leverage": f.leverage,
    }


@api.get("/dashboard")
@role_required(*READ)
def dashboard_json():
    """The dashboard's figures as JSON, for the console's own scripts and the auditors' tools."""
    campaign, _ = _campaign_choice()
    if campaign is None:
        abort(404)
    board = services.dashboard(campaign)
    return jsonify(
        campaign={"id": campaign.id, "code": campaign.code, "name": campaign.name},
        total=_figures_json(board.total),
        by_round={str(k): _figures_json(v) for k, v in board.by_round.items()},
        by_category={str(k): _figures_json(v) for k, v in board.by_category.items()},
        by_day={k: _figures_json(v) for k, v in board.by_day.items()},
        balances_fen={k: v for k, v in board.balances.items() if k != "budget"},
    )
