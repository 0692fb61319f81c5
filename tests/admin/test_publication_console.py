"""Publishing a campaign's results from the console: an admin's act, audited, and undone the
same way; the campaigns page links every public campaign to its page."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.admin import audit
from server.extensions import db
from server.models import AuditEntry, Campaign
from tests.helpers import csrf_token
from tests.public.test_publication import ENDED

PENDING = "结果将于活动结束后公示"


def campaign_row(app) -> Campaign:
    with app.app_context():
        campaign = db.session.scalar(sa.select(Campaign))
        db.session.expunge(campaign)
        return campaign


def act(client, campaign_id: int, action: str):
    token = csrf_token(client.get("/admin/campaigns").get_data(as_text=True))
    return client.post(f"/admin/campaigns/{campaign_id}/publication/{action}", data={"csrf_token": token})


def audit_actions(app) -> list[tuple[str, str, str | None, str | None]]:
    with app.app_context():
        return [
            (e.action, e.admin_name, e.target_type, e.target_id)
            for e in db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action.like("campaign_%")))
        ]


def test_an_admin_publishes_and_withdraws_the_results_each_audited(app, client, console, make_campaign, clock):
    campaign_id = make_campaign()
    clock.move_to(ENDED - timedelta(hours=2))  # the coupons are still good: too early to publish
    admin = console("admin")
    act(admin, campaign_id, "publish")
    assert "活动结束后才能公示结果" in admin.get("/admin/campaigns").get_data(as_text=True)
    assert campaign_row(app).published_at is None and audit_actions(app) == []
    clock.move_to(ENDED)
    page = admin.get("/admin/campaigns").get_data(as_text=True)
    assert 'href="/public/test-campaign"' in page and "公示结果" in page and "结果未公示" in page
    assert PENDING in client.get("/public/test-campaign").get_data(as_text=True)

    answer = act(admin, campaign_id, "publish")
    assert answer.status_code == 302
    assert campaign_row(app).published_at is not None
    followed = admin.get("/admin/campaigns").get_data(as_text=True)
    assert "已公示活动结果" in followed and "撤回公示" in followed and "已公示（2026-07-30 01:00）" in followed
    public = client.get("/public/test-campaign").get_data(as_text=True)
    assert PENDING not in public and "资金使用情况" in public
    assert audit_actions(app) == [("campaign_publish", "admin-user", "campaigns", str(campaign_id))]

    # Publishing twice changes nothing and says so.
    act(admin, campaign_id, "publish")
    assert "结果已经公示" in admin.get("/admin/campaigns").get_data(as_text=True)
    assert len(audit_actions(app)) == 1

    assert act(admin, campaign_id, "withdraw").status_code == 302
    assert campaign_row(app).published_at is None
    assert PENDING in client.get("/public/test-campaign").get_data(as_text=True)
    assert [a[0] for a in audit_actions(app)] == ["campaign_publish", "campaign_unpublish"]
    with app.app_context():
        withdrawn = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "campaign_unpublish"))
        assert withdrawn.before["published_at"].startswith("2026-07-29T17:00")
        assert withdrawn.after == {"published_at": None}
    log = admin.get("/admin/audit").get_data(as_text=True)
    assert all(audit.ACTION_NAMES.get(a, a) in log for a in ("campaign_publish", "campaign_unpublish"))


@pytest.mark.parametrize("role", ["auditor", "operator"])
def test_only_an_admin_may_publish(app, console, make_campaign, clock, role):
    campaign_id = make_campaign()
    client = console(role)
    page = client.get("/admin/campaigns").get_data(as_text=True)
    assert 'href="/public/test-campaign"' in page  # everyone sees the link
    assert "公示结果" not in page  # but no button
    for action in ("publish", "withdraw"):
        assert act(client, campaign_id, action).status_code == 403
    assert campaign_row(app).published_at is None
    assert audit_actions(app) == []


def test_a_publication_without_the_form_token_changes_nothing(app, console, make_campaign, clock):
    campaign_id = make_campaign()
    answer = console("admin").post(f"/admin/campaigns/{campaign_id}/publication/publish")
    assert answer.status_code == 400
    assert campaign_row(app).published_at is None
    assert audit_actions(app) == []


def test_unknown_campaigns_and_actions_are_not_found(app, console, make_campaign, clock):
    campaign_id = make_campaign()
    admin = console("admin")
    assert act(admin, campaign_id + 1, "publish").status_code == 404
    assert act(admin, campaign_id, "shout").status_code == 404


def test_a_draft_is_neither_linked_nor_publishable(app, console, make_campaign, clock):
    campaign_id = make_campaign()
    with app.app_context():
        db.session.execute(sa.update(Campaign).values(status="draft"))
        db.session.commit()
    admin = console("admin")
    page = admin.get("/admin/campaigns").get_data(as_text=True)
    assert "/public/test-campaign" not in page and "草稿不公开" in page
    act(admin, campaign_id, "publish")
    assert "草稿活动不公开，不能公示结果" in admin.get("/admin/campaigns").get_data(as_text=True)
    assert campaign_row(app).published_at is None
