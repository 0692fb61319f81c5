"""Checking a campaign document: every inconsistency with its place, in Chinese for the bureau
(in the console as on the command line), and the plan `create()` builds when there is none."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from ...core.db import rollback_quietly
from ...core.money import fen, yuan
from ...core.time import local_midnight
from ...extensions import db
from ...models import VEHICLE_KINDS, Campaign
from ..rules import CATALOGUE, Hours, category_name, leverage_floor, threshold_for
from .read import Document

CODE_RE = re.compile(r"^[a-z][a-z0-9_-]{1,63}$")
NO_DATABASE = "数据库尚未建立（请先运行 flask --app server db upgrade）"
CATEGORY_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


def existing_codes() -> set[str] | None:
    """The campaign codes the database holds; None when there is no database to ask yet (not
    migrated, or not reachable): checking a file needs none."""
    try:
        return set(db.session.scalars(sa.select(Campaign.code)))
    except sa.exc.DBAPIError:
        rollback_quietly()
        return None


@dataclass(frozen=True)
class Problem:
    place: str
    message: str

    def __str__(self) -> str:
        return f"{self.place}: {self.message}"


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def _local_time(value: Any, tz: ZoneInfo) -> datetime | None:
    """A time written in the file: local to the campaign unless it carries an offset."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)


@dataclass
class Plan:
    """A document that checked clean, in the shape `create()` needs."""

    campaign: dict[str, Any]
    categories: list[tuple[str, str]]
    tiers: list[dict[str, Any]]
    rounds: list[tuple[datetime, datetime, datetime]]


def check(doc: Document) -> tuple[Plan | None, list[Problem]]:
    """Every inconsistency of the document, and the plan if there is none."""
    problems: list[Problem] = []

    def problem(path: str, message: str) -> None:
        problems.append(Problem(doc.place(path), message))

    data = doc.data
    known_sections = {"campaign", "categories", "tiers", "rounds", "printed_totals", "subsidy_brackets"}
    for key in data:
        if key not in known_sections:
            problem(key, f"未知的部分「{key}」")
    campaign = data.get("campaign")
    if not isinstance(campaign, dict):
        problem("campaign", "缺少活动信息")
        campaign = {}

    # -- the campaign itself
    settings: dict[str, Any] = {}
    for key in ("code", "name", "region"):
        value = campaign.get(key)
        if not isinstance(value, str) or not value.strip() or len(value) > 100:
            problem(f"campaign.{key}", "必须填写（不超过100字）")
        settings[key] = value.strip() if isinstance(value, str) else value
    if isinstance(settings.get("code"), str) and not CODE_RE.match(settings["code"]):
        problem("campaign.code", "活动代码只能用小写字母、数字、-和_，以字母开头")
    elif isinstance(settings.get("code"), str):
        codes = existing_codes()
        if codes is None:
            doc.notes.append(NO_DATABASE + "，未检查活动代码是否已存在")
        elif settings["code"] in codes:
            problem("campaign.code", f"活动代码 {settings['code']} 已存在")
    budget = fen(campaign.get("budget_yuan"))
    if budget is None or budget == 0:
        problem("campaign.budget_yuan", "总预算必须是大于0的金额（元，最多两位小数）")
    settings["budget_fen"] = budget or 0
    tz_name = campaign.get("timezone", "Asia/Shanghai")
    try:
        tz = ZoneInfo(str(tz_name))
    except (ZoneInfoNotFoundError, ValueError):
        problem("campaign.timezone", f"未知的时区 {tz_name}")
        tz = ZoneInfo("Asia/Shanghai")
    settings["timezone"] = str(tz)
    strategy = campaign.get("draw_strategy", "weighted")
    if strategy not in ("weighted", "fixed_odds"):
        problem("campaign.draw_strategy", "抽奖方式应为 weighted（按剩余比例）或 fixed_odds（固定概率）")
    settings["draw_strategy"] = strategy
    thanks = _count(campaign.get("thanks_weight", 0))
    if thanks is None:
        problem("campaign.thanks_weight", "谢谢参与权重应为非负整数")
    settings["thanks_weight"] = thanks or 0
    multiple = campaign.get("threshold_multiple")
    settings["threshold_multiple"] = _decimal(multiple) if multiple is not None else None
    if multiple is not None and not settings["threshold_multiple"]:
        problem("campaign.threshold_multiple", "使用门槛倍数应为正数，例如 3 表示满3倍面额可用")
    min_leverage = campaign.get("min_leverage")
    settings["min_leverage"] = _decimal(min_leverage) if min_leverage is not None else None
    if min_leverage is not None and settings["min_leverage"] is None:
        problem("campaign.min_leverage", "最低带动比应为非负数")
    if (
        settings["threshold_multiple"]
        and settings["min_leverage"]
        and settings["threshold_multiple"] < settings["min_leverage"]
    ):
        problem(
            "campaign.threshold_multiple",
            f"使用门槛倍数 {settings['threshold_multiple']} 低于活动要求的最低带动比 {settings['min_leverage']}",
        )
    validity = campaign.get("validity", {"kind": "round_deadline"})
    if not isinstance(validity, dict) or validity.get("kind") not in ("round_deadline", "days_from_claim"):
        problem("campaign.validity", "有效期应为「本轮截止」或「领取后N天」")
        validity = {"kind": "round_deadline"}
    settings["validity_kind"] = validity["kind"]
    settings["validity_days"] = None
    if validity["kind"] == "days_from_claim":
        days = _count(validity.get("days"))
        if not days:
            problem("campaign.validity", "领取后有效天数应为正整数")
        settings["validity_days"] = days or 1
    refund = campaign.get("refund_policy", "return")
    if refund not in ("return", "forfeit"):
        problem("campaign.refund_policy", "退货政策应为 return（退回奖池）或 forfeit（视为已用）")
    settings["refund_policy"] = refund
    settings["short_sale"] = campaign.get("short_sale", "refuse")
    if settings["short_sale"] not in ("refuse", "settle"):
        problem(
            "campaign.short_sale",
            "消费不足券面额时应为 refuse（拒绝核销，本券不找零）或 settle（按消费金额结算，余额退回资金池）",
        )
    settings["identity"] = campaign.get("identity", "phone")
    if settings["identity"] not in ("phone", "id_card"):
        problem("campaign.identity", "身份验证应为 phone（姓名+手机号）或 id_card（姓名+手机号+身份证，一证一户）")
    allocate = campaign.get("allocate", "first_round")
    if allocate not in ("first_round", "every_round"):
        problem(
            "campaign.allocate", "投放方式应为 first_round（首轮投放，其余轮次由奖池滚动）或 every_round（每轮投放）"
        )
    settings["geofence"] = _check_geofence(campaign.get("geofence"), problem)
    settings["release_schedule"] = _check_release(campaign.get("release"), problem)
    kind = settings["kind"] = campaign.get("kind", "wheel")
    if kind not in ("wheel", "grab", "subsidy"):
        problem("campaign.kind", "活动类型应为 wheel（幸运转盘）、grab（抢券）或 subsidy（购车补贴）")
    settings["grab_limit"] = campaign.get("grab_limit", "tier")
    if settings["grab_limit"] not in ("tier", "round"):
        problem("campaign.grab_limit", "抢券限制应为 tier（每档每期一张）或 round（每期一张）")
    elif "grab_limit" in campaign and kind != "grab":
        problem("campaign.grab_limit", "只有抢券活动才有抢券限制")
    settings["screen_qr"] = campaign.get("screen_qr", False)
    if not isinstance(settings["screen_qr"], bool):
        problem("campaign.screen_qr", "现场大屏扫码应为 true 或 false")
    elif settings["screen_qr"] and kind != "grab":
        problem("campaign.screen_qr", "现场大屏扫码只用于抢券活动（如年货大集）")
    settings["wallet"] = campaign.get("wallet", False)
    if not isinstance(settings["wallet"], bool):
        problem("campaign.wallet", "钱包付款码应为 true 或 false")
    elif settings["wallet"] and kind == "subsidy":
        problem("campaign.wallet", "购车补贴活动不发券，不用钱包付款码")
    settings["subsidy_brackets"] = _check_brackets(data.get("subsidy_brackets"), kind, problem)
    settings["usage_hours"] = _check_hours(campaign.get("hours"), "campaign.hours", problem)
    settings["leftover_after_days"], settings["leftover_to"] = _check_leftover(campaign.get("leftover"), problem)
    if settings["leftover_to"] is not None and settings["leftover_to"] == settings.get("code"):
        problem("campaign.leftover.to", "结余不能转入本活动自身")
    for key in campaign:
        if key not in {
            "code", "name", "region", "budget_yuan", "timezone", "draw_strategy", "thanks_weight",
            "threshold_multiple", "min_leverage", "validity", "refund_policy", "allocate", "geofence",
            "rollover", "release", "kind", "grab_limit", "screen_qr", "wallet", "ends", "hours", "spend_categories",
            "short_sale", "leftover", "identity",
        }:  # fmt: skip
            problem(f"campaign.{key}", f"未知的设置「{key}」")

    # -- categories
    declared: dict[str, str] = {}
    raw_categories = data.get("categories")
    if raw_categories is not None and not isinstance(raw_categories, list):
        problem("categories", "品类应为列表")
        raw_categories = []
    for i, entry in enumerate(raw_categories or []):
        code = entry.get("code") if isinstance(entry, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(code, str) or not CATEGORY_CODE_RE.match(code):
            problem(f"categories[{i}].code", f"未知的品类「{code or name}」")
            continue
        if code not in CATALOGUE and not (isinstance(name, str) and name.strip()):
            problem(f"categories[{i}].code", f"未知的品类「{code}」，新品类须同时写明中文名称")
            continue
        if code in declared:
            problem(f"categories[{i}].code", f"品类「{code}」重复")
            continue
        declared[code] = (name or category_name(code) or code).strip()

    # -- tiers
    tiers: list[dict[str, Any]] = []
    seen: dict[tuple[str, int, int], int] = {}
    raw_tiers = data.get("tiers")
    if kind == "subsidy" and raw_tiers is None:  # a subsidy campaign pays by brackets, not coupons
        raw_tiers = []
    elif not isinstance(raw_tiers, list) or not raw_tiers:
        problem("tiers", "至少需要一个券种")
        raw_tiers = []
    elif kind == "subsidy":
        problem("tiers", "购车补贴活动按补贴标准发放，不设券种")
        raw_tiers = []
    for i, entry in enumerate(raw_tiers):
        here = f"tiers[{i}]"
        if not isinstance(entry, dict):
            problem(here, "券种格式错误")
            continue
        code = entry.get("category")
        if code not in declared:
            if raw_categories is None and code in CATALOGUE:
                declared[code] = category_name(code)
            else:
                problem(f"{here}.category", f"未知的品类「{code}」")
                continue
        face = fen(entry.get("face_yuan"))
        if not face:
            problem(f"{here}.face_yuan", "面额应为大于0的金额（元）")
            continue
        quantity = _count(entry.get("quantity"))
        if quantity is None:
            problem(f"{here}.quantity", "数量应为非负整数")
            continue
        explicit = entry.get("threshold_yuan")
        if explicit is not None:
            threshold = fen(explicit)
            if threshold is None:
                problem(f"{here}.threshold_yuan", "使用门槛应为金额（元）")
                continue
        elif settings["threshold_multiple"]:
            threshold = threshold_for(face, settings["threshold_multiple"])
        else:
            problem(here, "没有使用门槛：请设置活动的使用门槛倍数或本券种的满减门槛")
            continue
        floor = leverage_floor(face, settings["min_leverage"])
        if threshold < floor:
            problem(
                f"{here}.threshold_yuan" if explicit is not None else here,
                f"{declared[code]} {yuan(face)}元券的使用门槛 {yuan(threshold)}元 低于最低带动比"
                f" {settings['min_leverage']} 倍（至少 {yuan(floor)}元）",
            )
        odds = entry.get("odds_weight")
        if strategy == "fixed_odds" and _count(odds) is None:
            problem(f"{here}.odds_weight", "固定概率抽奖须为每个券种设置非负整数权重")
        key = (code, face, threshold)
        if key in seen:
            problem(here, f"与 tiers[{seen[key]}] 重复：同一品类、面额和门槛")
            continue
        seen[key] = i
        for extra in entry:
            if extra not in {"category", "face_yuan", "quantity", "threshold_yuan", "odds_weight", "hours"}:
                problem(f"{here}.{extra}", f"未知的设置「{extra}」")
        tiers.append(
            {
                "category": code,
                "face_fen": face,
                "threshold_fen": threshold,
                "threshold_explicit": explicit is not None,
                "quantity": quantity,
                "odds_weight": _count(odds),
                "usage_hours": _check_hours(entry.get("hours"), f"{here}.hours", problem),
            }
        )

    settings["spend_categories"] = _check_spend(campaign.get("spend_categories"), declared, problem)

    if kind == "grab" and settings["grab_limit"] == "round" and len(declared) > 1:
        problem("campaign.grab_limit", "「每期一张」的抢券活动只能有一个品类（多个品类请用「每档每期一张」）")

    # -- rounds, and the campaign's end
    rounds = _check_rounds(data.get("rounds"), tz, problem)
    settings["ends_at"] = end = _check_end(campaign.get("ends"), rounds, tz, problem)
    if end is not None:  # a round, and its coupons, end with the campaign at the latest
        rounds = [(opens, min(closes, end), min(valid, end)) for opens, closes, valid in rounds]

    # -- money: what the rounds put on the wheel must fit the budget
    per_round = sum(t["face_fen"] * t["quantity"] for t in tiers)
    allocated = per_round * (len(rounds) if allocate == "every_round" else 1)
    if budget and allocated > budget:
        problem(
            "tiers",
            f"投放总额 {yuan(allocated)}元 超过总预算 {yuan(budget)}元",
        )

    settings["rollover_policy"], settings["rollover_mix"] = _check_rollover(campaign.get("rollover"), tiers, problem)

    _check_printed_totals(data.get("printed_totals"), tiers, declared, problem)

    if problems:
        return None, problems
    settings["allocate"] = allocate
    plan = Plan(settings, list(declared.items()), tiers, rounds)
    return plan, []


def _check_spend(raw: Any, declared: dict[str, str], problem) -> dict | None:
    """The till's spend categories: per coupon category code ("*" for all), a list of names; a name
    written {"name", "excluded": true} (or a list of them under "excluded") may not be paid with a
    coupon (Geermu: 不得用于交付定金、充值、预存)."""
    if raw is None:
        return None
    here = "campaign.spend_categories"
    if not isinstance(raw, dict) or not raw:
        problem(here, '消费品类应按券的品类列出，如 {"*": ["餐饮", {"name": "充值", "excluded": true}]}')
        return None
    lists = {}
    for code, items in raw.items():
        place = f"{here}.{code}"
        if code != "*" and code not in declared:
            problem(place, f"未知的品类「{code}」")
            continue
        choices, seen = [], set()
        for item in items if isinstance(items, list) else [None]:
            name = item if isinstance(item, str) else item.get("name") if isinstance(item, dict) else None
            excluded = isinstance(item, dict) and item.get("excluded") is True
            if not isinstance(name, str) or not name.strip() or len(name.strip()) > 40:
                problem(place, "每个消费品类须有名称（不超过40字）")
                continue
            if name.strip() in seen:
                problem(place, f"消费品类「{name.strip()}」重复")
                continue
            seen.add(name.strip())
            choices.append({"name": name.strip(), "excluded": excluded})
        if choices and all(c["excluded"] for c in choices):
            problem(place, "至少要有一个可用券的消费品类")
        lists[code] = choices
    return lists


def _check_hours(raw: Any, here: str, problem) -> str | None:
    """When in the day coupons may be spent (Youhao: 每日9:00-22:00), written "09:00-22:00"."""
    if raw is None:
        return None
    hours = Hours.parse(raw)
    if hours is None:
        problem(here, "使用时段应写成「09:00-22:00」，结束晚于开始，最晚到24:00")
        return None
    return str(hours)


def _check_end(raw: Any, rounds: list[tuple[datetime, datetime, datetime]], tz: ZoneInfo, problem) -> datetime | None:
    """The campaign's end: a date (its 24:00, as the plans write 截止3月31日24时) or a local time.
    Every round must open before it; a round reaching past it is cut there, and with it the
    validity of its coupons, so draws, grabs, redemptions and the jobs all stop at the end."""
    if raw is None:
        return None
    here = "campaign.ends"
    day = _date(raw)
    end = local_midnight(day + timedelta(days=1), tz) if day else _local_time(raw, tz)
    if end is None:
        problem(here, "活动截止应为日期（如 2023-03-31，即当日24时）或时间（如 2023-03-31T18:00）")
        return None
    for number, (opens, _, _) in enumerate(rounds, start=1):
        if opens >= end:
            problem(here, f"第{number}轮在活动截止之后才开始：请删去该轮或推后截止时间")
    return end


def _date(value: Any) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


def _check_brackets(raw: Any, kind: str, problem) -> list[dict] | None:
    """A subsidy's bracket table (Jincheng: 新能源汽车 10万（含）—20万以下 → 3000元): per vehicle kind,
    invoice amounts from `from_yuan` (inclusive) to `to_yuan` (exclusive; omitted: and above)."""
    here = "subsidy_brackets"
    if kind != "subsidy":
        if raw is not None:
            problem(here, "只有购车补贴活动才有补贴标准")
        return None
    if not isinstance(raw, list) or not raw:
        problem(here, "购车补贴活动须列出补贴标准（车辆类型、发票金额区间、补贴金额）")
        return None
    brackets = []
    for i, entry in enumerate(raw):
        place = f"{here}[{i}]"
        if not isinstance(entry, dict) or entry.get("vehicle") not in VEHICLE_KINDS:
            problem(place, f"车辆类型应为 {'、'.join(f'{k}（{v}）' for k, v in VEHICLE_KINDS.items())} 之一")
            continue
        low, subsidy = fen(entry.get("from_yuan", 0)), fen(entry.get("subsidy_yuan"))
        high = fen(entry["to_yuan"]) if entry.get("to_yuan") is not None else None
        if low is None or (entry.get("to_yuan") is not None and high is None) or not subsidy:
            problem(place, "发票金额区间和补贴金额应为金额（元），补贴金额大于0")
            continue
        if high is not None and high <= low:
            problem(place, "发票金额区间的上限须高于下限")
            continue
        for extra in entry:
            if extra not in {"vehicle", "from_yuan", "to_yuan", "subsidy_yuan"}:
                problem(f"{place}.{extra}", f"未知的设置「{extra}」")
        brackets.append({"vehicle": entry["vehicle"], "from_fen": low, "to_fen": high, "subsidy_fen": subsidy})
    for vehicle in VEHICLE_KINDS:
        mine = sorted((b for b in brackets if b["vehicle"] == vehicle), key=lambda b: b["from_fen"])
        for before, after in zip(mine, mine[1:], strict=False):
            if before["to_fen"] is None or after["from_fen"] < before["to_fen"]:
                problem(here, f"{VEHICLE_KINDS[vehicle]}的发票金额区间重叠：{yuan(after['from_fen'])}元起的一档")
    return brackets


def _check_rollover(raw: Any, tiers: list[dict], problem) -> tuple[str, list[dict] | None]:
    """The rollover policy, and for a mix, (tier index, weight) pairs resolved against the tiers."""
    if raw is None:
        return "same_tiers", None
    here = "campaign.rollover"
    policy = raw.get("policy") if isinstance(raw, dict) else None
    if policy in ("same_tiers", "none"):
        return policy, None
    if policy != "mix":
        problem(here, "滚动方式应为 same_tiers（同券种按比例）、mix（指定券种比例）或 none（不滚动，每期独立投放）")
        return "same_tiers", None
    mix = []
    entries = raw.get("mix")
    if not isinstance(entries, list) or not entries:
        problem(f"{here}.mix", "指定券种比例时须列出券种及权重")
        return "mix", []
    for i, item in enumerate(entries):
        place = f"{here}.mix[{i}]"
        item = item if isinstance(item, dict) else {}
        face = fen(item.get("face_yuan"))
        threshold = fen(item.get("threshold_yuan")) if item.get("threshold_yuan") is not None else None
        matches = [
            n
            for n, t in enumerate(tiers)
            if t["category"] == item.get("category")
            and t["face_fen"] == face
            and (threshold is None or t["threshold_fen"] == threshold)
        ]
        weight = _count(item.get("weight"))
        if len(matches) != 1:
            problem(place, f"找不到唯一对应的券种：{item.get('category')} {item.get('face_yuan')}元")
        elif not weight:
            problem(f"{place}.weight", "权重应为正整数")
        else:
            mix.append({"tier": matches[0], "weight": weight})
    return "mix", mix


def _check_leftover(raw: Any, problem) -> tuple[int, str | None]:
    """What becomes of the pool after the campaign: {"after_days": 14, "to": "next-code"}, both
    optional (default: at the last deadline, to the treasury)."""
    if raw is None:
        return 0, None
    here = "campaign.leftover"
    if not isinstance(raw, dict) or set(raw) - {"after_days", "to"}:
        problem(here, '结余处理应写为 {"after_days": 截止后天数, "to": "下期活动代码"}，两项均可省略')
        return 0, None
    days = raw.get("after_days", 0)
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 366:
        problem(f"{here}.after_days", "结余返还的延后天数应为0到366之间的整数")
        days = 0
    target = raw.get("to")
    if target is not None and not (isinstance(target, str) and CODE_RE.match(target)):
        problem(f"{here}.to", "结余转入的活动应写活动代码（字母、数字和连字符）")
        target = None
    return days, target


def _check_release(raw: Any, problem) -> list[dict] | None:
    """Staged release: steps of (seconds after a round opens, percent of each category's stock
    drawable until then), both rising, every percent below 100."""
    if raw is None or raw == []:
        return None
    here = "campaign.release"
    if not isinstance(raw, list):
        problem(here, "分批放券应写成「10秒50%，3分钟80%」，或 [{seconds, percent}] 列表")
        return None
    steps: list[dict] = []
    for i, step in enumerate(raw):
        seconds = _count(step.get("seconds")) if isinstance(step, dict) else None
        percent = _count(step.get("percent")) if isinstance(step, dict) else None
        if not seconds or seconds > 86400 or percent is None or percent >= 100:
            problem(f"{here}[{i}]", "每一批须有 1 至 86400 的秒数 seconds（不超过一天）和 0 至 99 的百分比 percent")
            return None
        if steps and (seconds <= steps[-1]["seconds"] or percent <= steps[-1]["percent"]):
            problem(f"{here}[{i}]", "后一批的时间和比例都应大于前一批")
            return None
        steps.append({"seconds": seconds, "percent": percent})
    return steps


def _check_geofence(fence: Any, problem) -> dict | None:
    if fence is None:
        return None
    if not isinstance(fence, dict) or fence.get("kind") not in ("circle", "polygon"):
        problem("campaign.geofence", "地理围栏应为 circle（圆心+半径）或 polygon（多边形）")
        return None

    def point_ok(lat: Any, lng: Any) -> bool:
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lat, lng)) and (
            -90 <= lat <= 90 and -180 <= lng <= 180
        )

    if fence["kind"] == "circle":
        radius = fence.get("radius_m")
        if not point_ok(fence.get("lat"), fence.get("lng")) or not (isinstance(radius, int | float) and radius > 0):
            problem("campaign.geofence", "圆形围栏需要有效的 lat、lng 和正数 radius_m")
            return None
        return {"kind": "circle", "lat": fence["lat"], "lng": fence["lng"], "radius_m": radius}
    points = fence.get("points")
    if (
        not isinstance(points, list)
        or len(points) < 3
        or not all(isinstance(p, list) and len(p) == 2 and point_ok(*p) for p in points)
    ):
        problem("campaign.geofence", "多边形围栏至少需要3个 [纬度, 经度] 点")
        return None
    return {"kind": "polygon", "points": points}


def _check_rounds(raw: Any, tz: ZoneInfo, problem) -> list[tuple[datetime, datetime, datetime]]:
    """Rounds as (opens_at, closes_at, valid_until) in UTC, from a schedule or a list."""
    rounds: list[tuple[datetime, datetime, datetime]] = []
    if isinstance(raw, dict):
        first = _local_time(raw.get("first_draw"), tz)
        count, every, valid = (_count(raw.get(k)) for k in ("count", "every_days", "valid_days"))
        if first is None:
            problem("rounds.first_draw", "首轮抽奖时间格式应为 2022-06-25T09:00")
        for key, value in (("count", count), ("every_days", every), ("valid_days", valid)):
            if not value:
                problem(f"rounds.{key}", "应为正整数")
        if first is None or not (count and every and valid):
            return []
        if count > 366:
            problem("rounds.count", "轮次数过多")
            return []
        for k in range(count):
            opens = first + timedelta(days=every * k)
            # "valid to 24:00 of the Nth day": midnight after the Nth local day of the round.
            deadline = local_midnight(opens.astimezone(tz).date() + timedelta(days=valid), tz)
            rounds.append((opens, deadline, deadline))
    elif isinstance(raw, list) and raw:
        for i, entry in enumerate(raw):
            if not isinstance(entry, dict):
                problem(f"rounds[{i}]", "轮次格式错误")
                continue
            opens, closes, valid = (_local_time(entry.get(k), tz) for k in ("opens_at", "closes_at", "valid_until"))
            closes = closes or valid
            if opens is None or valid is None:
                problem(f"rounds[{i}]", "需要 opens_at 和 valid_until（如 2022-06-25T09:00）")
                continue
            if not opens < closes <= valid:
                problem(f"rounds[{i}]", "开始时间须早于结束时间，结束时间不晚于有效期")
                continue
            rounds.append((opens, closes, valid))
    else:
        problem("rounds", "缺少轮次安排")
        return []
    ordered = sorted(rounds)
    for i, (before, after) in enumerate(zip(ordered, ordered[1:], strict=False)):
        if after[0] < before[1]:
            problem(
                "rounds",
                f"第{i + 1}轮与第{i + 2}轮时间重叠（第{i + 2}轮在第{i + 1}轮结束前开始）",
            )
    return ordered


def _check_printed_totals(printed: Any, tiers: list[dict], declared: dict[str, str], problem) -> None:
    """Subtotals printed in the plan must equal what the tiers add up to."""
    if printed is None:
        return
    if not isinstance(printed, dict):
        problem("printed_totals", "格式错误")
        return

    def compare(path: str, label: str, entry: dict, rows: list[dict]) -> None:
        """The printed count and amount of `entry` against what `rows` add up to."""
        actual = {
            "quantity": (sum(t["quantity"] for t in rows), _count, "数量", lambda v: f"{v}张"),
            "amount_yuan": (sum(t["quantity"] * t["face_fen"] for t in rows), fen, "金额", lambda v: f"{yuan(v)}元"),
        }
        for field_, (total, parse, kind, shown) in actual.items():
            if field_ not in entry:
                continue
            value = parse(entry[field_])
            what = label + ("张数" if field_ == "quantity" else "金额")
            if value is None:
                problem(f"{path}.{field_}", f"{what}不是有效的{kind}：{entry[field_]}")
            elif value != total:
                problem(f"{path}.{field_}", f"{what}印为 {shown(value)}，各券种实际合计 {shown(total)}")

    for entry in printed.get("by_face") or []:
        face = entry.get("face_yuan")
        rows = [t for t in tiers if t["face_fen"] == fen(face)]
        compare(f"printed_totals.by_face.{face}", f"面额{face}元一行的小计", entry, rows)
    for entry in printed.get("by_category") or []:
        code = entry.get("category")
        rows = [t for t in tiers if t["category"] == code]
        compare(f"printed_totals.by_category.{code}", f"{declared.get(code, code)}一列的合计", entry, rows)
    compare("printed_totals", "总", printed, tiers)
