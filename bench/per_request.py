#!/usr/bin/env python
"""What one draw and one redemption cost in CPU, in one process, beside the raw-SQL floor's.

No HTTP server and no load: each request goes straight through the app's WSGI callable, one after
another, as production runs it (the request log written, the figures counted, rate limits off as
in every benchmark), so the CPU each costs the app and PostgreSQL is read without the noise of
wrk, gunicorn and two cores shared by all. Against PostgreSQL on 127.0.0.1:

1. recreates `huigou_perreq`, loads the Qian'an demo campaign, binds N residents and a shop
   assistant per merchant (through the API);
2. times the draws of every resident in four categories (the restaurant's is left out: it sells
   out, and a sold-out answer is another path), then fetches a pay code for each coupon and times
   their redemptions;
3. times the floor's draw and redemption (bench/floor_app.py) the same way.

Prints the app's CPU (this process) and PostgreSQL's (every `postgres` process) per request.

`--slices FILE` reads instead a py-spy sample of this script (`py-spy record -f raw -o FILE --
python bench/per_request.py`; py-spy is not a dependency: `pip install py-spy` in any environment)
and prints where the app's CPU goes in each path, by slice.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import random
import re
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.draw_burst import CATEGORIES, cpu_split, prepare  # noqa: E402
from bench.redeem_burst import demo_merchants  # noqa: E402

DRAWN = [category for category in CATEGORIES if category != "restaurant"]  # it sells out


def environ(method: str, path: str, body: dict | None, headers: dict, query: str = "") -> dict:
    raw = json.dumps(body).encode() if body is not None else b""
    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(raw),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": str(len(raw)),
    }
    if body is not None:
        env["CONTENT_TYPE"] = "application/json"
    for name, value in headers.items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


class Client:
    """Requests straight through a WSGI callable."""

    def __init__(self, wsgi) -> None:
        self.wsgi = wsgi

    def __call__(self, method: str, path: str, body=None, token=None, headers=None, query=""):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        status: list[str] = []
        answer = b"".join(self.wsgi(environ(method, path, body, headers, query), lambda s, h, e=None: status.append(s)))
        return int(status[0][:3]), (json.loads(answer) if answer else None)


def timed(label: str, requests: list, send) -> dict:
    """Send each request; CPU of this process and of PostgreSQL per request."""
    app_before, pg_before = time.process_time(), cpu_split(None)[1]
    statuses = collections.Counter(send(request) for request in requests)
    app_s, pg_s = time.process_time() - app_before, cpu_split(None)[1] - pg_before
    n = len(requests)
    print(f"{label:<32}{n:>7}{app_s * 1000 / n:>10.2f}{pg_s * 1000 / n:>8.2f}   {dict(statuses)}")
    return {"app_ms": app_s * 1000 / n, "pg_ms": pg_s * 1000 / n}


def measure(args) -> None:
    env, seed = prepare(args)
    os.environ.update(env | {"REQUEST_LOG": "true"})

    from server import create_app

    app = create_app()
    call = Client(app.wsgi_app)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "huigou-perreq-requests.log"
    with open(log, "w") as lines, contextlib.redirect_stderr(lines):  # as journald takes them in production
        figures = _timed_paths(call, seed, args, env["DATABASE_URL"])
    for path, floor_path in (("draw", "floor_draw"), ("redeem", "floor_redeem")):
        ours, base = figures[path], figures[floor_path]
        ratio = (base["app_ms"] + base["pg_ms"]) / (ours["app_ms"] + ours["pg_ms"])
        print(f"{path}: app + PostgreSQL {ours['app_ms'] + ours['pg_ms']:.2f} ms, the floor's {ratio:.0%} of it")


def _timed_paths(call: Client, seed: str, args, dsn: str) -> dict:
    from bench import floor_app

    def sms(phone: str, purpose: str | None = None) -> str:
        call("POST", "/api/v1/auth/sms", {"phone": phone} | ({"purpose": purpose} if purpose else {}))
        return call("GET", "/api/v1/dev/sms-outbox", query=f"phone={phone}")[1]["items"][0]["code"]

    residents = []
    for i in range(args.residents):
        phone = f"13{i:09d}"
        token = call("POST", "/api/v1/auth/wechat", {"code": f"perreq-{i}"})[1]["token"]
        bound = call("POST", "/api/v1/auth/bind", {"name": "压测居民", "phone": phone, "sms_code": sms(phone)}, token)
        residents.append(bound[1]["token"])
    staff: dict[str, list[str]] = {}
    for n, (category, code) in enumerate(demo_merchants(seed)):
        phone = f"17{n:09d}"
        body = {"binding_code": code, "name": "压测店员", "phone": phone, "sms_code": sms(phone, "staff")}
        staff.setdefault(category, []).append(call("POST", "/api/v1/merchant/bind", body)[1]["token"])
    print(f"==> {len(residents)} residents and {sum(map(len, staff.values()))} shop assistants bound")

    rng = random.Random(7)
    draws = [(token, category) for token in residents for category in DRAWN]
    rng.shuffle(draws)
    won = []

    def draw(request) -> int:
        token, category = request
        status, answer = call("POST", "/api/v1/draw", {"category": category}, token)
        if status == 200:
            won.append((token, category, answer["coupon"]))
        return status

    warm = args.warm
    for request in draws[:warm]:
        draw(request)
    print(f"\n{'':<32}{'requests':>7}{'app ms':>10}{'pg ms':>8}   answers")
    figures = {"draw": timed("POST /api/v1/draw", draws[warm:], draw)}

    codes = []
    for token, category, coupon in won:
        paycode = call("GET", f"/api/v1/coupons/{coupon['id']}/paycode", token=token)[1]["paycode"]
        codes.append((category, coupon["threshold_fen"], paycode))

    def redeem(request) -> int:
        category, threshold, paycode = request
        body = {"paycode": paycode, "spend_fen": threshold, "spend_category": "其他"}
        key = {"Idempotency-Key": uuid.uuid4().hex}
        return call("POST", "/api/v1/merchant/redeem", body, rng.choice(staff[category]), key)[0]

    for request in codes[:warm]:
        redeem(request)
    figures["redeem"] = timed("POST /api/v1/merchant/redeem", codes[warm:], redeem)

    floor_app.prepare(dsn)
    floor = Client(floor_app.create_app().wsgi_app)
    n = len(draws) - warm
    figures["floor_draw"] = timed(
        "raw-SQL floor: draw", [None] * n, lambda _: floor("POST", "/floor", {"category": "hotel"}, "x.y")[0]
    )
    spent = rng.sample(range(1, 200_001), len(codes))
    figures["floor_redeem"] = timed(
        "raw-SQL floor: redemption",
        spent[warm:],
        lambda c: floor("POST", "/floor-redeem", {"paycode": c, "spend_fen": 30000}, "x.y")[0],
    )
    return figures


# Where a sample's CPU goes: the outermost frame of these decides (what wraps the rest) ...
OWNERS = [
    ("request log line and figures (after_request)", r"core/requestlog\.py|core/metrics\.py|prometheus_client/"),
    ("security headers", r"auth/headers\.py"),
    ("signed token, pay code (itsdangerous)", r"auth/tokens\.py|auth/paycode\.py|itsdangerous/"),
    ("input: JSON body, checks, validation", r"Parser\.parse |refuse_unstorable|Schema\.load"),
    ("output: serialisation (marshmallow, JSON)", r"_jsonify|Schema\.dump|^jsonify "),
]
# ... else the innermost of these.
INNER = [
    ("database driver (psycopg)", r"psycopg/"),
    ("SQLAlchemy: statements", r"sqlalchemy/(engine|sql)/"),
    ("SQLAlchemy: session, pool (begin, commit, close)", r"sqlalchemy/(orm|pool|util)/|flask_sqlalchemy/"),
    ("the view's own logic", r"server/(draw|merchant|pool|campaign|auth|core)/"),
]
REST = "Flask, Werkzeug, APIFlask around the view"


def slices(path: Path) -> None:
    owners = [(name, re.compile(pattern)) for name, pattern in OWNERS]
    inner = [(name, re.compile(pattern)) for name, pattern in INNER]
    for marker, label in (("draw", "a draw"), ("redeem", "a redemption")):
        counts: collections.Counter = collections.Counter()
        for line in path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            frames = stack.split(";")
            # A sample inside the timed loop, not one waiting for PostgreSQL's answer.
            below = [
                i
                for i, frame in enumerate(frames)
                if "per_request.py" in frame and frame.split(" (")[0].rpartition(".")[2] == marker
            ]
            if not below or frames[-1].startswith(("Connection.wait", "wait_c")):
                continue
            frames = frames[below[-1] + 1 :]
            found = next((name for frame in frames for name, p in owners if p.search(frame)), None)
            found = found or next((name for frame in reversed(frames) for name, p in inner if p.search(frame)), REST)
            counts[found] += int(n)
        total = sum(counts.values()) or 1
        print(f"\n{label}: {total} samples")
        for name, n in counts.most_common():
            print(f"  {100 * n / total:5.1f}%  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=1500, help="each draws 4 categories")
    parser.add_argument("--warm", type=int, default=200, help="requests of each kind before timing")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1")
    parser.add_argument("--database", default="huigou_perreq")
    parser.add_argument("--slices", type=Path, help="a py-spy raw sample of this script: print its slices")
    args = parser.parse_args()
    if args.slices:
        slices(args.slices)
    else:
        measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
