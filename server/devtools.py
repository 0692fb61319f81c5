"""Development-only routes; registered only under the matching development adapter."""

from __future__ import annotations

import sqlalchemy as sa
from apiflask import APIBlueprint
from flask import current_app

from .draw.schemas import OutboxOut, OutboxQuery
from .extensions import db
from .models import SmsOutboxMessage
from .timeutil import isoformat, zone

bp = APIBlueprint("dev", __name__, url_prefix="/api/v1/dev", tag="Development")


@bp.get("/sms-outbox")
@bp.input(OutboxQuery, location="query", arg_name="query")
@bp.output(OutboxOut)
def sms_outbox(query):
    """Messages kept by SMS_BACKEND=outbox for a phone, newest first."""
    tz = zone(current_app.config["TIMEZONE"])
    messages = db.session.scalars(
        sa.select(SmsOutboxMessage)
        .where(SmsOutboxMessage.phone == query["phone"])
        .order_by(SmsOutboxMessage.sent_at.desc(), SmsOutboxMessage.id.desc())
        .limit(50)
    )
    return {
        "items": [
            {"phone": m.phone, "text": m.text, "code": m.code, "sent_at": isoformat(m.sent_at, tz)} for m in messages
        ]
    }
