"""The on-site event's big screen in the console: the rotating QR and what is left."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from server.auth import screen
from tests.draw.test_event import ENDS, OPENS, fair


def test_the_screen_page_is_for_the_bureau_and_its_qr_opens_the_claim(app, console, make_campaign, clock):
    campaign_id, _ = fair(app, make_campaign)
    wheel_id = make_campaign()
    clock.move_to(OPENS + timedelta(hours=1))
    operator = console("operator")
    page = operator.get(f"/admin/campaigns/{campaign_id}/screen")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "现场领取专场消费券" in html and "每 30 秒更新" in html
    qr = operator.get(f"/admin/campaigns/{campaign_id}/screen.png")
    assert qr.status_code == 200 and qr.headers["Content-Type"] == "image/png"
    assert qr.headers["Cache-Control"] == "no-store" and qr.data.startswith(b"\x89PNG")
    figures = operator.get(f"/admin/campaigns/{campaign_id}/screen.json").get_json()
    assert figures == {
        "open": True,
        "tiers": [{"label": "20元", "remaining": 1000}, {"label": "10元", "remaining": 3000},
                  {"label": "5元", "remaining": 2000}],
    }  # fmt: skip
    assert console("auditor").get(f"/admin/campaigns/{campaign_id}/screen.png").status_code == 403
    assert operator.get(f"/admin/campaigns/{wheel_id}/screen").status_code == 404
    with app.app_context(), app.test_request_context():
        code = screen.code(campaign_id, OPENS + timedelta(hours=1))[0]
        url = screen.claim_url("https://huigou.example.cn/", "geermu-2026-fair", code)
    assert url == f"https://huigou.example.cn/h5/?campaign=geermu-2026-fair&screen={code}"


@pytest.mark.parametrize(
    ("moment", "shown", "open_"),
    [
        (OPENS - timedelta(days=1), "未开始", False),
        (OPENS + timedelta(hours=1), "进行中", True),
        (ENDS - timedelta(seconds=1), "进行中", True),
        (ENDS, "已结束", False),
        (ENDS + timedelta(days=120), "已结束", False),  # the fair imported long after it was held
    ],
)
def test_the_campaign_list_and_the_big_screen_say_the_same_of_an_imported_fair(
    app, console, clock, moment, shown, open_
):
    """The fair, imported through the console, is 进行中 on the campaigns page exactly when its
    screen is open for claims (campaign.snapshot.phase, one rule for both)."""
    from tests.admin.test_campaigns import upload

    clock.move_to(moment)
    admin = console("admin")
    assert "已导入活动" in upload(admin, "geermu-2026-fair.json", "import").get_data(as_text=True)
    page = admin.get("/admin/campaigns").get_data(as_text=True)
    standing = re.search(r'<b class="phase phase-(\w+)">([^<]+)</b>', page)
    assert standing.group(2) == shown
    figures = admin.get("/admin/campaigns/1/screen.json").get_json()
    assert figures["open"] is open_ and (standing.group(1) == "open") is open_
    assert sum(t["remaining"] for t in figures["tiers"]) == (6000 if open_ else 0)
    screen_page = admin.get("/admin/campaigns/1/screen").get_data(as_text=True)
    assert re.search(r"领券时间\s+2月6日 09:00 至 2月15日 24:00", screen_page)


def test_a_wheel_campaign_is_named_where_it_stands_round_by_round(app, make_account, make_campaign, clock):
    """campaign_doc: 7 rounds of 5 days from 2026-06-25 09:00, each valid 5 days; the list says
    which round is open, or when the next opens, and when a campaign is over."""
    from tests.helpers import T0, sign_in

    make_campaign()
    auditor = make_account("auditor")

    def standing() -> tuple[str, str]:
        client = app.test_client()  # signed in afresh at each moment (a session lasts 8 hours)
        sign_in(client, auditor)
        page = client.get("/admin/campaigns").get_data(as_text=True)
        found = re.search(r'<b class="phase phase-\w+">([^<]+)</b><br><span class="hint">([^<]+)</span>', page)
        return found.group(1), found.group(2)

    clock.move_to(T0 - timedelta(days=1))
    assert standing() == ("未开始", "第1轮将于 2026-06-25 09:00 开始领券")
    clock.move_to(T0)
    assert standing() == ("进行中", "第1轮领券中，至6月29日 24:00")
    clock.move_to(T0 + timedelta(days=5) - timedelta(hours=1))  # 08:00 of the 30th: round 2 at 09:00
    assert standing() == ("两轮之间", "第2轮将于 2026-06-30 09:00 开始领券")
    clock.move_to(T0 + timedelta(days=40))
    assert standing()[0] == "已结束"
