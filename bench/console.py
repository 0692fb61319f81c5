#!/usr/bin/env python
"""The bureau's console at a million redemptions, on PostgreSQL.

1. Recreates the database `huigou_bench` with the Qian'an demo (bench/draw_burst.py's
   preparation), then loads in SQL: a shop assistant per merchant, 200,000 bound residents,
   1,000,000 draws, coupons and redemptions (one per resident and category, spread evenly over the
   30 days before the last hour, each redemption within an hour of its claim)
   with their 2,000,000 ledger entries; then runs the scheduler's `close_hours` job, which
   stores the figures of the hours that are over, as it would have done every hour.
2. Signs in to the console as an admin (the real login form, CSRF token and all) and requests each
   list page, unfiltered and with each filter, N times: median and p95 milliseconds.
3. Exports the whole redemption list as CSV through the console (streamed) and measures rows/s
   and the process's peak memory, then PostgreSQL's own `COPY (same query) TO STDOUT`.

Targets on 2 cores: every list page p95 under 200 ms; CSV export at least a third of COPY's
rows/s; peak memory under 250 MB. Prints its figures.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.draw_burst import prepare  # noqa: E402

LOAD = """
INSERT INTO binding_codes (merchant_id, enrolment_id, code_hash, created_at, expires_at, used_at)
  SELECT merchant_id, id, 'bench-' || id, now(), now(), now() FROM enrolments;
INSERT INTO staff (merchant_id, name, phone, binding_code_id, bound_at)
  SELECT m.id, '店员' || m.id, '137' || lpad(m.id::text, 8, '0'), b.id, now()
  FROM merchants m JOIN binding_codes b ON b.merchant_id = m.id AND b.code_hash LIKE 'bench-%';
INSERT INTO residents (openid, name, phone, bound_at, created_at)
  SELECT 'bench-' || g, '居民' || g, '139' || lpad(g::text, 8, '0'), at, at
  FROM generate_series(1, {residents}) g,
       LATERAL (SELECT now() - interval '1 hour' - (g % 30) * interval '1 day'
                       - (g * 7919 % 86400) * interval '1 second' AS at) spread;
CREATE TEMP TABLE bench_shop AS
  SELECT DISTINCT ON (mc.category_id) mc.category_id, mc.merchant_id, s.id AS staff_id,
         (SELECT id FROM tiers t WHERE t.category_id = mc.category_id ORDER BY face_fen LIMIT 1) AS tier_id
  FROM merchant_categories mc JOIN staff s ON s.merchant_id = mc.merchant_id
  ORDER BY mc.category_id, mc.merchant_id;
INSERT INTO draws (resident_id, round_id, category_id, outcome, created_at)
  SELECT r.id, (SELECT id FROM rounds WHERE number = 1), b.category_id, 'won', r.bound_at
  FROM residents r CROSS JOIN bench_shop b WHERE r.openid LIKE 'bench-%';
INSERT INTO coupons (round_id, tier_id, category_id, face_fen, threshold_fen, seq, state,
                     resident_id, draw_id, claimed_at, valid_until)
  SELECT d.round_id, b.tier_id, d.category_id, t.face_fen, t.threshold_fen, d.id, 'used',
         d.resident_id, d.id, d.created_at, d.created_at + interval '5 days'
  FROM draws d JOIN bench_shop b ON b.category_id = d.category_id JOIN tiers t ON t.id = b.tier_id;
INSERT INTO redemptions (coupon_id, category_id, merchant_id, staff_id, resident_id, face_fen,
                         paid_fen, threshold_fen, spend_fen, spend_category, created_at)
  SELECT c.id, c.category_id, b.merchant_id, b.staff_id, c.resident_id, c.face_fen, c.face_fen, c.threshold_fen,
         c.threshold_fen + (c.id % 50) * 100, '压测', c.claimed_at + (c.id % 3600) * interval '1 second'
  FROM coupons c JOIN bench_shop b ON b.category_id = c.category_id WHERE c.state = 'used';
INSERT INTO ledger_entries (campaign_id, round_id, category_id, tier_id, kind, source, target,
                            amount_fen, coupons, coupon_id, created_at)
  SELECT r.campaign_id, c.round_id, c.category_id, c.tier_id, 'claim', 'stock', 'claimed',
         c.face_fen, 1, c.id, c.claimed_at
  FROM coupons c JOIN rounds r ON r.id = c.round_id JOIN draws d ON d.id = c.draw_id;
INSERT INTO ledger_entries (campaign_id, round_id, category_id, tier_id, kind, source, target,
                            amount_fen, coupons, coupon_id, redemption_id, created_at)
  SELECT r.campaign_id, c.round_id, c.category_id, c.tier_id, 'redeem', 'claimed', 'redeemed',
         x.face_fen, 1, c.id, x.id, x.created_at
  FROM redemptions x JOIN coupons c ON c.id = x.coupon_id JOIN rounds r ON r.id = c.round_id;
ANALYZE;
"""


def load(dsn: str, residents: int) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(LOAD.format(residents=int(residents)))
        return conn.execute("SELECT count(*) FROM redemptions").fetchone()[0]


def timed(client, url: str, n: int) -> tuple[float, float, int]:
    times = []
    status = 0
    for _ in range(n):
        start = time.perf_counter()
        answer = client.get(url)
        answer.get_data()
        times.append((time.perf_counter() - start) * 1000)
        status = answer.status_code
    times.sort()
    return statistics.median(times), times[max(int(len(times) * 0.95) - 1, 0)], status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=200_000, help="each draws all 5 categories")
    parser.add_argument("--repeat", type=int, default=20, help="requests per page")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1", help="PostgreSQL server")
    parser.add_argument("--database", default="huigou_bench")
    parser.add_argument("--skip-load", action="store_true", help="reuse the database as it is")
    args = parser.parse_args()
    # The same gunicorn-free preparation as the other benchmarks (migrate + seed), then the load.
    args.workers, args.threads = 1, 1
    dsn = f"{args.pg}/{args.database}"
    if not args.skip_load:
        prepare(args)
        start = time.perf_counter()
        print("==> loading redemptions in SQL")
        count = load(dsn, args.residents)
        print(f"==> {count:,} redemptions loaded in {time.perf_counter() - start:.0f} s")

    os.environ["DATABASE_URL"] = dsn
    os.environ.setdefault("SECRET_KEY", "bench-secret")
    from server import create_app
    from server.auth import accounts
    from server.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": dsn})
    with app.app_context():
        if not db.session.scalar(db.text("SELECT 1 FROM admin_users WHERE username = 'bench'")):
            accounts.create_admin("bench", "bench-password-1", "admin")
            db.session.commit()
        with db.engine.connect() as conn:
            merchant = conn.execute(db.text("SELECT merchant_id FROM redemptions LIMIT 1")).scalar()
            staff = conn.execute(db.text("SELECT staff_id FROM redemptions LIMIT 1")).scalar()
            phone = conn.execute(db.text("SELECT phone FROM residents WHERE openid = 'bench-777'")).scalar()
    # The scheduler's job, run until it has caught up (it stores a week of hours a run), as it would
    # have run every hour (with --skip-load: nothing new to store).
    from server.pool import jobs as scheduler

    start = time.perf_counter()
    close_hours = next(j for j in scheduler.JOBS if j.name == "close_hours")
    closed = runs = 0
    while stored := scheduler.run_job(app, close_hours):
        closed, runs = closed + stored, runs + 1
    print(f"==> close_hours stored {closed} hours in {runs} runs, {time.perf_counter() - start:.1f} s")
    client = app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    form = {"csrf_token": token, "username": "bench", "password": "bench-password-1"}
    answer = client.post("/admin/login", data=form)
    assert answer.status_code == 302, "login failed"

    pages = [
        ("redemptions, newest first", "/admin/lists/redemptions"),
        ("redemptions, page 100", "/admin/lists/redemptions?page=100"),
        ("redemptions by merchant", f"/admin/lists/redemptions?merchant={merchant}"),
        ("redemptions by staff", f"/admin/lists/redemptions?staff={staff}"),
        ("redemptions by buyer phone", f"/admin/lists/redemptions?phone={phone}"),
        ("redemptions by category", "/admin/lists/redemptions?category=fuel"),
        ("redemptions, one day", "/admin/lists/redemptions?from=2026-11-10&to=2026-11-10"),
        ("redemptions, 10% sample", "/admin/lists/redemptions?sample=bench"),
        ("claims, newest first", "/admin/lists/claims"),
        ("claims by phone", f"/admin/lists/claims?phone={phone}"),
        ("residents", "/admin/lists/residents"),
        ("settlement (all merchants)", "/admin/settlement"),
        ("coupon management", "/admin/coupons"),
        ("dashboard", "/admin/"),
        ("risk flags, last day", "/admin/risk?days=1"),
        ("risk flags, last 7 days", "/admin/risk?days=7"),
        ("risk flags, last 30 days", "/admin/risk?days=30"),
    ]
    print()
    print(f"{'page':34}{'median ms':>11}{'p95 ms':>9}{'status':>8}")
    for name, url in pages:
        median, p95, status = timed(client, url, args.repeat)
        mark = "" if p95 < 200 else "   over 200 ms"
        print(f"{name:34}{median:>11.1f}{p95:>9.1f}{status:>8}{mark}")

    # The figures read live cost in proportion to what is not stored: a whole day of it (as after
    # a day of refunds, or with the scheduler down for a day) instead of the last hour or so.
    from server.models import HourMark

    with app.app_context():
        day_ago = db.session.scalar(db.text("SELECT now() - interval '1 day'"))
        db.session.execute(db.update(HourMark).where(HourMark.hour >= day_ago).values(fresh=False))
        db.session.commit()
    for name, url in (
        ("dashboard, last 24 h not stored", "/admin/"),
        ("settlement, last 24 h not stored", "/admin/settlement"),
    ):
        median, p95, status = timed(client, url, args.repeat)
        print(f"{name:34}{median:>11.1f}{p95:>9.1f}{status:>8}")
    scheduler.run_job(app, next(j for j in scheduler.JOBS if j.name == "close_hours"))

    print()
    rows = 0
    start = time.perf_counter()
    answer = client.get("/admin/lists/redemptions/export.csv")
    for chunk in answer.response:
        rows += chunk.count(b"\n")
    seconds = time.perf_counter() - start
    rows -= 1  # the header
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"CSV export through the console: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s")
    print(f"peak memory of this process (console, test client and all): {peak_mb:.0f} MB")

    with app.app_context():
        from server.admin import lists

        # The same rows: the export's own query, its cells formatted by the database.
        query = lists.REDEMPTIONS.query(lists.parse_filters({}, lists.REDEMPTIONS.filters), "admin")
        compiled = query.compile(db.engine, compile_kwargs={"literal_binds": True})
    start = time.perf_counter()
    copied = 0
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor() as cursor,
        cursor.copy(f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv)") as copy,
    ):
        for data in copy:
            copied += bytes(data).count(b"\n")
    copy_seconds = time.perf_counter() - start
    copy_rate = copied / copy_seconds
    print(f"PostgreSQL COPY of the same query:  {copied:,} rows in {copy_seconds:.1f} s = {copy_rate:,.0f} rows/s")
    ratio = (rows / seconds) / copy_rate
    print(f"export / COPY: {ratio:.0%}   (target >= 33%; peak memory target < 250 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
