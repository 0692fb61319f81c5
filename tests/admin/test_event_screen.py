"""The on-site event's big screen in the console: the rotating QR and what is left."""

from __future__ import annotations

from datetime import timedelta

from server.auth import screen
from tests.draw.test_event import OPENS, fair


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
