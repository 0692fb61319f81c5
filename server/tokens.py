"""Bearer tokens for residents (and later staff): signed, expiring, verified without the database."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .errors import ApiError


@dataclass(frozen=True)
class Bearer:
    kind: str  # "resident"
    id: int
    bound: bool


def _serializer() -> URLSafeTimedSerializer:
    # Built once per app: constructing one derives its key, on every request otherwise.
    serializer = current_app.extensions.get("huigou.bearer")
    if serializer is None:
        serializer = URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="huigou-bearer")
        current_app.extensions["huigou.bearer"] = serializer
    return serializer


def issue(kind: str, subject_id: int, *, bound: bool) -> str:
    return _serializer().dumps({"k": kind, "i": subject_id, "b": int(bound)})


def read(token: str) -> Bearer | None:
    """The bearer a token names, or None if it is forged, expired or malformed."""
    try:
        data = _serializer().loads(token, max_age=current_app.config["TOKEN_MAX_AGE_S"])
        return Bearer(kind=str(data["k"]), id=int(data["i"]), bound=bool(data["b"]))
    except (SignatureExpired, BadSignature, KeyError, TypeError, ValueError):
        return None


def optional_bearer(kind: str) -> Bearer | None:
    """The request's bearer of this kind; None when there is no token; 401 when it is bad."""
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    bearer = read(token.strip()) if scheme.lower() == "bearer" else None
    if bearer is None:
        raise ApiError("UNAUTHORIZED", "登录已失效，请重新登录")
    if bearer.kind != kind:
        raise ApiError("FORBIDDEN")
    return bearer


def require_bearer(kind: str) -> Bearer:
    bearer = optional_bearer(kind)
    if bearer is None:
        raise ApiError("UNAUTHORIZED")
    return bearer
