"""The operator's endpoints (API.md "Operations"): `/healthz` (the process answers), `/readyz`
(this host should take traffic) and `/metrics` (Prometheus text, for METRICS_TOKEN or the
METRICS_ALLOW addresses). None needs a sign-in, none is rate-limited, and the request log
writes them at DEBUG (core/requestlog.py)."""

from __future__ import annotations

import hmac
import ipaddress

import sqlalchemy as sa
from flask import abort, current_app, jsonify, request
from prometheus_client.core import GaugeMetricFamily

from ..auth import tokens
from ..core import metrics, ready
from ..core.db import rollback_quietly
from ..pool import ledger, rollup
from . import bp


@bp.get("/healthz")
def healthz():
    """The process answers (API.md): for the load balancer and systemd; no database touched, so a
    database restart does not take every host out of the pool at once."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Whether this host should take traffic (API.md): the database answering with its migrations
    at head, and Redis when configured; 503 naming what fails, for the load balancer."""
    parts = ready.failing()
    if parts:
        return jsonify(status="unready", failing=parts), 503
    return jsonify(status="ready")


@bp.get("/metrics")
def scrape():
    """Requests, draws, redemptions, SMS and jobs (every worker's), and the pool's balances; 404
    to whoever is neither holding METRICS_TOKEN nor at a METRICS_ALLOW address."""
    if not _may_scrape():
        abort(404)
    body, headers = metrics.exposition([PoolBalances()])
    return body, 200, headers


def _may_scrape() -> bool:
    """METRICS_TOKEN as the bearer token, or the client's address in METRICS_ALLOW (loopback by default)."""
    token = current_app.config.get("METRICS_TOKEN")
    presented = tokens.presented()
    if token and presented and hmac.compare_digest(presented.encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in current_app.config["METRICS_NETWORKS"])


class PoolBalances:
    """Each campaign's accounts, read at the scrape from the stored hourly figures (not the ledger's
    rows), with the hour they run to."""

    def collect(self):
        readable = GaugeMetricFamily(
            "huigou_pool_figures_readable", "1 when the scrape could read the stored figures from the database"
        )
        try:
            stored = rollup.stored_balances()
        except sa.exc.SQLAlchemyError as error:  # the database out of reach: the other figures still count
            rollback_quietly()
            current_app.logger.warning("metrics: stored figures unreadable: %s", error)
            readable.add_metric([], 0)
            yield readable
            return
        readable.add_metric([], 1)
        yield readable
        balance = GaugeMetricFamily(
            "huigou_pool_balance_fen",
            "A campaign's ledger accounts in fen (pool, stock, claimed, redeemed...), through the last stored hour",
            labels=["campaign", "account"],
        )
        for code, accounts in sorted(stored.fen.items()):
            for account in ledger.ACCOUNTS:
                balance.add_metric([code, account], accounts.get(account, 0))
        yield balance
        if stored.through is not None:
            through = GaugeMetricFamily(
                "huigou_pool_figures_through_timestamp_seconds",
                "The end of the last hour whose figures are stored (the balances run to it)",
            )
            through.add_metric([], stored.through.timestamp())
            yield through
