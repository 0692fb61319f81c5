"""The satisfaction survey of the Geermu plan's annex (消费券发放满意度调查表): eleven questions,
answered once per resident, summarised for the bureau.

The questions are data: a page draws them from `GET /api/v1/survey`, `POST /api/v1/survey`
checks the answers against them, and the console counts each option. Answers are kept with the
resident only so that each answers once; the console shows counts and the free texts, no names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from ..core.errors import InvalidInput, SurveyDone
from ..extensions import db
from ..models import Redemption, SurveyResponse

SATISFIED = ("非常满意", "比较满意", "一般", "不太满意", "非常不满意")
OTHER = "其他"
NONE = "无"
OTHER_MAX = 100


@dataclass(frozen=True)
class Question:
    number: int
    text: str
    options: tuple[str, ...]
    many: bool = False  # several options may be chosen
    optional: bool = False
    when: tuple[int, int] | None = None  # asked only when that question was answered with that option

    def as_json(self) -> dict:
        return {
            "number": self.number,
            "text": self.text,
            "options": list(self.options),
            "many": self.many,
            "optional": self.optional,
            "when": {"question": self.when[0], "choice": self.when[1]} if self.when else None,
        }


QUESTIONS = (
    Question(1, "您是否成功领取到本次发放的消费券？", ("是", "否")),
    Question(
        2,
        "您通过哪种渠道了解到本次活动？（可多选）",
        ("政府文件、网站等官方渠道", "当地公众号、视频号", "银行 APP", "抖音等短视频宣传", "短信精准推送", OTHER),
        many=True,
    ),
    Question(3, "您领取消费券的过程是否顺畅？", ("非常顺畅", "比较顺畅", "一般", "不太顺畅", "非常不顺畅")),
    Question(
        4,
        "领取过程中遇到的主要问题是什么？（可多选，未遇到请选“无”）",
        ("网络卡顿、加载缓慢", "领取入口难找", "发放时间不明确", "券已被抢完，未领到", OTHER, NONE),
        many=True,
    ),
    Question(5, "您认为消费券的发放时间是否合理？", ("非常合理", "比较合理", "一般", "不太合理", "非常不合理")),
    Question(6, "您领取的消费券是否成功使用？", ("是", "否")),
    # Question 6 decides which of the next two is asked: how using one went, or why none was used
    # (the plan's "已使用请跳过").
    Question(7, "您对消费券的核销效率是否满意？", SATISFIED, when=(6, 0)),
    Question(
        8,
        "未使用消费券的主要原因是什么？（可多选，已使用请跳过）",
        ("没有符合的消费场景", "使用门槛过高", "忘记使用", "找不到支持使用的商户", OTHER),
        many=True,
        optional=True,
        when=(6, 1),
    ),
    Question(9, "您对本次消费券的面额设置是否满意？", SATISFIED),
    Question(
        10, "您认为消费券对刺激消费的作用如何？", ("作用非常大", "作用比较大", "作用一般", "作用不太明显", "几乎无作用")
    ),
    Question(11, "您对本次消费券发放的整体满意度如何？", SATISFIED),
)
BY_NUMBER = {q.number: q for q in QUESTIONS}


def _refuse(number: int, why: str):
    raise InvalidInput(f"第{number}题：{why}")


def clean(answers: list[dict]) -> dict[str, dict]:
    """The answers checked against the questions: {"1": {"choices": [0]}, "2": {..., "other": "…"}}."""
    given: dict[int, dict] = {}
    for answer in answers:
        number = answer["question"]
        if number not in BY_NUMBER:
            raise InvalidInput(f"没有第{number}题")
        if number in given:
            _refuse(number, "重复作答")
        given[number] = answer
    cleaned = {}
    for question in QUESTIONS:
        answer = given.get(question.number)
        choices = sorted(set(answer["choices"])) if answer else []
        if question.when is not None:
            decider, option = question.when
            asked = given.get(decider)
            if not (asked and option in asked["choices"]):
                if choices or (answer and answer.get("other")):
                    _refuse(question.number, f"按第{decider}题的回答，此题无需作答")
                continue
        if not choices:
            if question.optional:
                continue
            _refuse(question.number, "请选择")
        if any(not 0 <= c < len(question.options) for c in choices):
            _refuse(question.number, "选项不存在")
        if not question.many and len(choices) > 1:
            _refuse(question.number, "只能选一项")
        picked = [question.options[c] for c in choices]
        if NONE in picked and len(picked) > 1:
            _refuse(question.number, "选了“无”就不能再选其他选项")
        other = (answer.get("other") or "").strip()
        if other and OTHER not in picked:
            _refuse(question.number, "只有选择“其他”时才需填写说明")
        if len(other) > OTHER_MAX:
            _refuse(question.number, f"说明请不超过{OTHER_MAX}字")
        cleaned[str(question.number)] = {"choices": choices} | ({"other": other} if other else {})
    return cleaned


def answered(resident_id: int) -> bool:
    return db.session.scalar(sa.select(SurveyResponse.id).where(SurveyResponse.resident_id == resident_id)) is not None


def used_a_coupon(resident_id: int) -> bool:
    """Whether the resident has spent a coupon (question 6's answer, as the books know it)."""
    used = sa.select(Redemption.id).where(Redemption.resident_id == resident_id, Redemption.revoked_at.is_(None))
    return db.session.scalar(used.limit(1)) is not None


def submit(resident_id: int, campaign_id: int | None, answers: list[dict], now: datetime) -> SurveyResponse:
    """Record a resident's answers, once: a second submission is refused (the unique key decides)."""
    response = SurveyResponse(resident_id=resident_id, campaign_id=campaign_id, answers=clean(answers), created_at=now)
    db.session.add(response)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except sa.exc.IntegrityError as exc:
        raise SurveyDone() from exc
    return response


@dataclass
class Tally:
    question: Question
    counts: list[int]
    answered: int
    others: list[str]

    def share(self, index: int) -> float:
        return self.counts[index] / self.answered if self.answered else 0.0


def summary(campaign_id: int | None = None, others_shown: int = 20) -> tuple[int, list[Tally]]:
    """How many answered, and per question the count of each option and the latest free texts."""
    query = sa.select(SurveyResponse.answers).order_by(SurveyResponse.id.desc())
    if campaign_id is not None:
        query = query.where(SurveyResponse.campaign_id == campaign_id)
    tallies = {q.number: Tally(q, [0] * len(q.options), 0, []) for q in QUESTIONS}
    total = 0
    for answers in db.session.scalars(query.execution_options(yield_per=1000)):
        total += 1
        for key, answer in answers.items():
            tally = tallies.get(int(key))
            if tally is None:
                continue
            tally.answered += 1
            for choice in answer.get("choices", []):
                if 0 <= choice < len(tally.counts):
                    tally.counts[choice] += 1
            if answer.get("other") and len(tally.others) < others_shown:
                tally.others.append(answer["other"])
    return total, list(tallies.values())
