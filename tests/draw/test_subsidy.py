"""Purchase subsidies (Jincheng's car and motorcycle coupons): applying, the bracket table at its
edges, one subsidy per invoice, vehicle and person, the invoice photo's checks, and payment from
the pool through the ledger when the bureau approves."""

from __future__ import annotations

import io
import json
import random
import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa
from PIL import Image, ImageDraw

from server.admin.subsidies import review
from server.campaign.file.check import _check_brackets
from server.campaign.subsidy import bracket_for
from server.core.errors import Refusal
from server.core.time import utcnow
from server.extensions import db
from server.models import AdminUser, Campaign, LedgerEntry, SubsidyApplication
from server.pool import ledger
from tests.helpers import ON_POSTGRES, ROOT, auth

JINCHENG = json.loads((ROOT / "examples" / "jincheng-2026-vehicles.json").read_text(encoding="utf-8"))


def invoice_photo(kind: str = "PNG", size=(900, 560)) -> bytes:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, size[0] - 20, size[1] - 20), outline="black", width=4)
    draw.text((60, 60), "INVOICE 26140000000012345678  TOTAL 150000.00", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return buffer.getvalue()


PHOTO = invoice_photo()


def form(n: int = 1, **changes) -> dict:
    """An application's fields: a new-energy car for 150,000 yuan, its invoice, VIN and plate."""
    fields = {
        "vehicle_kind": "new_energy",
        "invoice_no": f"2614000000001234{n:04d}",
        "invoice_fen": 15_000_000,
        "vin": f"LGXC16DF9P{n:07d}",
        "plate": f"晋E{n:05d}",
        "registered_on": "2026-06-20",
    }
    return fields | changes


def apply(client, token, fields: dict, photo: bytes = PHOTO, name: str = "invoice.png"):
    data = {k: str(v) for k, v in fields.items()} | {"invoice_image": (io.BytesIO(photo), name)}
    return client.post("/api/v1/subsidies", data=data, headers=auth(token), content_type="multipart/form-data")


@pytest.fixture
def jincheng(make_campaign):
    return make_campaign(JINCHENG)


@pytest.mark.parametrize(
    ("vehicle", "invoice_yuan", "subsidy_yuan"),
    [
        ("new_energy", "29999.99", None),
        ("new_energy", "30000", 800),
        ("new_energy", "59999.99", 800),
        ("new_energy", "60000", 2000),  # 6万（含）: the upper bracket
        ("new_energy", "99999.99", 2000),
        ("new_energy", "100000", 3000),
        ("new_energy", "199999.99", 3000),
        ("new_energy", "200000", 5000),
        ("new_energy", "1500000", 5000),
        ("fuel", "60000", 1000),
        ("fuel", "59999.99", 600),
        ("used", "200000", 4000),
        ("motorcycle", "4800", 300),
    ],
)
def test_the_bracket_table_at_its_edges(vehicle, invoice_yuan, subsidy_yuan):
    brackets = _check_brackets(JINCHENG["subsidy_brackets"], "subsidy", lambda *a: pytest.fail(str(a)))
    fen = int(Decimal(invoice_yuan) * 100)
    expected = None if subsidy_yuan is None else subsidy_yuan * 100
    assert bracket_for(brackets, vehicle, fen) == expected


def test_jincheng_imports_and_shows_its_table(client, runner, app):
    result = runner.invoke(args=["campaign", "import", str(ROOT / "examples" / "jincheng-2026-vehicles.json")])
    assert result.exit_code == 0, result.output
    assert "补贴：新能源汽车 6万（含）—10万以下 → 2000 元" in result.output
    shown = client.get("/api/v1/campaign?code=jincheng-2026-vehicles").get_json()
    assert shown["kind"] == "subsidy" and shown["tiers"] == []
    rows = [(r["vehicle_name"], r["span"], r["subsidy_fen"]) for r in shown["subsidy_brackets"]]
    assert rows[:4] == [
        ("新能源汽车", "3万（含）—6万以下", 80000),
        ("新能源汽车", "6万（含）—10万以下", 200000),
        ("新能源汽车", "10万（含）—20万以下", 300000),
        ("新能源汽车", "20万（含）以上", 500000),
    ]
    assert rows[-1] == ("摩托车", "不限", 30000)


def test_an_application_gets_its_bracket_and_waits_for_review(app, client, jincheng, make_resident):
    _, token = make_resident()
    answer = apply(client, token, form(invoice_fen=6_000_000))  # exactly 60,000 yuan
    assert answer.status_code == 201, answer.get_json()
    application = answer.get_json()["application"]
    assert (application["subsidy_fen"], application["status"], application["status_name"]) == (
        200000,
        "pending",
        "待审核",
    )
    assert application["vin"] == "LGXC16DF9P0000001" and application["plate"] == "晋E00001"
    mine = client.get("/api/v1/subsidies", headers=auth(token)).get_json()["items"]
    assert [a["id"] for a in mine] == [application["id"]]
    with app.app_context():
        stored = db.session.get(SubsidyApplication, application["id"])
        assert stored.image == PHOTO and stored.image_type == "png"


def test_an_invoice_below_the_table_is_not_eligible(client, jincheng, make_resident):
    _, token = make_resident()
    answer = apply(client, token, form(invoice_fen=2_999_999))
    assert answer.status_code == 409
    assert answer.get_json()["error"] == {
        "code": "NOT_ELIGIBLE",
        "message": "新能源汽车发票金额须在30,000元（含）以上才能申请补贴，本次发票金额29,999.99元",
    }


def test_one_subsidy_per_invoice_per_vehicle_and_per_person(app, client, jincheng, make_resident):
    _, first = make_resident()
    _, second = make_resident()
    assert apply(client, first, form(1)).status_code == 201
    same_invoice = apply(client, second, form(2, invoice_no=form(1)["invoice_no"]))
    assert same_invoice.status_code == 409
    assert same_invoice.get_json()["error"] == {
        "code": "ALREADY_APPLIED",
        "message": "这张发票已申请过补贴，每张发票只能申请一次",
    }
    same_vehicle = apply(client, second, form(2, vin=form(1)["vin"]))
    assert same_vehicle.get_json()["error"]["message"] == "这辆车已申请过补贴，每辆车只能补贴一次"
    second_car = apply(client, first, form(3))
    assert second_car.get_json()["error"]["message"] == "您已申请过汽车补贴，每人限补贴一次"
    motorcycle = apply(client, first, form(4, vehicle_kind="motorcycle", invoice_fen=480_000))
    assert motorcycle.status_code == 201 and motorcycle.get_json()["application"]["subsidy_fen"] == 30000
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SubsidyApplication)) == 2


def test_a_rejected_application_may_be_made_again(app, client, jincheng, make_resident):
    _, token = make_resident()
    first = apply(client, token, form()).get_json()["application"]
    with app.app_context():
        admin = AdminUser(username="reviewer", password_hash="x", role="operator")
        db.session.add(admin)
        db.session.flush()
        review(admin, first["id"], False, "发票照片模糊，请重新拍摄上传", utcnow())
        db.session.commit()
    shown = client.get("/api/v1/subsidies", headers=auth(token)).get_json()["items"][0]
    assert (shown["status"], shown["review_note"]) == ("rejected", "发票照片模糊，请重新拍摄上传")
    assert apply(client, token, form()).status_code == 201


@pytest.mark.parametrize(
    ("photo", "name", "message"),
    [
        (b"%PDF-1.4 not a photo at all", "invoice.pdf", "无法识别发票照片，请上传清晰的 JPG、PNG 或 WEBP 图片"),
        (PHOTO[: len(PHOTO) // 2], "cut.png", "无法识别发票照片，请上传清晰的 JPG、PNG 或 WEBP 图片"),
        (invoice_photo("GIF"), "invoice.gif", "发票照片须为 JPG、PNG 或 WEBP 格式"),
        (invoice_photo(size=(120, 80)), "tiny.png", "发票照片太小，看不清内容，请重新拍摄"),
        (b"", "empty.png", "请上传发票照片"),
    ],
)
def test_the_invoice_photo_must_be_an_image(app, client, jincheng, make_resident, photo, name, message):
    _, token = make_resident()
    answer = apply(client, token, form(), photo, name)
    assert answer.status_code == 400
    assert answer.get_json()["error"] == {"code": "IMAGE_INVALID", "message": message}
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SubsidyApplication)) == 0


def test_the_invoice_photo_is_bounded_in_size(app, client, jincheng, make_resident):
    _, token = make_resident()
    limit = app.config["INVOICE_IMAGE_MAX_BYTES"]
    # A real JPEG padded past the limit (trailing bytes after its end are what a bloated file looks like).
    bloated = invoice_photo("JPEG") + b"\0" * (limit + 1)
    too_big = apply(client, token, form(), bloated, "big.jpg")
    assert too_big.status_code in (400, 413)
    assert too_big.get_json()["error"]["code"] in ("IMAGE_INVALID", "PAYLOAD_TOO_LARGE")
    # Pixels are bounded too: a small file that would decode to a huge image is refused unread.
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < limit
    answer = apply(client, token, form(), bomb.getvalue(), "bomb.png")
    assert answer.get_json()["error"]["code"] == "IMAGE_INVALID"
    # A real phone photo, far above the API's 64 KB cap for other requests, is taken.
    noise = io.BytesIO()
    Image.frombytes("RGB", (700, 700), random.Random(8).randbytes(700 * 700 * 3)).save(noise, format="PNG")
    assert len(noise.getvalue()) > 1_000_000
    assert apply(client, token, form(), noise.getvalue(), "photo.png").status_code == 201
    # Another API request keeps the small cap.
    big_body = {"category": "x" * 100_000}
    assert client.post("/api/v1/draw", json=big_body, headers=auth(token)).status_code == 413


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vin": "LGXC16DF9P00000I1"}, "车辆识别代号（VIN）应为17位，不含字母I、O、Q，请按行驶证填写"),
        ({"plate": "E12345"}, "号牌号码格式不正确，例如 晋E12345"),
        ({"invoice_no": "12-34"}, "发票号码应为8至40位数字或字母，请按发票上的号码填写"),
        ({"registered_on": "2026-06-26"}, "上户登记日期不能晚于今天"),
    ],
)
def test_registration_details_are_checked(client, jincheng, make_resident, clock, changes, message):
    _, token = make_resident()
    answer = apply(client, token, form(**changes))
    assert answer.status_code == 400
    assert answer.get_json()["error"] == {"code": "INVALID_INPUT", "message": message}


def test_a_vehicle_registered_before_the_campaign_is_not_eligible(client, jincheng, make_resident, clock):
    _, token = make_resident()
    answer = apply(client, token, form(registered_on="2026-01-19"))
    assert answer.status_code == 409
    assert answer.get_json()["error"] == {
        "code": "NOT_ELIGIBLE",
        "message": "本活动补贴2026年1月20日（含）以后上户登记的车辆",
    }
    assert apply(client, token, form(registered_on="2026-01-20")).status_code == 201


def test_after_the_campaign_what_was_not_paid_goes_back_to_the_treasury(
    app, client, jincheng, make_resident, clock, balanced
):
    from datetime import UTC, datetime

    from server.pool.jobs import run_all

    _, token = make_resident()
    application = apply(client, token, form()).get_json()["application"]
    admin_id = reviewer(app)
    with app.app_context():
        review(db.session.get(AdminUser, admin_id), application["id"], True, None, utcnow())
        db.session.commit()
    clock.move_to(datetime(2026, 12, 31, 15, 59, tzinfo=UTC))  # 23:59 on the last evening
    _, late = make_resident()
    last = apply(client, late, form(2)).get_json()["application"]
    clock.move_to(datetime(2027, 2, 1, tzinfo=UTC))
    run_all(app)
    totals = balanced(jincheng)
    # The pending application's subsidy waits in the pool for its review; the rest went back.
    assert (totals["subsidy"], totals["treasury"], totals["pool"]) == (300000, 1_000_000_000 - 600000, 300000)
    with app.app_context():
        review(db.session.get(AdminUser, admin_id), last["id"], False, "发票与车辆信息不符", utcnow())
        db.session.commit()
    run_all(app)  # rejected: its share follows the rest
    totals = balanced(jincheng)
    assert (totals["subsidy"], totals["treasury"], totals["pool"]) == (300000, 1_000_000_000 - 300000, 0)


def test_applying_needs_a_bound_resident_and_an_open_campaign(client, make_campaign, make_resident):
    _, token = make_resident()
    assert apply(client, token, form()).get_json()["error"]["code"] == "NOT_FOUND"
    make_campaign(JINCHENG)
    _, unbound = make_resident(bound=False)
    assert apply(client, unbound, form()).get_json()["error"]["code"] == "NOT_BOUND"
    assert client.post("/api/v1/subsidies", data={}, content_type="multipart/form-data").status_code in (400, 401)


def reviewer(app, role="operator") -> AdminUser:
    with app.app_context():
        admin = AdminUser(username=f"{role}-reviewer", password_hash="x", role=role)
        db.session.add(admin)
        db.session.commit()
        return admin.id


def test_approval_pays_from_the_pool_once_and_the_books_balance(app, client, jincheng, make_resident, balanced):
    _, token = make_resident()
    application = apply(client, token, form()).get_json()["application"]
    admin_id = reviewer(app)
    with app.app_context():
        admin = db.session.get(AdminUser, admin_id)
        review(admin, application["id"], True, None, utcnow())
        db.session.commit()
        with pytest.raises(Refusal, match="这份申请已审核（已批准），不能重复审核"):
            review(admin, application["id"], True, None, utcnow())
        db.session.rollback()
        entry = db.session.scalar(sa.select(LedgerEntry).where(LedgerEntry.kind == "subsidy"))
        assert (entry.source, entry.target, entry.amount_fen, entry.key) == (
            "pool",
            "subsidy",
            300000,
            f"subsidy:{application['id']}",
        )
        assert entry.actor == "admin:operator-reviewer" and "晋E00001" in entry.note
    totals = balanced(jincheng)
    assert totals["subsidy"] == 300000 and totals["pool"] == 1_000_000_000 - 300000
    shown = client.get("/api/v1/subsidies", headers=auth(token)).get_json()["items"][0]
    assert shown["status"] == "approved"


def test_a_review_sees_the_application_as_it_stands_not_as_the_page_loaded_it(
    app, client, jincheng, make_resident, balanced
):
    """Two reviewers on one application: the second, whose page loaded it as pending before the
    first approved, is refused instead of rejecting a paid application (which would free its
    invoice for a second payment)."""
    _, token = make_resident()
    application = apply(client, token, form()).get_json()["application"]
    admin_id = reviewer(app)
    with app.app_context():
        admin = db.session.get(AdminUser, admin_id)
        loaded = db.session.get(SubsidyApplication, application["id"])  # as the console's view does
        assert loaded.status == "pending"
        with app.app_context():  # the other reviewer, in a session of their own, approves first
            review(db.session.get(AdminUser, admin_id), application["id"], True, None, utcnow())
            db.session.commit()
            db.session.remove()
        with pytest.raises(Refusal, match="不能重复审核"):
            review(admin, application["id"], False, "照片不清", utcnow())
        db.session.rollback()
    assert balanced(jincheng)["subsidy"] == 300000


def test_a_rejection_needs_a_reason_and_pays_nothing(app, client, jincheng, make_resident, balanced):
    _, token = make_resident()
    application = apply(client, token, form()).get_json()["application"]
    admin_id = reviewer(app)
    with app.app_context():
        admin = db.session.get(AdminUser, admin_id)
        with pytest.raises(Refusal, match="驳回须写明原因"):
            review(admin, application["id"], False, "  ", utcnow())
        db.session.rollback()
    assert balanced(jincheng)["subsidy"] == 0


def test_approval_never_pays_beyond_the_pool(app, client, make_campaign, make_resident, balanced):
    doc = json.loads(json.dumps(JINCHENG))
    doc["campaign"]["budget_yuan"] = 5000  # room for one 3,000 yuan subsidy, not two
    campaign_id = make_campaign(doc)
    ids = []
    for n in (1, 2):
        _, token = make_resident()
        ids.append(apply(client, token, form(n)).get_json()["application"]["id"])
    admin_id = reviewer(app)
    with app.app_context():
        admin = db.session.get(AdminUser, admin_id)
        review(admin, ids[0], True, None, utcnow())
        db.session.commit()
        with pytest.raises(Refusal, match="资金池余额 2,000 元，不足以支付这笔补贴 3,000 元"):
            review(admin, ids[1], True, None, utcnow())
        db.session.rollback()
    assert balanced(campaign_id)["subsidy"] == 300000


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks between connections: PostgreSQL")
def test_reviewers_racing_pay_each_application_once_and_never_beyond_the_pool(
    app, client, make_campaign, make_resident, balanced
):
    doc = json.loads(json.dumps(JINCHENG))
    doc["campaign"]["budget_yuan"] = 10000  # three 3,000 yuan subsidies fit, four do not
    campaign_id = make_campaign(doc)
    ids = []
    for n in range(1, 6):
        _, token = make_resident()
        ids.append(apply(client, token, form(n)).get_json()["application"]["id"])
    admin_id = reviewer(app)
    work = [i for i in ids for _ in range(3)]  # each application approved by three reviewers at once
    start = threading.Barrier(len(work))
    outcomes: list = [None] * len(work)

    def approve(k, application_id):
        with app.app_context():
            admin = db.session.get(AdminUser, admin_id)
            start.wait()
            try:
                review(admin, application_id, True, None, utcnow())
                db.session.commit()
                outcomes[k] = "paid"
            except Refusal as refused:
                db.session.rollback()
                outcomes[k] = str(refused)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=approve, args=(k, i)) for k, i in enumerate(work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outcomes.count("paid") == 3
    with app.app_context():
        paid = db.session.scalars(sa.select(LedgerEntry.key).where(LedgerEntry.kind == "subsidy")).all()
        assert len(paid) == len(set(paid)) == 3
        report = ledger.verify(db.session.get(Campaign, campaign_id))
        assert report.problems == []
    assert balanced(campaign_id)["pool"] == 100000
