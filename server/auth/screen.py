"""The on-site event's big-screen QR (年货大集现场大屏抢券二维码).

The screen shows a QR that changes every SCREEN_ROTATE_S seconds (30 by default): the code of
the campaign and window, signed with an HMAC under the app's secret. A code is accepted in its
window and the next one, so a photo sent around town stops working within a minute.

Scanning it opens the resident page, which at once exchanges the code for a pass
(`exchange`): a signed token naming the campaign, valid SCREEN_PASS_S seconds (15 minutes), so
that a resident who must first bind with an SMS code is not turned away by the next rotation.
The grab of a screen campaign requires a pass (`check_pass`), and the first resident to grab with
a pass owns it (table `screen_passes`): forwarded to a group, it serves that one resident only.
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy.exc import IntegrityError

from ..core.errors import ScreenCodeStale
from ..core.signing import keyed_digest, serializer
from ..extensions import db
from ..models import ScreenPass

CODE_RE = re.compile(r"^(\d{1,9})\.(\d{1,12})\.([0-9a-f]{16})$")
STALE = "现场二维码已过期，请在活动现场扫描大屏上的最新二维码"


def _window(now: datetime) -> int:
    return int(now.timestamp()) // current_app.config["SCREEN_ROTATE_S"]


def _mac(campaign_id: int, window: int) -> str:
    return keyed_digest(f"screen:{campaign_id}:{window}")[:16]


def code(campaign_id: int, now: datetime) -> tuple[str, datetime]:
    """The code the screen shows now, and when the screen should show the next one."""
    window = _window(now)
    rotate = current_app.config["SCREEN_ROTATE_S"]
    changes_at = datetime.fromtimestamp((window + 1) * rotate, tz=now.tzinfo)
    return f"{campaign_id}.{window}.{_mac(campaign_id, window)}", changes_at


def claim_url(base_url: str, campaign_code: str, screen_code: str) -> str:
    """What the QR holds: the resident page, opened on the event's campaign with the code."""
    return f"{base_url.rstrip('/')}/h5/?campaign={campaign_code}&screen={screen_code}"


def exchange(screen_code: str, campaign_id: int, now: datetime) -> tuple[str, datetime]:
    """A pass for a code scanned from the campaign's screen in this window or the one before."""
    found = CODE_RE.match((screen_code or "").strip())
    if not found or int(found.group(1)) != campaign_id:
        raise ScreenCodeStale("无法识别的现场二维码，请扫描活动现场大屏上的二维码")
    window = int(found.group(2))
    if window not in (_window(now), _window(now) - 1) or not hmac.compare_digest(
        found.group(3), _mac(campaign_id, window)
    ):
        raise ScreenCodeStale(STALE)
    token = serializer("huigou-screen-pass").dumps({"c": campaign_id, "n": secrets.token_hex(8)})
    return token, now + timedelta(seconds=current_app.config["SCREEN_PASS_S"])


def check_pass(token: str | None, campaign_id: int, resident_id: int, now: datetime) -> None:
    """Refuse a grab of a screen campaign without a live pass for it, or with another's pass."""
    if not token:
        raise ScreenCodeStale("本场活动的券只能在活动现场扫描大屏二维码领取")
    try:
        data = serializer("huigou-screen-pass").loads(token, max_age=current_app.config["SCREEN_PASS_S"])
    except SignatureExpired as exc:
        raise ScreenCodeStale("领券时间已过，请重新扫描活动现场大屏上的二维码") from exc
    except BadSignature as exc:
        raise ScreenCodeStale(STALE) from exc
    if not isinstance(data, dict) or data.get("c") != campaign_id or not isinstance(data.get("n"), str):
        raise ScreenCodeStale(STALE)
    nonce = data["n"][:16]
    try:
        with db.session.begin_nested():
            db.session.add(ScreenPass(nonce=nonce, campaign_id=campaign_id, resident_id=resident_id, bound_at=now))
            db.session.flush()
    except IntegrityError:  # used before: by this resident (another tier), or by someone else
        owner = db.session.scalar(sa.select(ScreenPass.resident_id).where(ScreenPass.nonce == nonce))
        if owner != resident_id:
            raise ScreenCodeStale("这个领券凭证已被他人使用，请在活动现场扫描大屏上的二维码") from None
