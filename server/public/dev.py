"""Development-only routes; registered only under the matching development adapter."""

from __future__ import annotations

import sqlalchemy as sa
from apiflask import APIBlueprint, Schema, fields, validators

from ..core.time import isoformat
from ..extensions import db
from ..models import SmsOutboxMessage

bp = APIBlueprint("dev", __name__, url_prefix="/api/v1/dev", tag="Development")


class OutboxQuery(Schema):
    phone = fields.String(required=True, validate=validators.Length(1, 20))


class OutboxMessageOut(Schema):
    phone = fields.String(required=True)
    text = fields.String(required=True)
    code = fields.String(required=True)
    sent_at = fields.String(required=True)


class OutboxOut(Schema):
    items = fields.List(fields.Nested(OutboxMessageOut), required=True)


@bp.get("/sms-outbox")
@bp.input(OutboxQuery, location="query", arg_name="query")
@bp.output(OutboxOut)
def sms_outbox(query):
    """Messages kept by SMS_BACKEND=outbox for a phone, newest first."""
    messages = db.session.scalars(
        sa.select(SmsOutboxMessage)
        .where(SmsOutboxMessage.phone == query["phone"])
        .order_by(SmsOutboxMessage.sent_at.desc(), SmsOutboxMessage.id.desc())
        .limit(50)
    )
    return {
        "items": [{"phone": m.phone, "text": m.text, "code": m.code, "sent_at": isoformat(m.sent_at)} for m in messages]
    }
