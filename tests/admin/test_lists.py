"""The redemption search: filters, pages in a stable order, and exports equal to the filtered list."""

from __future__ import annotations

import csv
import io
import re

import pytest
from openpyxl import load_workbook

from server.admin import console as pages
from server.admin import lists
from tests.helpers import auth, paycode


def ids_on_page(client, query: str) -> list[int]:
    page = client.get(f"/admin/lists/redemptions?{query}").get_data(as_text=True)
    assert "核销记录" in page
    return [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", page)]


def test_filters_answer_the_questions_auditors_ask(console, redemptions):
    client = console("admin")
    made = redemptions["made"]
    everything = ids_on_page(client, "")
    assert sorted(everything) == sorted(r for _, r, _ in made)
    assert everything == sorted(everything, reverse=True)  # newest first
    hotel = redemptions["merchants"]["hotel"]
    assert sorted(ids_on_page(client, f"merchant={hotel}")) == sorted(r for c, r, _ in made if c == "hotel")
    assert sorted(ids_on_page(client, "category=fuel")) == sorted(r for c, r, _ in made if c == "fuel")
    assert ids_on_page(client, f"phone={made[1][2]}") == [made[1][1]]
    assert sorted(ids_on_page(client, "from=2026-06-26&to=2026-06-26")) == sorted(r for _, r, _ in made[3:])
    assert ids_on_page(client, "state=revoked") == [made[4][1]]
    assert ids_on_page(client, "state=refunded") == [made[3][1]]
    assert ids_on_page(client, "from=not-a-date&merchant=x") == everything  # what does not parse is ignored


def test_pages_follow_one_order_without_repeats_or_gaps(console, redemptions, monkeypatch):
    monkeypatch.setattr(pages, "PER_PAGE", 4)
    client = console("admin")
    first, second = ids_on_page(client, "page=1"), ids_on_page(client, "page=2")
    assert len(first) == 4 and len(second) == 2
    assert first + second == sorted(first + second, reverse=True)
    assert sorted(first + second) == sorted(r for _, r, _ in redemptions["made"])


def test_a_page_number_that_is_no_plain_number_is_the_first_page(console):
    client = console("admin")
    for path in ("/admin/merchants", "/admin/subsidies", "/admin/audit", "/admin/lists/redemptions"):
        for page in ("²", "x", "-1", "9" * 40):
            assert client.get(path, query_string={"page": page}).status_code == 200, (path, page)


def test_the_csv_export_is_the_filtered_list_with_a_bom(app, console, redemptions):
    client = console("admin")
    answer = client.get("/admin/lists/redemptions/export.csv?category=hotel&state=valid")
    assert answer.status_code == 200
    assert "filename*=UTF-8''" in answer.headers["Content-Disposition"]
    body = answer.get_data()
    assert body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][:3] == ["核销编号", "核销时间", "商户"]
    with app.test_request_context(), app.app_context():
        expected = [str(r[0]) for r in lists.REDEMPTIONS.rows({"category": "hotel", "state": "valid"}, "admin")]
    assert [r[0] for r in rows[1:]] == expected and len(expected) == 2
    assert all(r[-2] == "有效" and r[7] == "宾馆" for r in rows[1:])  # the state; the 备注 last


def test_the_xlsx_export_is_the_same_list_and_auditors_get_masked_phones(app, console, redemptions):
    client = console("auditor")
    answer = client.get("/admin/lists/redemptions/export.xlsx")
    assert answer.status_code == 200
    sheet = load_workbook(io.BytesIO(answer.get_data()), read_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0] == "核销编号" and len(rows) == 1 + len(redemptions["made"])
    phones = {r[6] for r in rows[1:]}
    assert all("****" in p for p in phones)
    assert not any(made_phone in phones for _, _, made_phone in redemptions["made"])
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "导出数据" in page


def claim_ids(client, query: str) -> list[int]:
    page = client.get(f"/admin/lists/claims?{query}").get_data(as_text=True)
    assert "领取记录" in page
    return [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", page)]


def test_claims_filter_by_name_phone_category_and_state(console, redemptions, make_resident, client):
    admin = console("admin")
    _, token = make_resident(phone="13912345678")
    held = client.post("/api/v1/draw", json={"category": "fuel"}, headers=auth(token)).get_json()["coupon"]
    # Of the six spent: one redemption revoked (its coupon is unused again), one refunded (void).
    unused = claim_ids(admin, "state=unused")
    assert len(unused) == 2 and unused[0] == held["id"]
    assert claim_ids(admin, "phone=13912345678") == [held["id"]]
    assert len(claim_ids(admin, "state=used")) == 4 and len(claim_ids(admin, "state=void")) == 1
    assert len(claim_ids(admin, "category=fuel")) == 3
    assert len(claim_ids(admin, "resident=测试")) == 7


def test_revoking_a_held_coupon_voids_it_returns_its_value_and_is_audited(
    app, console, client, make_campaign, make_resident, balanced, clock
):
    campaign_id = make_campaign()
    _, token = make_resident()
    held = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).get_json()["coupon"]
    pool_before = balanced(campaign_id)["pool"]
    auditor = console("auditor")
    page = auditor.get("/admin/lists/claims").get_data(as_text=True)
    assert 'data-action="revoke"' not in page  # auditors change nothing
    token_ = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert (
        auditor.post(f"/admin/claims/{held['id']}/revoke", data={"csrf_token": token_, "reason": "x"}).status_code
        == 403
    )

    operator = console("operator")
    page = operator.get("/admin/lists/claims").get_data(as_text=True)
    assert 'data-action="revoke"' in page
    form = {"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page).group(1), "reason": "冒用他人身份"}
    answer = operator.post(f"/admin/claims/{held['id']}/revoke", data=form, follow_redirects=True)
    assert f"已撤销券号 {held['id']}" in answer.get_data(as_text=True)
    assert balanced(campaign_id)["pool"] == pool_before + held["face_fen"]
    # The resident can no longer show it; a second revoke is refused in words.
    assert client.get(f"/api/v1/coupons/{held['id']}/paycode", headers=auth(token)).status_code == 409
    again = operator.post(f"/admin/claims/{held['id']}/revoke", data=form, follow_redirects=True)
    assert "已使用、已过期或已撤销，不能撤销" in again.get_data(as_text=True)
    assert "撤销领取" in operator.get("/admin/audit").get_data(as_text=True)


def test_the_audit_sample_is_a_tenth_chosen_by_the_seed_and_the_same_each_time(app):
    """On 10,000 ids: about a tenth, the same for the same seed, another for another seed."""
    import sqlalchemy as sa

    ids = sa.table("ids", sa.column("id", sa.Integer))
    with app.app_context():
        from server.extensions import db

        db.session.execute(sa.text("CREATE TEMPORARY TABLE ids (id INTEGER)"))
        db.session.execute(sa.text("INSERT INTO ids (id) VALUES (:id)"), [{"id": n} for n in range(1, 10001)])

        def sample(seed):
            return set(db.session.scalars(sa.select(ids.c.id).where(lists.in_sample(ids.c.id, seed))))

        first, again, other = sample("2026-审计-1"), sample("2026-审计-1"), sample("2026-审计-2")
        db.session.rollback()
    assert first == again
    assert 900 <= len(first) <= 1100 and 900 <= len(other) <= 1100
    assert len(first & other) < 200  # independent draws overlap by about a tenth of a tenth


def test_the_sample_filter_pages_and_exports_like_any_list(console, redemptions):
    client = console("auditor")
    everything = set(ids_on_page(client, ""))
    for seed in ("a", "b", "c", "d"):
        chosen = ids_on_page(client, f"sample={seed}")
        assert set(chosen) <= everything
        body = client.get(f"/admin/lists/redemptions/export.csv?sample={seed}").get_data().decode("utf-8-sig")
        assert [int(r[0]) for r in list(csv.reader(io.StringIO(body)))[1:]] == chosen


def test_settlement_per_merchant_matches_the_tills_own_statement_and_the_xlsx(console, client, redemptions):
    admin = console("admin")
    page = admin.get("/admin/settlement").get_data(as_text=True)
    hotel = redemptions["merchants"]["hotel"]
    # The hotel: four redemptions of 50 yuan, one revoked and one refunded (return): two owed.
    row = re.search(
        r"<td>演示商户1</td><td>(\d+)</td><td>([\d,.]+)</td><td>(\d+)</td>\s*<td>(\d+)</td><td>([\d,.]+)</td>", page
    )
    assert row.groups() == ("3", "450", "1", "2", "100")
    own = client.get("/api/v1/merchant/settlement", headers=auth(redemptions["staff"]["hotel"])).get_json()
    assert own["owed_fen"] == 10000 and own["count"] == 2  # the till's statement, by the same rule
    one_day = admin.get(f"/admin/settlement/{hotel}.xlsx?from=2026-06-25&to=2026-06-25")
    sheet = load_workbook(io.BytesIO(one_day.get_data()), read_only=True).active
    cells = list(sheet.iter_rows(values_only=True))
    assert cells[0][0] == "演示商户1 消费券结算单" and cells[2][1] == "2026-06-25 至 2026-06-25"
    assert ("合计笔数", 2) in [tuple(c[:2]) for c in cells] and ("应结算金额(元)", 100) in [tuple(c[:2]) for c in cells]
    day_two = admin.get(f"/admin/settlement/{hotel}.xlsx?from=2026-06-26&to=2026-06-26")
    cells = list(load_workbook(io.BytesIO(day_two.get_data()), read_only=True).active.iter_rows(values_only=True))
    assert ("合计笔数", 0) in [tuple(c[:2]) for c in cells]


def test_a_page_counts_at_most_ten_thousand_and_still_pages_on(console, redemptions, monkeypatch):
    monkeypatch.setattr(pages, "COUNT_LIMIT", 3)
    monkeypatch.setattr(pages, "PER_PAGE", 2)
    client = console("admin")
    page = client.get("/admin/lists/redemptions").get_data(as_text=True)
    assert "超过 3 条，第 1 页" in page and "下一页" in page
    assert len(ids_on_page(client, "page=3")) == 2  # six in all: the third page is still full


@pytest.mark.parametrize("role", ["admin", "auditor"])
@pytest.mark.parametrize("name", ["redemptions", "claims", "residents"])
def test_each_export_holds_the_cells_of_its_list_as_the_role_sees_them(app, console, redemptions, name, role):
    client = console(role)
    listing = lists.LISTINGS[name]
    with app.test_request_context(), app.app_context():
        expected = list(listing.rows(lists.parse_filters({}, listing.filters), role))
    assert expected
    body = client.get(f"/admin/lists/{name}/export.csv").get_data().decode("utf-8-sig")
    exported = list(csv.reader(io.StringIO(body)))
    assert exported[0] == list(listing.titles)
    assert exported[1:] == [[str(cell) for cell in row] for row in expected]
    answer = client.get(f"/admin/lists/{name}/export.xlsx")
    sheet = load_workbook(io.BytesIO(answer.get_data()), read_only=True).active
    cells = [[cell if cell is not None else "" for cell in row] for row in sheet.iter_rows(values_only=True)]
    # Money is a number there (Excel sums it), the list's "50.00" as 50.0; every other cell as listed.
    money = {i for i, title in enumerate(listing.titles) if title.endswith("(元)")}
    assert money or name == "residents"
    assert cells[1:] == [[float(c) if i in money and c != "" else c for i, c in enumerate(row)] for row in expected]
    page = client.get(f"/admin/lists/{name}").get_data(as_text=True)
    assert f"<td>{expected[0][1]}</td>" in page


def test_cells_are_formatted_for_people(app, redemptions):
    with app.test_request_context(), app.app_context():
        admin = list(lists.REDEMPTIONS.rows({"phone": redemptions["made"][0][2]}, "admin"))
        auditor = list(lists.REDEMPTIONS.rows({"phone": redemptions["made"][0][2]}, "auditor"))
    (row,) = admin
    assert row[1] == "2026-06-25 09:00:00"  # 01:00 UTC, shown in Shanghai
    assert row[6] == redemptions["made"][0][2] and auditor[0][6] == "139****0000"
    assert re.fullmatch(r"\d+\.\d\d", row[10]) and row[10] == "50.00"
    assert row[17] == "有效" and row[8] == 1
    # What the coupon paid (its face), nothing refunded, all of it owed to the shop.
    assert list(row[13:16]) == ["50.00", "0.00", "50.00"]


HOSTILE = {
    "staff": '=HYPERLINK("//e.cn","点我")',
    "spend": "+cmd|' /C calc'!A0",
    "merchant": "@SUM(1+1)",
}


def test_exports_never_hand_a_spreadsheet_a_formula(
    app, client, console, make_campaign, make_resident, make_till, clock
):
    """A staff name, a till's spend category and a merchant's name (from the unauthenticated
    application) that start like a formula go out as text: CSV cells with a leading apostrophe,
    XLSX cells of type string; numbers stay numbers, on both databases (COPY on PostgreSQL)."""
    from sqlalchemy import update

    from server.extensions import db
    from server.models import Merchant, Staff
    from tests.helpers import paycode, redeem

    make_campaign()
    merchant_id, till = make_till("hotel")
    with app.app_context():
        db.session.execute(update(Staff).where(Staff.merchant_id == merchant_id).values(name=HOSTILE["staff"]))
        db.session.execute(update(Merchant).where(Merchant.id == merchant_id).values(name=HOSTILE["merchant"]))
        db.session.commit()
    _, token = make_resident()
    coupon = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).get_json()["coupon"]
    answer = redeem(
        client, till, paycode(client, token, coupon["id"]), coupon["threshold_fen"], category=HOSTILE["spend"]
    )
    assert answer.status_code == 200, answer.get_json()
    admin = console("admin")

    body = admin.get("/admin/lists/redemptions/export.csv").get_data().decode("utf-8-sig")
    row = list(csv.reader(io.StringIO(body)))[1]
    for text in HOSTILE.values():
        assert "'" + text in row and text not in row
    assert f"{coupon['threshold_fen'] / 100:.2f}" in row  # the spend: a number, as it was

    sheet = load_workbook(io.BytesIO(admin.get("/admin/lists/redemptions/export.xlsx").get_data())).active
    cells = {cell.value: cell.data_type for cell in sheet[2]}
    assert all(cells[text] == "s" for text in HOSTILE.values())
    assert "f" not in cells.values()

    statement = admin.get(f"/admin/settlement/{merchant_id}.xlsx")
    sheet = load_workbook(io.BytesIO(statement.get_data())).active
    types = {cell.value: cell.data_type for row in sheet.iter_rows() for cell in row if cell.value is not None}
    assert types[f"{HOSTILE['merchant']} 消费券结算单"] == "s" and types[HOSTILE["staff"]] == "s"
    assert types[HOSTILE["spend"]] == "s" and "f" not in types.values()


@pytest.mark.parametrize(
    ("cell", "sent"),
    [("=1+1", "'=1+1"), ("-5", "-5"), ("+8.00", "+8.00"), ("-x", "'-x"), ("\tx", "'\tx"), ("住宿", "住宿"), (12, 12)],
)
def test_a_cell_that_would_be_a_formula_goes_out_as_text(cell, sent):
    assert lists.csv_cell(cell) == sent


def test_the_tills_note_appears_on_the_list_the_exports_and_the_statement(
    app, client, console, make_campaign, make_resident, make_till, clock
):
    """The till's 备注 (Qian'an: 店内收款191元) was stored and shown nowhere."""
    make_campaign()
    merchant_id, till = make_till("hotel")
    _, token = make_resident()
    coupon = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).get_json()["coupon"]
    body = {"paycode": paycode(client, token, coupon["id"]), "spend_fen": 19100, "spend_category": "住宿",
            "note": "店内收款191元"}  # fmt: skip
    assert client.post("/api/v1/merchant/redeem", json=body, headers=auth(till)).status_code == 200
    admin = console("admin")
    assert "<td>店内收款191元</td>" in admin.get("/admin/lists/redemptions").get_data(as_text=True)
    csv_body = admin.get("/admin/lists/redemptions/export.csv").get_data().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(csv_body)))
    assert rows[0][-1] == "备注" and rows[1][-1] == "店内收款191元"
    sheet = load_workbook(io.BytesIO(admin.get("/admin/lists/redemptions/export.xlsx").get_data())).active
    assert [c.value for c in sheet[2]][-1] == "店内收款191元"
    statement = load_workbook(io.BytesIO(admin.get(f"/admin/settlement/{merchant_id}.xlsx").get_data())).active
    cells = [row for row in statement.iter_rows(values_only=True) if row and row[0] == "核销编号"]
    assert cells and cells[0][-1] == "备注"
    lines = [row for row in statement.iter_rows(values_only=True) if row and isinstance(row[0], int)]
    assert lines[0][-1] == "店内收款191元"


def name_staff(app, redemptions) -> None:
    """The hotel's assistant 王丽娟, the fuel station's 李建国 (the fixture names both 店员)."""
    import sqlalchemy as sa

    from server.extensions import db
    from server.models import Staff

    with app.app_context():
        for category, name in (("hotel", "王丽娟"), ("fuel", "李建国")):
            merchant_id = redemptions["merchants"][category]
            db.session.execute(sa.update(Staff).where(Staff.merchant_id == merchant_id).values(name=name))
        db.session.commit()


def test_staff_are_found_by_name_or_by_their_full_phone_and_a_phone_search_is_audited(app, console, redemptions):
    name_staff(app, redemptions)
    client = console("admin")
    made = redemptions["made"]
    hotel = sorted(r for c, r, _ in made if c == "hotel")
    fuel = sorted(r for c, r, _ in made if c == "fuel")
    assert sorted(ids_on_page(client, "staff=丽娟")) == hotel  # part of a name
    assert sorted(ids_on_page(client, "staff=李建国")) == fuel
    assert ids_on_page(client, "staff=%25") == []  # a LIKE wildcard is a character like any other
    assert sorted(ids_on_page(client, "staff=13700000002")) == fuel  # make_till's second assistant
    assert ids_on_page(client, "staff=1370000000") == []  # a phone matches in full, never in part
    assert ids_on_page(client, "staff=2") == []  # no longer an id number
    body = client.get("/admin/lists/redemptions/export.csv?staff=丽娟").get_data().decode("utf-8-sig")
    assert sorted(int(r[0]) for r in list(csv.reader(io.StringIO(body)))[1:]) == hotel
    with app.app_context():
        import sqlalchemy as sa

        from server.extensions import db
        from server.models import AuditEntry

        searched = db.session.scalars(
            sa.select(AuditEntry.after).where(AuditEntry.action == "phone_search").order_by(AuditEntry.id)
        ).all()
    # Every search by digits is one by phone, audited; none by a name.
    assert searched == [
        {"list": "redemptions", "phone": phone, "of": "staff"} for phone in ("13700000002", "1370000000", "2")
    ]
    client.get("/admin/lists/redemptions?staff=13700000002&phone=13910000000")
    with app.app_context():
        both = db.session.scalars(
            sa.select(AuditEntry.after).where(AuditEntry.action == "phone_search").order_by(AuditEntry.id)
        ).all()[3:]
    assert both == [
        {"list": "redemptions", "phone": "13910000000"},
        {"list": "redemptions", "phone": "13700000002", "of": "staff"},
    ]


def test_auditors_find_staff_by_name_but_never_by_phone(app, console, redemptions):
    name_staff(app, redemptions)
    auditor = console("auditor")
    page = auditor.get("/admin/lists/redemptions").get_data(as_text=True)
    assert 'placeholder="店员姓名"' in page
    assert len(ids_on_page(auditor, "staff=丽娟")) == 4
    for path in ("/admin/lists/redemptions?staff=13700000002", "/admin/lists/redemptions/export.csv?staff=13700000002"):
        refused = auditor.get(path, follow_redirects=True)
        text = refused.get_data(as_text=True)
        assert "不能按完整手机号查询" in text and "13700000002" not in text
    with app.app_context():
        import sqlalchemy as sa

        from server.extensions import db
        from server.models import AuditEntry

        assert not db.session.scalar(sa.select(AuditEntry.id).where(AuditEntry.action == "phone_search"))
    assert 'placeholder="店员姓名或手机号"' in console("admin").get("/admin/lists/redemptions").get_data(as_text=True)


def test_the_merchant_choices_are_the_merchants_that_can_have_redemptions(app, console, redemptions, make_till):
    """Approved, suspended or blacklisted after approval: offered. Applied, rejected, or
    blacklisted before it was ever approved (no binding code): not offered."""
    import sqlalchemy as sa

    from server.extensions import db
    from server.models import Enrolment, Merchant

    for status in ("applied", "rejected", "suspended", "blacklisted"):
        make_till("hotel", status=status)
    with app.app_context():
        never = Merchant(name="从未通过的商户", credit_code="91220723MA0000000X", address="乾安县",
                         contact_name="某", contact_phone="13900000000")  # fmt: skip
        db.session.add_all([never, Enrolment(merchant=never, campaign_id=1, status="blacklisted")])
        db.session.commit()
        statuses = dict(db.session.execute(sa.select(Merchant.name, Enrolment.status).join(Enrolment)).all())
    page = console("auditor").get("/admin/lists/redemptions").get_data(as_text=True)
    offered = re.findall(r'<option value="\d+" >([^<]+)</option>', page)
    assert sorted(offered) == sorted(n for n, s in statuses.items() if s in ("approved", "suspended", "blacklisted")
                                     and n != "从未通过的商户")  # fmt: skip
    assert {statuses[n] for n in offered} == {"approved", "suspended", "blacklisted"}


def test_the_page_heads_its_columns_short_and_the_exports_keep_the_full_titles(console, redemptions):
    client = console("admin")
    page = client.get("/admin/lists/redemptions").get_data(as_text=True)
    assert '<th title="消费金额(元)">消费额</th>' in page and "<th>商户</th>" in page and "金额单位：元" in page
    body = client.get("/admin/lists/redemptions/export.csv").get_data().decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(body)))[0] == list(lists.REDEMPTIONS.titles)
    assert len(lists.REDEMPTIONS.headings) == len(lists.REDEMPTIONS.titles)


def test_a_deadline_reads_as_its_last_day_and_24_00_as_everywhere_else(
    console, client, make_campaign, make_resident, clock
):
    """The claims list and its export write a midnight deadline as the phone, the till and the
    public page do: 2026-06-29 24:00, not 2026-06-30 00:00 (residents read the latter as the 30th)."""
    make_campaign()
    _, token = make_resident()
    won = client.post("/api/v1/draw", json={"category": "hotel"}, headers=auth(token)).get_json()["coupon"]
    assert won["valid_until"] == "2026-06-30T00:00:00+08:00"
    admin = console("admin")
    body = admin.get("/admin/lists/claims/export.csv").get_data().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    column = rows[0].index("有效期至")
    assert [r[column] for r in rows[1:]] == ["2026-06-29 24:00"]
    assert "2026-06-29 24:00" in admin.get("/admin/lists/claims").get_data(as_text=True)
