"""What an operator watches during the crowd, in Prometheus' text format (API.md "Operations",
`GET /metrics`), with prometheus_client.

Under gunicorn every worker is a process of its own: with `PROMETHEUS_MULTIPROC_DIR` set (the
systemd unit sets it, deploy/gunicorn.conf.py marks dead workers) each process writes its figures
to files there and a scrape of any worker adds them all up; without it (development, tests) the
figures are the one process's.

Labels are only values the house chose (an endpoint's name, a campaign's or category's code, a
refusal's code), never what a request sent, so no scrape can be made to grow without bound, and
no figure names a person. The business outcomes are counted when the answer is made
(`record_outcome`, from the request log's hook), after the commit: a draw that failed to commit is
counted as what it answered, not as won.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from flask import Flask, g
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Latency buckets around what matters at the till and the wheel: the 150 ms target, a second.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "huigou_http_requests_total", "Answered requests by endpoint, method and status", ["endpoint", "method", "status"]
)
LATENCY = Histogram(
    "huigou_http_request_duration_seconds",
    "Time from the request's arrival in the app to its answer, by endpoint",
    ["endpoint"],
    buckets=BUCKETS,
)
DRAWS = Counter(
    "huigou_draws_total",
    "Draws and grabs by campaign, category and outcome (won, thanks, or the refusal's code: SOLD_OUT...)",
    ["campaign", "category", "outcome"],
)
REDEMPTIONS = Counter(
    "huigou_redemptions_total", "Redemptions at the till by outcome (ok, or the refusal's code)", ["outcome"]
)
SMS = Counter("huigou_sms_total", "SMS codes sent by purpose and result (sent, failed)", ["purpose", "result"])
JOB_RUNS = Counter("huigou_scheduler_job_runs_total", "Scheduler job runs by result (ok, failed)", ["job", "result"])
JOB_SECONDS = Histogram(
    "huigou_scheduler_job_duration_seconds", "Scheduler job run time", ["job"], buckets=(0.01, 0.1, 1, 10, 60, 300)
)
# livesum: the processes alive that lead (a process that dies stops counting); 1 across a
# deployment's scrapes is the one leader.
LEADER = Gauge("huigou_scheduler_leader", "1 in the process holding the scheduler's lock", multiprocess_mode="livesum")


# ---------------------------------------------------------------- outcomes, counted with the answer


@dataclass
class Outcome:
    """What this request is about, to be counted once its answer is known."""

    counter: Counter
    success: str
    labels: dict[str, str] = field(default_factory=dict)


def outcome(counter: Counter, success: str, **labels: str) -> Outcome:
    """Count this request in `counter` when it answers: `success` for a 2xx, else its error code.
    Returns the record, whose labels the caller may narrow as it learns (the campaign, the category)."""
    noted = Outcome(counter, success, labels)
    g.huigou_outcome = noted
    return noted


def record_outcome(here, status: int, error_code: str | None) -> None:
    """Count the outcome noted on `here` (the request's `g`), if any, by its answer."""
    noted: Outcome | None = getattr(here, "huigou_outcome", None)
    if noted is not None:
        result = noted.success if status < 400 else (error_code or str(status))
        noted.counter.labels(**noted.labels, outcome=result).inc()


_children: dict[tuple[str, str, int], tuple] = {}


def observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    """Count and time an answer; each (endpoint, method, status)'s children looked up once."""
    key = (endpoint, method, status)
    children = _children.get(key)
    if children is None:
        children = _children[key] = (REQUESTS.labels(endpoint, method, str(status)), LATENCY.labels(endpoint))
    children[0].inc()
    children[1].observe(seconds)


# ---------------------------------------------------------------- the scrape


def exposition(collectors: Iterable[object] = ()) -> tuple[bytes, dict[str, str]]:
    """The scrape: every worker's figures (multiprocess mode) or this process's, then the
    collectors that read their figures at scrape time (the pool's balances)."""
    scraped = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(scraped)
        head = b""
    else:
        head = generate_latest(REGISTRY)
    for collector in collectors:
        scraped.register(collector)
    return head + generate_latest(scraped), {"Content-Type": CONTENT_TYPE_LATEST}


def networks(setting: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """METRICS_ALLOW's addresses and networks ("127.0.0.1,::1,10.0.0.0/8")."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in setting.split(",") if part.strip())


def init_app(app: Flask) -> None:
    app.config["METRICS_NETWORKS"] = networks(app.config.get("METRICS_ALLOW") or "")
