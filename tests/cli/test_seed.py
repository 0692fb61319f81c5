"""`seed-demo`: the Qian'an campaign of the plan, laid from today so that round 1 is open at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import time_machine

from server.extensions import db
from server.merchant import credit_code
from server.models import AdminUser, Coupon, Merchant, Round
from tests.helpers import auth


def test_seed_demo_lays_the_qianan_campaign_from_today(app, runner, client, make_resident):
    # 07:30 in Shanghai: before 09:00, round 1 still opens at once.
    with time_machine.travel(datetime(2026, 11, 22, 23, 30, tzinfo=UTC), tick=False):
        result = runner.invoke(args=["seed-demo"])
        assert result.exit_code == 0, result.output
        assert (
            "第1轮：2026-11-23T07:30:00+08:00 开抽，有效至 2026-11-28T00:00:00+08:00，投放 20450 张共 1570000 元"
            in result.output
        )
        assert "第2轮：2026-11-28T09:00:00+08:00 开抽" in result.output
        assert "第7轮：2026-12-23T09:00:00+08:00 开抽，有效至 2026-12-28T00:00:00+08:00" in result.output
        assert "管理员账号：admin  密码：" in result.output
        assert "商户 12 家" in result.output
        assert result.output.count("绑定码 ") == 12
        with app.app_context():
            assert db.session.execute(sa.select(sa.func.count(), sa.func.sum(Coupon.face_fen))).one() == (
                20450,
                157_000_000,
            )
            assert db.session.scalar(sa.select(sa.func.count()).select_from(Round)) == 7
            merchants = db.session.scalars(sa.select(Merchant)).all()
            assert len(merchants) == 12
            assert [[e.status for e in m.enrolments] for m in merchants] == [["approved"]] * 12
            assert all(credit_code.is_valid(m.credit_code) for m in merchants)
            # Contacts are fictitious, never the people printed in annex 2.
            assert all(m.contact_name.startswith("演示联系人") for m in merchants)
            assert not any(m.contact_phone in ("15834888686", "13630322799") for m in merchants)
            assert db.session.scalar(sa.select(AdminUser.role).where(AdminUser.username == "admin")) == "admin"
        _, token = make_resident()
        answer = client.post("/api/v1/draw", json={"category": "restaurant"}, headers=auth(token))
        assert answer.status_code == 200
        assert answer.get_json()["coupon"]["face_fen"] in (10000, 20000, 50000)
        assert client.get("/api/v1/categories/fuel/merchants").get_json()["items"][0]["name"]

    with time_machine.travel(datetime(2026, 11, 23, 2, 0, tzinfo=UTC) + timedelta(days=1), tick=False):
        again = runner.invoke(args=["seed-demo"])
        assert again.exit_code == 0
        assert "已存在，未重复创建" in again.output
        # The password and codes were shown once: a second run says how to get new ones.
        assert "admin reset-password admin" in again.output and "merchant code 商户编号" in again.output
        assert "用上面的" not in again.output
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(Coupon)) == 20450
