"""Helpers shared by the tests: the standard campaign document, times, headers."""

from __future__ import annotations

import copy
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each pytest-xdist worker has a database of its own: TEST_DATABASE_URL's, suffixed with the worker.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
PG_URL = os.environ.get("TEST_DATABASE_URL", "")
ON_POSTGRES = PG_URL.startswith("postgresql")
if ON_POSTGRES and WORKER:
    PG_URL = f"{PG_URL}_{WORKER}"

# A moment inside round 1 of the standard test campaign (09:00 Shanghai = 01:00 UTC).
T0 = datetime(2026, 6, 25, 1, 0, tzinfo=UTC)


def campaign_doc(**overrides) -> dict:
    """A small wheel campaign: two categories, 7 rounds from 2026-06-25 09:00 Shanghai."""
    doc = {
        "campaign": {
            "code": "test-campaign",
            "name": "测试消费券",
            "region": "乾安县",
            "budget_yuan": 100000,
            "threshold_multiple": 3,
            "min_leverage": 3,
            "refund_policy": "return",
        },
        "categories": [{"code": "hotel", "name": "宾馆"}, {"code": "fuel", "name": "加油"}],
        "tiers": [
            {"category": "hotel", "face_yuan": 50, "quantity": 40},
            {"category": "hotel", "face_yuan": 100, "quantity": 20},
            {"category": "hotel", "face_yuan": 200, "quantity": 10},
            {"category": "fuel", "face_yuan": 100, "quantity": 30},
        ],
        "rounds": {"count": 7, "first_draw": "2026-06-25T09:00", "every_days": 5, "valid_days": 5},
    }
    for key, value in overrides.items():
        if key in doc["campaign"] or key in {
            "geofence",
            "draw_strategy",
            "thanks_weight",
            "validity",
            "allocate",
            "rollover",
            "release",
            "ends",
            "leftover",
            "short_sale",
            "identity",
            "wallet",
        }:
            doc["campaign"][key] = value
        else:
            doc[key] = value
    return copy.deepcopy(doc)


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def write_json(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def assert_books_count_the_coupons(campaign_id: int) -> None:
    """The console's coupon table, counted from the ledger, equals the coupons' own states."""
    import sqlalchemy as sa

    from server.admin.coupons import coupon_table
    from server.extensions import db
    from server.models import Campaign, Coupon, Round

    campaign = db.session.get(Campaign, campaign_id)
    counted: dict[tuple, dict[str, int]] = {}
    for number, tier_id, state, n in db.session.execute(
        sa.select(Round.number, Coupon.tier_id, Coupon.state, sa.func.count())
        .join(Round, Round.id == Coupon.round_id)
        .where(Round.campaign_id == campaign_id)
        .group_by(Round.number, Coupon.tier_id, Coupon.state)
    ):
        tier = next(t for t in campaign.tiers if t.id == tier_id)
        counted.setdefault((number, tier.category.name, tier.face_fen, tier.threshold_fen), {})[state] = n
    table = {
        (r.round_number, r.category, r.face_fen, r.threshold_fen): {k: v for k, v in r.states.items() if v}
        for r in coupon_table(campaign)
    }
    assert {key: table.get(key) for key in counted} == counted


def fresh_world(app, doc: dict, residents: int) -> tuple[int, list[str]]:
    """Empty the database (a hypothesis example shares its test's app); a campaign from `doc` and
    bound residents' tokens. For property tests that need a new world per example."""
    from server.auth import tokens
    from server.campaign import file as campaign_file
    from server.core.cache import forget as forget_snapshot
    from server.extensions import db
    from server.models import Resident

    with app.app_context():
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        plan, problems = campaign_file.check(campaign_file.Document(doc, "test"))
        assert problems == []
        campaign = campaign_file.create(plan)
        made = []
        for n in range(residents):
            resident = Resident(openid=f"p{n}", name="测试居民", phone=f"1390000{n:04d}", bound_at=T0)
            db.session.add(resident)
            db.session.flush()
            made.append(tokens.issue("resident", resident.id, bound=True))
        db.session.commit()
        forget_snapshot()
        return campaign.id, made


def at_once(app, calls) -> list:
    """Run each call(client) at the same moment, each from its own thread, test client and
    database connection; their answers as (status, JSON body), in order."""
    import threading

    start = threading.Barrier(len(calls))
    answers: list = [None] * len(calls)

    def run(i, call):
        client = app.test_client()
        start.wait()
        response = call(client)
        answers[i] = (response.status_code, response.get_json())

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


# ---------------------------------------------------------------- the till and the console

PASSWORD = "correct-horse-battery"


def paycode(client, token, coupon_id):
    answer = client.get(f"/api/v1/coupons/{coupon_id}/paycode", headers=auth(token))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["paycode"]


def redeem(client, staff, code, spend_fen, key=None, category="住宿"):
    headers = auth(staff) | ({"Idempotency-Key": key} if key else {})
    body = {"paycode": code, "spend_fen": spend_fen, "spend_category": category}
    return client.post("/api/v1/merchant/redeem", json=body, headers=headers)


def csrf_token(html: str) -> str:
    import re

    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client, username: str, password: str = PASSWORD, next_: str | None = None):
    page = client.get("/admin/login")
    token = csrf_token(page.get_data(as_text=True))
    url = "/admin/login" + (f"?next={next_}" if next_ else "")
    return client.post(url, data={"csrf_token": token, "username": username, "password": password})


def enrolment_id(app, merchant_id: int) -> int:
    """The id of a merchant's one enrolment (the tests' merchants apply to one campaign)."""
    from server.extensions import db
    from server.models import Merchant

    with app.app_context():
        (only,) = db.session.get(Merchant, merchant_id).enrolments
        return only.id


def enrolment_status(app, merchant_id: int) -> str:
    from server.extensions import db
    from server.models import Merchant

    with app.app_context():
        (only,) = db.session.get(Merchant, merchant_id).enrolments
        return only.status


def id_number(n: int, region: str = "230407", born: str = "19800101") -> str:
    """A valid ID card number (GB 11643: its check character computed), the n-th of a region and day."""
    from server.core.idcard import check_character

    first17 = f"{region}{born}{n % 1000:03d}"
    return first17 + check_character(first17)


def apply_merchant(client, body: dict):
    """POST /merchant/apply with the contact phone proven: a code for it stored as if sent (the
    sending itself, cooldown and all, is tested in tests/draw/test_binding.py)."""
    from datetime import timedelta

    from server.auth.sms_codes import _hash
    from server.core.time import utcnow
    from server.extensions import db
    from server.models import SmsCode

    phone = body["contact_phone"]
    with client.application.app_context():
        now = utcnow()
        db.session.add(SmsCode(phone=phone, purpose="apply", code_hash=_hash(phone, "246810"), created_at=now,
                               expires_at=now + timedelta(minutes=5)))  # fmt: skip
        db.session.commit()
    return client.post("/api/v1/merchant/apply", json=body | {"sms_code": "246810"})


def claims_and_redemptions(client, make_campaign, make_resident, make_till, clock) -> tuple[list[int], list[int]]:
    """Five claims and two redemptions at 09:00 (T0), then the clock a minute later: (coupon ids,
    redemption ids). What the chain's and the backups' tests seal and check."""
    make_campaign()
    _, staff = make_till("hotel")
    coupons = []
    for _ in range(5):
        _, token = make_resident()
        body = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).get_json()
        coupons.append((token, body["coupon"]))
    redeemed = []
    for token, coupon in coupons[:2]:
        answer = redeem(client, staff, paycode(client, token, coupon["id"]), coupon["threshold_fen"])
        assert answer.status_code == 200, answer.get_json()
        redeemed.append(answer.get_json()["redemption"]["id"])
    clock.move_to(T0 + timedelta(minutes=1))
    return [c["id"] for _, c in coupons], redeemed


# The app's settings under test (conftest's `app`, and the tests that build an app of their own).
TEST_CONFIG = {
    "TESTING": True,
    "SECRET_KEY": "test-secret",
    "SMS_BACKEND": "outbox",
    "WECHAT_BACKEND": "dev",
    "CAMPAIGN_CACHE_SECONDS": 0,
    "RATELIMIT_STORAGE_URI": "memory://",
}
