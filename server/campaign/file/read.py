"""Reading a campaign file: JSON, or XLSX laid out like annex 1 of the Qian'an plan, into one
document in the JSON layout, with where each value came from (a JSON path, or a sheet and cell)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any

from ...core.errors import refusal
from ..rules import CATEGORY_BY_NAME

CampaignFileError = refusal("CAMPAIGN_FILE_UNREADABLE", 400, "无法读取活动方案文件", api=False)


@dataclass
class Document:
    """A campaign file's content in the JSON layout, with where each value came from."""

    data: dict[str, Any]
    source: str
    places: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the check could not look at, and why

    def place(self, path: str) -> str:
        return self.places.get(path, path)


def read(path: str | Path) -> Document:
    path = Path(path)
    if not path.exists():
        raise CampaignFileError(f"找不到文件 {path}")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CampaignFileError(f"{path.name} 不是有效的 JSON：{exc}") from exc
        if not isinstance(data, dict):
            raise CampaignFileError(f"{path.name} 的顶层应是一个对象")
        return Document(data, path.name)
    if path.suffix.lower() in {".xlsx", ".xlsm"}:
        return _read_xlsx(path)
    raise CampaignFileError(f"不支持的文件类型 {path.suffix}，请使用 .json 或 .xlsx")


# Labels of the 活动 sheet -> keys of the JSON layout ("campaign.x" or "rounds.x").
XLSX_LABELS = {
    "活动代码": "campaign.code",
    "活动名称": "campaign.name",
    "地区": "campaign.region",
    "总预算(元)": "campaign.budget_yuan",
    "时区": "campaign.timezone",
    "抽奖方式": "campaign.draw_strategy",
    "谢谢参与权重": "campaign.thanks_weight",
    "使用门槛倍数": "campaign.threshold_multiple",
    "最低带动比": "campaign.min_leverage",
    "有效期": "campaign.validity",
    "退货政策": "campaign.refund_policy",
    "不足面额": "campaign.short_sale",
    "投放方式": "campaign.allocate",
    "滚动方式": "campaign.rollover",
    "分批放券": "campaign.release",
    "活动类型": "campaign.kind",
    "抢券限制": "campaign.grab_limit",
    "现场大屏扫码": "campaign.screen_qr",
    "钱包付款码": "campaign.wallet",
    "活动截止": "campaign.ends",
    "使用时段": "campaign.hours",
    "消费品类": "campaign.spend_categories",
    "结余处理": "campaign.leftover",
    "身份验证": "campaign.identity",
    "首轮抽奖时间": "rounds.first_draw",
    "轮次数": "rounds.count",
    "间隔天数": "rounds.every_days",
    "有效天数": "rounds.valid_days",
}
XLSX_VALUES = {
    "按剩余比例": "weighted",
    "固定概率": "fixed_odds",
    "退回奖池": "return",
    "视为已用": "forfeit",
    "拒绝核销": "refuse",
    "按消费金额结算": "settle",
    "本轮截止": "round_deadline",
    "首轮投放": "first_round",
    "每轮投放": "every_round",
    "幸运转盘": "wheel",
    "抢券": "grab",
    "购车补贴": "subsidy",
    "每档每期一张": "tier",
    "每期一张": "round",
    "手机号": "phone",
    "手机号+身份证": "id_card",
    "身份证": "id_card",
    "是": True,
    "否": False,
}
SUBTOTAL_COUNT = "消费券小计(张)"
SUBTOTAL_AMOUNT = "金额小计(元)"
TOTAL_COUNT = "消费券张数总计"
TOTAL_AMOUNT = "金额总计(元)"


def _label(value: Any) -> str:
    return re.sub(r"\s+", "", str(value or "")).replace("（", "(").replace("）", ")")


def _xlsx_rollover(text: str) -> dict:
    """「同券种按比例」, or a mix such as 「宾馆100=2，餐饮200=1」 (category, face in yuan, weight)."""
    if text in ("同券种按比例", "同券种", "same_tiers"):
        return {"policy": "same_tiers"}
    if text in ("不滚动", "每期独立投放", "none"):
        return {"policy": "none"}
    mix = []
    for part in re.split(r"[，,；;]", text):
        found = re.fullmatch(r"\s*(\D+?)\s*(\d+(?:\.\d+)?)\s*元?\s*[=:：]\s*(\d+)\s*", part)
        if not found:
            return {"policy": text}  # reported by `check` as an unknown policy
        name, face, weight = found.groups()
        mix.append({"category": CATEGORY_BY_NAME.get(name, name), "face_yuan": face, "weight": int(weight)})
    return {"policy": "mix", "mix": mix}


def _xlsx_leftover(text: str) -> dict | str:
    """「截止后14天返还财政」, 「转入 qianan-2023」, 「截止后7天转入 qianan-2023」."""
    found = re.fullmatch(r"\s*(?:截止后\s*(\d+)\s*天\s*)?(?:(返还财政)|转入\s*([A-Za-z0-9_-]+))\s*", text)
    if not found:
        return text  # reported by `check`
    days, _, target = found.groups()
    return {"after_days": int(days or 0)} | ({"to": target} if target else {})


def _xlsx_release(text: str) -> list | str:
    """「10秒50%，3分钟80%」: the share of each category drawable in a round's first seconds."""
    steps = []
    for part in re.split(r"[，,；;]", text):
        found = re.fullmatch(r"\s*(\d+)\s*(秒|分钟)\s*(?:内)?\s*(\d+)\s*%\s*", part)
        if not found:
            return text  # reported by `check`
        amount, unit, percent = found.groups()
        steps.append({"seconds": int(amount) * (60 if unit == "分钟" else 1), "percent": int(percent)})
    return steps


def _xlsx_spend(text: str) -> dict:
    """「超市购物、餐饮；不可用：定金、充值、预存」: the till's spend categories for every coupon category,
    those after 不可用 excluded."""
    usable, _, excluded = re.sub(r"[；;]?\s*不可用[：:]", "\0", text, count=1).partition("\0")

    def names(part: str) -> list[str]:
        return [n.strip() for n in re.split(r"[、，,]", part) if n.strip()]

    return {"*": [*names(usable), *({"name": n, "excluded": True} for n in names(excluded))]}


def _read_xlsx(path: Path) -> Document:
    from openpyxl import load_workbook
    from openpyxl.utils import get_column_letter

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged file
        raise CampaignFileError(f"{path.name} 不是有效的 Excel 工作簿：{exc}") from exc
    for sheet in ("活动", "投放分配"):
        if sheet not in workbook.sheetnames:
            raise CampaignFileError(f"{path.name} 缺少工作表「{sheet}」")

    data: dict[str, Any] = {"campaign": {}, "rounds": {}, "tiers": [], "printed_totals": {}}
    places: dict[str, str] = {}

    for row in workbook["活动"].iter_rows(min_row=1):
        label = _label(row[0].value) if row else ""
        if label not in XLSX_LABELS or len(row) < 2:
            continue
        section, key = XLSX_LABELS[label].split(".")
        value = row[1].value
        if isinstance(value, str):
            value = XLSX_VALUES.get(value.strip(), value.strip())
        if key == "validity":
            days = re.fullmatch(r"领取后(\d+)天", str(value))
            value = {"kind": "days_from_claim", "days": int(days.group(1))} if days else {"kind": value}
        if key == "rollover":
            value = _xlsx_rollover(str(value))
        if key == "release":
            value = _xlsx_release(str(value))
        if key == "spend_categories":
            value = _xlsx_spend(str(value))
        if key == "leftover":
            value = _xlsx_leftover(str(value))
        if isinstance(value, datetime) and key == "ends" and value.time() == time(0):
            value = value.date().isoformat()  # a date cell: the campaign ends at its 24:00
        elif isinstance(value, datetime):
            value = value.isoformat(timespec="minutes")
        data[section][key] = value
        places[f"{section}.{key}"] = f"活动!B{row[1].row}"

    sheet = workbook["投放分配"]
    rows = list(sheet.iter_rows())
    header_index = next((i for i, row in enumerate(rows) if row and _label(row[0].value).startswith("面额")), None)
    if header_index is None:
        raise CampaignFileError("投放分配表找不到以「面额」开头的表头行")
    header = rows[header_index]
    columns: dict[int, str] = {}  # column index -> category code, or a subtotal marker
    categories: list[dict[str, str]] = []
    for cell in header[1:]:
        label = _label(cell.value)
        if not label or label == "品类":
            continue
        if label.startswith("消费券小计"):
            columns[cell.column] = SUBTOTAL_COUNT
        elif label.startswith("金额小计"):
            columns[cell.column] = SUBTOTAL_AMOUNT
        else:
            name = re.sub(r"\(.*\)$", "", label)
            code = CATEGORY_BY_NAME.get(name, name)
            columns[cell.column] = code
            categories.append({"code": code, "name": name})
            places[f"categories[{len(categories) - 1}].code"] = f"投放分配!{cell.coordinate}"
    data["categories"] = categories

    by_face: list[dict[str, Any]] = []
    by_category: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in rows[header_index + 1 :]:
        if not row or row[0].value in (None, ""):
            continue
        first = _label(row[0].value)
        cells = {cell.column: cell for cell in row if cell.value not in (None, "", "---")}
        if first.startswith(TOTAL_COUNT) or first.startswith(TOTAL_AMOUNT):
            key = "quantity" if first.startswith(TOTAL_COUNT) else "amount_yuan"
            for column, cell in cells.items():
                target = columns.get(column)
                if target in (SUBTOTAL_COUNT, SUBTOTAL_AMOUNT):
                    if (target == SUBTOTAL_COUNT) == (key == "quantity"):
                        data["printed_totals"][key] = cell.value
                        places[f"printed_totals.{key}"] = f"投放分配!{cell.coordinate}"
                elif target:
                    by_category[target][key] = cell.value
                    by_category[target]["category"] = target
                    places[f"printed_totals.by_category.{target}.{key}"] = f"投放分配!{cell.coordinate}"
            continue
        face = row[0].value
        face_entry: dict[str, Any] = {"face_yuan": face}
        for column, cell in cells.items():
            target = columns.get(column)
            if target == SUBTOTAL_COUNT:
                face_entry["quantity"] = cell.value
                places[f"printed_totals.by_face.{face}.quantity"] = f"投放分配!{cell.coordinate}"
            elif target == SUBTOTAL_AMOUNT:
                face_entry["amount_yuan"] = cell.value
                places[f"printed_totals.by_face.{face}.amount_yuan"] = f"投放分配!{cell.coordinate}"
            elif target:
                index = len(data["tiers"])
                data["tiers"].append({"category": target, "face_yuan": face, "quantity": cell.value})
                places[f"tiers[{index}].quantity"] = f"投放分配!{cell.coordinate}"
                places[f"tiers[{index}].face_yuan"] = f"投放分配!A{cell.row}"
                places[f"tiers[{index}]"] = f"投放分配!{get_column_letter(column)}{cell.row}"
        if len(face_entry) > 1:
            by_face.append(face_entry)
    data["printed_totals"]["by_face"] = by_face
    data["printed_totals"]["by_category"] = list(by_category.values())
    return Document(data, path.name, places)
