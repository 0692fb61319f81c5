"""Campaign files uploaded in the console are checked like `campaign check`; round quotas change
only for rounds not yet open, paid from the pool, and only by admins."""

from __future__ import annotations

import io
import re

import sqlalchemy as sa

from server.extensions import db
from server.models import AuditEntry, Campaign, LedgerEntry, Round
from tests.helpers import ROOT, csrf_token


def upload(client, name: str, intent: str):
    token = csrf_token(client.get("/admin/campaigns").get_data(as_text=True))
    data = {
        "csrf_token": token,
        "intent": intent,
        "file": (io.BytesIO((ROOT / "examples" / name).read_bytes()), name),
    }
    return client.post("/admin/campaigns", data=data, content_type="multipart/form-data", follow_redirects=True)


def test_the_annex_as_printed_is_refused_with_each_wrong_figure_and_its_cell(app, console):
    page = upload(console("admin"), "qianan-2022-annex1-as-printed.xlsx", "import").get_data(as_text=True)
    assert "发现 9 处问题，未导入" in page and "投放分配!" in page
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Campaign)) == 0


def test_a_clean_plan_is_checked_then_imported_and_audited(app, console):
    client = console("admin")
    assert "检查通过：惠购乾城" in upload(client, "qianan-2022.json", "check").get_data(as_text=True)
    page = upload(client, "qianan-2022.json", "import").get_data(as_text=True)
    assert "已导入活动「惠购乾城」（qianan-2022）" in page and "第7轮" in page
    with app.app_context():
        assert db.session.scalar(sa.select(AuditEntry.action).where(AuditEntry.action == "campaign_import"))


def test_only_admins_upload_plans(console):
    assert upload(console("operator"), "qianan-2022.json", "import").status_code == 403


def quota_form(client, path: str, quotas: dict[int, int]):
    token = csrf_token(client.get(path).get_data(as_text=True))
    data = {"csrf_token": token} | {f"tier-{tier}": str(n) for tier, n in quotas.items()}
    return client.post(path, data=data, follow_redirects=True)


def test_an_admin_sets_a_future_rounds_quota_within_the_pool(app, console, make_campaign, balanced, clock):
    campaign_id = make_campaign(budget_yuan=9500)  # the plan takes 9,000; 500 stay in the pool
    client = console("admin")
    with app.app_context():
        tier = next(t for t in db.session.get(Campaign, campaign_id).tiers if t.face_fen == 20000)
        tier_id = tier.id
    path = f"/admin/campaigns/{campaign_id}/rounds/2"
    assert "资金池现有 500 元" in client.get(path).get_data(as_text=True)
    refused = quota_form(client, path, {tier_id: 3}).get_data(as_text=True)
    assert "未调整：调增需要 600 元，资金池只有 500 元" in refused
    done = quota_form(client, path, {tier_id: 2}).get_data(as_text=True)
    assert "已调整：宾馆200元券 0→2张" in done and "资金池现有 100 元" in done
    assert balanced(campaign_id)["pool"] == 10000
    with app.app_context():
        entry = db.session.scalar(sa.select(LedgerEntry).where(LedgerEntry.kind == "adjust_up"))
        assert entry.actor == "admin:admin-user"
        assert db.session.scalar(sa.select(AuditEntry.after).where(AuditEntry.action == "round_quota")) == {
            str(tier_id): 2
        }
    # Round 1 is open: shown, not editable, and a forged post is refused in words.
    page = client.get(f"/admin/campaigns/{campaign_id}/rounds/1").get_data(as_text=True)
    assert "本轮已开始，只能查看" in page and f'name="tier-{tier_id}"' not in page
    answer = client.post(
        f"/admin/campaigns/{campaign_id}/rounds/1",
        data={"csrf_token": csrf_token(page), f"tier-{tier_id}": "20"},
        follow_redirects=True,
    )
    assert "第1轮已开始，只能调整尚未开始的轮次的配额" in answer.get_data(as_text=True)


def test_operators_and_auditors_only_read_quotas(app, console, make_campaign, clock):
    campaign_id = make_campaign()
    for role in ("operator", "auditor"):
        client = console(role)
        path = f"/admin/campaigns/{campaign_id}/rounds/2"
        page = client.get(path).get_data(as_text=True)
        assert "第2轮配额" in page and "保存配额" not in page
        assert client.post(path, data={"csrf_token": csrf_token(page)}).status_code == 403
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Round)) == 7


def test_the_campaign_list_shows_the_staged_release(console, make_campaign, clock):
    make_campaign(release=[{"seconds": 10, "percent": 50}, {"seconds": 180, "percent": 80}])
    page = console("auditor").get("/admin/campaigns").get_data(as_text=True)
    assert "开轮10秒内50%，开轮180秒内80%" in page


def test_the_upload_is_explained_in_words_not_in_commands(console):
    page = console("admin").get("/admin/campaigns").get_data(as_text=True)
    assert "任何一处有问题都不会导入" in page and "投放总额不超过总预算" in page and "仅检查" in page
    assert "flask --app" not in page and "<code>" not in page
    # The command line is named once, in the small print for technical staff.
    tech = re.search(r'<p class="hint tech">(.*?)</p>', page, re.S).group(1)
    assert tech.startswith("技术人员：") and page.count("campaign check") == 1
    assert "任何一处有问题都不会导入" not in console("auditor").get("/admin/campaigns").get_data(as_text=True)


def test_an_event_campaign_links_its_big_screen_for_those_who_may_open_it(app, console, make_campaign, clock):
    from tests.draw.test_event import fair

    fair_id, _ = fair(app, make_campaign)
    wheel_id = make_campaign()
    operator = console("operator")
    page = operator.get("/admin/campaigns").get_data(as_text=True)
    links = re.findall(r'href="(/admin/campaigns/\d+/screen)"[^>]*data-action="screen"', page)
    assert links == [f"/admin/campaigns/{fair_id}/screen"] and f"/admin/campaigns/{wheel_id}/screen" not in page
    assert operator.get(links[0]).status_code == 200
    auditor = console("auditor").get("/admin/campaigns").get_data(as_text=True)
    assert "现场活动：居民扫描大屏二维码领券" in auditor and 'data-action="screen"' not in auditor  # 403 for them
