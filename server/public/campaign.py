"""A campaign's public page (公示, SPEC section 8), with no sign-in.

Before and during a campaign the page lists the participating merchants per category (name and
address only: never phones, contacts or credit codes) and the rounds. Once the bureau publishes
the results (admin/campaigns.py) it also shows what came of the money (campaign/results.py).
"""

from __future__ import annotations

from collections import defaultdict

from flask import abort, g, render_template

from ..campaign import results
from ..campaign.snapshot import phase
from ..core.money import yuan
from ..core.time import day, local, moment, utcnow
from . import bp

PUBLIC_CACHE_S = 60  # the figures change slowly; a proxy may keep the page a minute


def missing(status: int = 404):
    """The public pages' error page: not here (a 404), or not now."""
    if status >= 500:
        title, text = "页面暂时无法显示", "系统处理时出错，请稍后刷新重试。"
        if g.get("request_id"):  # the same id as in X-Request-Id and the log
            text += f"如需报告问题，请提供请求编号 {g.request_id}。"
    else:
        title, text = "找不到这个活动", "没有找到对应的消费券活动，或该活动尚未公开。请核对链接地址。"
    return render_template("public/missing.html", title=title, text=text), status


@bp.get("/public/<code>")
def campaign_page(code: str):
    """A campaign's public page: merchants per category, rounds, and the results once published."""
    campaign = results.public_campaign(code)
    if campaign is None:
        abort(404)
    now = utcnow()
    tiers: dict[int, list] = defaultdict(list)
    for tier in sorted(campaign.tiers, key=lambda t: (t.face_fen, t.threshold_fen)):
        tiers[tier.category_id].append(tier)
    response = render_template(
        "public/campaign.html",
        campaign=campaign,
        status=phase(campaign, now).name,
        categories=sorted(campaign.categories, key=lambda c: c.position),
        tiers=tiers,
        merchants=results.merchants_by_category(campaign),
        results=results.results(campaign) if campaign.published_at else None,
        generated_at=now,
        local=local,
        moment=moment,
        day=day,
        yuan=lambda fen: yuan(fen, grouped=True),
    )
    return response, 200, {"Cache-Control": f"public, max-age={PUBLIC_CACHE_S}"}
