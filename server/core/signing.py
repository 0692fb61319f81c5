"""Signing with the app's secret: timed serializers (tokens, pay codes, passes) and keyed digests
(how one-time codes are stored)."""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app
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
