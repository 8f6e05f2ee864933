"""Statuses of the messages we sent (inside the `messages` field): one StatusUpdate per `statuses[]` element."""

from __future__ import annotations

from bot.meta.events import (
    Envelope,
    Pricing,
    StatusUpdate,
    WebhookEvent,
)
from bot.meta.updates.read import (
    Malformed,
    as_dict,
    as_time,
    errors_of,
    opt_str,
    req_str,
    req_time,
    wa_number,
)


def status_update(env: Envelope, item: object) -> list[WebhookEvent]:
    """One `statuses[]` element: sent, delivered, read or failed, with pricing and errors."""
    if not isinstance(item, dict):
        raise Malformed(f"status is a {type(item).__name__}, not an object")
    conv = as_dict(item.get("conversation"))
    pricing = item.get("pricing")
    billable = pricing.get("billable") if isinstance(pricing, dict) else None
    return [
        StatusUpdate(
            envelope=env,
            wamid=req_str(item, "id"),
            status=req_str(item, "status"),
            timestamp=req_time(item, "timestamp"),
            recipient_id=wa_number(item.get("recipient_id")),
            errors=errors_of(item.get("errors")),
            conversation_id=opt_str(conv, "id"),
            conversation_origin=opt_str(as_dict(conv.get("origin")), "type"),
            pricing=Pricing(
                billable=billable if isinstance(billable, bool) else None,
                pricing_model=opt_str(pricing, "pricing_model"),
                category=opt_str(pricing, "category"),
                type=opt_str(pricing, "type"),
            )
            if isinstance(pricing, dict)
            else None,
            raw=item,
            conversation_expires_at=as_time(conv.get("expiration_timestamp")),
            biz_opaque_callback_data=opt_str(item, "biz_opaque_callback_data"),
            recipient_user_id=opt_str(item, "recipient_user_id"),
        )
    ]
