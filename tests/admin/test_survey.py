"""The satisfaction survey: eleven questions, answered once per bound resident, counted in the console."""

from __future__ import annotations

import re

from tests.helpers import auth

# One valid set of answers: option indexes from 0, "其他" (index 5 of question 2) with its text.
ANSWERS = [
    {"question": 1, "choices": [0]},
    {"question": 2, "choices": [1, 5], "other": "邻居告诉我"},
    {"question": 3, "choices": [1]},
    {"question": 4, "choices": [5]},
    {"question": 5, "choices": [0]},
    {"question": 6, "choices": [0]},
    {"question": 7, "choices": [0]},
    {"question": 9, "choices": [2]},
    {"question": 10, "choices": [1]},
    {"question": 11, "choices": [0]},
]


def post(client, token, answers):
    return client.post("/api/v1/survey", json={"answers": answers}, headers=auth(token))


def test_a_resident_answers_once_and_the_console_counts_it(client, console, make_campaign, make_resident):
    make_campaign()
    _, token = make_resident()
    questions = client.get("/api/v1/survey", headers=auth(token)).get_json()
    assert len(questions["questions"]) == 11 and questions["answered"] is False
    assert questions["questions"][7]["optional"] is True and questions["questions"][1]["many"] is True
    assert post(client, token, ANSWERS).status_code == 201
    assert client.get("/api/v1/survey", headers=auth(token)).get_json()["answered"] is True
    again = post(client, token, ANSWERS)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "SURVEY_DONE"
    _, other = make_resident()
    second = [a | {"choices": [4]} if a["question"] == 11 else a for a in ANSWERS]
    assert post(client, other, second).status_code == 201

    page = console("auditor").get("/admin/survey").get_data(as_text=True)
    assert re.search(r'id="survey-total">2<', page)
    overall = page[page.index("11. 您对本次消费券发放的整体满意度如何") :]
    assert re.search(r"<td>非常满意</td><td>1</td>", overall) and re.search(r"<td>非常不满意</td><td>1</td>", overall)
    assert "50.0%" in overall and "邻居告诉我" in page


def test_answers_that_do_not_fit_the_questions_are_refused_in_words(client, make_campaign, make_resident):
    make_campaign()
    _, token = make_resident()

    def refused(answers) -> str:
        answer = post(client, token, answers)
        assert answer.status_code == 400, answer.get_json()
        return answer.get_json()["error"]["message"]

    assert refused([a for a in ANSWERS if a["question"] != 3]) == "第3题：请选择"
    assert refused([a | {"choices": [0, 1]} if a["question"] == 1 else a for a in ANSWERS]) == "第1题：只能选一项"
    assert "不能再选" in refused([a | {"choices": [0, 5]} if a["question"] == 4 else a for a in ANSWERS])
    assert "其他" in refused([a | {"choices": [1]} if a["question"] == 2 else a for a in ANSWERS])  # text, no 其他
    assert refused([a | {"choices": [9]} if a["question"] == 5 else a for a in ANSWERS]) == "第5题：选项不存在"
    assert "没有第12题" in refused([*ANSWERS, {"question": 12, "choices": [0]}])
    _, unbound = make_resident(bound=False)
    assert post(client, unbound, ANSWERS).get_json()["error"]["code"] == "NOT_BOUND"
    assert client.post("/api/v1/survey", json={"answers": ANSWERS}).status_code == 401
    assert client.get("/api/v1/survey", headers=auth(token)).get_json()["answered"] is False  # nothing kept


def test_seven_or_eight_is_asked_by_the_answer_to_six(client, make_campaign, make_resident):
    """The plan's "已使用请跳过": who used a coupon says how it went (7), who did not says why (8)."""
    make_campaign()
    _, token = make_resident()
    survey = client.get("/api/v1/survey", headers=auth(token)).get_json()
    assert survey["used"] is False  # this resident has spent nothing
    conditions = {q["number"]: q["when"] for q in survey["questions"] if q["when"]}
    assert conditions == {7: {"question": 6, "choice": 0}, 8: {"question": 6, "choice": 1}}

    not_used = [a for a in ANSWERS if a["question"] not in (6, 7)] + [{"question": 6, "choices": [1]}]
    told = post(client, token, [*not_used, {"question": 7, "choices": [0]}])
    assert told.status_code == 400 and told.get_json()["error"]["message"] == "第7题：按第6题的回答，此题无需作答"
    why = post(client, token, [*not_used, {"question": 8, "choices": [1]}])
    assert why.status_code == 201, why.get_json()
    _, other = make_resident()
    used_why = post(client, other, [*ANSWERS, {"question": 8, "choices": [1]}])
    assert used_why.get_json()["error"]["message"] == "第8题：按第6题的回答，此题无需作答"
