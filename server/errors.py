"""One error envelope for the API: `{"error": {"code", "message"}}`, per API.md.

Services raise `ApiError(code, message)`; one handler turns it (and every HTTP or validation
error under /api) into JSON with a fitting status. Nothing under /api answers HTML or a 500
for bad input.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from apiflask import APIFlask, HTTPError
from flask import request
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException

from .extensions import db

# code -> (HTTP status, default Chinese message)
CODES: dict[str, tuple[int, str]] = {
    "INVALID_INPUT": (400, "提交的内容有误，请检查后重试"),
    "UNAUTHORIZED": (401, "请先登录"),
    "FORBIDDEN": (403, "没有权限进行此操作"),
    "NOT_FOUND": (404, "找不到您要的内容"),
    "METHOD_NOT_ALLOWED": (405, "不支持此操作"),
    "PAYLOAD_TOO_LARGE": (413, "提交的内容过大"),
    "RATE_LIMITED": (429, "操作太频繁，请稍后再试"),
    "SMS_CODE_INVALID": (400, "验证码不正确"),
    "SMS_CODE_EXPIRED": (400, "验证码已过期，请重新获取"),
    "SMS_TOO_FREQUENT": (429, "验证码发送太频繁，请稍后再试"),
    "SMS_SEND_FAILED": (502, "短信发送失败，请稍后重试"),
    "PHONE_TAKEN": (409, "该手机号已被其他用户绑定"),
    "ALREADY_BOUND": (409, "您已绑定手机号"),
    "NOT_BOUND": (403, "请先绑定姓名和手机号"),
    "NO_CAMPAIGN": (404, "当前没有进行中的活动"),
    "ROUND_NOT_OPEN": (409, "本轮抽奖尚未开始"),
    "ROUND_CLOSED": (409, "本期活动已结束"),
    "ALREADY_DRAWN": (409, "您本轮已抽过该品类"),
    "SOLD_OUT": (409, "券已被抢完"),
    "STOCK_NOT_RELEASED": (409, "本批券已抢完，请稍后再来"),
    "LOCATION_REQUIRED": (400, "本活动需要您的位置，请允许获取位置后重试"),
    "OUTSIDE_REGION": (403, "您不在活动区域内，无法参与"),
    "COUPON_USED": (409, "该消费券已使用"),
    "COUPON_EXPIRED": (409, "该消费券已过期"),
    "PAYCODE_EXPIRED": (400, "付款码已失效，请刷新后重试"),
    "CATEGORY_MISMATCH": (409, "该消费券不能在本店使用"),
    "BELOW_THRESHOLD": (409, "消费金额未达到使用门槛"),
    "MERCHANT_SUSPENDED": (403, "商户已被暂停，无法核销"),
    "BINDING_CODE_INVALID": (400, "绑定码无效或已使用"),
    "MERCHANT_EXISTS": (409, "该统一社会信用代码已报名，请勿重复提交"),
    "SURVEY_DONE": (409, "您已提交过问卷，感谢您的参与"),
    "WRONG_CAMPAIGN_KIND": (409, "本活动不支持此领取方式"),
    "SCREEN_CODE_STALE": (403, "现场二维码已过期，请在活动现场扫描大屏上的最新二维码"),
    "NO_QUALIFYING_COUPON": (409, "顾客没有本店、本次消费金额可用的消费券"),
    "ALREADY_APPLIED": (409, "该发票或车辆已申请过补贴"),
    "IMAGE_INVALID": (400, "请上传清晰的发票照片（JPG、PNG 或 WEBP，不超过5MB）"),
    "NOT_ELIGIBLE": (409, "不符合补贴条件"),
    "SERVICE_UNAVAILABLE": (503, "服务暂不可用，请稍后重试"),
    "INTERNAL_ERROR": (500, "系统繁忙，请稍后重试"),
}

_STATUS_CODES = {
    400: "INVALID_INPUT",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "INVALID_INPUT",
    429: "RATE_LIMITED",
}


class ApiError(HTTPError):
    """A refusal with a code of API.md and a sentence for people.

    `keep_changes` marks refusals whose side effects are the record of the refusal itself
    (a failed code attempt counted, a refused redemption logged): the handler commits them.
    """

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        keep_changes: bool = False,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        status, default = CODES[code]
        super().__init__(status, message or default, headers=headers, extra_data=extra)
        self.code = code
        self.keep_changes = keep_changes


def error_body(code: str, message: str, **extra: Any) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def _from_http_error(error: HTTPError) -> tuple[dict, int, dict]:
    if isinstance(error, ApiError):
        return error_body(error.code, error.message, **error.extra_data), error.status_code, error.headers
    code = _STATUS_CODES.get(error.status_code, "INTERNAL_ERROR" if error.status_code >= 500 else "INVALID_INPUT")
    status = error.status_code
    if status == 400 or error.detail:
        # Validation errors: say which field, in the library's words, beside our sentence.
        return error_body("INVALID_INPUT", CODES["INVALID_INPUT"][1], detail=error.detail or {}), 400, error.headers
    return error_body(code, CODES.get(code, CODES["INTERNAL_ERROR"])[1]), status, error.headers


def _storable(value: Any) -> bool:
    """Text every database keeps: no NUL character (PostgreSQL refuses it), no lone surrogate."""
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


def _transient(error: sa.exc.OperationalError) -> bool:
    """A failure that passes: the connection lost or refused, the server shutting down, a
    deadlock or serialization failure, too many connections, SQLite busy or not reachable."""
    if error.connection_invalidated:
        return True
    orig = error.orig
    if hasattr(orig, "sqlstate"):  # psycopg; no SQLSTATE means the connection itself failed
        state = orig.sqlstate
        return state is None or state.startswith(("08", "57P")) or state in ("40001", "40P01", "53300")
    text = str(orig)
    return "database is locked" in text or "unable to open database" in text


def register_errorhandlers(app: APIFlask) -> None:
    @app.before_request
    def refuse_unstorable_text():
        """Text no database can keep is bad input (400), refused before any view sees it."""
        if not request.path.startswith("/api/"):
            return None
        body = request.get_json(silent=True) if request.is_json else None
        if not (_storable(body) and all(_storable(k) and _storable(v) for k, v in request.args.items(multi=True))):
            raise ApiError("INVALID_INPUT", "提交的内容含有无法识别的字符，请检查后重试")
        return None

    @app.error_processor
    def api_error(error: HTTPError):
        """Every HTTP and validation error, as the API's envelope."""
        if isinstance(error, ApiError) and error.keep_changes:
            db.session.commit()
        else:
            db.session.rollback()
        return _from_http_error(error)

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(error: RateLimitExceeded):
        """A limit of limits.py, with its own sentence; Flask-Limiter adds the Retry-After."""
        db.session.rollback()
        return error_body("RATE_LIMITED", error.description or CODES["RATE_LIMITED"][1]), 429

    @app.errorhandler(sa.exc.OperationalError)
    def database_unavailable(error: sa.exc.OperationalError):
        """The database unreachable (restart, failover) or a deadlock: 503, worth retrying, and one
        log line instead of a stack per request during an outage. Any other OperationalError (a
        missing table, bad SQL) is a defect: a 500 with its stack in the log."""
        if not _transient(error):
            return unexpected(error)
        try:
            db.session.rollback()
        except sa.exc.DBAPIError:
            db.session.close()
        app.logger.warning("database unavailable on %s %s: %s", request.method, request.path, error.orig)
        return error_body("SERVICE_UNAVAILABLE", CODES["SERVICE_UNAVAILABLE"][1]), 503, {"Retry-After": "1"}

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        """A crash: roll back, log, and answer without a stack trace."""
        if isinstance(error, HTTPException):
            return api_error(HTTPError(error.code or 500, headers=dict(error.get_headers())))
        db.session.rollback()
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_body("INTERNAL_ERROR", CODES["INTERNAL_ERROR"][1]), 500
