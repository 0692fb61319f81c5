"""What an operator reads (API.md "Operations"): `GET /metrics` for those allowed, its figures
moving with what residents, tills and jobs do, across processes; one JSON line per request with
its id, and never a token, a code or a phone in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from server.extensions import db
from server.models import Campaign
from server.pool import jobs, ledger, rollup
from tests.helpers import ROOT, T0, auth, paycode, redeem


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(answer) -> dict[tuple[str, tuple], float]:
    """The samples of a scrape, by name and sorted labels."""
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for s in family.samples
    }


# ---------------------------------------------------------------- who may read /metrics


def test_metrics_answer_loopback_and_the_token_and_nobody_else(app, client):
    app.config["METRICS_TOKEN"] = "scraper-secret-token"
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=outside).status_code == 404
    wrong = {"Authorization": "Bearer not-the-token"}
    assert client.get("/metrics", environ_base=outside, headers=wrong).status_code == 404
    right = {"Authorization": "Bearer scraper-secret-token"}
    assert client.get("/metrics", environ_base=outside, headers=right).status_code == 200


def test_metrics_allow_names_networks(app, client):
    from server.core import metrics

    app.config["METRICS_NETWORKS"] = metrics.networks("10.0.0.0/8, 192.0.2.7")
    assert client.get("/metrics").status_code == 404  # loopback is no longer listed
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.20.30.40"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.8"}).status_code == 404


# ---------------------------------------------------------------- the figures move


def test_requests_draws_and_redemptions_are_counted_by_what_they_answered(
    client, make_campaign, make_resident, make_till, clock
):
    make_campaign()
    _, token = make_resident()
    _, staff = make_till("hotel")
    won = ("huigou_draws_total", {"campaign": "test-campaign", "category": "hotel", "outcome": "won"})
    twice = ("huigou_draws_total", {"campaign": "test-campaign", "category": "hotel", "outcome": "ALREADY_DRAWN"})
    ok = ("huigou_redemptions_total", {"outcome": "ok"})
    used = ("huigou_redemptions_total", {"outcome": "COUPON_USED"})
    answered = ("huigou_http_requests_total", {"endpoint": "draw.draw", "method": "POST", "status": "200"})
    timed = ("huigou_http_request_duration_seconds_count", {"endpoint": "draw.draw"})
    before = {name + repr(labels): sample(name, **labels) for name, labels in (won, twice, ok, used, answered, timed)}

    coupon = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).get_json()["coupon"]
    assert client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).status_code == 409
    code = paycode(client, token, coupon["id"])
    assert redeem(client, staff, code, coupon["threshold_fen"]).status_code == 200
    assert redeem(client, staff, code, coupon["threshold_fen"]).status_code == 409

    def moved(metric):
        name, labels = metric
        return sample(name, **labels) - before[name + repr(labels)]

    assert [moved(m) for m in (won, twice, ok, used, answered, timed)] == [1, 1, 1, 1, 1, 2]
    # An unknown category is counted as the refusal it is, under no category of the request's making.
    client.post("/api/v1/draw", json={"category": "<script>"}, headers=auth(token))
    assert not [s for s in REGISTRY.collect() for x in s.samples if x.labels.get("category") == "<script>"]


def test_sms_sent_and_failed_are_counted(app, client, clock, monkeypatch):
    sent = sample("huigou_sms_total", purpose="bind", result="sent")
    failed = sample("huigou_sms_total", purpose="bind", result="failed")
    assert client.post("/api/v1/auth/sms", json={"phone": "13912345678"}).status_code == 200
    gateway = app.extensions["huigou.sms"]

    def broken(*_args):
        from server.core.errors import SmsSendFailed

        raise SmsSendFailed()

    monkeypatch.setattr(gateway, "send_code", broken)
    assert client.post("/api/v1/auth/sms", json={"phone": "13912345679"}).status_code >= 500
    assert sample("huigou_sms_total", purpose="bind", result="sent") - sent == 1
    assert sample("huigou_sms_total", purpose="bind", result="failed") - failed == 1


def test_job_runs_failures_and_the_leader_are_counted(app, monkeypatch):
    job = jobs.JOBS[0]
    ok = sample("huigou_scheduler_job_runs_total", job=job.name, result="ok")
    leader = jobs.Leader(app)
    jobs.run_job(app, job, leader)
    assert sample("huigou_scheduler_job_runs_total", job=job.name, result="ok") - ok == 1
    assert sample("huigou_scheduler_leader") == 1

    def broken(_now):
        raise RuntimeError("the job broke")

    failing = jobs.Job(job.name, broken, job.every_s, job.description)
    failed = sample("huigou_scheduler_job_runs_total", job=job.name, result="failed")
    with pytest.raises(RuntimeError):
        jobs.run_job(app, failing, leader)
    assert sample("huigou_scheduler_job_runs_total", job=job.name, result="failed") - failed == 1
    leader.release()
    assert sample("huigou_scheduler_leader") == 0


def test_pool_balances_come_from_the_stored_hours(app, client, make_campaign, make_resident, clock):
    campaign_id = make_campaign()
    for _ in range(3):
        _, token = make_resident()
        assert client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).status_code == 200
    before = scraped(client.get("/metrics"))
    assert not [key for key in before if key[0] == "huigou_pool_balance_fen"]  # no hour stored yet

    with app.app_context():
        assert rollup.close_hours(T0 + timedelta(hours=2)) > 0
        db.session.commit()
        books = ledger.verify(db.session.get(Campaign, campaign_id)).totals
    after = scraped(client.get("/metrics"))
    for account in ("pool", "stock", "claimed", "redeemed"):
        assert after["huigou_pool_balance_fen", (("account", account), ("campaign", "test-campaign"))] == books[account]
    through = after["huigou_pool_figures_through_timestamp_seconds", ()]
    assert through > T0.timestamp()


def test_figures_add_up_across_processes(tmp_path):
    """gunicorn's workers are processes: with PROMETHEUS_MULTIPROC_DIR each writes its own figures
    and a scrape in any of them adds all of them up."""
    script = (
        "import sys\n"
        "from server import create_app\n"
        "app = create_app({'TESTING': True, 'SECRET_KEY': 'k', 'SQLALCHEMY_DATABASE_URI': 'sqlite://'})\n"
        "client = app.test_client()\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    client.get('/healthz')\n"
        "if sys.argv[2] == 'scrape':\n"
        "    sys.stdout.write(client.get('/metrics').get_data(as_text=True))\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", script, str(count), "-"], check=True, cwd=ROOT, env=env)
    text = subprocess.run(
        [sys.executable, "-c", script, "0", "scrape"], check=True, cwd=ROOT, env=env, capture_output=True, text=True
    ).stdout
    values = {
        (s.name, s.labels.get("endpoint"), s.labels.get("status")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert values["huigou_http_requests_total", "public.healthz", "200"] == 7


# ---------------------------------------------------------------- the request log


def log_lines(captured: str) -> list[dict]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


def test_one_json_line_per_request_with_its_id_and_who_asked(client, make_campaign, make_resident, clock, capsys):
    make_campaign()
    resident_id, token = make_resident()
    capsys.readouterr()
    answer = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token))
    again = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token))
    first, second = log_lines(capsys.readouterr().err)
    assert first["request_id"] == answer.headers["X-Request-Id"] and len(first["request_id"]) == 32
    assert first | {"time": None, "duration_ms": None} == {
        "time": None,
        "message": "request",
        "request_id": answer.headers["X-Request-Id"],
        "method": "POST",
        "route": "/api/v1/draw",
        "status": 200,
        "duration_ms": None,
        "actor": f"resident:{resident_id}",
    }
    assert first["duration_ms"] >= 0 and first["time"].startswith("2026-06-25")
    assert (second["status"], second["error"]) == (409, "ALREADY_DRAWN")
    assert second["request_id"] == again.headers["X-Request-Id"] != first["request_id"]


def test_the_load_balancers_request_id_is_kept_and_a_strange_one_replaced(client, capsys):
    kept = client.get("/api/v1/campaigns", headers={"X-Request-Id": "a1b2c3d4e5f60718293a4b5c6d7e8f90"})
    assert kept.headers["X-Request-Id"] == "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    strange = client.get("/api/v1/campaigns", headers={"X-Request-Id": "x\u202e; DROP TABLE"})
    assert strange.headers["X-Request-Id"] != "x\u202e; DROP TABLE" and len(strange.headers["X-Request-Id"]) == 32
    ids = [line["request_id"] for line in log_lines(capsys.readouterr().err)]
    assert ids == ["a1b2c3d4e5f60718293a4b5c6d7e8f90", strange.headers["X-Request-Id"]]


def test_errors_carry_the_id_and_the_log_never_holds_tokens_codes_or_phones(client, clock, capsys):
    phone = "13912345678"
    login = client.post("/api/v1/auth/wechat", json={"code": "wx-1"}).get_json()
    client.post("/api/v1/auth/sms", json={"phone": phone})
    code = client.get(f"/api/v1/dev/sms-outbox?phone={phone}").get_json()["items"][0]["code"]
    wrong = "000000" if code != "000000" else "111111"
    body = {"name": "张三", "phone": phone, "sms_code": wrong}
    refused = client.post("/api/v1/auth/bind", json=body, headers=auth(login["token"]))
    assert refused.status_code == 400 and refused.headers["X-Request-Id"]
    bound = client.post("/api/v1/auth/bind", json=body | {"sms_code": code}, headers=auth(login["token"]))
    assert bound.status_code == 200
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.headers["X-Request-Id"]
    captured = capsys.readouterr().err
    lines = log_lines(captured)
    assert [line["status"] for line in lines][-3:] == [400, 200, 404]
    assert lines[-3]["request_id"] == refused.headers["X-Request-Id"]
    assert lines[-1] | {"time": None, "duration_ms": None, "request_id": None} == {
        "time": None,
        "message": "request",
        "request_id": None,
        "method": "GET",
        "route": None,
        "status": 404,
        "duration_ms": None,
        "actor": None,
        "error": "NOT_FOUND",
    }
    for secret in (phone, phone[-4:] + '"', code, login["token"], bound.get_json()["token"], "张三"):
        assert secret not in captured


def test_probes_and_the_scrape_are_not_logged_at_info(client, capsys):
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).headers["X-Request-Id"]
    assert log_lines(capsys.readouterr().err) == []


def test_metrics_still_answer_when_the_database_does_not():
    """During a database outage the figures are what an operator most needs: the scrape answers,
    saying that the stored figures could not be read."""
    from server import create_app

    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": "postgresql://nobody@127.0.0.1:1/nothing", "SECRET_KEY": "k" * 40, "TESTING": True}
    )
    samples = scraped(app.test_client().get("/metrics"))
    assert samples["huigou_pool_figures_readable", ()] == 0
    assert not [key for key in samples if key[0] == "huigou_pool_balance_fen"]
