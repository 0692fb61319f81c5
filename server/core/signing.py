"""Signing with the app's secret: timed serializers (tokens, pay codes, passes) and keyed digests
(how one-time codes are stored)."""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


def serializer(salt: str) -> URLSafeTimedSerializer:
    """The app's timed serializer for a salt, built once: constructing one derives its key."""
    key = f"huigou.serializer.{salt}"
    found = current_app.extensions.get(key)
    if found is None:
        found = current_app.extensions[key] = URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)
    return found


def keyed_digest(message: str) -> str:
    """HMAC-SHA256 of a message under the app's secret."""
    return hmac.new(current_app.config["SECRET_KEY"].encode(), message.encode(), hashlib.sha256).hexdigest()


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions (the console's), with the signing serializer built once per
    app rather than on every request: Flask makes a new one to open and to save each session,
    the API's requests included, which carry no cookie."""

    def get_signing_serializer(self, app):
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = app.extensions.get("huigou.session_serializer")
        if cached is None or cached[0] != keys:
            cached = app.extensions["huigou.session_serializer"] = (keys, super().get_signing_serializer(app))
        return cached[1]
