#!/usr/bin/env python
"""A 09:00 flash crowd on the wheel, against gunicorn and PostgreSQL, beside the raw-SQL floor.

1. Recreates the database `huigou_bench`, migrates it and loads the Qian'an demo campaign
   (20,450 coupons in round 1).
2. Starts gunicorn on Huigou, binds N residents through the API (login, SMS code, bind).
3. Fires wrk at `POST /api/v1/draw` (each request a resident and a category, shuffled, so the
   small categories sell out during the burst) and reads draws/s and latency percentiles.
4. In the same run, with the same gunicorn settings, fires wrk at a minimal Flask endpoint doing
   one raw-SQL stock decrement and insert (bench/floor_app.py): the floor of any draw.
5. Checks the database: coupons issued per tier never above its inventory, never two draws in
   one (resident, category, round), every 200 answer a coupon held.

Needs wrk (`apt-get install wrk`) and PostgreSQL on 127.0.0.1. Prints its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
FLASK = [sys.executable, "-m", "flask", "--app", "server"]
CATEGORIES = ["hotel", "restaurant", "fuel", "farm_produce", "bookstore"]

WRK_SCRIPT = r"""
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  lines = {}
  local nthreads = tonumber(args[2])
  local n = 0
  for line in io.lines(args[1]) do
    n = n + 1
    if n % nthreads == id then table.insert(lines, line) end
  end
  idx = 0
  statuses = {}
  wrapped = 0
end

function request()
  idx = idx + 1
  if idx > #lines then idx = 1; wrapped = wrapped + 1 end
  -- a line: <bearer token> <Idempotency-Key or -> <JSON body>
  local token, key, body = lines[idx]:match("^(%S+) (%S+) (.*)$")
  local headers = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}
  if key ~= "-" then headers["Idempotency-Key"] = key end
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  local key = tostring(status)
  if status == 409 or status == 400 or status == 401 then
    local code = body:match('"code":"([A-Z_]+)"')
    if code then key = key .. ":" .. code end
  end
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  local wraps = 0
  for _, thread in ipairs(threads) do
    for k, v in pairs(thread:get("statuses")) do merged[k] = (merged[k] or 0) + v end
    wraps = wraps + thread:get("wrapped")
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s": %d', k, v)) end
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "errors": %d, "p50_ms": %.2f, "p90_ms": %.2f, ' ..
    '"p99_ms": %.2f, "max_ms": %.2f, "wrapped": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, wraps, table.concat(parts, ", ")))
end
"""


def run(cmd, env, **kw):
    return subprocess.run(cmd, env=env, cwd=ROOT, check=True, **kw)


def ledger_balances(env) -> bool:
    """`flask ledger` after the burst: the pool's books agree with the coupons, to the fen."""
    done = subprocess.run(FLASK + ["ledger"], env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:])
    print(f"ledger: {'balances' if done.returncode == 0 else 'DOES NOT BALANCE'}")
    return done.returncode == 0


def recreate(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def start_gunicorn(app: str, port: int, env: dict, args, cwd: Path = ROOT, stderr=None) -> subprocess.Popen:
    """gunicorn serving `app` from the checkout `cwd`; `stderr` a file for its log (the request log)."""
    workers = (
        ["--worker-class", "gthread", "--threads", str(args.threads)] if args.threads else ["--worker-class", "sync"]
    )
    cmd = [
        sys.executable, "-m", "gunicorn", app,
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(args.workers),
        *workers,
        "--backlog", "2048", "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, start_new_session=True, stderr=stderr)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)
            return proc
        except requests.RequestException:
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"gunicorn for {app} did not start on port {port}")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


def bind_residents(base: str, n: int) -> list[str]:
    """Each resident logs in, asks for a code, reads it from the dev outbox and binds."""

    def bind(i: int) -> str:
        s = requests.Session()
        phone = f"13{i:09d}"
        token = s.post(f"{base}/api/v1/auth/wechat", json={"code": f"bench-{i}"}).json()["token"]
        s.post(f"{base}/api/v1/auth/sms", json={"phone": phone}).raise_for_status()
        code = s.get(f"{base}/api/v1/dev/sms-outbox", params={"phone": phone}).json()["items"][0]["code"]
        answer = s.post(
            f"{base}/api/v1/auth/bind",
            json={"name": "压测居民", "phone": phone, "sms_code": code},
            headers={"Authorization": f"Bearer {token}"},
        )
        answer.raise_for_status()
        return answer.json()["token"]

    with ThreadPoolExecutor(32) as pool:
        return list(pool.map(bind, range(n)))


def wrk(url: str, plan: Path, script: Path, args, seconds: float) -> dict:
    """One wrk run over a plan file, each wrk thread taking every n-th line."""
    cmd = [
        "wrk", "-t", str(args.wrk_threads), "-c", str(args.connections), "-d", f"{seconds}s",
        "--timeout", "10s", "-s", str(script), url, "--", str(plan), str(args.wrk_threads),
    ]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def cpu_seconds() -> dict[int, tuple[int, float, str]]:
    """Every process's (parent, CPU seconds used so far, command name), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        found[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, name)
    return found


def cpu_split(server: subprocess.Popen | None) -> tuple[float, float]:
    """CPU seconds used so far by a gunicorn (its master and workers) and by PostgreSQL (every
    `postgres` process on this machine)."""
    processes = cpu_seconds()
    tree, app = {server.pid} if server else set(), 0.0
    for pid, (parent, used, _) in sorted(processes.items()):
        if pid in tree or parent in tree:
            tree.add(pid)
            app += used
    database = sum(used for _, used, name in processes.values() if name == "postgres")
    return app, database


def add_turn(total: dict, turn: dict) -> None:
    for key in ("requests", "duration_us", "errors", "wrapped", "app_cpu_s", "pg_cpu_s"):
        total[key] = total.get(key, 0) + turn.get(key, 0)
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
        total[key] = max(total.get(key, 0), turn[key])
    for code, count in turn["statuses"].items():
        total["statuses"][code] = total["statuses"].get(code, 0) + count


def measured(url: str, plan: Path, script: Path, args, seconds: int, server: subprocess.Popen | None) -> dict:
    """One wrk run, with the CPU the server and PostgreSQL spent on it."""
    app_before, pg_before = cpu_split(server)
    turn = wrk(url, plan, script, args, seconds)
    app_after, pg_after = cpu_split(server)
    return turn | {"app_cpu_s": app_after - app_before, "pg_cpu_s": pg_after - pg_before}


def cpu_per_request(result: dict) -> str:
    """Milliseconds of CPU per request answered: the app's, PostgreSQL's."""
    n = max(1, result["requests"])
    return f"{result['app_cpu_s'] * 1000 / n:>10.2f}{result['pg_cpu_s'] * 1000 / n:>6.2f}"


def alternate(
    targets: dict[str, str], plans: list[Path], script: Path, args, servers: dict[str, subprocess.Popen]
) -> dict[str, dict]:
    """Run the targets in turns of a few seconds each, so drift in the machine hits them alike.

    Throughput and CPU are summed over the turns; latency percentiles are the worst turn's.
    """
    results = {name: {"statuses": {}} for name in targets}
    seconds = max(1, args.duration // args.turns)
    for plan in plans:  # each turn has draws of its own, never sent before
        for name, url in targets.items():
            total = results[name]
            turn = measured(url, plan[name], script, args, seconds, servers.get(name))
            add_turn(total, turn)
    for total in results.values():
        total["per_s"] = total["requests"] / (total["duration_us"] / 1e6)
    return results


def verify(dsn: str) -> dict:
    """Read what the database holds after the burst."""
    with psycopg.connect(dsn) as conn:
        tiers = conn.execute(
            """SELECT c.code, t.face_fen, a.quantity,
                      count(k.id) FILTER (WHERE k.state <> 'stock') AS issued,
                      count(k.id) AS rows
               FROM allocations a JOIN rounds r ON r.id = a.round_id AND r.number = 1
               JOIN tiers t ON t.id = a.tier_id JOIN categories c ON c.id = t.category_id
               LEFT JOIN coupons k ON k.tier_id = t.id AND k.round_id = r.id
               GROUP BY c.code, t.face_fen, a.quantity ORDER BY c.code, t.face_fen"""
        ).fetchall()
        duplicates = conn.execute(
            """SELECT count(*) FROM (SELECT resident_id, category_id, round_id FROM coupons
               WHERE resident_id IS NOT NULL GROUP BY 1, 2, 3 HAVING count(*) > 1) d"""
        ).fetchone()[0]
        won_draws = conn.execute("SELECT count(*) FROM draws WHERE outcome = 'won'").fetchone()[0]
        orphans = conn.execute(
            "SELECT count(*) FROM draws d WHERE NOT EXISTS (SELECT 1 FROM coupons k WHERE k.draw_id = d.id)"
        ).fetchone()[0]
    return {"tiers": tiers, "duplicates": duplicates, "won_draws": won_draws, "orphans": orphans}


def prepare(args) -> tuple[dict, str]:
    """Recreate the bench database, migrate it and seed the demo; the servers' environment and
    what seed-demo printed (the merchants' binding codes among it)."""
    dsn = f"{args.pg}/{args.database}"
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "FLOOR_DSN": dsn,
        "SECRET_KEY": "bench-secret",
        "WECHAT_BACKEND": "dev",
        "SMS_BACKEND": "outbox",
        "RATELIMIT_ENABLED": "0",
        "FLASK_DEBUG": "0",
    }
    print(f"==> preparing {args.database}: migrate, seed the Qian'an demo campaign")
    recreate(f"{args.pg}/postgres", args.database)
    run(FLASK + ["db", "upgrade"], env, capture_output=True)
    seed = run(FLASK + ["seed-demo"], env, capture_output=True, text=True).stdout
    return env, seed


def as_in_production(env: dict, tmp: Path, name: str = "huigou") -> tuple[dict, object]:
    """A server's environment with what production runs on every request: the figures of every
    worker in a PROMETHEUS_MULTIPROC_DIR of its own, and the JSON request log written to a file
    (journald's place); the environment and the log file. The baseline runs so too (a commit
    without them ignores both)."""
    metrics = tmp / f"metrics-{name}"
    metrics.mkdir()
    log = open(tmp / f"requests-{name}.log", "w")  # noqa: SIM115 -- the server's stderr while it runs
    return {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics), "REQUEST_LOG": "true"}, log


def baseline_checkout(ref: str, tmp: Path) -> Path:
    """A worktree of another commit (`--baseline REF`), to serve beside this one in the same run."""
    where = tmp / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(where), ref], check=True, cwd=ROOT, capture_output=True)
    return where


def drop_checkout(where: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, capture_output=True)


def log_lines(log) -> int:
    log.flush()
    with open(log.name) as read:
        return sum(1 for _ in read)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=15, help="seconds of load on each server")
    parser.add_argument("--turns", type=int, default=3, help="alternating turns the duration is cut into")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (both servers)")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1", help="PostgreSQL server")
    parser.add_argument("--database", default="huigou_bench")
    parser.add_argument(
        "--baseline", metavar="REF", help="also serve this commit (a git worktree) in the same turns, to compare"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")

    dsn = f"{args.pg}/{args.database}"
    env, _ = prepare(args)
    sys.path.insert(0, str(ROOT))
    from bench import floor_app

    floor_app.prepare(dsn)

    scratch = Path(tempfile.mkdtemp(prefix="huigou-bench-"))
    production_env, request_log = as_in_production(env, scratch)
    servers = {"draws": start_gunicorn("server:create_app()", 5081, production_env, args, stderr=request_log)}
    targets = {"draws": "http://127.0.0.1:5081/api/v1/draw"}
    if args.baseline:
        checkout = baseline_checkout(args.baseline, scratch)
        baseline_env, baseline_log = as_in_production(env, scratch, "baseline")
        servers["baseline"] = start_gunicorn(
            "server:create_app()", 5085, baseline_env, args, cwd=checkout, stderr=baseline_log
        )
        targets["baseline"] = "http://127.0.0.1:5085/api/v1/draw"
    servers["floor"] = start_gunicorn("bench.floor_app:create_app()", 5082, env, args)
    targets["floor"] = "http://127.0.0.1:5082/floor"
    try:
        t = time.perf_counter()
        tokens = bind_residents("http://127.0.0.1:5081", args.residents)
        print(f"==> bound {len(tokens)} residents through the API in {time.perf_counter() - t:.1f} s")
        # As after any import, days before the round opens: the planner knows the tables.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "draw.lua"
            script.write_text(WRK_SCRIPT)
            lines = [f'{token} - {{"category": "{c}"}}' for token in tokens for c in CATEGORIES]
            random.Random(9).shuffle(lines)
            # Each turn and each server its own draws, never sent before: a draw sent twice would
            # be a cheap refusal, not a draw.
            split = args.turns * len(targets)
            plans = []
            for k in range(args.turns):
                plan = {}
                for n, name in enumerate(targets):
                    plan[name] = Path(tmp) / f"plan-{k}-{name}.txt"
                    plan[name].write_text("\n".join(lines[k * len(targets) + n :: split]) + "\n")
                plans.append(plan)
            print(
                f"==> burst: {args.connections} connections, {args.duration} s on each server in {args.turns}"
                f" alternating turns, {len(lines)} planned draws"
            )
            results = alternate(targets, plans, script, args, servers)
            draws, base = results["draws"], results["floor"]
    finally:
        for server in servers.values():
            stop(server)
        if args.baseline:
            drop_checkout(checkout)

    state = verify(dsn)
    # Every server that drew (this commit's, the baseline's) counts toward what was issued.
    drawing = [results[name] for name in targets if name != "floor"]
    won = sum(r["statuses"].get("200", 0) for r in drawing)
    issued = sum(t[3] for t in state["tiers"])
    inventory = sum(t[2] for t in state["tiers"])
    oversold = [t for t in state["tiers"] if t[3] > t[2] or t[4] != t[2]]
    print()
    print(f"{'':24}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'socket errors':>15}"
          f"{'CPU ms/req: app':>17}{'pg':>6}")  # fmt: skip
    rows = [("Huigou POST /draw", draws), ("raw-SQL floor", base)]
    if args.baseline:
        rows.insert(1, (f"baseline {args.baseline[:12]}", results["baseline"]))
    for name, r in rows:
        print(
            f"{name:24}{r['per_s']:>10.0f}{r['p50_ms']:>9.1f}{r['p90_ms']:>9.1f}{r['p99_ms']:>9.1f}"
            f"{r['max_ms']:>9.1f}{r['errors']:>15}{cpu_per_request(r):>23}"
        )
    print(f"draws / floor: {draws['per_s'] / base['per_s']:.0%}   (target >= 70%, p99 < 150 ms; worst turn's p99)")
    if args.baseline:
        print(f"draws / baseline: {draws['per_s'] / results['baseline']['per_s']:.1%}")
    print(f"request log: {log_lines(request_log)} JSON lines; every worker's figures in PROMETHEUS_MULTIPROC_DIR")
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"answers: {json.dumps(draws['statuses'], sort_keys=True)}; plan wrapped {draws['wrapped']} time(s)")
    print(f"coupons issued {issued} of inventory {inventory}; 200 answers {won}; won draws {state['won_draws']}")
    for code, face, quantity, taken, _rows in state["tiers"]:
        mark = "  OVERSOLD" if taken > quantity else ""
        print(f"  {code:13} {face // 100:>4} yuan: {taken:>5} / {quantity:<5}{mark}")
    # wrk stops with up to one request per connection in flight: those were served, not counted.
    balanced = ledger_balances(env)
    ok = (
        balanced
        and not oversold
        and state["duplicates"] == 0
        and state["orphans"] == 0
        and won <= issued <= won + args.connections * args.turns * len(drawing)
    )
    print(
        "invariants:",
        "hold"
        if ok
        else f"BROKEN (oversold {oversold}, duplicates {state['duplicates']}, draws without coupon {state['orphans']})",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
