"""One JSON line per request, and the request's id (API.md "Operations", `X-Request-Id`).

The id is the load balancer's when it sends a sane one (nginx's `$request_id`), else a new one; it
is returned in `X-Request-Id` on every answer, errors included, and heads the log of a crash, so a
resident's screenshot, the nginx log and the app's log meet on it.

A line holds the time, the id, the method, the route (the rule, `/api/v1/merchant/redemptions/<id:id>`,
never the path with its values), the status, the duration, who asked (`resident:12`, `staff:3`,
`admin:1`, when known) and the refusal's code: never a token, an SMS code, a phone or a body. The
probes and the scrape are logged at DEBUG, so a load balancer polling every second does not fill
the log. The figures of core/metrics.py are counted in the same hook.

python-json-logger writes the lines on stderr (gunicorn hands them to journald); REQUEST_LOG=false
turns the lines off (the figures stay).
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

from flask import Flask, g, request
from pythonjsonlogger.json import JsonFormatter

from . import metrics

log = logging.getLogger("huigou.request")

HEADER = "X-Request-Id"
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")
QUIET = frozenset({"/healthz", "/readyz", "/metrics"})


def actor(here) -> str | None:
    """Who asked, when the request made it known: a bearer verified (auth/tokens.py) or a console
    account already loaded by Flask-Login (never loaded here: that would cost a query)."""
    known = getattr(here, "actor", None)
    if known:
        return known
    user = getattr(here, "_login_user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return f"admin:{user.id}"
    return None


class _Stderr(logging.StreamHandler):
    """stderr as it is when a line is written (a test's capture, gunicorn's), not as it was."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _configure_logger() -> None:
    if any(isinstance(handler, _Stderr) for handler in log.handlers):
        return  # a second app in this process (the tests make many)
    handler = _Stderr()
    handler.setFormatter(JsonFormatter("%(message)s", timestamp="time"))  # time: ISO 8601, UTC
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _write(level: int, fields: dict) -> None:
    """The line, through the logger's handlers: a record made here rather than by `Logger.log`,
    which would look up the caller's file and line on every request for nothing."""
    record = logging.LogRecord(log.name, level, __file__, 0, "request", None, None)
    record.__dict__.update(fields)
    log.handle(record)


def init_app(app: Flask) -> None:
    """Register first: the id and the clock start before any other hook can refuse the request.

    The hooks read the request and `g` through their objects, not the proxies: they run on every
    request, the draw's included (their whole cost is in the README's benchmarks)."""
    lines = app.config.get("REQUEST_LOG", True)
    if lines:
        _configure_logger()

    @app.before_request
    def start():
        here = g._get_current_object()
        here.request_started = time.perf_counter()
        offered = request.environ.get("HTTP_X_REQUEST_ID")
        here.request_id = offered if offered and SANE_ID.fullmatch(offered) else uuid.uuid4().hex

    @app.after_request
    def finish(response):
        here, asked = g._get_current_object(), request._get_current_object()
        started = getattr(here, "request_started", None)
        if started is None:  # a hook before ours answered (none should): still say the id
            here.request_id = uuid.uuid4().hex
            started = time.perf_counter()
        seconds = time.perf_counter() - started
        response.headers[HEADER] = here.request_id
        status = response.status_code
        error = getattr(here, "error_code", None)
        metrics.observe_request(asked.endpoint or "unmatched", asked.method, status, seconds)
        metrics.record_outcome(here, status, error)
        if lines:
            level = logging.DEBUG if asked.path in QUIET else logging.INFO
            if log.isEnabledFor(level):
                rule = asked.url_rule
                fields = {
                    "request_id": here.request_id,
                    "method": asked.method,
                    "route": rule.rule if rule is not None else None,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                    "actor": actor(here),
                }
                if error:
                    fields["error"] = error
                _write(level, fields)
        return response
