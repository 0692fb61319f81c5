"""Tamper evidence: claims and redemptions sealed into a hash chain that `audit verify` checks."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.extensions import db
from server.models import Coupon, Draw, Redemption, Seal
from server.pool import jobs as scheduler
from tests.helpers import T0, auth, claims_and_redemptions


@pytest.fixture
def history(client, make_campaign, make_resident, make_till, clock):
    """Five claims and two redemptions at 09:00, then the clock a minute later."""
    return claims_and_redemptions(client, make_campaign, make_resident, make_till, clock)


def verify(runner):
    return runner.invoke(args=["audit", "verify"])


def sql(app, statement, **params):
    with app.app_context():
        db.session.execute(sa.text(statement), params)
        db.session.commit()


def test_sealed_records_verify_and_the_chain_runs_in_time_order(app, runner, history):
    claims, redemptions = history
    assert runner.invoke(args=["audit", "seal"]).output == "已封存 7 条记录\n"
    result = verify(runner)
    assert result.exit_code == 0, result.output
    assert "已封存 7 条，待封存 0 条" in result.output
    assert "哈希链完整" in result.output
    with app.app_context():
        links = db.session.execute(sa.select(Seal.position, Seal.kind, Seal.record_id).order_by(Seal.position)).all()
    assert [p for p, _, _ in links] == list(range(1, 8))
    assert {(k, r) for _, k, r in links} == {("claim", c) for c in claims} | {("redemption", r) for r in redemptions}
    # A second run seals nothing more.
    assert runner.invoke(args=["audit", "seal"]).output == "已封存 0 条记录\n"


def test_a_changed_redemption_is_named_as_the_first_broken_link(app, runner, history):
    _, redemptions = history
    runner.invoke(args=["audit", "seal"])
    sql(app, "UPDATE redemptions SET spend_fen = spend_fen + 100 WHERE id = :id", id=redemptions[1])
    sql(app, "UPDATE coupons SET face_fen = 1 WHERE id = (SELECT coupon_id FROM redemptions WHERE id = :id)",
        id=redemptions[0])  # fmt: skip
    result = verify(runner)
    assert result.exit_code == 1
    with app.app_context():
        position = {(k, r): p for p, k, r in db.session.execute(sa.select(Seal.position, Seal.kind, Seal.record_id))}
        coupon_of_first = db.session.scalar(sa.select(Redemption.coupon_id).where(Redemption.id == redemptions[0]))
    broken = sorted([position["claim", coupon_of_first], position["redemption", redemptions[1]]])
    lines = [line.strip() for line in result.output.splitlines() if line.strip().startswith("✗")]
    assert [line.split("（")[0] for line in lines] == [f"✗ 第{p}环" for p in broken]
    assert all("已被改动" in line for line in lines)
    assert "哈希链被破坏：2 处" in result.output


def test_a_deleted_record_and_a_deleted_link_are_both_named(app, runner, history):
    claims, redemptions = history
    runner.invoke(args=["audit", "seal"])
    sql(app, "DELETE FROM redemptions WHERE id = :id", id=redemptions[0])
    sql(app, "DELETE FROM seals WHERE kind = 'claim' AND record_id = :id", id=claims[4])
    output = verify(runner).output
    assert f"核销记录 #{redemptions[0]}）：记录已被删除" in output
    assert "缺失：封存记录被删除" in output
    assert output.count("✗") == 2  # the link after the gap is not blamed for it


def test_a_link_rewritten_to_hide_a_change_breaks_the_next_one(app, runner, history):
    runner.invoke(args=["audit", "seal"])
    with app.app_context():
        first = db.session.scalar(sa.select(Seal).where(Seal.position == 3))
        kind, record_id = first.kind, first.record_id
    table = "coupons" if kind == "claim" else "redemptions"
    column = "face_fen"
    sql(app, f"UPDATE {table} SET {column} = {column} + 1 WHERE id = :id", id=record_id)
    sql(app, "UPDATE seals SET digest = :d WHERE position = 3", d="0" * 64)
    output = verify(runner).output
    assert "✗ 第3环" in output and "✗ 第4环" in output


def test_a_record_written_in_after_sealing_is_reported(app, client, runner, history, make_resident, clock):
    runner.invoke(args=["audit", "seal"])
    # An hour later a real claim is sealed, moving the chain's head to 10:00.
    clock.move_to(T0 + timedelta(hours=1))
    _, token = make_resident()
    assert client.post("/api/v1/draw", json={"category": "fuel"}, headers=auth(token)).status_code == 200
    clock.move_to(T0 + timedelta(hours=1, minutes=1))
    runner.invoke(args=["audit", "seal"])
    # Someone with write access to the database hands a stock coupon to a resident "at 09:30".
    forged_at = T0 + timedelta(minutes=30)
    resident_id, _ = make_resident()
    with app.app_context():
        stock = db.session.scalar(sa.select(Coupon).where(Coupon.state == "stock").limit(1))
        draw_id = db.session.execute(
            sa.insert(Draw).values(
                resident_id=resident_id,
                round_id=stock.round_id,
                category_id=stock.category_id,
                outcome="won",
                created_at=forged_at,
            )
        ).inserted_primary_key[0]
        stock.state, stock.resident_id, stock.draw_id = "claimed", resident_id, draw_id
        stock.claimed_at, stock.valid_until = forged_at, T0 + timedelta(days=5)
        forged = stock.id
        db.session.commit()
    # The job's next run does not pick it up: it is older than the window behind the head.
    runner.invoke(args=["audit", "seal"])
    result = verify(runner)
    assert result.exit_code == 1
    assert f"领取记录 #{forged}（2026-06-25T01:30:00+00:00）未被封存：可能是事后插入的记录" in result.output


def test_the_scheduler_seals_only_what_has_committed_a_while_ago(app, client, history, make_resident, clock):
    _, token = make_resident()
    clock.move_to(T0 + timedelta(minutes=1, seconds=10))
    assert client.post("/api/v1/draw", json={"category": "fuel"}, headers=auth(token)).status_code == 200
    result = scheduler.run_all(app)
    assert result["seal"] == {"1": 7}  # the claim of 10 s ago waits for the next run
    clock.move_to(T0 + timedelta(minutes=2))
    assert scheduler.run_all(app)["seal"] == {"1": 1}


def test_another_key_breaks_every_link(app, runner, history):
    runner.invoke(args=["audit", "seal"])
    app.config["CHAIN_KEY"] = "someone-else"
    output = verify(runner).output
    assert output.count("已被改动") == 7


def head_of(output: str) -> str:
    return re.search(r"链尾 (\d+:[0-9a-f]{64})", output).group(1)


def test_a_chain_cut_back_and_sealed_again_is_caught(app, runner, history, clock):
    claims, _ = history
    runner.invoke(args=["audit", "seal"])
    noted = head_of(verify(runner).output)
    # An hour later someone deletes the links, changes a claim, and lets the job seal again.
    clock.move_to(T0 + timedelta(hours=1))
    sql(app, "DELETE FROM seals")
    sql(app, "UPDATE coupons SET resident_id = resident_id WHERE id = :id", id=claims[0])
    runner.invoke(args=["audit", "seal"])
    result = verify(runner)
    assert result.exit_code == 1
    assert result.output.count("分钟后才封存") == 7  # every link sealed an hour after its record
    # And the head noted an hour ago no longer matches.
    again = runner.invoke(args=["audit", "verify", "--campaign", "test-campaign", "--expect", noted])
    assert "摘要与此前记下的不符" in again.output


def test_a_chain_cut_short_is_caught_by_the_noted_head(app, runner, history):
    runner.invoke(args=["audit", "seal"])
    noted = head_of(verify(runner).output)
    assert runner.invoke(args=["audit", "verify", "--campaign", "test-campaign", "--expect", noted]).exit_code == 0
    sql(app, "DELETE FROM seals WHERE position = 7")
    result = runner.invoke(args=["audit", "verify", "--campaign", "test-campaign", "--expect", noted])
    assert result.exit_code == 1 and "第7环已不存在：哈希链被截短" in result.output
    bad = runner.invoke(args=["audit", "verify", "--expect", noted])
    assert bad.exit_code == 2 and "--campaign" in bad.output


def test_a_backlog_is_sealed_run_by_run_in_time_order(app, runner, history, monkeypatch):
    from server.pool import chain

    monkeypatch.setattr(chain, "RUN_LIMIT", 2)
    outputs = [runner.invoke(args=["audit", "seal"]).output for _ in range(6)]
    assert sum(int(re.search(r"(\d+)", o).group(1)) for o in outputs) == 7
    with app.app_context():
        times = db.session.scalars(sa.select(Seal.record_at).order_by(Seal.position)).all()
    assert times == sorted(times)
    assert verify(runner).exit_code == 0
