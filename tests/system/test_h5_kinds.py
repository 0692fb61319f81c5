"""The resident's H5 page for the campaign kinds beyond the wheel, in headless Chromium at a
phone's size: grabbing a tier (and being refused it again), an on-site event opened from the big
screen's QR, the wallet pay code, and the purchase-subsidy form with its invoice photo.

The server runs on the frozen `clock`, moved before any resident or token is made; the page runs
on the browser's real clock and never compares the two (it only shows the server's times)."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from PIL import Image, ImageDraw

from server.admin.subsidies import review
from server.auth import screen
from server.core.time import utcnow
from server.extensions import db
from server.models import AdminUser, Coupon, SubsidyApplication
from tests.browser import decode_qr, screenshot
from tests.helpers import ROOT, auth, id_number
from tests.system.test_h5 import PHONE, bind_form

pytestmark = pytest.mark.browser

EXAMPLES = ROOT / "examples"
GEERMU_OPENS = datetime(2026, 2, 12, 2, 0, tzinfo=UTC)  # 2026-02-12 10:00 Shanghai
FAIR_OPENS = datetime(2026, 2, 6, 1, 0, tzinfo=UTC)  # 2026-02-06 09:00 Shanghai


def example(name: str) -> dict:
    """An example campaign file, without its geofence (the pages' location prompt is test_h5's)."""
    doc = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    doc["campaign"].pop("geofence", None)
    return doc


def phone(browser, token: str | None = None):
    """A phone's browser tab, signed in as the resident of `token` if given."""
    context = browser.new_context(**PHONE, locale="zh-CN")
    if token:
        context.add_init_script(f"localStorage.setItem('huigou.resident', {token!r})")
    return context.new_page()


def bodies(page, path: str) -> list[dict]:
    """The JSON bodies the page posts to an API path, as it sends them."""
    sent: list[dict] = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith(path) and r.method == "POST" else None)
    return sent


def screen_code(app, campaign_id: int, at: datetime) -> str:
    with app.app_context(), app.test_request_context():
        return screen.code(campaign_id, at)[0]


def tier_card(page, label: str):
    return page.locator("#tiers .tier", has_text=label)


def test_a_resident_grabs_a_tier_and_is_refused_the_same_tier_again(
    app, browser, live_server, make_campaign, make_resident, clock
):
    make_campaign(example("geermu-2026.json"))
    clock.move_to(GEERMU_OPENS + timedelta(minutes=3))
    _, token = make_resident()
    page = phone(browser, token)
    grabs = bodies(page, "/api/v1/grab")
    page.goto(f"{live_server}/h5/?campaign=geermu-2026")
    page.wait_for_selector("#tiers .tier")
    assert page.is_hidden("#wheel-home") and page.is_hidden("#subsidy-home")
    assert page.inner_text("nav [data-view=home]") == "抢券"
    assert page.inner_text("#round-label") == "第1期"
    labels = page.locator("#tiers .tier-terms b").all_inner_texts()
    assert sorted(labels) == ["满100减20", "满200减40", "满300减80"]
    assert "剩余 350 / 350 张" in tier_card(page, "满300减80").inner_text()
    assert page.get_attribute("#public-link", "href") == "/public/geermu-2026"  # merchants and results

    tier_card(page, "满300减80").locator("button").click()
    page.wait_for_selector("#grab-result.ok")
    assert "抢到了！商超餐饮 满300减80 券" in page.inner_text("#grab-result")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#tiers .tier')].some((t) => t.innerText.includes('剩余 349 / 350 张'))"
    )
    assert grabs[0]["campaign"] == "geermu-2026" and "screen_pass" not in grabs[0]
    screenshot(page, "h5-grab")

    # The same tier again: the server's refusal, in the page's words, with what to do next.
    tier_card(page, "满300减80").locator("button").click()
    page.wait_for_selector("#grab-result.refused")
    refusal = page.inner_text("#grab-result")
    assert "您已领过第1期满300减80券，每期每档限领一张" in refusal
    assert "领到的券已放入“我的券”" in refusal and "试试其他品类或券种" in refusal  # REFUSALS' next step
    screenshot(page, "h5-grab-refused")

    page.click("nav [data-view=coupons]")
    page.wait_for_selector("#coupon-list .coupon.unused")
    coupons = page.inner_text("#coupon-list")
    assert "80" in coupons and "商超餐饮消费券" in coupons and "满 300 元可用" in coupons
    assert page.locator("#coupon-list .coupon").count() == 1


def test_the_event_page_trades_the_screen_code_before_binding_and_grabs_with_the_pass(
    app, client, browser, live_server, make_campaign, clock
):
    campaign_id = make_campaign(example("geermu-2026-fair.json"))
    scanned_at = FAIR_OPENS + timedelta(hours=1)
    clock.move_to(scanned_at)
    page = phone(browser)
    grabs = bodies(page, "/api/v1/grab")
    exchanged = bodies(page, "/api/v1/screen/pass")
    code = screen_code(app, campaign_id, scanned_at)
    page.goto(f"{live_server}/h5/?campaign=geermu-2026-fair&screen={code}")
    page.wait_for_selector("#bind:not([hidden])")
    page.wait_for_function("() => sessionStorage.getItem('huigou.screen.geermu-2026-fair') !== null")
    assert exchanged == [{"campaign": "geermu-2026-fair", "screen": code}]
    assert page.evaluate("() => location.search") == "?campaign=geermu-2026-fair"  # a reload won't resend it
    assert "已确认您在活动现场" in page.inner_text("#toast")

    # Binding takes the resident past the screen's next rotations: the pass, not the code, counts.
    clock.move_to(scanned_at + timedelta(minutes=3))
    bind_form(page, client, {"name": "马小花"}, "13912340011")
    page.click("#bind-form button[type=submit]")
    page.wait_for_selector("#tiers .tier")
    assert page.inner_text("#grab-title") == "现场扫码领券"
    assert "已确认您在活动现场，请在 10:15 前领券" in page.inner_text("#grab-notice")
    assert sorted(page.locator("#tiers .tier-terms b").all_inner_texts()) == ["10元", "20元", "5元"]
    assert "年货大集券 · 无门槛" in tier_card(page, "20元").inner_text()
    tier_card(page, "20元").locator("button").click()
    page.wait_for_selector("#grab-result.ok")
    assert "抢到了！年货大集 20元 券" in page.inner_text("#grab-result")
    assert grabs[0]["campaign"] == "geermu-2026-fair" and grabs[0]["screen_pass"]
    screenshot(page, "h5-event")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).where(Coupon.state == "claimed")) == 1


def test_a_stale_screen_code_is_refused_in_words(app, browser, live_server, make_campaign, make_resident, clock):
    campaign_id = make_campaign(example("geermu-2026-fair.json"))
    now = FAIR_OPENS + timedelta(hours=2)
    clock.move_to(now)
    _, token = make_resident()
    page = phone(browser, token)
    grabs = bodies(page, "/api/v1/grab")
    photo = screen_code(app, campaign_id, now - timedelta(minutes=2))  # a photo sent around town
    page.goto(f"{live_server}/h5/?campaign=geermu-2026-fair&screen={photo}")
    page.wait_for_selector("#tiers .tier")
    said = "现场二维码已过期，请在活动现场扫描大屏上的最新二维码。大屏二维码每30秒更新一次，扫码后请尽快领取。"
    assert page.inner_text("#toast") == said
    assert page.inner_text("#grab-notice") == said
    assert page.evaluate("() => sessionStorage.getItem('huigou.screen.geermu-2026-fair')") is None

    tier_card(page, "10元").locator("button").click()  # the server holds the line too
    page.wait_for_selector("#grab-result.refused")
    assert (
        "本场活动的券只能在活动现场扫描大屏二维码领取。大屏二维码每30秒更新一次，扫码后请尽快领取。"
        in page.inner_text("#grab-result")
    )
    assert "screen_pass" not in grabs[0]
    screenshot(page, "h5-event-stale")


def test_the_wallet_pay_code_shows_a_qr_the_till_reads_as_the_wallet(
    app, client, browser, live_server, make_campaign, make_resident, make_till, clock
):
    make_campaign(wallet=True)
    _, staff = make_till("hotel")
    _, token = make_resident()
    for category in ("hotel", "fuel"):
        assert client.post("/api/v1/draw", json={"category": category}, headers=auth(token)).status_code == 200
    page = phone(browser, token)
    page.goto(f"{live_server}/h5/")
    page.wait_for_selector("#categories .card")
    page.click("nav [data-view=coupons]")
    page.wait_for_selector("#wallet-button:not([hidden])")
    assert page.inner_text("#wallet-button") == "钱包付款码（自动使用最优惠的券）"
    screenshot(page, "h5-wallet-button")
    page.click("#wallet-button")
    page.wait_for_function("() => document.querySelector('#wallet-image').naturalWidth > 0")
    assert "前有效" in page.inner_text("#wallet-expiry")
    assert re.fullmatch(r"W\d+-\d{8}", page.inner_text("#wallet-short"))  # for when the camera fails
    screenshot(page, "h5-wallet")
    scanned = client.post("/api/v1/merchant/scan", json={"paycode": decode_qr(page, live_server, "#wallet-image")},
                          headers=auth(staff)).get_json()  # fmt: skip
    assert scanned["accepted"] is True
    assert [c["category"]["code"] for c in scanned["wallet"]] == ["hotel"]  # what this shop takes

    page.click("#wallet [data-go=coupons]")
    page.wait_for_selector("#wallet-button:not([hidden])")
    page.click("#coupon-tabs [data-status=used]")
    page.wait_for_selector("#wallet-button[hidden]", state="attached")


def test_the_till_takes_a_wallet_and_shows_which_coupon_the_spend_uses(
    app, client, browser, live_server, make_campaign, make_resident, make_till, clock
):
    from tests.merchant.test_wallet import OPENS as YOUHAO_OPENS
    from tests.merchant.test_wallet import YOUHAO, wallet_code

    campaign_id = make_campaign(YOUHAO)
    clock.move_to(YOUHAO_OPENS + timedelta(minutes=5))
    _, staff = make_till("general")
    _, token = make_resident(id_card=id_number(1))  # Youhao: 手机号 + 身份证
    with app.app_context():
        from server.models import Tier

        for tier_id in db.session.scalars(sa.select(Tier.id).where(Tier.campaign_id == campaign_id)):
            assert client.post("/api/v1/grab", json={"tier_id": tier_id}, headers=auth(token)).status_code == 200
    context = browser.new_context(**PHONE, locale="zh-CN")
    context.add_init_script(f"localStorage.setItem('huigou.staff', {staff!r})")
    page = context.new_page()
    page.goto(f"{live_server}/h5/staff")
    page.fill("#manual-form [name=paycode]", wallet_code(client, token))  # as the camera would read it
    page.click("#manual-form button[type=submit]")
    page.wait_for_selector("#preview:not([hidden])")
    shown = page.inner_text("#preview-coupon")
    assert "钱包付款码：本店可用 3 张券" in shown and "满300减80" in shown and "满100减20" in shown
    page.fill("#redeem-form [name=amount]", "99")
    assert "未达到使用门槛：满 100 元可用" in page.inner_text("#threshold-hint")
    assert page.is_disabled("#redeem-button")
    page.fill("#redeem-form [name=amount]", "250")
    assert page.inner_text("#threshold-hint") == "将使用满200减40券，顾客实付 210 元（消费 250 元，券抵 40 元）。"
    screenshot(page, "h5-staff-wallet")
    page.fill("#redeem-form [name=spend_category]", "百货")
    page.click("#redeem-button")
    page.wait_for_selector("#result:not([hidden])")
    assert "核销成功" in page.inner_text("#result-box") and "面额 40 元" in page.inner_text("#result-box")
    context.close()


def invoice_png(path, size=(900, 560)):
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, size[0] - 20, size[1] - 20), outline="black", width=4)
    draw.text((60, 60), "INVOICE 26140000000012340001  TOTAL 60000.00", fill="black")
    image.save(path, format="PNG")
    return path


def test_yuan_typed_become_fen_exactly(browser, live_server, app):
    page = phone(browser)
    page.goto(f"{live_server}/h5/")
    got = page.evaluate(
        """async () => {
            const { fenOf, money } = await import('/static/h5/kinds.js');
            const typed = ['60000', '0.29', '1.1', '59,999.99', '128000.5 元', '60000.', '1.005', '-5', 'abc', ''];
            return { fen: typed.map(fenOf), money: [money(200000), money(5999999), money(29), money(0)] };
        }"""
    )
    assert got["fen"] == [6_000_000, 29, 110, 5_999_999, 12_800_050, 6_000_000, None, None, None, None]
    assert got["money"] == ["2,000", "59,999.99", "0.29", "0"]


def fill_application(page, fields: dict, photo) -> None:
    page.select_option("#subsidy-form [name=vehicle_kind]", fields["vehicle_kind"])
    for name in ("invoice_no", "invoice_yuan", "vin", "plate", "registered_on"):
        page.fill(f"#subsidy-form [name={name}]", fields[name])
    page.set_input_files("#subsidy-form [name=invoice_image]", str(photo))


def test_the_subsidy_form_applies_with_an_invoice_photo_and_lists_the_application(
    app, browser, live_server, make_campaign, make_resident, clock, tmp_path
):
    make_campaign(example("jincheng-2026-vehicles.json"))
    resident_id, token = make_resident()
    page = phone(browser, token)
    page.goto(f"{live_server}/h5/?campaign=jincheng-2026-vehicles")
    page.wait_for_selector("#bracket-rows tr")
    assert page.is_hidden("#wheel-home") and page.is_hidden("#grab-home")
    assert page.inner_text("nav [data-view=home]") == "购车补贴"
    table = page.inner_text("table.brackets")
    assert "新能源汽车" in table and "6万（含）—10万以下" in table and "2,000 元" in table and "不限" in table
    assert page.locator("#bracket-rows tr").count() == 13
    page.wait_for_selector("#subsidy-list .hint")  # the list is fetched after the brackets
    assert page.inner_text("#subsidy-list") == "暂无申请"

    car = {
        "vehicle_kind": "new_energy",
        "invoice_no": "26140000000012340001",
        "invoice_yuan": "60000",
        "vin": "LGXC16DF9P0000001",
        "plate": "晋E00001",
        "registered_on": "2026-06-20",
    }
    fill_application(page, car, invoice_png(tmp_path / "invoice.png"))
    assert page.inner_text("#subsidy-estimate") == "发票金额 60,000 元，属“6万（含）—10万以下”档，可申请补贴 2,000 元。"
    page.fill("#subsidy-form [name=invoice_yuan]", "59999.99")  # one fen below: the bracket below
    assert "可申请补贴 800 元" in page.inner_text("#subsidy-estimate")
    page.fill("#subsidy-form [name=invoice_yuan]", "60000")
    assert page.inner_text("#invoice-chosen").startswith("已选：invoice.png")
    page.wait_for_function("() => document.querySelector('#invoice-preview').naturalWidth === 900")
    screenshot(page, "h5-subsidy-form")
    page.click("#subsidy-form button[type=submit]")
    page.wait_for_selector("#subsidy-list .application.pending")
    listed = page.inner_text("#subsidy-list")
    assert "新能源汽车 · 晋E00001" in listed and "待审核" in listed
    assert "补贴 2,000 元" in listed and "发票金额 60,000 元" in listed
    assert page.input_value("#subsidy-form [name=invoice_no]") == ""  # the form is ready for another
    assert page.is_hidden("#invoice-preview") and page.inner_text("#invoice-chosen").startswith("请拍摄")
    screenshot(page, "h5-subsidy")
    with app.app_context():
        applied = db.session.scalar(sa.select(SubsidyApplication))
        assert (applied.invoice_fen, applied.subsidy_fen, applied.image_type) == (6_000_000, 200_000, "png")
        assert applied.resident_id == resident_id
        car_id = applied.id

    # The same invoice again is refused in words; a motorcycle with a phone-sized photo (over the
    # server's 5 MB as taken) goes through, re-encoded on the phone.
    fill_application(page, car, tmp_path / "invoice.png")
    page.click("#subsidy-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('#toast').textContent.includes('已申请过')")
    assert page.inner_text("#toast").startswith("这张发票已申请过补贴，每张发票只能申请一次。")
    noise = Image.frombytes("RGB", (1400, 1400), os.urandom(1400 * 1400 * 3))
    noise.save(tmp_path / "big.png", format="PNG")
    assert (tmp_path / "big.png").stat().st_size > 5 * 1024 * 1024
    motorcycle = car | {"vehicle_kind": "motorcycle", "invoice_no": "26140000000012340002",
                        "invoice_yuan": "4,800.50", "vin": "LGXC16DF9P0000002", "plate": "晋E00002"}  # fmt: skip
    fill_application(page, motorcycle, tmp_path / "big.png")
    page.click("#subsidy-form button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#subsidy-list .application').length === 2")
    assert "补贴 300 元" in page.inner_text("#subsidy-list .application >> nth=0")

    # The bureau rejects the car's application: the resident sees why.
    with app.app_context():
        admin = AdminUser(username="reviewer", password_hash="x", role="operator")
        db.session.add(admin)
        db.session.flush()
        review(admin, car_id, False, "发票照片模糊，请重新拍摄上传", utcnow())
        db.session.commit()
        assert db.session.scalar(sa.select(SubsidyApplication.image_type).where(SubsidyApplication.id != car_id)) == (
            "jpeg"
        )
    page.reload()
    page.wait_for_selector("#subsidy-list .application.rejected")
    rejected = page.inner_text("#subsidy-list .application.rejected")
    assert "已驳回" in rejected and "驳回原因：发票照片模糊，请重新拍摄上传" in rejected
    screenshot(page, "h5-subsidy-reviewed")


def test_the_page_offers_every_active_campaign_and_switches_between_them(
    browser, live_server, make_campaign, make_resident, clock
):
    """Geermu runs its season's coupons beside a Qian'an-style wheel: the page names the default
    and links the other; following it shows that campaign."""
    from tests.helpers import campaign_doc

    make_campaign(campaign_doc())  # the default: the first imported
    make_campaign(example("geermu-2026.json"))
    _, token = make_resident()
    page = phone(browser, token)
    page.goto(f"{live_server}/h5/")
    page.wait_for_selector("#campaigns:not([hidden])")
    assert page.inner_text("#campaigns b") == "测试消费券"
    assert page.inner_text("#campaign-name") == "测试消费券"
    screenshot(page, "h5-campaigns")
    page.click("#campaigns a[data-campaign=geermu-2026]")
    page.wait_for_function("() => document.querySelector('#campaign-name').textContent.includes('昆仑')")
    assert page.inner_text("#campaigns b") == "昆仑启新岁·乐购暖冬春 商超餐饮消费券"
    assert page.is_visible("#grab-home")


YOUHAO_OPENS = datetime(2023, 3, 27, 1, 0, tzinfo=UTC)  # 2023-03-27 09:00 Shanghai


def test_a_campaign_of_one_card_one_resident_asks_for_the_id_card(
    app, client, browser, live_server, make_campaign, make_resident, clock
):
    """Youhao (一个用户 = 手机号 + 身份证 + 设备): binding asks for the card; a resident bound by
    phone before is sent to give it on the first grab, then grabs."""
    make_campaign(example("youhao-2023.json"))
    clock.move_to(YOUHAO_OPENS + timedelta(hours=2))
    page = phone(browser)
    page.goto(f"{live_server}/h5/?campaign=youhao-2023")
    page.wait_for_selector("#bind-id-field:not([hidden])")
    bind_form(page, client, {"name": "张三", "id_number": "110105194912310021"}, "13900000011")
    page.click("#bind-form button[type=submit]")
    # One character off: refused in words.
    page.wait_for_function("() => document.querySelector('#toast').innerText.includes('身份证号码校验不通过')")
    page.fill("#bind-form [name=id_number]", "11010519491231002X")
    page.click("#bind-form button[type=submit]")
    page.wait_for_selector("#tiers .tier")
    tier_card(page, "满100减20").locator("button").click()
    page.wait_for_selector("#grab-result.ok")

    _, token = make_resident()  # bound by phone before the campaign asked for cards
    other = phone(browser, token)
    other.goto(f"{live_server}/h5/?campaign=youhao-2023")
    other.wait_for_selector("#tiers .tier")
    tier_card(other, "满100减20").locator("button").click()
    other.wait_for_selector("#identity:not([hidden])")
    other.wait_for_function("() => document.querySelector('#toast').innerText.includes('本活动需实名参与')")
    screenshot(other, "h5-identity")
    other.fill("#identity-form [name=name]", "李四")
    other.fill("#identity-form [name=id_number]", "11010519491231002X")  # the first resident's card
    other.click("#identity-form button[type=submit]")
    other.wait_for_function("() => document.querySelector('#toast').innerText.includes('已被其他用户绑定')")
    other.fill("#identity-form [name=id_number]", id_number(5))
    other.click("#identity-form button[type=submit]")
    other.wait_for_selector("#tiers .tier")
    assert "实名认证完成（身份证 230***********" in other.inner_text("#toast")
    screenshot(other, "h5-identity-done")
    tier_card(other, "满100减20").locator("button").click()
    other.wait_for_selector("#grab-result.ok")
