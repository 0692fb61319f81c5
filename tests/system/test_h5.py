"""The H5 pages in headless Chromium at a phone's size: a resident binds, spins, sees the coupon
and its QR; a shop assistant binds, types the code by hand, is held back below the threshold and
redeems; the resident then sees the coupon used and answers the survey."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from server.extensions import db
from server.models import Resident
from tests.browser import decode_qr, screenshot
from tests.helpers import T0, auth

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 360, "height": 740}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


def sms_code(client, phone: str) -> str:
    items = client.get(f"/api/v1/dev/sms-outbox?phone={phone}").get_json()["items"]
    return items[-1]["code"]


def at_the_till(client, browser, live_server, make_resident, make_till) -> tuple[object, dict]:
    """A resident's fresh hotel coupon typed in at a hotel's till: (the page at the preview, the coupon)."""
    _, staff_token = make_till("hotel")
    _, resident = make_resident()
    won = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(resident)).get_json()["coupon"]
    short = client.get(f"/api/v1/coupons/{won['id']}/paycode", headers=auth(resident)).get_json()["short_code"]
    context = browser.new_context(**PHONE, locale="zh-CN")
    context.add_init_script(f"localStorage.setItem('huigou.staff', {staff_token!r})")
    page = context.new_page()
    page.goto(f"{live_server}/h5/staff")
    page.fill("#manual-form [name=paycode]", short)
    page.click("#manual-form button[type=submit]")
    page.wait_for_selector("#preview:not([hidden])")
    return page, won


def bind_form(page, client, fields: dict, phone: str):
    for name, value in fields.items():
        page.fill(f"#bind-form [name={name}]", value)
    page.fill("#bind-form [name=phone]", phone)
    page.click("#sms-button")
    page.wait_for_selector("#sms-button:has-text('秒后重发')")
    page.fill("#bind-form [name=sms_code]", sms_code(client, phone))
    consent = page.locator("#bind-form [name=consent]")  # the resident's page asks for it
    if consent.count():
        assert consent.evaluate("box => box.required")
        consent.check()


def test_a_resident_and_a_shop_assistant_on_their_phones(app, client, browser, live_server, make_campaign, clock):
    from server.campaign import enrolment as merchant_services
    from server.merchant import credit_code
    from server.models import Category, Enrolment, Merchant

    make_campaign()
    with app.app_context():
        hotel = db.session.scalar(sa_select_category(Category, "hotel"))
        merchant = Merchant(
            name="乾安宾馆",
            credit_code=credit_code.make("220723", "MH000001"),
            address="乾安县政府路 1 号",
            contact_name="王经理",
            contact_phone="13900000001",
            categories=[hotel],
        )
        enrolled = Enrolment(merchant=merchant, campaign_id=hotel.campaign_id, status="applied")
        db.session.add_all([merchant, enrolled])
        db.session.flush()
        binding_code = merchant_services.approve(enrolled, T0)
        db.session.commit()

    # ---- the resident
    resident = browser.new_context(**PHONE, locale="zh-CN").new_page()
    resident.goto(f"{live_server}/h5/")
    resident.wait_for_selector("#bind:not([hidden])")
    bind_form(resident, client, {"name": "张三"}, "13912340001")
    screenshot(resident, "h5-resident-bind")
    resident.click("#bind-form button[type=submit]")
    resident.wait_for_selector("#categories .card[data-category=hotel]")
    assert "本轮剩余" in resident.inner_text("#categories")
    with app.app_context():  # the page named its device, for the bureau's risk flags
        device = db.session.scalar(sa.select(Resident.bound_device).where(Resident.phone == "13912340001"))
        assert re.fullmatch(r"[0-9a-f-]{36}", device or ""), device
    screenshot(resident, "h5-resident-categories")
    resident.click("#categories .card[data-category=hotel]")
    resident.wait_for_function("() => document.querySelector('#wheel-left').textContent.includes('剩余')")
    resident.click("#spin-button")
    resident.wait_for_selector("#draw-result:not([hidden])", timeout=10000)
    result = resident.inner_text("#draw-result")
    assert "恭喜" in result, result
    # One wording of a deadline everywhere: its last day and 24:00, never the next day's 00:00.
    assert re.search(r"有效期至 \d+月\d+日 24:00", result), result
    # The turned wheel stays inside the phone's width; the tab bar stays on the screen.
    assert resident.evaluate("document.documentElement.scrollWidth") <= 360
    tabs = resident.locator("#tabs").bounding_box()
    assert tabs["y"] + tabs["height"] <= 740 and tabs["width"] <= 360
    screenshot(resident, "h5-resident-wheel-won")
    face, threshold = (int(n) for n in re.search(r"(\d+) 元消费券\s+满 (\d+) 元可用", result).groups())

    # Back on the categories, the one drawn says so, and its wheel does not spin again.
    resident.click("#wheel button[data-go=home]")
    resident.wait_for_selector("#categories .card.drawn[data-category=hotel]")
    assert "本轮已抽中" in resident.inner_text("#categories .card[data-category=hotel]")
    resident.click("#categories .card[data-category=hotel]")
    assert resident.is_disabled("#spin-button") and "本轮已抽过" in resident.inner_text("#spin-button")
    resident.click("nav [data-view=coupons]")
    resident.click("#coupon-list .coupon button")  # 付款码
    resident.wait_for_function("() => document.querySelector('#paycode-image').naturalWidth > 0")
    short = resident.inner_text("#paycode-short")
    assert re.fullmatch(r"\d+-\d{8}", short)
    screenshot(resident, "h5-resident-paycode")
    # The QR on the page decodes (jsQR, the staff page's own decoder) to a pay code the till accepts.
    decoded = decode_qr(resident, live_server, "#paycode-image")
    assert decoded
    resident.click("#paycode-merchants")
    resident.wait_for_selector("#merchant-list li:has-text('乾安宾馆')")
    assert "乾安县政府路 1 号" in resident.inner_text("#merchant-list")
    screenshot(resident, "h5-resident-merchants")

    # ---- the shop assistant
    staff = browser.new_context(**PHONE, locale="zh-CN").new_page()
    staff.goto(f"{live_server}/h5/staff")
    staff.wait_for_selector("#bind:not([hidden])")
    bind_form(staff, client, {"binding_code": binding_code, "name": "李四"}, "13912340002")
    screenshot(staff, "h5-staff-bind")
    staff.click("#bind-form button[type=submit]")
    staff.wait_for_selector("#scan:not([hidden])")
    assert staff.inner_text("#merchant-name") == "乾安宾馆"
    token = staff.evaluate("localStorage.getItem('huigou.staff')")
    scanned = client.post("/api/v1/merchant/scan", json={"paycode": decoded}, headers=auth(token)).get_json()
    assert scanned["accepted"] is True and scanned["coupon"]["face_fen"] == face * 100
    screenshot(staff, "h5-staff-scan")

    staff.fill("#manual-form [name=paycode]", short)
    staff.click("#manual-form button[type=submit]")
    staff.wait_for_selector("#preview:not([hidden])")
    assert f"{face} 元消费券" in staff.inner_text("#preview-coupon")
    staff.fill("#redeem-form [name=amount]", str(threshold - 1))
    staff.fill("#redeem-form [name=spend_category]", "住宿")
    assert "未达到使用门槛" in staff.inner_text("#threshold-hint")
    assert staff.is_disabled("#redeem-button")  # held back before it reaches the server
    screenshot(staff, "h5-staff-below-threshold")
    staff.fill("#redeem-form [name=amount]", str(threshold + 20))
    assert staff.is_enabled("#redeem-button")
    staff.click("#redeem-button")
    staff.wait_for_selector("#result:not([hidden])")
    assert "核销成功" in staff.inner_text("#result-box")
    screenshot(staff, "h5-staff-redeemed")
    staff.click("#result button[data-go=today]")
    staff.wait_for_function("() => document.querySelector('#today-count').textContent === '1'")
    staff.wait_for_selector("#today-rows td:has-text('住宿')")
    assert staff.inner_text("#today-owed") == str(face)
    # Not yet in a settlement batch: nothing payable or paid, and the page says why.
    assert (staff.inner_text("#payable"), staff.inner_text("#paid")) == ("0", "0")
    assert "商务局尚未生成结算批次" in staff.inner_text("#batch-rows")
    screenshot(staff, "h5-staff-today")

    # A code mistyped is refused once, in one sentence (not the server's and the page's both).
    staff.click("nav [data-view=scan]")
    staff.fill("#manual-form [name=paycode]", "1234-00000000")
    staff.click("#manual-form button[type=submit]")
    staff.wait_for_function("() => document.querySelector('#toast').textContent.includes('付款码')")
    mistyped = staff.inner_text("#toast")
    assert mistyped.count("刷新付款码") == 1, mistyped

    # The same code again is refused in words, with what to do next.
    staff.click("nav [data-view=scan]")
    staff.fill("#manual-form [name=paycode]", short)
    staff.click("#manual-form button[type=submit]")
    staff.wait_for_selector("#result:not([hidden])")
    refusal = staff.inner_text("#result-box")
    assert "不能核销" in refusal and "已使用" in refusal and "请换一张未使用的券" in refusal
    screenshot(staff, "h5-staff-refused")

    # ---- the resident again: the coupon is used; the survey
    resident.click("nav [data-view=coupons]")
    resident.click("#coupon-tabs [data-status=used]")
    resident.wait_for_selector("#coupon-list .coupon.used")
    assert "已使用" in resident.inner_text("#coupon-list")
    screenshot(resident, "h5-resident-used")
    resident.click("nav [data-view=survey]")
    resident.wait_for_selector("#survey-form fieldset")
    assert resident.locator("#survey-form fieldset").count() == 11
    # The coupon is used: question 6 says so, and 7 (how using it went) is asked, 8 (why not) is not.
    assert resident.is_checked("[name=q6][value='0']")
    assert resident.is_visible("[data-question='7']") and not resident.is_visible("[data-question='8']")
    # Sent empty, the page points at the first question to answer, in Chinese.
    resident.evaluate("() => document.querySelectorAll('#survey-form input').forEach((i) => (i.checked = false))")
    resident.click("#survey-form button[type=submit]")
    resident.wait_for_selector("#toast:not([hidden])")
    assert "第1题还没有作答" in resident.inner_text("#toast")
    assert resident.locator("#survey-form fieldset.missing[data-question='1']").count() == 1
    resident.evaluate(
        """() => document.querySelectorAll('#survey-form fieldset').forEach((set) => {
            if (set.dataset.question !== '8') set.querySelector('input').checked = true;
        })"""
    )
    screenshot(resident, "h5-resident-survey")
    resident.click("#survey-form button[type=submit]")
    resident.wait_for_selector("#survey-done:not([hidden])")
    # The assistant takes the sale back from today's list (退货); the coupon is void for the
    # resident, with the reason, under its own heading.
    staff.click("nav [data-view=today]")
    staff.click("#today-rows tr.pick")
    staff.fill("#fix-reason", "顾客退货")
    staff.click("#fix-refund-button")
    staff.wait_for_selector("#today-rows td:has-text('已退货')")
    resident.click("nav [data-view=coupons]")
    resident.click("#coupon-tabs [data-status=void]")
    resident.wait_for_selector("#coupon-list .coupon.void")
    assert "商户已办理退货，券随之作废（顾客退货）" in resident.inner_text("#coupon-list")
    screenshot(resident, "h5-resident-void")
    # The assistant leaves: this phone is unbound and back at the binding form.
    staff.on("dialog", lambda dialog: dialog.accept())
    staff.click("#unbind-button")
    staff.wait_for_selector("#bind:not([hidden])")
    assert staff.evaluate("localStorage.getItem('huigou.staff')") is None

    # Signing out forgets the resident on this phone.
    resident.click("nav [data-view=coupons]")
    resident.click("#sign-out")
    resident.wait_for_selector("#bind:not([hidden])")
    assert resident.evaluate("localStorage.getItem('huigou.resident')") is None


def sa_select_category(category, code: str):
    import sqlalchemy as sa

    return sa.select(category).where(category.code == code).order_by(category.id.desc())


def test_a_submit_retried_after_a_lost_answer_redeems_once(
    app, client, browser, live_server, make_campaign, make_resident, make_till, clock
):
    """The till's network drops the answer to the first submission (the server did redeem): the
    page retries with the same Idempotency-Key and shows the one redemption."""
    import sqlalchemy as sa

    from server.models import Redemption

    make_campaign()
    _, staff_token = make_till("hotel")
    _, resident = make_resident()
    won = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(resident)).get_json()["coupon"]
    short = client.get(f"/api/v1/coupons/{won['id']}/paycode", headers=auth(resident)).get_json()["short_code"]

    context = browser.new_context(**PHONE, locale="zh-CN")
    context.add_init_script(f"localStorage.setItem('huigou.staff', {staff_token!r})")
    page = context.new_page()
    keys = []

    def lose_first_answer(route):
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            route.fetch()  # it reaches the server and is redeemed ...
            route.abort("connectionreset")  # ... but the answer never arrives
        else:
            route.continue_()

    page.route("**/api/v1/merchant/redeem", lose_first_answer)
    page.goto(f"{live_server}/h5/staff")
    page.fill("#manual-form [name=paycode]", short)
    page.click("#manual-form button[type=submit]")
    page.fill("#redeem-form [name=amount]", str(won["threshold_fen"] // 100))
    page.fill("#redeem-form [name=spend_category]", "住宿")
    page.click("#redeem-button")
    page.wait_for_selector("#result:not([hidden])", timeout=15000)
    assert "核销成功" in page.inner_text("#result-box")
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Redemption)) == 1


def test_the_wheel_asks_for_the_location_where_the_campaign_has_a_region(
    app, client, browser, live_server, make_campaign, make_resident, clock
):
    make_campaign(geofence={"kind": "circle", "lat": 45.0113, "lng": 124.0217, "radius_m": 30000})
    _, resident = make_resident()

    def spin_at(position):
        options = {"permissions": ["geolocation"], "geolocation": position} if position else {}
        context = browser.new_context(**PHONE, locale="zh-CN", **options)
        context.add_init_script(f"localStorage.setItem('huigou.resident', {resident!r})")
        page = context.new_page()
        page.goto(f"{live_server}/h5/")
        page.click("#categories .card[data-category=fuel]")
        page.wait_for_function("() => document.querySelector('#wheel-left').textContent.includes('剩余')")
        page.click("#spin-button")
        return page

    refused = spin_at(None)  # no permission given
    refused.wait_for_selector("#toast:not([hidden])")
    assert "需要确认您的位置" in refused.inner_text("#toast") and "允许获取位置" in refused.inner_text("#toast")
    screenshot(refused, "h5-resident-location-needed")
    outside = spin_at({"latitude": 43.8171, "longitude": 125.3235})  # Changchun
    outside.wait_for_selector("#toast:not([hidden])")
    assert "不在" in outside.inner_text("#toast") and "活动区域内再参与" in outside.inner_text("#toast")
    inside = spin_at({"latitude": 45.02, "longitude": 124.03})
    inside.wait_for_selector("#draw-result:not([hidden])", timeout=10000)
    assert "恭喜" in inside.inner_text("#draw-result")


def test_every_refusal_code_of_the_api_has_a_sentence_and_a_next_step_on_the_pages():
    from server.core.errors import api_codes
    from tests.helpers import ROOT

    script = (ROOT / "static/h5/common.js").read_text(encoding="utf-8")
    said = {
        code: (what, then) for code, what, then in re.findall(r'^  ([A-Z_]+): \["([^"]+)", "([^"]+)"\],$', script, re.M)
    }
    missing = api_codes() - set(said)
    assert not missing, f"no sentence on the pages for {sorted(missing)}"
    assert all(what.endswith("。") and then.endswith(("。", "！")) for what, then in said.values())


def y4m(png: bytes, path, width: int = 640, height: int = 480) -> None:
    """A still video (YUV4MPEG2, 4:2:0) of the image centred on white: Chromium's fake camera."""
    import io

    from PIL import Image

    frame = Image.new("RGB", (width, height), "white")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.thumbnail((height - 40, height - 40))
    frame.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
    y, u, v = frame.convert("YCbCr").split()
    half = (width // 2, height // 2)
    planes = y.tobytes() + u.resize(half).tobytes() + v.resize(half).tobytes()
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(10):
            out.write(b"FRAME\n" + planes)


def test_the_camera_reads_the_pay_code(
    app, client, live_server, make_campaign, make_resident, make_till, clock, tmp_path
):
    from tests.browser import chromium

    make_campaign()
    _, staff_token = make_till("hotel")
    _, resident = make_resident()
    won = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(resident)).get_json()["coupon"]
    png = client.get(f"/api/v1/coupons/{won['id']}/paycode.png", headers=auth(resident)).get_data()
    video = tmp_path / "paycode.y4m"
    y4m(png, video)
    camera = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
              f"--use-file-for-fake-video-capture={video}")  # fmt: skip
    with chromium(*camera) as browser:
        context = browser.new_context(**PHONE, locale="zh-CN", permissions=["camera"])
        context.add_init_script(f"localStorage.setItem('huigou.staff', {staff_token!r})")
        page = context.new_page()
        page.goto(f"{live_server}/h5/staff")
        page.click("#camera-button")
        page.wait_for_selector("#preview:not([hidden])", timeout=15000)
        assert f"{won['face_fen'] // 100} 元消费券" in page.inner_text("#preview-coupon")
        screenshot(page, "h5-staff-scanned-by-camera")


def test_the_till_picks_the_spend_from_the_campaigns_list(
    app, client, browser, live_server, make_campaign, make_resident, make_till, clock
):
    """Geermu lists what a spend may be: the till offers a list instead of a free field, shows
    押金 as 不能用券 without letting it be chosen, and records the choice."""
    from server.models import Redemption
    from tests.helpers import campaign_doc

    doc = campaign_doc()
    doc["campaign"]["spend_categories"] = {"*": ["住宿", "餐饮", {"name": "押金", "excluded": True}]}
    make_campaign(doc)
    page, won = at_the_till(client, browser, live_server, make_resident, make_till)
    assert page.is_hidden("#redeem-form [name=spend_category]")
    options = page.eval_on_selector_all(
        "#redeem-form [name=spend_choice] option", "os => os.map(o => [o.textContent, o.disabled])"
    )
    assert options == [["请选择消费品类", False], ["住宿", False], ["餐饮", False], ["押金（不能用券）", True]]
    page.fill("#redeem-form [name=amount]", str(won["threshold_fen"] // 100))
    page.select_option("#redeem-form [name=spend_choice]", "餐饮")
    screenshot(page, "h5-staff-spend-list")
    page.click("#redeem-button")
    page.wait_for_selector("#result:not([hidden])")
    assert "核销成功" in page.inner_text("#result-box")
    with app.app_context():
        assert db.session.scalars(sa.select(Redemption.spend_category)).all() == ["餐饮"]


def test_the_till_holds_back_a_sale_below_the_coupons_face(
    app, client, browser, live_server, make_campaign, make_resident, make_till, clock
):
    """不找零: a 10-yuan coupon without threshold on a 5-yuan sale; the page says why and holds the
    button, as it does below a threshold; at 10 yuan it lets it through."""
    from tests.helpers import campaign_doc

    make_campaign(
        campaign_doc(
            threshold_multiple=None,
            min_leverage=None,
            tiers=[{"category": "hotel", "face_yuan": 10, "threshold_yuan": 0, "quantity": 5}],
        )
    )
    page, won = at_the_till(client, browser, live_server, make_resident, make_till)
    assert "无门槛 · 有效期至" in page.inner_text("#preview-coupon")
    page.fill("#redeem-form [name=amount]", "5")
    page.fill("#redeem-form [name=spend_category]", "住宿")
    assert page.inner_text("#threshold-hint") == "消费金额不足券面额，本券不找零：满 10 元可用，还差 5 元。"
    assert page.is_disabled("#redeem-button")
    screenshot(page, "h5-staff-below-face")
    page.fill("#redeem-form [name=amount]", "10")
    assert page.inner_text("#threshold-hint") == "顾客实付 0 元（消费 10 元，券抵 10 元）。"
    assert page.is_enabled("#redeem-button")
