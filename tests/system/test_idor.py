"""IDOR sweep: no id a resident or a shop assistant can send reaches another's data.

The sweep is driven by the app: every /api/v1 route of `app.url_map`, with its query and body
fields from the served OpenAPI document. Every id-like parameter (every path parameter, and any
field named like an id, code, phone or key) must have an entry in IDS naming the tests below that
cover it, or saying why it is public; an id endpoint added later without one fails
`test_every_id_parameter_of_the_api_has_an_idor_case`, naming it.

A refusal must not tell whether the id exists: the answer to another's id is compared with the
answer to an id that does not exist, and the other party's rows are compared before and after.

Replay of a pay code at the same till is tested in tests/merchant/test_redeem.py
(`test_the_till_scans_and_redeems_once`, `test_a_retried_submission_with_the_same_key_records_once`,
`test_ten_tills_redeeming_one_coupon_at_once_record_one`); here only at another merchant.

`test_a_reused_idempotency_key_does_not_answer_with_another_residents_redemption` is what this
sweep found: a till reusing one key for a second coupon was answered with the first coupon's
redemption. The till's retry lookup is now bound to the coupon.
"""

from __future__ import annotations

import io
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.auth import paycode as paycodes
from server.auth import tokens
from server.extensions import db
from server.models import (
    BindingCode,
    Coupon,
    Draw,
    Enrolment,
    LedgerEntry,
    Merchant,
    Redemption,
    Resident,
    SmsCode,
    Staff,
    SurveyResponse,
)
from tests.helpers import ROOT, auth, csrf_token, redeem

NO_SUCH_ID = 10**9  # a row id no test reaches
DEADLINE = datetime(2026, 6, 29, 16, 0, tzinfo=UTC)  # round 1 coupons: 24:00 of the fifth day, Shanghai


# ---------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class Public:
    """A parameter that names nothing anyone owns, with the reason."""

    reason: str


@dataclass(frozen=True)
class Elsewhere:
    """Covered by a test in another file: "tests/path.py::test_name"."""

    test: str


PAYCODE_TESTS = (
    "test_a_pay_code_naming_another_residents_coupon_is_refused_like_no_coupon",
    "test_a_short_code_of_another_coupon_is_refused_like_no_coupon",
    "test_a_spent_pay_code_is_refused_at_another_merchant",
    "test_tokens_and_pay_codes_are_not_interchangeable",
)
STAFF_BIND_TESTS = (
    "test_another_merchants_assistant_cannot_be_bound_away",
    Elsewhere("tests/merchant/test_enrolment.py::test_staff_bind_refusals"),
)
PHONE_TESTS = (
    "test_binding_another_residents_phone_is_refused_like_a_fresh_phone",
    Elsewhere("tests/draw/test_binding.py::test_bind_refuses_a_phone_bound_to_someone_else"),
)
ID_CARD_TESTS = (
    "test_another_residents_id_card_is_refused_and_the_answer_says_nothing_of_them",
    Elsewhere("tests/draw/test_identity.py::test_one_card_binds_one_resident"),
)
PUBLIC_CATEGORY = Public("a category code of the public campaign; the same answer for everyone")

PUBLIC_CAMPAIGN = Public("an active campaign's code, public on its posters and its public page")

# (method, OpenAPI path, where, name) -> the tests that cover it, or why it is public.
IDS: dict[tuple[str, str, str, str], tuple | Public] = {
    ("GET", "/api/v1/coupons/{coupon_id}/paycode", "path", "coupon_id"): (
        "test_another_residents_coupon_gets_the_answer_of_no_coupon",
        "test_a_token_of_one_kind_opens_nothing_of_the_other",
    ),
    ("GET", "/api/v1/coupons/{coupon_id}/paycode.{kind}", "path", "coupon_id"): (
        "test_another_residents_coupon_gets_the_answer_of_no_coupon",
        "test_a_token_of_one_kind_opens_nothing_of_the_other",
    ),
    ("GET", "/api/v1/coupons/{coupon_id}/paycode.{kind}", "path", "kind"): Public("the image format, png or svg"),
    ("GET", "/api/v1/draw/{category}/wheel", "path", "category"): PUBLIC_CATEGORY,
    ("GET", "/api/v1/categories/{category}/merchants", "path", "category"): PUBLIC_CATEGORY,
    ("POST", "/api/v1/merchant/redemptions/{redemption_id}/revoke", "path", "redemption_id"): (
        "test_another_merchants_redemption_gets_the_answer_of_no_redemption",
        "test_a_token_of_one_kind_opens_nothing_of_the_other",
    ),
    ("POST", "/api/v1/merchant/redemptions/{redemption_id}/refund", "path", "redemption_id"): (
        "test_another_merchants_redemption_gets_the_answer_of_no_redemption",
        "test_a_token_of_one_kind_opens_nothing_of_the_other",
    ),
    ("POST", "/api/v1/merchant/scan", "body", "paycode"): PAYCODE_TESTS,
    ("POST", "/api/v1/merchant/redeem", "body", "paycode"): PAYCODE_TESTS,
    # Headers are not in the OpenAPI document: listed by hand, checked to exist by the test.
    ("POST", "/api/v1/merchant/redeem", "header", "Idempotency-Key"): (
        "test_another_tills_idempotency_key_returns_nothing_of_theirs",
        "test_a_reused_idempotency_key_does_not_answer_with_another_residents_redemption",
    ),
    ("POST", "/api/v1/auth/sms", "body", "phone"): PHONE_TESTS,
    ("POST", "/api/v1/auth/bind", "body", "phone"): PHONE_TESTS,
    ("POST", "/api/v1/auth/bind", "body", "sms_code"): PHONE_TESTS,
    ("POST", "/api/v1/auth/bind", "body", "id_number"): ID_CARD_TESTS,
    ("POST", "/api/v1/auth/identity", "body", "id_number"): ID_CARD_TESTS,
    ("POST", "/api/v1/auth/wechat", "body", "code"): Public(
        "a wx.login code, exchanged with WeChat for the caller's own openid (jscode2session); taking the code"
        " as the openid is the dev adapter, off unless WECHAT_BACKEND=dev (tests/adapters/test_adapters.py)"
    ),
    ("POST", "/api/v1/merchant/bind", "body", "binding_code"): STAFF_BIND_TESTS,
    ("POST", "/api/v1/merchant/bind", "body", "phone"): STAFF_BIND_TESTS,
    ("POST", "/api/v1/merchant/bind", "body", "sms_code"): STAFF_BIND_TESTS,
    ("POST", "/api/v1/merchant/apply", "body", "credit_code"): Public(
        "the applicant's own unified social credit code (a public register); a second application for it"
        " is refused MERCHANT_EXISTS by design, and the answer carries nothing of the first"
    ),
    ("POST", "/api/v1/merchant/apply", "body", "contact_phone"): Public(
        "the applicant's own contact phone, stored; nothing is looked up by it"
    ),
    ("GET", "/api/v1/campaign", "query", "code"): PUBLIC_CAMPAIGN,
    ("POST", "/api/v1/draw", "body", "campaign"): PUBLIC_CAMPAIGN,
    ("POST", "/api/v1/grab", "body", "campaign"): PUBLIC_CAMPAIGN,
    ("POST", "/api/v1/screen/pass", "body", "campaign"): PUBLIC_CAMPAIGN,
    ("POST", "/api/v1/subsidies", "body", "campaign"): PUBLIC_CAMPAIGN,
    ("GET", "/api/v1/categories/{category}/merchants", "query", "code"): PUBLIC_CAMPAIGN,
    ("GET", "/api/v1/draw/{category}/wheel", "query", "code"): PUBLIC_CAMPAIGN,
    # The campaign is public; the draws answered are the bearer's own (tests/draw/test_resident_page_api.py).
    ("GET", "/api/v1/draws", "query", "code"): PUBLIC_CAMPAIGN,
    ("POST", "/api/v1/merchant/apply", "body", "campaign"): PUBLIC_CAMPAIGN,
    ("POST", "/api/v1/merchant/apply", "body", "sms_code"): (
        Elsewhere("tests/merchant/test_enrolment.py::test_an_application_proves_its_contact_phone_by_an_sms_code"),
    ),
    ("POST", "/api/v1/subsidies", "body", "invoice_no"): (
        # The refusal of a second application for an invoice says only that it was applied for,
        # never by whom; the application made is the caller's own, and GET /subsidies lists only those.
        Elsewhere("tests/draw/test_subsidy.py::test_one_subsidy_per_invoice_per_vehicle_and_per_person"),
        "test_a_token_of_one_kind_opens_nothing_of_the_other",
    ),
    ("POST", "/api/v1/grab", "body", "tier_id"): Public(
        "a tier of an active campaign, listed for anyone by GET /api/v1/campaign; the coupon taken is the"
        " caller's own (tests/draw/test_grab.py)"
    ),
    ("GET", "/api/v1/dev/sms-outbox", "query", "phone"): Public(
        "the development SMS outbox, which exists to show codes; registered only under SMS_BACKEND=outbox"
        " (tests/draw/test_binding.py::test_outbox_route_exists_only_under_the_outbox_backend)"
    ),
}

# /api/v1 routes the OpenAPI document does not describe; their path parameters are still swept.
OUTSIDE_OPENAPI = {
    "/api/v1/openapi.json": "the document itself",
    "/api/v1/docs": "Swagger UI",
    "/api/v1/admin/dashboard": "the bureau console's JSON (session sign-in); see test_bearer_tokens_open_no_console",
}

ID_WORDS = {"id", "ids", "code", "paycode", "phone", "key", "token", "openid", "number", "no", "uuid"}
OWNERS = {"resident", "coupon", "redemption", "merchant", "staff", "draw", "campaign", "round", "tier", "user"}


def id_like(name: str) -> bool:
    words = set(re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()))
    return bool(words & (ID_WORDS | OWNERS)) or name.lower().endswith("id")


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?(\w+)>", r"{\1}", rule)


def schema_fields(spec: dict, schema: dict | None, prefix: str = ""):
    """Every field name of a request schema, nested ones as "outer.inner" and "list[].inner"."""
    if not schema:
        return
    if "$ref" in schema:
        yield from schema_fields(spec, spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], prefix)
        return
    for option in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        yield from schema_fields(spec, option, prefix)
    if "items" in schema:
        yield from schema_fields(spec, schema["items"], prefix + "[]")
    for name, sub in schema.get("properties", {}).items():
        yield prefix + ("." if prefix else "") + name
        yield from schema_fields(spec, sub, prefix + ("." if prefix else "") + name)


def id_parameters(app) -> set[tuple[str, str, str, str]]:
    """(method, path, where, name) of every id-like parameter of every /api/v1 route."""
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = openapi_path(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operation = spec["paths"].get(path, {}).get(method.lower())
            if operation is None:
                assert path in OUTSIDE_OPENAPI, (
                    f"{method} {path} is not in the OpenAPI document: document it, or list it in"
                    " tests/system/test_idor.py OUTSIDE_OPENAPI with the reason"
                )
            found |= {(method, path, "path", name) for name in rule.arguments}
            for parameter in (operation or {}).get("parameters", []):
                if parameter["in"] != "path" and id_like(parameter["name"]):
                    found.add((method, path, parameter["in"], parameter["name"]))
            body = (operation or {}).get("requestBody", {}).get("content", {})
            for content in body.values():
                for name in schema_fields(spec, content.get("schema")):
                    if id_like(name.rsplit(".", 1)[-1].removesuffix("[]")):
                        found.add((method, path, "body", name))
    return found


def test_every_id_parameter_of_the_api_has_an_idor_case(app):
    found = id_parameters(app)
    missing = sorted(found - {key for key in IDS if key[2] != "header"})
    assert not missing, "id parameters with no IDOR case in tests/system/test_idor.py (add a test, an IDS entry):\n" + (
        "\n".join(f"  {m} {p} {where} parameter {name!r}" for m, p, where, name in missing)
    )
    routes = {
        (method, openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    # Headers are not in the document: an entry for one goes stale only with its route.
    gone = sorted(k for k in IDS if (k not in found if k[2] != "header" else (k[0], k[1]) not in routes))
    assert not gone, f"IDS names parameters the API no longer has: {gone}"
    module = sys.modules[__name__]
    for key, cover in IDS.items():
        if isinstance(cover, Public):
            assert cover.reason, key
            continue
        for test in cover:
            if isinstance(test, Elsewhere):
                path, _, name = test.test.partition("::")
                assert f"def {name}(" in (ROOT / path).read_text(encoding="utf-8"), f"{key}: no {test.test}"
            else:
                assert callable(getattr(module, test, None)), f"{key}: no test named {test}"


# ---------------------------------------------------------------- the world: two residents, two shops


@dataclass
class World:
    a: str  # resident A's token; A holds an unused hotel coupon
    a_id: int
    a_coupon: dict
    a_paycode: str
    b: str  # resident B's token; B holds an unused fuel coupon and spent a hotel coupon at X
    b_id: int
    b_held: dict
    b_spent: dict
    b_spent_paycode: str
    b_spent_short: str
    x: str  # a staff token of hotel X, which took B's coupon
    x_merchant: int
    x_staff: int
    y: str  # a staff token of hotel Y
    y_merchant: int
    redemption: dict  # B's hotel coupon at X


@pytest.fixture
def world(app, client, make_campaign, make_resident, make_till, clock) -> World:
    make_campaign()
    x_merchant, x = make_till("hotel")
    y_merchant, y = make_till("hotel")
    a_id, a = make_resident()
    b_id, b = make_resident()

    def draw(token, category):
        answer = client.post("/api/v1/draw", json={"category": category}, headers=auth(token))
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["coupon"]

    a_coupon, b_spent, b_held = draw(a, "hotel"), draw(b, "hotel"), draw(b, "fuel")
    a_paycode = client.get(f"/api/v1/coupons/{a_coupon['id']}/paycode", headers=auth(a)).get_json()["paycode"]
    shown = client.get(f"/api/v1/coupons/{b_spent['id']}/paycode", headers=auth(b)).get_json()
    done = redeem(client, x, shown["paycode"], b_spent["threshold_fen"], key="till-1")
    assert done.status_code == 200, done.get_json()
    with app.app_context():
        x_staff = tokens.read(x).id
    return World(
        a=a,
        a_id=a_id,
        a_coupon=a_coupon,
        a_paycode=a_paycode,
        b=b,
        b_id=b_id,
        b_held=b_held,
        b_spent=b_spent,
        b_spent_paycode=shown["paycode"],
        b_spent_short=shown["short_code"],
        x=x,
        x_merchant=x_merchant,
        x_staff=x_staff,
        y=y,
        y_merchant=y_merchant,
        redemption=done.get_json()["redemption"],
    )


def rows(app) -> dict:
    """Everything a resident or a merchant owns, to compare before and after an attempt.

    Refused attempts are logged (refused_redemptions): that is the attempter's record, left out.
    """

    def table(model, *columns):
        return db.session.execute(sa.select(*(getattr(model, c) for c in columns)).order_by(model.id)).all()

    with app.app_context():
        return {
            "coupons": db.session.execute(
                sa.select(Coupon.id, Coupon.state, Coupon.resident_id)
                .where(Coupon.resident_id.is_not(None))
                .order_by(Coupon.id)
            ).all(),
            "redemptions": table(
                Redemption,
                *("id", "coupon_id", "merchant_id", "staff_id", "resident_id", "spend_fen", "note"),
                *("idempotency_key", "revoked_at", "revoke_reason", "refunded_at", "refund_reason"),
                "refunded_spend_fen",
            ),
            "residents": table(Resident, "id", "openid", "name", "phone", "bound_at"),
            "staff": table(Staff, "id", "merchant_id", "name", "phone", "binding_code_id"),
            "merchants": table(Merchant, "id", "credit_code"),
            "enrolments": table(Enrolment, "id", "merchant_id", "campaign_id", "status"),
            "binding_codes": table(BindingCode, "id", "merchant_id", "used_at", "revoked_at"),
            "draws": table(Draw, "id", "resident_id", "outcome"),
            "ledger": table(LedgerEntry, "id"),
            "survey": table(SurveyResponse, "id"),
        }


def till_body(path: str, code: str) -> dict:
    """The body of a scan or of a redeem (spending enough for any coupon of the test campaign)."""
    return {"paycode": code} | ({"spend_fen": 10**6, "spend_category": "住宿"} if path == "redeem" else {})


def error(answer) -> tuple[int, str | None]:
    """Status and error code of an answer (None for an answer that is no error)."""
    return answer.status_code, ((answer.get_json(silent=True) or {}).get("error") or {}).get("code")


# ---------------------------------------------------------------- residents


@pytest.fixture
def b_coupon_in_state(app, client, world, clock):
    """B's coupon in a state, and what B (its owner) is told for it."""

    def make(state: str) -> tuple[int, tuple[int, str | None]]:
        if state == "unused":
            return world.b_held["id"], (200, None)
        if state == "used":
            return world.b_spent["id"], (409, "COUPON_USED")
        if state == "void":  # refunded under the campaign's "return" policy
            path = f"/api/v1/merchant/redemptions/{world.redemption['id']}/refund"
            assert client.post(path, json={"reason": "退货"}, headers=auth(world.x)).status_code == 200
            return world.b_spent["id"], (409, "COUPON_USED")
        assert state == "expired"
        clock.move_to(DEADLINE + timedelta(minutes=1))
        return world.b_held["id"], (409, "COUPON_EXPIRED")

    return make


@pytest.mark.parametrize("state", ["unused", "used", "void", "expired"])
@pytest.mark.parametrize("suffix", ["paycode", "paycode.png", "paycode.svg"])
def test_another_residents_coupon_gets_the_answer_of_no_coupon(app, client, world, b_coupon_in_state, state, suffix):
    coupon_id, owner_sees = b_coupon_in_state(state)
    before = rows(app)
    theirs = client.get(f"/api/v1/coupons/{coupon_id}/{suffix}", headers=auth(world.a))
    none = client.get(f"/api/v1/coupons/{NO_SUCH_ID}/{suffix}", headers=auth(world.a))
    assert error(theirs) == (404, "NOT_FOUND")
    assert (theirs.status_code, theirs.get_json()) == (none.status_code, none.get_json())
    assert "paycode" not in theirs.get_data(as_text=True).lower()
    assert rows(app) == before
    # The owner is told the coupon's state: what A must not learn.
    own = client.get(f"/api/v1/coupons/{coupon_id}/{suffix}", headers=auth(world.b))
    assert (own.status_code, own.get_json()["error"]["code"] if own.status_code != 200 else None) == owner_sees


@pytest.mark.parametrize("status", [None, "unused", "used", "expired"])
def test_a_residents_coupon_list_holds_only_their_own(client, world, clock, status):
    if status == "expired":
        clock.move_to(DEADLINE + timedelta(minutes=1))
    a, held, spent = world.a_coupon["id"], world.b_held["id"], world.b_spent["id"]
    expected = {None: ({a}, {held, spent}), "unused": ({a}, {held}), "used": (set(), {spent}), "expired": ({a}, {held})}
    query = f"?status={status}" if status else ""

    def listed(token, extra=""):
        answer = client.get(f"/api/v1/coupons{query or '?'}{extra}", headers=auth(token))
        assert answer.status_code == 200, answer.get_json()
        return {c["id"] for c in answer.get_json()["items"]}

    assert (listed(world.a), listed(world.b)) == expected[status]
    # Ids smuggled into the query are ignored: still only A's own.
    assert listed(world.a, f"&resident_id={world.b_id}&id={held}&coupon_id={spent}") == expected[status][0]


def test_another_residents_id_card_is_refused_and_the_answer_says_nothing_of_them(app, client, world, clock):
    """One card binds one resident: B's card given by A is refused ID_TAKEN, which says the card is
    taken (the rule itself) and nothing of B: not B's name, phone or masked card; nothing changes."""
    card = "11010519491231002X"
    given = client.post("/api/v1/auth/identity", json={"name": "李四", "id_number": card}, headers=auth(world.b))
    assert given.status_code == 200, given.get_json()
    before = rows(app)
    taken = client.post("/api/v1/auth/identity", json={"name": "王小明", "id_number": card}, headers=auth(world.a))
    assert taken.get_json() == {"error": {"code": "ID_TAKEN", "message": "该身份证号已被其他用户绑定"}}
    assert taken.status_code == 409
    assert rows(app) == before
    with app.app_context():
        a = db.session.get(Resident, world.a_id)
        assert (a.id_hash, a.id_masked) == (None, None)


def test_binding_another_residents_phone_is_refused_like_a_fresh_phone(app, client, world, make_resident, clock):
    with app.app_context():
        b_phone = db.session.get(Resident, world.b_id).phone
    fresh_phone = "13812345678"
    _, newcomer = make_resident(bound=False)
    before = rows(app)

    def attempt(phone, code, token):
        return client.post(
            "/api/v1/auth/bind",
            json={"name": "王小明", "phone": phone, "sms_code": code},
            headers=auth(token) if token else {},
        )

    for token in (newcomer, world.a, None):  # a WeChat token, a bound resident, the H5 page
        # No code asked for yet: the same answer for B's phone and a phone nobody has.
        theirs, none = attempt(b_phone, "123456", token), attempt(fresh_phone, "123456", token)
        assert error(theirs) == (400, "SMS_CODE_INVALID")
        assert theirs.get_json() == none.get_json()
    # Asking for a code says nothing either; a wrong guess then gets the same answer.
    sent = [client.post("/api/v1/auth/sms", json={"phone": p}) for p in (b_phone, fresh_phone)]
    assert [(s.status_code, s.get_json()) for s in sent] == [(200, {"cooldown_s": 60})] * 2
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SmsCode)) == 2
    theirs, none = attempt(b_phone, "000000", newcomer), attempt(fresh_phone, "000000", newcomer)
    assert error(theirs) == (400, "SMS_CODE_INVALID")
    assert theirs.get_json() == none.get_json()
    after = rows(app)
    assert after["residents"] == before["residents"] and after["coupons"] == before["coupons"]


# ---------------------------------------------------------------- merchants


@pytest.mark.parametrize("state", ["fresh", "revoked", "refunded", "past the revoke window"])
@pytest.mark.parametrize("action", ["revoke", "refund"])
def test_another_merchants_redemption_gets_the_answer_of_no_redemption(app, client, world, clock, state, action):
    done = world.redemption["id"]
    if state in ("revoked", "refunded"):
        path = f"/api/v1/merchant/redemptions/{done}/{ {'revoked': 'revoke', 'refunded': 'refund'}[state] }"
        assert client.post(path, json={"reason": "核对"}, headers=auth(world.x)).status_code == 200
    if state == "past the revoke window":
        clock.shift(timedelta(minutes=31))
    before = rows(app)
    theirs = client.post(f"/api/v1/merchant/redemptions/{done}/{action}", json={"reason": "x"}, headers=auth(world.y))
    none = client.post(
        f"/api/v1/merchant/redemptions/{NO_SUCH_ID}/{action}", json={"reason": "x"}, headers=auth(world.y)
    )
    assert error(theirs) == (404, "NOT_FOUND")
    assert theirs.get_json() == none.get_json()
    assert rows(app) == before
    if state in ("revoked", "refunded"):  # X, its own merchant, is told the state Y must not learn
        own = client.post(f"/api/v1/merchant/redemptions/{done}/{action}", json={"reason": "x"}, headers=auth(world.x))
        assert error(own) == (409, "COUPON_USED")


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?start=2026-06-01&end=2026-07-31",
        "?start=2026-06-25&end=2026-06-25&page=1&per_page=100",
        "?page=2&per_page=1",
    ],
)
def test_a_merchants_redemptions_and_settlement_hold_nothing_of_another(app, client, world, query):
    assert client.get(f"/api/v1/merchant/redemptions{query}", headers=auth(world.x)).get_json()["total"] == 1
    listed = client.get(f"/api/v1/merchant/redemptions{query}", headers=auth(world.y)).get_json()
    assert (listed["total"], listed["items"]) == (0, [])
    settled = client.get("/api/v1/merchant/settlement", headers=auth(world.y)).get_json()
    assert (settled["count"], settled["owed_fen"], settled["days"]) == (0, 0, [])
    # Ids smuggled into the query are ignored, not obeyed.
    smuggle = f"merchant_id={world.x_merchant}&staff_id={world.x_staff}&id={world.redemption['id']}"
    sep = "&" if query else "?"
    listed = client.get(f"/api/v1/merchant/redemptions{query}{sep}{smuggle}", headers=auth(world.y)).get_json()
    assert (listed["total"], listed["items"]) == (0, [])
    settled = client.get(f"/api/v1/merchant/settlement?{smuggle}", headers=auth(world.y)).get_json()
    assert (settled["count"], settled["owed_fen"], settled["days"]) == (0, 0, [])


def test_another_tills_idempotency_key_returns_nothing_of_theirs(app, client, world):
    before = rows(app)
    # Y replays X's submission, key and all: refused, and X's redemption is not handed over.
    replay = redeem(client, world.y, world.b_spent_paycode, world.b_spent["threshold_fen"], key="till-1")
    assert error(replay) == (409, "COUPON_USED")
    assert "redemption" not in replay.get_json()
    assert rows(app)["redemptions"] == before["redemptions"]
    # The key is the till's own: Y's first use of it records Y's redemption, X's stays as it was.
    mine = redeem(client, world.y, world.a_paycode, world.a_coupon["threshold_fen"], key="till-1")
    assert mine.status_code == 200, mine.get_json()
    assert mine.get_json()["redemption"]["id"] != world.redemption["id"]
    assert mine.get_json()["redemption"]["coupon_id"] == world.a_coupon["id"]
    with app.app_context():
        x_row = db.session.get(Redemption, world.redemption["id"])
        assert (x_row.merchant_id, x_row.coupon_id, x_row.revoked_at) == (world.x_merchant, world.b_spent["id"], None)
        assert db.session.get(Redemption, mine.get_json()["redemption"]["id"]).merchant_id == world.y_merchant


@pytest.mark.parametrize("spend", ["enough", "below the threshold"])
def test_a_reused_idempotency_key_does_not_answer_with_another_residents_redemption(app, client, world, spend):
    """X's till reuses the key of B's redemption for A's pay code: A's submission is not B's.

    FINDING (fails today): the till is answered 200 with B's redemption (B's coupon, spend and
    note) and A's coupon stays unspent while the till shows success. The key must be refused.
    """
    before = rows(app)
    threshold = world.a_coupon["threshold_fen"]
    answer = redeem(client, world.x, world.a_paycode, threshold if spend == "enough" else threshold - 1, key="till-1")
    assert error(answer) == (400, "INVALID_INPUT"), answer.get_json()
    assert "redemption" not in answer.get_json()
    after = rows(app)
    assert (after["coupons"], after["redemptions"]) == (before["coupons"], before["redemptions"])


def test_a_pay_code_naming_another_residents_coupon_is_refused_like_no_coupon(app, client, world):
    # A pay code the server would never issue (A as holder of B's coupon), signed with its key.
    with app.app_context():
        forged, _ = paycodes.issue(world.b_held["id"], world.a_id, datetime.now(UTC))
        nothing, _ = paycodes.issue(NO_SUCH_ID, world.a_id, datetime.now(UTC))
    before = rows(app)
    for path in ("scan", "redeem"):
        theirs = client.post(f"/api/v1/merchant/{path}", json=till_body(path, forged), headers=auth(world.y))
        none = client.post(f"/api/v1/merchant/{path}", json=till_body(path, nothing), headers=auth(world.y))
        assert error(theirs) == (404, "NOT_FOUND"), path
        assert theirs.get_json() == none.get_json()
    assert rows(app) == before


def test_a_short_code_of_another_coupon_is_refused_like_no_coupon(app, client, world):
    # The short code typed by hand is the coupon's number and eight digits: A's digits, B's number.
    mine = client.get(f"/api/v1/coupons/{world.a_coupon['id']}/paycode", headers=auth(world.a)).get_json()
    digits = mine["short_code"].split("-")[1]
    before = rows(app)
    for path in ("scan", "redeem"):
        theirs = client.post(
            f"/api/v1/merchant/{path}", json=till_body(path, f"{world.b_held['id']}-{digits}"), headers=auth(world.y)
        )
        none = client.post(
            f"/api/v1/merchant/{path}", json=till_body(path, f"{NO_SUCH_ID}-{digits}"), headers=auth(world.y)
        )
        assert error(theirs) == (400, "PAYCODE_EXPIRED"), path
        assert theirs.get_json() == none.get_json()
    assert rows(app) == before


def test_a_spent_pay_code_is_refused_at_another_merchant(app, client, world):
    before = rows(app)
    for code in (world.b_spent_paycode, world.b_spent_short):
        scanned = client.post("/api/v1/merchant/scan", json={"paycode": code}, headers=auth(world.y)).get_json()
        assert scanned["accepted"] is False and scanned["refusal"]["code"] == "COUPON_USED"
        # The till sees the coupon it was shown, nothing of where or when it was spent.
        assert set(scanned["coupon"]) == {
            "id",
            "category",
            "face_fen",
            "threshold_fen",
            "valid_until",
            "usable_hours",
            "spend_categories",
            "short_sale",
        }
        again = redeem(client, world.y, code, world.b_spent["threshold_fen"], key=f"again-{code[:8]}")
        assert error(again) == (409, "COUPON_USED")
    assert rows(app) == before
    with app.app_context():
        assert db.session.scalars(sa.select(Redemption.coupon_id)).all() == [world.b_spent["id"]]
    # And B gets no fresh pay code for it.
    fresh = client.get(f"/api/v1/coupons/{world.b_spent['id']}/paycode", headers=auth(world.b))
    assert error(fresh) == (409, "COUPON_USED")


def test_another_merchants_assistant_cannot_be_bound_away(app, client, world, clock):
    from server.campaign import enrolment as services

    with app.app_context():
        (y_enrolment,) = db.session.get(Merchant, world.y_merchant).enrolments
        y_code = services.issue_binding_code(y_enrolment, datetime.now(UTC))
        db.session.commit()
        x_phone = db.session.get(Staff, world.x_staff).phone
    before = rows(app)

    def bind(code):
        body = {"binding_code": y_code, "name": "店员小王", "phone": x_phone, "sms_code": code}
        return client.post("/api/v1/merchant/bind", json=body)

    assert error(bind("123456")) == (400, "SMS_CODE_INVALID")  # no code asked for X's assistant's phone
    assert client.post("/api/v1/auth/sms", json={"phone": x_phone, "purpose": "staff"}).status_code == 200
    sent = client.get(f"/api/v1/dev/sms-outbox?phone={x_phone}").get_json()["items"][0]["code"]
    assert error(bind("000000" if sent != "000000" else "111111")) == (400, "SMS_CODE_INVALID")
    # Even with the phone's own code, X's assistant stays X's, and Y's code stays unused.
    assert error(bind(sent)) == (409, "PHONE_TAKEN")
    after = rows(app)
    assert (after["staff"], after["binding_codes"]) == (before["staff"], before["binding_codes"])


# ---------------------------------------------------------------- across kinds of token


def bearer_operations(app) -> list[tuple[str, str, str]]:
    """(method, path, kind of token it wants) of every operation the OpenAPI document secures."""
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    return sorted(
        (method.upper(), path, "staff" if path.startswith("/api/v1/merchant/") else "resident")
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and operation.get("security")
    )


# A valid body for every secured operation that takes one, so that only the token is wrong.
@dataclass(frozen=True)
class Form:
    """A multipart body (the subsidy application's invoice photo)."""

    fields: dict


BODIES = {
    ("POST", "/api/v1/auth/bind"): lambda w: {"name": "王小明", "phone": "13812345678", "sms_code": "123456"},
    ("POST", "/api/v1/auth/identity"): lambda w: {"name": "王小明", "id_number": "11010519491231002X"},
    ("POST", "/api/v1/draw"): lambda w: {"category": "fuel"},
    ("POST", "/api/v1/grab"): lambda w: {"tier_id": 1},
    ("POST", "/api/v1/subsidies"): lambda w: Form(
        {
            "vehicle_kind": "fuel",
            "invoice_no": "12345678",
            "invoice_fen": "6000000",
            "vin": "LGXC16DF9P0000001",
            "plate": "晋E00001",
            "registered_on": "2026-06-20",
            "invoice_image": (io.BytesIO(b"x"), "i.png"),
        }
    ),  # fmt: skip
    ("POST", "/api/v1/survey"): lambda w: {"answers": [{"question": 1, "choices": [0]}]},
    ("POST", "/api/v1/merchant/scan"): lambda w: {"paycode": w.a_paycode},
    ("POST", "/api/v1/merchant/redeem"): lambda w: {
        "paycode": w.a_paycode,
        "spend_fen": w.a_coupon["threshold_fen"],
        "spend_category": "住宿",
    },
    ("POST", "/api/v1/merchant/redemptions/{redemption_id}/revoke"): lambda w: {"reason": "核对"},
    ("POST", "/api/v1/merchant/redemptions/{redemption_id}/refund"): lambda w: {"reason": "退货"},
    ("POST", "/api/v1/merchant/staff/unbind"): lambda w: {},
}


@pytest.mark.parametrize("to", ["resident", "staff"])
def test_a_token_of_one_kind_opens_nothing_of_the_other(app, client, world, to):
    # Resident A and X's assistant have the same row id: only the token's kind tells them apart.
    assert world.a_id == world.x_staff
    operations = [op for op in bearer_operations(app) if op[2] == to]
    assert operations, f"no secured {to} operation in the OpenAPI document"
    ids = {"coupon_id": world.a_coupon["id"], "redemption_id": world.redemption["id"], "kind": "png"}
    token = world.x if to == "resident" else world.a
    before = rows(app)
    for method, path, _ in operations:
        assert method == "GET" or (method, path) in BODIES, f"add a valid body for {method} {path} to BODIES"
        url = path.format(**ids)
        body = BODIES[(method, path)](world) if method != "GET" else None
        multipart = isinstance(body, Form)
        sent = {"data": body.fields, "content_type": "multipart/form-data"} if multipart else {"json": body}
        answer = client.open(url, method=method, headers=auth(token) | {"Idempotency-Key": "kind"}, **sent)
        assert error(answer) == (403, "FORBIDDEN"), f"{method} {path} with a {to} endpoint's wrong kind of token"
    assert rows(app) == before


def test_tokens_and_pay_codes_are_not_interchangeable(app, client, world):
    before = rows(app)
    # A pay code (shown to every till) is no bearer token, for a resident's or a staff endpoint.
    for url in ("/api/v1/coupons", "/api/v1/merchant/redemptions"):
        assert error(client.get(url, headers=auth(world.a_paycode))) == (401, "UNAUTHORIZED"), url
    # A resident's bearer token is no pay code.
    for path in ("scan", "redeem"):
        answer = client.post(f"/api/v1/merchant/{path}", json=till_body(path, world.a), headers=auth(world.y))
        assert error(answer) == (400, "PAYCODE_EXPIRED"), path
    assert rows(app) == before


# ---------------------------------------------------------------- the bureau's console


@pytest.mark.parametrize("who", ["a", "x"])
def test_bearer_tokens_open_no_console(client, world, who):
    """The console signs in with its own session; a resident's or assistant's token is nobody there.

    Its roles' boundaries are tested in tests/admin: auditors change nothing
    (test_access.py::test_only_admins_and_operators_review_merchants, test_lists.py's claim revoke),
    only admins change quotas (test_campaigns.py::test_operators_and_auditors_only_read_quotas).
    """
    headers = auth(getattr(world, who))
    answer = client.get("/api/v1/admin/dashboard", headers=headers)
    assert answer.status_code == 401
    assert answer.get_json() == {"error": {"code": "UNAUTHORIZED", "message": "请先登录"}}
    for path in ("/admin/", f"/admin/settlement/{world.x_merchant}.xlsx", "/admin/lists/redemptions"):
        page = client.get(path, headers=headers)
        assert page.status_code == 302 and page.headers["Location"].startswith("/admin/login"), path
    # A form with a good CSRF token (the login page's) but no console session changes nothing.
    token = csrf_token(client.get("/admin/login").get_data(as_text=True))
    form = {"csrf_token": token, "reason": "x"}
    revoke = client.post(f"/admin/claims/{world.b_held['id']}/revoke", data=form, headers=headers)
    assert revoke.status_code == 302 and revoke.headers["Location"].startswith("/admin/login")
    with client.application.app_context():
        assert db.session.get(Coupon, world.b_held["id"]).state == "claimed"
