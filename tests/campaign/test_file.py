"""`campaign check` and `campaign import`: every inconsistency reported with its place; a bad file changes nothing."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from server.campaign import file as campaign_file
from server.extensions import db
from server.models import Campaign, Coupon
from tests.helpers import ROOT, campaign_doc, write_json

AS_PRINTED_JSON = ROOT / "examples" / "qianan-2022-annex1-as-printed.json"
AS_PRINTED_XLSX = ROOT / "examples" / "qianan-2022-annex1-as-printed.xlsx"
CORRECTED = ROOT / "examples" / "qianan-2022.json"


def problems_of(app, doc: dict) -> list[str]:
    with app.app_context():
        _, problems = campaign_file.check(campaign_file.Document(doc, "test"))
        return [str(p) for p in problems]


@pytest.mark.parametrize("path", [AS_PRINTED_JSON, AS_PRINTED_XLSX], ids=["json", "xlsx"])
def test_check_catches_the_wrong_row_subtotals_printed_in_the_plan(runner, path):
    result = runner.invoke(args=["campaign", "check", str(path)])
    assert result.exit_code == 1
    out = result.output
    # The four wrong row subtotals, count and amount each, and the wrong grand total.
    for face, printed, actual in [(50, 10800, 9800), (100, 5600, 5100), (200, 1500, 1750), (500, 200, 300)]:
        assert f"面额{face}元一行的小计张数印为 {printed}张，各券种实际合计 {actual}张" in out
    assert "总张数印为 15950张，各券种实际合计 20450张" in out
    assert "发现 9 处问题" in out
    # The right figures (20 yuan row, every column total, the money total) are not flagged.
    assert "面额20元" not in out and "总金额" not in out and "一列" not in out


def test_xlsx_problems_name_the_cell(runner):
    out = runner.invoke(args=["campaign", "check", str(AS_PRINTED_XLSX)]).output
    assert "投放分配!G5: 面额50元一行的小计张数印为 10800张" in out
    assert "投放分配!G9: 总张数印为 15950张" in out


def test_the_xlsx_and_json_versions_of_the_annex_say_the_same(app):
    with app.app_context():
        xlsx = campaign_file.read(AS_PRINTED_XLSX).data
        as_json = campaign_file.read(AS_PRINTED_JSON).data
    assert {(t["category"], t["face_yuan"], t["quantity"]) for t in xlsx["tiers"]} == {
        (t["category"], t["face_yuan"], t["quantity"]) for t in as_json["tiers"]
    }
    assert xlsx["campaign"] == as_json["campaign"]
    assert xlsx["rounds"] == as_json["rounds"]


def test_the_corrected_plan_checks_clean_with_the_plan_totals(runner):
    result = runner.invoke(args=["campaign", "check", str(CORRECTED)])
    assert result.exit_code == 0, result.output
    assert "每次投放 20450 张共 1570000 元，7 轮" in result.output


def test_import_refuses_a_file_with_problems_and_changes_nothing(app, runner):
    result = runner.invoke(args=["campaign", "import", str(AS_PRINTED_JSON)])
    assert result.exit_code == 1
    assert "未导入任何内容" in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Campaign)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Coupon)) == 0


def test_import_creates_round_one_stock_to_the_fen(app, runner):
    result = runner.invoke(args=["campaign", "import", str(CORRECTED)])
    assert result.exit_code == 0, result.output
    with app.app_context():
        count, value = db.session.execute(sa.select(sa.func.count(), sa.func.sum(Coupon.face_fen))).one()
        assert (count, value) == (20450, 157_000_000)
        per_category = dict(
            db.session.execute(
                sa.text(
                    "SELECT c.code, sum(k.face_fen) FROM coupons k JOIN categories c ON c.id = k.category_id"
                    " GROUP BY c.code"
                )
            ).all()
        )
        assert per_category == {
            "hotel": 60_000_000,
            "restaurant": 15_000_000,
            "fuel": 60_000_000,
            "farm_produce": 17_000_000,
            "bookstore": 5_000_000,
        }
    # The same file a second time is refused: the campaign code is taken.
    again = runner.invoke(args=["campaign", "import", str(CORRECTED)])
    assert again.exit_code == 1
    assert "已存在" in again.output


def test_check_reports_a_threshold_under_the_minimum_leverage(app):
    doc = campaign_doc(min_leverage=5)  # Jincheng requires leverage >= 5
    doc["tiers"].append({"category": "fuel", "face_yuan": 80, "quantity": 10, "threshold_yuan": 300})
    problems = problems_of(app, doc)
    assert "campaign.threshold_multiple: 使用门槛倍数 3 低于活动要求的最低带动比 5" in problems
    assert "tiers[4].threshold_yuan: 加油 80元券的使用门槛 300元 低于最低带动比 5 倍（至少 400元）" in problems


def test_explicit_man_jian_tiers_pass_when_they_meet_the_leverage(app):
    doc = campaign_doc(threshold_multiple=None, min_leverage=3.5, budget_yuan=200000)
    doc["tiers"] = [  # Geermu: 满300减80, 满200减40, 满100减20
        {"category": "hotel", "face_yuan": 80, "quantity": 350, "threshold_yuan": 300},
        {"category": "hotel", "face_yuan": 40, "quantity": 2050, "threshold_yuan": 200},
        {"category": "hotel", "face_yuan": 20, "quantity": 2000, "threshold_yuan": 100},
    ]
    assert problems_of(app, doc) == []


def test_check_reports_overlapping_rounds(app):
    doc = campaign_doc(
        rounds=[
            {"opens_at": "2026-06-25T09:00", "valid_until": "2026-06-30T00:00"},
            {"opens_at": "2026-06-29T09:00", "valid_until": "2026-07-04T00:00"},
        ]
    )
    assert problems_of(app, doc) == ["rounds: 第1轮与第2轮时间重叠（第2轮在第1轮结束前开始）"]


def test_check_reports_unknown_categories(app):
    doc = campaign_doc()
    doc["tiers"].append({"category": "casino", "face_yuan": 50, "quantity": 1})
    doc["categories"].append({"code": "spaceship"})
    problems = problems_of(app, doc)
    assert "categories[2].code: 未知的品类「spaceship」，新品类须同时写明中文名称" in problems
    assert "tiers[4].category: 未知的品类「casino」" in problems


def test_check_reports_an_allocation_over_budget(app):
    doc = campaign_doc(budget_yuan=1000)
    assert "tiers: 投放总额 9000元 超过总预算 1000元" in problems_of(app, doc)
    doc = campaign_doc(budget_yuan=12000, allocate="every_round")
    assert "tiers: 投放总额 63000元 超过总预算 12000元" in problems_of(app, doc)


def test_check_reports_every_problem_at_once(app):
    doc = campaign_doc(budget_yuan="lots", refund_policy="maybe", colour="red")
    doc["campaign"]["short_sale"] = "change"
    doc["tiers"][0]["face_yuan"] = 0.001
    doc["tiers"][1]["quantity"] = -3
    doc["tiers"].append(dict(doc["tiers"][2]))
    problems = problems_of(app, doc)
    assert problems == [
        "colour: 未知的部分「colour」",
        "campaign.budget_yuan: 总预算必须是大于0的金额（元，最多两位小数）",
        "campaign.refund_policy: 退货政策应为 return（退回奖池）或 forfeit（视为已用）",
        "campaign.short_sale: 消费不足券面额时应为 refuse（拒绝核销，本券不找零）"
        "或 settle（按消费金额结算，余额退回资金池）",
        "tiers[0].face_yuan: 面额应为大于0的金额（元）",
        "tiers[1].quantity: 数量应为非负整数",
        "tiers[4]: 与 tiers[2] 重复：同一品类、面额和门槛",
    ]


def test_check_of_a_file_that_is_not_a_campaign(runner, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    result = runner.invoke(args=["campaign", "check", str(broken)])
    assert result.exit_code == 2
    assert "不是有效的 JSON" in result.output
    result = runner.invoke(args=["campaign", "check", str(tmp_path / "missing.json")])
    assert result.exit_code == 2
    fake = tmp_path / "fake.xlsx"
    fake.write_bytes(b"not a workbook")
    assert "不是有效的 Excel 工作簿" in runner.invoke(args=["campaign", "check", str(fake)]).output


def test_import_of_a_clean_file_shows_what_it_made(runner, tmp_path):
    path = write_json(tmp_path / "c.json", campaign_doc())
    result = runner.invoke(args=["campaign", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert (
        "第1轮：2026-06-25T09:00:00+08:00 开抽，有效至 2026-06-30T00:00:00+08:00，投放 100 张共 9000 元"
        in result.output
    )
    assert "宾馆（hotel）：50元×40（满150可用）、100元×20（满300可用）、200元×10（满600可用）" in result.output
    assert json.loads(path.read_text())["campaign"]["code"] == "test-campaign"


def test_campaign_kinds_are_checked_with_their_settings(app):
    bad_kind = campaign_doc()
    bad_kind["campaign"] |= {"kind": "lottery", "grab_limit": "day"}
    assert problems_of(app, bad_kind) == [
        "campaign.kind: 活动类型应为 wheel（幸运转盘）、grab（抢券）或 subsidy（购车补贴）",
        "campaign.grab_limit: 抢券限制应为 tier（每档每期一张）或 round（每期一张）",
    ]
    wheel_with_grab_settings = campaign_doc()
    wheel_with_grab_settings["campaign"] |= {"grab_limit": "round", "screen_qr": True}
    assert problems_of(app, wheel_with_grab_settings) == [
        "campaign.grab_limit: 只有抢券活动才有抢券限制",
        "campaign.screen_qr: 现场大屏扫码只用于抢券活动（如年货大集）",
    ]
    two_categories_one_per_period = campaign_doc()
    two_categories_one_per_period["campaign"] |= {"kind": "grab", "grab_limit": "round"}
    assert problems_of(app, two_categories_one_per_period) == [
        "campaign.grab_limit: 「每期一张」的抢券活动只能有一个品类（多个品类请用「每档每期一张」）"
    ]
    subsidy_with_tiers = campaign_doc()
    subsidy_with_tiers["campaign"]["kind"] = "subsidy"
    assert problems_of(app, subsidy_with_tiers) == [
        "subsidy_brackets: 购车补贴活动须列出补贴标准（车辆类型、发票金额区间、补贴金额）",
        "tiers: 购车补贴活动按补贴标准发放，不设券种",
    ]


def test_a_subsidy_bracket_table_is_checked(app):
    doc = json.loads((ROOT / "examples" / "jincheng-2026-vehicles.json").read_text(encoding="utf-8"))
    doc["subsidy_brackets"] = [
        {"vehicle": "new_energy", "from_yuan": 30000, "to_yuan": 60000, "subsidy_yuan": 800},
        {"vehicle": "new_energy", "from_yuan": 50000, "to_yuan": 100000, "subsidy_yuan": 2000},
        {"vehicle": "truck", "from_yuan": 0, "subsidy_yuan": 100},
        {"vehicle": "fuel", "from_yuan": 60000, "to_yuan": 30000, "subsidy_yuan": 600},
        {"vehicle": "used", "from_yuan": "三万", "subsidy_yuan": 600},
    ]
    problems = problems_of(app, doc)
    assert problems == [
        "subsidy_brackets[2]: 车辆类型应为 new_energy（新能源汽车）、fuel（燃油汽车）、used（二手车）、"
        "motorcycle（摩托车） 之一",
        "subsidy_brackets[3]: 发票金额区间的上限须高于下限",
        "subsidy_brackets[4]: 发票金额区间和补贴金额应为金额（元），补贴金额大于0",
        "subsidy_brackets: 新能源汽车的发票金额区间重叠：50000元起的一档",
    ]
    wheel = campaign_doc()
    wheel["subsidy_brackets"] = doc["subsidy_brackets"][:1]
    assert problems_of(app, wheel) == ["subsidy_brackets: 只有购车补贴活动才有补贴标准"]


@pytest.mark.parametrize(
    "name", ["geermu-2026.json", "geermu-2026-fair.json", "huating-2023.json", "youhao-2023.json",
             "jincheng-2026-vehicles.json"],
)  # fmt: skip
def test_every_seed_plan_checks_clean(runner, name):
    result = runner.invoke(args=["campaign", "check", str(ROOT / "examples" / name)])
    assert result.exit_code == 0, result.output
    assert "检查通过" in result.output


def test_a_file_is_checked_before_the_database_exists_and_import_says_what_to_run(tmp_path):
    """`campaign check` needs no database; `campaign import` says in one line what to run first."""
    from server import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'new.sqlite3'}", "SECRET_KEY": "t"})
    runner = app.test_cli_runner()
    checked = runner.invoke(args=["campaign", "check", str(CORRECTED)])
    assert checked.exit_code == 0, checked.output
    assert "检查通过" in checked.output and "请先运行 flask --app server db upgrade" in checked.output
    assert "Traceback" not in checked.output
    imported = runner.invoke(args=["campaign", "import", str(CORRECTED)])
    assert imported.exit_code == 2
    assert imported.output.strip() == "错误：数据库尚未建立（请先运行 flask --app server db upgrade），未导入任何内容。"
