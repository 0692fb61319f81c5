"""Two app hosts behind nginx, as deploy/ ships them, on PostgreSQL and Redis: a burst of draws and
redemptions through nginx while one host dies whole (master and workers), and the scheduler's leader
dies too.

What runs is the recipe itself: deploy/nginx/huigou.conf with only its placeholders made local (the
two hosts, local ports, a certificate of the test's own: `_site` below), gunicorn with
deploy/gunicorn.conf.py on two ports (PROXY_HOPS=1, rate limits on, counted in Redis), and
`flask scheduler run` twice. Afterwards:

- nothing oversold or lost: every draw a client was told it won is that resident's coupon and every
  coupon held was told (or its answer lost and the retry told ALREADY_DRAWN), no coupon redeemed
  twice (a second till's try is refused, whichever host it reaches), every redemption told stored
  and no other, and `flask ledger` balances;
- nginx answers in the API's envelope when a host dies with a request, and after that only the
  surviving host answers;
- the rate limits are shared: a limit of 5 answers 429 at the 6th request though nginx sent the
  six to both hosts in turn;
- the app records the client's address (a resident's binding address), neither nginx's nor a
  forged X-Forwarded-For;
- exactly one scheduler holds the leader's lock, and the standby takes it when the leader dies;
- and what the configuration promises at the edge: /metrics refused, probes for private addresses
  only, static files from nginx with the app's headers, bodies capped as the app caps them, the
  request's id shared with the app, plain HTTP sent to HTTPS.

Skipped unless TEST_DATABASE_URL names PostgreSQL, with nginx and Redis on this machine (in CI a
missing nginx fails: .ci/run installs it). It recreates a database of its own (`huigou_multihost`,
left behind for a look after a failure, as are the logs under the test's tmp_path) and empties
Redis database 14.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
import requests
from requests.adapters import HTTPAdapter
from sqlalchemy.engine import make_url

from bench.draw_burst import CATEGORIES, FLASK, ROOT, bind_residents, prepare, verify
from bench.redeem_burst import bind_staff
from server.auth.headers import HEADERS, POLICY
from server.core.errors import PayloadTooLarge
from server.pool.jobs import ADVISORY_KEY
from tests.helpers import ON_POSTGRES, PG_URL
from tests.system.test_faults import Burst, _free_port, _start_gunicorn, _stop

DATABASE = "huigou_multihost"
REDIS_URL = "redis://127.0.0.1:6379/14"  # this test's own (tests/auth uses 15)
# Each category's redemptions go to its merchants' tills, and the restaurant and the bookstore have
# one each: 50 residents bring the busiest till 45 redemptions and 10 refused second tries, under a
# till's 60 a minute and 20 refusals in 10 minutes (server/auth/limits.py), with room for retries.
RESIDENTS = 50
TAKEOVER_S = 40  # the standby tries the lock at each of its job runs, every 30 s (server/pool/jobs.py)
SHIPPED = ROOT / "deploy" / "nginx" / "huigou.conf"
REAL_CLIENT = "127.0.0.2"  # all of 127.0.0.0/8 is this machine: a client that is not nginx's address
FORGED = "1.2.3.4"
CI = os.environ.get("CI") == "true"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # nginx's, under the test's directory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.alone,
    pytest.mark.skipif(not ON_POSTGRES, reason="needs TEST_DATABASE_URL on PostgreSQL"),
]


# ---------------------------------------------------------------- what the test needs on the machine


def _nginx() -> str | None:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    return found if os.access(found, os.X_OK) else None


def _redis():
    import redis

    store = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        store.ping()
    except redis.RedisError:
        return None
    return store


def _certificate(tmp: Path) -> Path:
    """A self-signed certificate for 127.0.0.1, where the shipped file expects the real one."""
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed for the test's certificate")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(tmp / "privkey.pem"), "-out", str(tmp / "fullchain.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return tmp / "fullchain.pem"


# ---------------------------------------------------------------- nginx with the shipped configuration


def _site(tmp: Path, ports: dict[str, int]) -> str:
    """deploy/nginx/huigou.conf with its placeholders made local; nothing else is changed."""
    local = {
        "server 10.0.0.11:8000": f"server 127.0.0.1:{ports['a']}",
        "server 10.0.0.12:8000": f"server 127.0.0.1:{ports['b']}",
        "listen 443 ssl": f"listen 127.0.0.1:{ports['https']} ssl",
        "listen 80;": f"listen 127.0.0.1:{ports['http']};",
        "/etc/huigou/tls/": f"{tmp}/",
        "/opt/huigou/": f"{ROOT}/",
        "/var/log/nginx/": f"{tmp}/",
    }
    text = SHIPPED.read_text()
    for placeholder, value in local.items():
        assert placeholder in text, f"deploy/nginx/huigou.conf no longer has {placeholder!r}"
        text = text.replace(placeholder, value)
    return text


def _start_nginx(binary: str, tmp: Path, ports: dict[str, int]) -> subprocess.Popen:
    """nginx in the foreground, everything under tmp; the site included in an http block as
    Debian's nginx.conf includes conf.d/*.conf."""
    (tmp / "huigou.conf").write_text(_site(tmp, ports))
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers as root: they read tmp and the checkout
    (tmp / "nginx.conf").write_text(
        f"{user}worker_processes 1;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        "    default_type application/octet-stream;\n"
        "    sendfile on;\n"
        "    types_hash_max_size 2048;\n"
        "    access_log off;\n"
        + "".join(f"    {kind}_temp_path {tmp}/{kind};\n" for kind in TEMP_PATHS)
        + f"    include {tmp}/huigou.conf;\n"
        "}\n"
    )  # fmt: skip
    globals_ = f"daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx-error.log info;"
    check = subprocess.run([binary, "-t", "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", globals_],
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stderr
    return _spawn([binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", globals_], None, tmp / "nginx.out")


def _access_log(tmp: Path) -> list[dict]:
    """nginx's JSON lines (the shipped log_format)."""
    path = tmp / "huigou.access.log"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


class _FromAddress(HTTPAdapter):
    """Connections from a source address of the test's choosing."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, source_address=(self.address, 0), **kwargs)


# ---------------------------------------------------------------- processes


def _spawn(command: list[str], env: dict | None, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL to the process and its children (its own process group): a host's power cut."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _wait_for(url: str, seconds: float, procs: dict[str, subprocess.Popen], **kw) -> requests.Response:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        dead = [name for name, proc in procs.items() if proc.poll() is not None]
        assert not dead, f"{dead} exited before {url} answered: see the logs under the test's tmp_path"
        try:
            answer = requests.get(url, timeout=2, **kw)
            if answer.status_code == 200:
                return answer
        except requests.RequestException:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer 200 within {seconds} s")


def _lock_holders(dsn: str) -> list[tuple[str, bool]]:
    """(application name, granted) of every session holding or awaiting the scheduler's advisory
    lock in this database: PostgreSQL stores a bigint key as its high and low 32 bits."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            """SELECT a.application_name, l.granted FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database
                                                               WHERE datname = current_database())
                 AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1""",
            (ADVISORY_KEY >> 32, ADVISORY_KEY & 0xFFFFFFFF),
        ).fetchall()


def _scheduler_leader_figure(port: int) -> float | None:
    """`huigou_scheduler_leader` as a scheduler's own figures (SCHEDULER_METRICS) say it."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return None
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    return next((s.value for s in samples if s.name == "huigou_scheduler_leader"), None)


def _leader(dsn: str, seconds: float, among: set[str]) -> str:
    """The one scheduler holding the lock, once one does; never two at a time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        holders = _lock_holders(dsn)
        assert len(holders) <= 1 and all(granted for _, granted in holders), holders
        if holders and holders[0][0] in among:
            return holders[0][0]
        time.sleep(0.5)
    pytest.fail(f"no scheduler among {sorted(among)} took the lock within {seconds} s")


# ---------------------------------------------------------------- the test


def test_two_hosts_behind_nginx_lose_nothing_when_one_dies(tmp_path, monkeypatch):
    nginx_binary = _nginx()
    if nginx_binary is None:
        if CI:
            pytest.fail("nginx is not installed: .ci/run installs Debian's package")
        pytest.skip("needs nginx (apt-get install nginx)")
    store = _redis()
    if store is None:
        pytest.skip(f"needs Redis at {REDIS_URL}")

    began = time.monotonic()
    server_url = make_url(PG_URL)._replace(database=None).render_as_string(hide_password=False)
    dsn = f"{server_url}/{DATABASE}"
    env, seed = prepare(SimpleNamespace(pg=server_url, database=DATABASE))
    store.flushdb()
    prepared = time.monotonic()

    ports: dict[str, int] = {}
    while len(set(ports.values())) < 5:
        ports = {name: _free_port() for name in ("a", "b", "https", "http", "prep")}
    hosts = {"a": f"127.0.0.1:{ports['a']}", "b": f"127.0.0.1:{ports['b']}"}
    base = f"https://127.0.0.1:{ports['https']}"
    cert = _certificate(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # every client here, the burst's included

    shared = {**env, "RATELIMIT_ENABLED": "true", "REDIS_URL": REDIS_URL, "PROXY_HOPS": "1"}
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name in hosts:
            (tmp_path / f"metrics-{name}").mkdir()
            host_env = {
                **shared,
                "GUNICORN_BIND": hosts[name],
                "GUNICORN_WORKERS": "2",  # 2 cores for everything here, as the README's benchmarks
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics-{name}"),
            }
            command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "server:create_app()"]
            procs[name] = _spawn(command, host_env, tmp_path / f"host-{name}.log")
        schedulers = {"huigou-scheduler-1": "scheduler-1", "huigou-scheduler-2": "scheduler-2"}
        figures = {application_name: _free_port() for application_name in schedulers}  # SCHEDULER_METRICS
        for application_name, name in schedulers.items():
            scheduler_env = {
                **shared,
                "PGAPPNAME": application_name,
                "SCHEDULER_METRICS": f"127.0.0.1:{figures[application_name]}",
            }
            procs[name] = _spawn(FLASK + ["scheduler", "run"], scheduler_env, tmp_path / f"{name}.log")
        procs["nginx"] = _start_nginx(nginx_binary, tmp_path, ports)

        # Residents and tills bind through a host of the preparation's own, without rate limits:
        # from one address, the limits on SMS and binding would stop the 50th.
        with open(tmp_path / "prep.log", "wb") as log:
            prep = _start_gunicorn(env, ports["prep"], log)
        try:
            staff = bind_staff(f"http://127.0.0.1:{ports['prep']}", seed)
            residents = bind_residents(f"http://127.0.0.1:{ports['prep']}", RESIDENTS)
        finally:
            _stop(prep)
        for address in hosts.values():  # each host directly first: nginx must not find one down
            _wait_for(f"http://{address}/readyz", 60, procs)
        _wait_for(f"{base}/healthz", 30, procs)
        leader = _leader(dsn, 30, set(schedulers))
        standby = next(name for name in schedulers if name != leader)
        standby_log = tmp_path / f"{schedulers[standby]}.log"
        assert "调度器已启动" in standby_log.read_text(), "the standby has not started: no contest for the lock"
        # What Prometheus sees of the two: the leader's figures say 1, the standby's 0.
        deadline = time.monotonic() + 10
        while (said := {n: _scheduler_leader_figure(figures[n]) for n in schedulers}) != {leader: 1, standby: 0}:
            assert time.monotonic() < deadline, f"the schedulers' figures say {said}"
            time.sleep(0.5)
        up = time.monotonic()

        api = requests.Session()
        edge = _the_edge(api, base, ports, tmp_path)
        seen = _client_address(base, dsn)
        limit = _shared_limit(api, base, hosts, tmp_path, store)

        # -------- the burst; the scheduler's leader dies as it starts, host a once 30% of the residents are done
        burst = Burst(base, residents, staff)
        burst_wall = time.time()
        burst_started = time.monotonic()
        burst.run(random.Random(7).sample(range(RESIDENTS), RESIDENTS))
        _kill(procs[schedulers[leader]])
        leader_killed = time.monotonic()
        burst.wait_done(0.3)
        host_killed_wall = time.time()
        host_killed = time.monotonic()
        _kill(procs["a"])
        for thread in burst.threads:
            thread.join(max(0.0, burst.deadline - time.monotonic()) + 15)
        ended = time.monotonic()
        took_over = _leader(dsn, max(0.0, leader_killed + TAKEOVER_S - time.monotonic()), {standby})
        took_over_after = time.monotonic() - leader_killed
        scheduler_logs = {name: (tmp_path / f"{schedulers[name]}.log").read_text() for name in schedulers}
        assert procs["b"].poll() is None and procs[schedulers[standby]].poll() is None
    finally:
        for proc in procs.values():
            _stop(proc)
    assert took_over == standby
    assert scheduler_logs[leader].count("scheduler leader:") == 1
    assert scheduler_logs[standby].count("scheduler leader:") == 1, "the standby did not log its takeover"

    # -------- what clients heard, and what nginx did with the dead host
    assert not any(t.is_alive() for t in burst.threads), "clients still busy past the deadline"
    answers = burst.answers
    failed = [a for a in answers if a.status is None or a.status >= 500]
    assert all(a.status == 503 and a.code == "SERVICE_UNAVAILABLE" and a.envelope for a in failed), failed[:5]
    assert all(a.started < host_killed + 2 for a in failed), "failures long after the host died"
    assert not [a for a in answers if a.status == 429], "the burst hit a rate limit: size it down"
    lines = [line for line in _access_log(tmp_path) if line["msec"] >= burst_wall]
    for line in lines:
        line["started"] = line["msec"] - line["request_time"]
    before = Counter(line["upstream"] for line in lines if line["msec"] < host_killed_wall)
    assert before[hosts["a"]] and before[hosts["b"]], f"both hosts should serve the burst: {before}"
    # Once the host is dead nginx sends nothing more to it alone: a refused connection goes on to b.
    after = [line for line in lines if line["started"] > host_killed_wall + 0.5]
    assert after, "nothing was asked after the host died"
    assert all(line["upstream"].endswith(hosts["b"]) for line in after), Counter(line["upstream"] for line in after)
    moved = [line for line in lines if line["upstream"] == f"{hosts['a']}, {hosts['b']}"]
    held = [line for line in lines if line["status"] == 503 and line["upstream"] == hosts["a"]]

    spins, spends = burst.spins, burst.spends
    assert len(spins) == RESIDENTS * len(CATEGORIES)
    assert all(s.heard for s in spins)
    finals = Counter(s.heard[-1][1] or s.heard[-1][0] for s in spins)
    assert set(finals) <= {200, "ALREADY_DRAWN", "SOLD_OUT"}, finals
    in_doubt = [s for s in spins if s.heard[-1][1] == "ALREADY_DRAWN"]
    assert all(s.named and s.heard[0][0] == 503 for s in in_doubt), in_doubt
    unspent = Counter(s.heard[-1] if s.heard else None for s in spends if s.redemption_id is None)
    assert not unspent, f"planned redemptions that did not end in 200: {unspent}"
    agains = [s for s in spends if s.again]
    assert all(s.again[-1] == (409, "COUPON_USED") for s in agains), Counter(s.again[-1] for s in agains)

    # -------- what the database holds
    state = verify(dsn)
    oversold = [t for t in state["tiers"] if t[3] > t[2] or t[4] != t[2]]
    assert not oversold and state["duplicates"] == 0 and state["orphans"] == 0, state
    with psycopg.connect(dsn) as conn:
        phones = dict(conn.execute("SELECT phone, id FROM residents WHERE phone IS NOT NULL").fetchall())
        coupons = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT k.id, k.resident_id, c.code FROM coupons k JOIN categories c ON c.id = k.category_id"
                " WHERE k.state <> 'stock'"
            )
        }
        redemptions = dict(conn.execute("SELECT id, coupon_id FROM redemptions WHERE revoked_at IS NULL").fetchall())
        used = {row[0] for row in conn.execute("SELECT id FROM coupons WHERE state = 'used'")}
    ids = [phones[f"13{i:09d}"] for i in range(RESIDENTS)]
    told = {s.coupon["id"]: (ids[s.resident], s.category) for s in spins if s.coupon is not None}
    assert {k: coupons.get(k) for k in told} == told, "a coupon told won is not that resident's"
    doubted = {(ids[s.resident], s.category) for s in in_doubt}
    assert all(coupons.get(s.named) == (ids[s.resident], s.category) for s in in_doubt)
    untold = {k: v for k, v in coupons.items() if k not in told and v not in doubted}
    assert not untold, f"coupons held that no client was told of: {untold}"
    told_redeemed = {s.redemption_id: s.coupon_id for s in spends}
    assert redemptions == told_redeemed, "redemptions stored and redemptions told differ"
    assert len(set(redemptions.values())) == len(redemptions), "a coupon redeemed twice"
    assert used == set(told_redeemed.values())
    ledger = subprocess.run(FLASK + ["ledger"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert ledger.returncode == 0, ledger.stdout[-3000:] + ledger.stderr[-3000:]

    print(
        f"\nmultihost: database prepared in {prepared - began:.1f} s; hosts, nginx and 2 schedulers started and"
        f" {RESIDENTS} residents and 12 tills bound in {up - prepared:.1f} s; burst {ended - burst_started:.1f} s,"
        f" host a killed at +{host_killed - burst_started:.1f} s; one lock holder of two schedulers, {leader},"
        f" killed at +0.0 s, {standby} led {took_over_after:.1f} s later, never two at once"
    )
    print(f"edge: {edge}")
    print(f"client address: {seen}")
    print(f"rate limit: {limit}")
    print(
        f"nginx: {len(lines)} requests in the burst; before the kill a {before[hosts['a']]}, b {before[hosts['b']]};"
        f" held by the dying host and answered 503: {len(held)}; moved to b on a refused connection: {len(moved)};"
        f" {len(after)} asked from 0.5 s after the kill, all answered by b"
    )
    print(f"answers: {dict(Counter((a.kind, a.status, a.code) for a in answers).most_common())}")
    print(
        f"database: {len(coupons)} coupons held ({len(told)} told won, {len(in_doubt)} told ALREADY_DRAWN after a"
        f" lost answer), {len(redemptions)} redemptions all told, {len(agains)} second tries refused, oversold 0,"
        f" redeemed twice 0; ledger balances; total {time.monotonic() - began:.1f} s"
    )


def _the_edge(api: requests.Session, base: str, ports: dict[str, int], tmp: Path) -> str:
    """What the shipped server block promises, checked through it while both hosts are up."""
    # /metrics is for Prometheus at each host, never through nginx (however the path is spelled).
    assert [api.get(base + path).status_code for path in ("/metrics", "//metrics", "/metrics?x=1")] == [403] * 3
    assert requests.get(f"http://127.0.0.1:{ports['a']}/metrics", timeout=10).status_code == 200
    # The probes: for private addresses only.
    assert api.get(base + "/readyz").json() == {"status": "ready"}
    elsewhere = requests.Session()
    elsewhere.mount("https://", _FromAddress(REAL_CLIENT))
    assert elsewhere.get(base + "/readyz").status_code == 403
    # Plain HTTP goes to HTTPS.
    plain = requests.get(f"http://127.0.0.1:{ports['http']}/h5/?from=qr", allow_redirects=False, timeout=10)
    assert (plain.status_code, plain.headers["Location"]) == (301, "https://127.0.0.1/h5/?from=qr")
    # Static files from nginx, with the app's headers, revalidated (vendored ones kept a day).
    css = api.get(base + "/static/h5/h5.css")
    assert css.status_code == 200 and css.content == (ROOT / "static/h5/h5.css").read_bytes()
    expected = {**HEADERS, "Content-Security-Policy": POLICY, "Strict-Transport-Security": "max-age=31536000"}
    assert {name: css.headers.get(name) for name in expected} == expected
    assert css.headers["Cache-Control"] == "no-cache"
    assert api.get(base + "/static/h5/h5.css", headers={"If-None-Match": css.headers["ETag"]}).status_code == 304
    vendor = next(p for p in sorted((ROOT / "static/vendor").rglob("*.js")))
    assert api.get(f"{base}/static/{vendor.relative_to(ROOT / 'static')}").headers["Cache-Control"] == (
        "public, max-age=86400"
    )
    # Bodies: the app's 64 KB everywhere, 5 MB and its form on the invoice upload; nginx's refusal
    # in the API's envelope.
    json_type = {"Content-Type": "application/json"}
    too_large = api.post(base + "/api/v1/draw", data=b" " * (64 * 1024 + 1), headers=json_type)
    assert too_large.status_code == 413
    assert too_large.json() == {"error": {"code": "PAYLOAD_TOO_LARGE", "message": PayloadTooLarge.message}}
    assert api.post(base + "/api/v1/draw", data=b" " * (64 * 1024), headers=json_type).status_code == 400
    invoice = 5 * 1024 * 1024 + 64 * 1024  # under gunicorn the app takes one byte less (werkzeug's stream)
    assert api.post(base + "/api/v1/subsidies", **_upload(invoice - 1)).json()["error"]["code"] == "INVALID_INPUT"
    assert api.post(base + "/api/v1/subsidies", **_upload(invoice + 1)).json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    # The console's campaign file: past the app's 5 MB it is the console's own page that says so.
    console = api.post(base + "/admin/campaigns", data=b" " * (5 * 1024 * 1024 + 1), allow_redirects=False)
    assert console.status_code == 413 and console.headers["Content-Type"].startswith("text/html")
    # The request's id: nginx's, in its log and in the app's answer; the client's own is not taken.
    campaign = api.get(base + "/api/v1/campaign", headers={"X-Request-Id": "forged-by-the-client"})
    request_id = campaign.headers.get("X-Request-Id", "")
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id
    deadline = time.monotonic() + 5  # nginx writes its line once the answer is sent, not before
    while not (logged := [line for line in _access_log(tmp) if line["request_id"] == request_id]):
        assert time.monotonic() < deadline, "nginx's access log has no line with the answer's request id"
        time.sleep(0.05)
    assert [(line["uri"], line["status"]) for line in logged] == [("/api/v1/campaign", 200)]
    served = {}
    for line in _access_log(tmp):
        served.setdefault((line["uri"], line["status"]), set()).add(line["upstream"] not in ("", "-"))
    assert served[("/static/h5/h5.css", 200)] == served[("/static/h5/h5.css", 304)] == {False}, "not from nginx"
    assert served[("/api/v1/subsidies", 413)] == served[("/api/v1/draw", 413)] == {False}, "413 not from nginx"
    assert served[("/api/v1/subsidies", 400)] == served[("/api/v1/draw", 400)] == {True}
    assert served[("/admin/campaigns", 413)] == {True}
    return (
        "/metrics 403 through nginx (200 at a host); /readyz 403 from a public address; http 301 to https;"
        " static from nginx with the app's headers, 304 on revalidation; 64 KB + 1 and 5 MB + 64 KB + 1"
        f" answered 413 by nginx in the envelope; request id {request_id[:8]}... shared with the app"
    )


def _upload(size: int) -> dict:
    """A multipart form of exactly `size` bytes holding only an invoice photo (the app wants more)."""
    head = (
        b'--edge\r\nContent-Disposition: form-data; name="invoice_image"; filename="invoice.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    tail = b"\r\n--edge--\r\n"
    body = head + b"\xff" * (size - len(head) - len(tail)) + tail
    return {"data": body, "headers": {"Content-Type": "multipart/form-data; boundary=edge"}}


def _client_address(base: str, dsn: str) -> str:
    """A resident binds from 127.0.0.2 through nginx, claiming to be 1.2.3.4: the app stores 127.0.0.2."""
    client = requests.Session()
    client.mount("https://", _FromAddress(REAL_CLIENT))
    client.headers["X-Forwarded-For"] = FORGED
    phone = "13999990002"
    token = client.post(base + "/api/v1/auth/wechat", json={"code": "multihost-address"}).json()["token"]
    client.post(base + "/api/v1/auth/sms", json={"phone": phone}).raise_for_status()
    code = client.get(base + "/api/v1/dev/sms-outbox", params={"phone": phone}).json()["items"][0]["code"]
    body = {"name": "地址居民", "phone": phone, "sms_code": code}
    client.post(base + "/api/v1/auth/bind", json=body, headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    with psycopg.connect(dsn) as conn:
        stored = conn.execute("SELECT bound_address FROM residents WHERE phone = %s", (phone,)).fetchone()[0]
    assert stored == REAL_CLIENT, f"the app recorded {stored!r}, not the client's {REAL_CLIENT}"
    return f"a binding from {REAL_CLIENT} forging X-Forwarded-For {FORGED}: residents.bound_address = {stored}"


def _shared_limit(api: requests.Session, base: str, hosts: dict[str, str], tmp: Path, store) -> str:
    """Merchants' applications: 5 an hour per contact phone. Six in a row, which nginx sends to the
    two hosts in turn: five reach the form's check, the sixth is refused, as with one host."""
    phone = "13900000888"
    answers = [api.post(base + "/api/v1/merchant/apply", json={"contact_phone": phone}) for _ in range(6)]
    heard = [(a.status_code, a.json()["error"]["code"]) for a in answers]
    assert heard == [(400, "INVALID_INPUT")] * 5 + [(429, "RATE_LIMITED")], heard
    assert answers[-1].headers.get("Retry-After")
    by_name = {address: name for name, address in hosts.items()}
    deadline = time.monotonic() + 5  # nginx writes a line once its answer is sent
    while len(served := [by_name[x["upstream"]] for x in _access_log(tmp) if x["uri"] == "/api/v1/merchant/apply"]) < 6:
        assert time.monotonic() < deadline, served
        time.sleep(0.05)
    assert len(served) == 6 and set(served) == set(hosts), served
    assert any(phone.encode() in key for key in store.keys("*")), "the count is not in Redis"
    return f"5 an hour per phone: 400 x5 then 429 at the 6th, served by {', '.join(served)}; counted in Redis"
