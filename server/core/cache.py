"""Values a process keeps for a moment (CAMPAIGN_CACHE_SECONDS): the campaign's snapshot, what is
left of a round, a staged release's cap. The 09:00 crowd reads them instead of the database.

Whatever changes a campaign's configuration or stock calls `forget()`, so that this process sees
the change at once; other processes see it within the cache's seconds.
"""

from __future__ import annotations

import threading
import time
import weakref

from flask import current_app

_caches: weakref.WeakSet[ShortCache] = weakref.WeakSet()


class ShortCache:
    """Per-process values kept CAMPAIGN_CACHE_SECONDS (0: always recomputed), by key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict = {}
        _caches.add(self)

    def get(self, key, compute):
        ttl = current_app.config["CAMPAIGN_CACHE_SECONDS"]
        hit = self._values.get(key)
        if ttl > 0 and hit and time.monotonic() < hit[0]:
            return hit[1]
        value = compute()
        with self._lock:
            self._values[key] = (time.monotonic() + ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


def forget() -> None:
    """Drop every short-lived value of this process (after a change of configuration or stock)."""
    for cache in list(_caches):
        cache.clear()
