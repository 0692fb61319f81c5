"""Refusals, and the one envelope the API answers them in: `{"error": {"code", "message"}}`.

Every refusal is a subclass of `Refusal` with its code (API.md's), its HTTP status and a Chinese
sentence; a service raises one with a sentence of its own where it can say more. The API turns
a refusal (and every HTTP or validation error under /api) into the envelope; the console turns it
into a flash (admin/console.py). Nothing under /api answers HTML or a 500 for bad input; pages
outside /api answer their errors as pages, each surface with its own (`page_errors`).

A refusal changes nothing: the commit point (core/commit.py) rolls the request back, except what a
refusal marked `keep_changes` records about itself (a wrong code counted, a refused redemption
logged).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import sqlalchemy as sa
from apiflask import APIFlask, HTTPError
from flask import abort, g, has_request_context, request
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException

from .db import rollback_quietly, transient


class Refusal(HTTPError):
    """A refusal with a code of API.md and a sentence for people.

    `keep_changes`: what the request wrote is the record of this refusal, and is committed.
    `subject`: whom it is about, for a console flash ("乾安县宾馆：…").
    """

    code: ClassVar[str] = "INVALID_INPUT"
    status: ClassVar[int] = 400
    message: ClassVar[str] = "提交的内容有误，请检查后重试"
    subject: str | None = None
    api: ClassVar[bool] = True  # answered by the API (the pages have a sentence for it); else the console's
    registry: ClassVar[dict[str, type[Refusal]]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        Refusal.registry.setdefault(cls.code, cls)

    def __init__(
        self,
        message: str | None = None,
        *,
        keep_changes: bool = False,
        subject: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(self.status, message or type(self).message, headers=headers, extra_data=extra)
        self.keep_changes = keep_changes
        if subject is not None:
            self.subject = subject

    def __str__(self) -> str:
        return self.message

    @property
    def flash(self) -> str:
        """The sentence as the console shows it."""
        return f"{self.subject}：{self.message}" if self.subject else self.message


def refusal(code: str, status: int, message: str, *, subject: str | None = None, api: bool = True) -> type[Refusal]:
    """A refusal class of that code, status and default sentence; `subject` heads its console
    flash; `api=False` for a refusal only the console and the command line give."""
    name = "".join(part.title() for part in code.split("_"))
    attributes = {"code": code, "status": status, "message": message, "subject": subject, "api": api}
    return type(name, (Refusal,), attributes | {"__module__": __name__})


def api_codes() -> set[str]:
    """Every code the API may answer with."""
    return {code for code, kind in Refusal.registry.items() if kind.api}


# The codes of API.md and the ones the API added. A refusal of one domain only (a quota change,
# a review) is declared beside its rule, with the same `refusal()`.
InvalidInput = refusal("INVALID_INPUT", 400, "提交的内容有误，请检查后重试")
Unauthorized = refusal("UNAUTHORIZED", 401, "请先登录")
Forbidden = refusal("FORBIDDEN", 403, "没有权限进行此操作")
NotFound = refusal("NOT_FOUND", 404, "找不到您要的内容")
MethodNotAllowed = refusal("METHOD_NOT_ALLOWED", 405, "不支持此操作")
PayloadTooLarge = refusal("PAYLOAD_TOO_LARGE", 413, "提交的内容过大")
RateLimited = refusal("RATE_LIMITED", 429, "操作太频繁，请稍后再试")
SmsCodeInvalid = refusal("SMS_CODE_INVALID", 400, "验证码不正确")
SmsCodeExpired = refusal("SMS_CODE_EXPIRED", 400, "验证码已过期，请重新获取")
SmsTooFrequent = refusal("SMS_TOO_FREQUENT", 429, "验证码发送太频繁，请稍后再试")
SmsSendFailed = refusal("SMS_SEND_FAILED", 502, "短信发送失败，请稍后重试")
PhoneTaken = refusal("PHONE_TAKEN", 409, "该手机号已被其他用户绑定")
AlreadyBound = refusal("ALREADY_BOUND", 409, "您已绑定手机号")
NotBound = refusal("NOT_BOUND", 403, "请先绑定姓名和手机号")
IdRequired = refusal("ID_REQUIRED", 403, "本活动需实名参与，请先填写姓名和身份证号")
IdTaken = refusal("ID_TAKEN", 409, "该身份证号已被其他用户绑定")
AlreadyIdentified = refusal("ALREADY_IDENTIFIED", 409, "您已实名认证，不能更换身份证")
ReportNotReady = refusal("REPORT_NOT_READY", 409, "该月尚未结束，月报次月1日起提供", api=False)
NoCampaign = refusal("NO_CAMPAIGN", 404, "当前没有进行中的活动")
RoundNotOpen = refusal("ROUND_NOT_OPEN", 409, "本轮抽奖尚未开始")
RoundClosed = refusal("ROUND_CLOSED", 409, "本期活动已结束")
AlreadyDrawn = refusal("ALREADY_DRAWN", 409, "您本轮已抽过该品类")
SoldOut = refusal("SOLD_OUT", 409, "券已被抢完")
StockNotReleased = refusal("STOCK_NOT_RELEASED", 409, "本批券已抢完，请稍后再来")
LocationRequired = refusal("LOCATION_REQUIRED", 400, "本活动需要您的位置，请允许获取位置后重试")
OutsideRegion = refusal("OUTSIDE_REGION", 403, "您不在活动区域内，无法参与")
CouponUsed = refusal("COUPON_USED", 409, "该消费券已使用")
CouponExpired = refusal("COUPON_EXPIRED", 409, "该消费券已过期")
PaycodeExpired = refusal("PAYCODE_EXPIRED", 400, "付款码已失效，请刷新后重试")
SpendExcluded = refusal("SPEND_EXCLUDED", 409, "消费券不能用于这类消费")
OutsideHours = refusal("OUTSIDE_HOURS", 409, "现在不在这张消费券的使用时段内")
CategoryMismatch = refusal("CATEGORY_MISMATCH", 409, "该消费券不能在本店使用")
BelowThreshold = refusal("BELOW_THRESHOLD", 409, "消费金额未达到使用门槛")
MerchantSuspended = refusal("MERCHANT_SUSPENDED", 403, "商户已被暂停，无法核销")
BindingCodeInvalid = refusal("BINDING_CODE_INVALID", 400, "绑定码无效或已使用")
MerchantExists = refusal("MERCHANT_EXISTS", 409, "该统一社会信用代码已报名，请勿重复提交")
SurveyDone = refusal("SURVEY_DONE", 409, "您已提交过问卷，感谢您的参与")
WrongCampaignKind = refusal("WRONG_CAMPAIGN_KIND", 409, "本活动不支持此领取方式")
ScreenCodeStale = refusal("SCREEN_CODE_STALE", 403, "现场二维码已过期，请在活动现场扫描大屏上的最新二维码")
NoQualifyingCoupon = refusal("NO_QUALIFYING_COUPON", 409, "顾客没有本店、本次消费金额可用的消费券")
AlreadyApplied = refusal("ALREADY_APPLIED", 409, "该发票或车辆已申请过补贴")
ImageInvalid = refusal("IMAGE_INVALID", 400, "请上传清晰的发票照片（JPG、PNG 或 WEBP，不超过5MB）")
NotEligible = refusal("NOT_ELIGIBLE", 409, "不符合补贴条件")
# The console's: a review (of a merchant, of a subsidy application) its subject's state does not allow.
ReviewRefused = refusal("REVIEW_REFUSED", 409, "审核未执行", api=False)
ServiceUnavailable = refusal("SERVICE_UNAVAILABLE", 503, "服务暂不可用，请稍后重试")
InternalError = refusal("INTERNAL_ERROR", 500, "系统繁忙，请稍后重试")

_BY_STATUS = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: InvalidInput,
    429: RateLimited,
}


def error_body(code: str, message: str, **extra: Any) -> dict:
    """The envelope; its code is also the request's, for the request log and the figures."""
    if has_request_context():
        g.error_code = code
    return {"error": {"code": code, "message": message, **extra}}


def envelope(error: HTTPError) -> tuple[dict, int, dict]:
    """Any HTTP or validation error as the API's envelope, with its status and headers."""
    if isinstance(error, Refusal):
        return error_body(error.code, error.message, **error.extra_data), error.status_code, error.headers
    if error.status_code == 400 or error.detail:
        # Validation errors: say which field, in the library's words, beside our sentence.
        return error_body(InvalidInput.code, InvalidInput.message, detail=error.detail or {}), 400, error.headers
    kind = _BY_STATUS.get(error.status_code, InternalError if error.status_code >= 500 else InvalidInput)
    return error_body(kind.code, kind.message), error.status_code, error.headers


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


# No body of the API nests deeper than a few levels; a parser recursing into [[[...]]] a thousand
# deep would fail (RecursionError), so such a body is refused before anything parses it.
MAX_JSON_DEPTH = 32


def _too_deep(data: bytes) -> bool:
    """Whether a JSON text nests arrays and objects deeper than MAX_JSON_DEPTH, counted without
    parsing it. A text with no more brackets than that (every body but a hostile one) cannot, and
    is not walked byte by byte."""
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


# Pages outside /api answer their errors as pages: (path prefix, renderer(status) -> response).
_pages: list[tuple[str, Callable[[int], Any]]] = []


def page_errors(prefix: str, render: Callable[[int], Any]) -> None:
    """Answer the errors of paths under `prefix` (404, 405, 500...) with `render(status)`."""
    _pages.append((prefix, render))


def _page_for(path: str) -> Callable[[int], Any] | None:
    return next((render for prefix, render in _pages if path.startswith(prefix)), None)


def register_errorhandlers(app: APIFlask) -> None:
    @app.before_request
    def refuse_unstorable_text():
        """Text no database can keep is bad input (400), refused before any view sees it."""
        if not request.path.startswith("/api/"):
            # The pages: a path, query or form with such text is a bad request (their 400 page).
            values = [request.path, *request.args.values(), *request.args.keys()]
            if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
                values += [*request.form.values(), *request.form.keys()]
            if not all(_storable(v) for v in values):
                abort(400)
            return None
        if request.is_json and _too_deep(request.get_data(cache=True)):
            raise InvalidInput("提交的内容层级过深，请检查后重试")
        body = request.get_json(silent=True) if request.is_json else None
        if not (_storable(body) and all(_storable(k) and _storable(v) for k, v in request.args.items(multi=True))):
            raise InvalidInput("提交的内容含有无法识别的字符，请检查后重试")
        return None

    @app.error_processor
    def api_error(error: HTTPError):
        """Every HTTP and validation error: a page where a surface draws its own, else the envelope."""
        render = _page_for(request.path)
        if render is not None and not isinstance(error, Refusal):
            return render(error.status_code)
        return envelope(error)

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(error: RateLimitExceeded):
        """A limit of auth/limits.py, with its own sentence; Flask-Limiter adds the Retry-After. A
        page (a console search too often) answers its own 429 page."""
        render = _page_for(request.path)
        if render is not None:
            return render(429)
        return error_body(RateLimited.code, error.description or RateLimited.message), 429

    @app.errorhandler(sa.exc.OperationalError)
    def database_unavailable(error: sa.exc.OperationalError):
        """The database unreachable (restart, failover) or a deadlock: 503, worth retrying, and one
        log line instead of a stack per request during an outage. Any other OperationalError (a
        missing table, bad SQL) is a defect: a 500 with its stack in the log."""
        if not transient(error):
            return unexpected(error)
        rollback_quietly()
        where = f"{request.method} {request.path} (request {g.get('request_id')})"
        app.logger.warning("database unavailable on %s: %s", where, error.orig)
        body = error_body(ServiceUnavailable.code, ServiceUnavailable.message)
        return body, 503, {"Retry-After": "1"}

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        """A crash: roll back, log, and answer without a stack trace."""
        if isinstance(error, HTTPException):
            return api_error(HTTPError(error.code or 500, headers=dict(error.get_headers())))
        rollback_quietly()
        app.logger.exception("unhandled error on %s %s (request %s)", request.method, request.path, g.get("request_id"))
        g.error_code = InternalError.code
        render = _page_for(request.path)
        if render is not None:
            return render(500)
        # The request's id, to quote when reporting it: the same as in X-Request-Id and the log.
        return error_body(InternalError.code, InternalError.message, request_id=g.get("request_id")), 500
