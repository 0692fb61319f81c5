#!/usr/bin/env python
"""Many tills redeeming at once, against gunicorn and PostgreSQL; and pay-code PNGs per second.

1. Recreates `huigou_bench`, loads the Qian'an demo campaign and binds one shop assistant to each
   of its 12 merchants (binding code + SMS code, through the API).
2. Binds N residents, each draws a coupon in every category, and fetches a fresh pay code for each.
3. Fires wrk at `POST /api/v1/merchant/redeem`: each request a pay code at a till of a merchant of
   its category, spend at the threshold, with its own Idempotency-Key; then reads redemptions/s
   and latency percentiles, and checks the database: one redemption per coupon, every coupon
   redeemed at most once, every 200 a redemption.
4. Fires wrk the same way at a minimal Flask endpoint spending a coupon in raw SQL (one update,
   one insert; bench/floor_app.py), the floor of any redemption, under the same gunicorn settings.
5. Renders pay-code PNGs in-process for a few seconds and prints how many per second.

Needs wrk and PostgreSQL on 127.0.0.1. Prints its figures.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.draw_burst import (  # noqa: E402
    CATEGORIES,
    WRK_SCRIPT,
    add_turn,
    as_in_production,
    baseline_checkout,
    bind_residents,
    cpu_per_request,
    drop_checkout,
    ledger_balances,
    log_lines,
    measured,
    prepare,
    start_gunicorn,
    stop,
)

CATEGORY_CODES = {
    "宾馆": "hotel",
    "餐饮": "restaurant",
    "加油": "fuel",
    "扶贫农产品": "farm_produce",
    "书店": "bookstore",
}


def demo_merchants(seed_output: str) -> list[tuple[str, str]]:
    """Each demo merchant's (category code, binding code), from what `flask seed-demo` printed."""
    found = re.findall(r"\[\d+\] .*?（(\S+?)，.*?绑定码 (\w{8})", seed_output)
    return [(CATEGORY_CODES[category], code) for category, code in found]


def bind_staff(base: str, seed_output: str) -> dict[str, list[str]]:
    """One assistant per demo merchant; staff tokens by category code."""
    by_category: dict[str, list[str]] = {}
    for n, (category, code) in enumerate(demo_merchants(seed_output)):
        phone = f"17{n:09d}"
        requests.post(f"{base}/api/v1/auth/sms", json={"phone": phone, "purpose": "staff"}).raise_for_status()
        sms = requests.get(f"{base}/api/v1/dev/sms-outbox", params={"phone": phone}).json()["items"][0]["code"]
        body = {"binding_code": code, "name": "压测店员", "phone": phone, "sms_code": sms}
        answer = requests.post(f"{base}/api/v1/merchant/bind", json=body)
        answer.raise_for_status()
        by_category.setdefault(category, []).append(answer.json()["token"])
    return by_category


def draw_all(base: str, tokens: list[str]) -> list[tuple[str, str, int, int]]:
    """Each resident draws every category: (resident token, category, threshold, coupon id) per win."""

    def one(token: str):
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        won = []
        for category in CATEGORIES:
            answer = s.post(f"{base}/api/v1/draw", json={"category": category})
            if answer.status_code == 200:
                coupon = answer.json()["coupon"]
                won.append((token, category, coupon["threshold_fen"], coupon["id"]))
        return won

    with ThreadPoolExecutor(32) as pool:
        return [item for items in pool.map(one, tokens) for item in items]


def fetch_paycodes(base: str, coupons: list[tuple[str, str, int, int]]) -> list[str]:
    """Fresh pay codes, fetched last: they live 60 s."""

    def one(item):
        token, _, _, coupon_id = item
        answer = requests.get(
            f"{base}/api/v1/coupons/{coupon_id}/paycode", headers={"Authorization": f"Bearer {token}"}
        )
        return answer.json()["paycode"]

    with ThreadPoolExecutor(32) as pool:
        return list(pool.map(one, coupons))


def png_rate(seconds: float) -> float:
    from datetime import UTC, datetime

    from server import create_app
    from server.auth import paycode

    app = create_app({"SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    with app.app_context():
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            token, _ = paycode.issue(123456 + n, 654321, datetime.now(UTC))
            paycode.png(token)
            n += 1
        return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=2000, help="each draws all 5 categories")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load (pay codes live 60 s)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1")
    parser.add_argument("--database", default="huigou_bench")
    parser.add_argument(
        "--baseline", metavar="REF", help="also serve this commit (a git worktree), in turns with this one, to compare"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    dsn = f"{args.pg}/{args.database}"
    env, seed = prepare(args)
    from bench import floor_app

    floor_app.prepare(dsn)
    base = "http://127.0.0.1:5083"
    scratch = Path(tempfile.mkdtemp(prefix="huigou-bench-"))
    production_env, request_log = as_in_production(env, scratch)
    server = start_gunicorn("server:create_app()", 5083, production_env, args, stderr=request_log)
    servers = {"redeem": (server, f"{base}/api/v1/merchant/redeem")}
    if args.baseline:
        checkout = baseline_checkout(args.baseline, scratch)
        baseline_env, baseline_log = as_in_production(env, scratch, "baseline")
        other = start_gunicorn("server:create_app()", 5086, baseline_env, args, cwd=checkout, stderr=baseline_log)
        servers["baseline"] = (other, "http://127.0.0.1:5086/api/v1/merchant/redeem")
    results = {}
    try:
        staff = bind_staff(base, seed)
        print(f"==> bound {sum(map(len, staff.values()))} shop assistants to {len(staff)} categories of merchants")
        residents = bind_residents(base, args.residents)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        coupons = draw_all(base, residents)
        t = time.perf_counter()
        codes = fetch_paycodes(base, coupons)
        print(f"==> {len(coupons)} coupons drawn; their pay codes fetched in {time.perf_counter() - t:.1f} s")
        lines = []
        for n, ((_, category, threshold, _), code) in enumerate(zip(coupons, codes, strict=True)):
            tills = staff[category]
            body = json.dumps({"paycode": code, "spend_fen": threshold, "spend_category": "压测"})
            lines.append(f"{tills[n % len(tills)]} {uuid.uuid4().hex} {body}")
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "redeem.lua"
            script.write_text(WRK_SCRIPT)
            # With a baseline, two turns each, alternating, each turn its own pay codes (they live a
            # minute: the turns cannot be many).
            turns = 2 if args.baseline else 1
            order = [name for _ in range(turns) for name in servers]
            print(f"==> burst: {args.connections} connections for {args.duration} s at 12 merchants' tills")
            for k, name in enumerate(order):
                plan = Path(tmp) / f"plan-{k}.txt"
                plan.write_text("\n".join(lines[k :: len(order)]) + "\n")
                running, url = servers[name]
                turn = measured(url, plan, script, args, max(1, args.duration // turns), running)
                add_turn(results.setdefault(name, {"statuses": {}}), turn)
            # The floor right after, with the same gunicorn and wrk settings (pay codes live a
            # minute, so the floor cannot alternate with them as the draw benchmark's does).
            for running, _ in servers.values():
                stop(running)
            servers = {}
            server = start_gunicorn("bench.floor_app:create_app()", 5084, env, args)
            floor_plan = Path(tmp) / "floor.txt"
            floor_plan.write_text("".join(f'- - {{"paycode": "{n}", "spend_fen": 30000}}\n' for n in range(1, 200001)))
            print(f"==> the raw-SQL floor: {args.connections} connections for {args.duration} s")
            floor = measured("http://127.0.0.1:5084/floor-redeem", floor_plan, script, args, args.duration, server)
    finally:
        stop(server)
        for running, _ in servers.values():
            stop(running)
        if args.baseline:
            drop_checkout(checkout)
    result = results["redeem"]
    per_s = result["requests"] / (result["duration_us"] / 1e6)
    with psycopg.connect(dsn) as conn:
        redemptions = conn.execute("SELECT count(*) FROM redemptions WHERE revoked_at IS NULL").fetchone()[0]
        used = conn.execute("SELECT count(*) FROM coupons WHERE state = 'used'").fetchone()[0]
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT coupon_id FROM redemptions GROUP BY 1 HAVING count(*) > 1) d"
        ).fetchone()[0]
    ok200 = sum(r["statuses"].get("200", 0) for r in results.values())  # the baseline's redeem too
    print()
    print(f"{'':28}{'req/s':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'CPU ms/req: app':>17}{'pg':>6}")
    print(
        f"{'POST /merchant/redeem':28}{per_s:>8.0f}{result['p50_ms']:>9.1f}{result['p90_ms']:>9.1f}"
        f"{result['p99_ms']:>9.1f}{result['max_ms']:>9.1f}{cpu_per_request(result):>23}"
    )
    floor_per_s = floor["requests"] / (floor["duration_us"] / 1e6)
    print(
        f"{'raw-SQL floor':28}{floor_per_s:>8.0f}{floor['p50_ms']:>9.1f}{floor['p90_ms']:>9.1f}"
        f"{floor['p99_ms']:>9.1f}{floor['max_ms']:>9.1f}{cpu_per_request(floor):>23}"
    )
    print(f"redemptions / floor: {per_s / floor_per_s:.0%}   (target >= 70%, p99 < 150 ms)")
    if args.baseline:
        other = results["baseline"]
        other_per_s = other["requests"] / (other["duration_us"] / 1e6)
        print(
            f"{'baseline ' + args.baseline[:12]:28}{other_per_s:>8.0f}{other['p50_ms']:>9.1f}{other['p90_ms']:>9.1f}"
            f"{other['p99_ms']:>9.1f}{other['max_ms']:>9.1f}{cpu_per_request(other):>23}"
        )
        print(f"redemptions / baseline: {per_s / other_per_s:.1%}")
    print(f"request log: {log_lines(request_log)} JSON lines; every worker's figures in PROMETHEUS_MULTIPROC_DIR")
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"answers: {json.dumps(result['statuses'], sort_keys=True)}; plan wrapped {result['wrapped']} time(s)")
    print(f"redemptions {redemptions}, coupons used {used}, coupons redeemed twice {twice}, 200 answers {ok200}")
    rate = png_rate(3)
    print(f"pay-code PNG (token + QR render) in one process: {rate:.0f} per second")
    balanced = ledger_balances(env)
    # Every 200 is a redemption, but for a plan that wrapped: its second pass resubmits the same pay
    # codes with the same Idempotency-Keys, which answer 200 with the first redemption.
    answered = ok200 <= redemptions or result["wrapped"] > 0
    ok = (
        balanced
        and twice == 0
        and redemptions == used
        and answered
        and redemptions <= ok200 + args.connections * 2 * len(results)
    )
    print("invariants:", "hold" if ok else "BROKEN")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
