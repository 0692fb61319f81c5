"""Bearer tokens for residents and staff: signed, expiring, verified without the database."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g, request
from itsdangerous import BadSignature, SignatureExpired

from ..core.errors import Forbidden, Unauthorized
from ..core.signing import serializer


@dataclass(frozen=True)
class Bearer:
    kind: str  # "resident" or "staff"
    id: int
    bound: bool
    identified: bool = False  # the resident gave an ID card (a campaign may ask for it)


def issue(kind: str, subject_id: int, *, bound: bool, identified: bool = False) -> str:
    data = {"k": kind, "i": subject_id, "b": int(bound)} | ({"v": 1} if identified else {})
    return serializer("huigou-bearer").dumps(data)


def read(token: str) -> Bearer | None:
    """The bearer a token names, or None if it is forged, expired or malformed."""
    try:
        data = serializer("huigou-bearer").loads(token, max_age=current_app.config["TOKEN_MAX_AGE_S"])
        return Bearer(kind=str(data["k"]), id=int(data["i"]), bound=bool(data["b"]), identified=bool(data.get("v")))
    except (SignatureExpired, BadSignature, KeyError, TypeError, ValueError):
        return None


def presented() -> str | None:
    """The token of the request's `Authorization: Bearer ...` header, if it carries one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def optional_bearer(kind: str) -> Bearer | None:
    """The request's bearer of this kind; None when there is no token; 401 when it is bad."""
    if not request.headers.get("Authorization"):
        return None
    token = presented()
    bearer = read(token) if token is not None else None
    if bearer is None:
        raise Unauthorized("登录已失效，请重新登录")
    if bearer.kind != kind:
        raise Forbidden()
    g.actor = f"{bearer.kind}:{bearer.id}"  # for the request log
    return bearer


def require_bearer(kind: str) -> Bearer:
    bearer = optional_bearer(kind)
    if bearer is None:
        raise Unauthorized()
    return bearer
