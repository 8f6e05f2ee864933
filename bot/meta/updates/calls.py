"""The Calling API's `calls` field: calls connected and ended, and call statuses."""

from __future__ import annotations

from bot.meta.events import (
    CallEvent,
    ChangeErrors,
    Envelope,
    UnknownChange,
    WebhookEvent,
)
from bot.meta.updates.read import (
    Handler,
    Malformed,
    as_dict,
    as_int,
    as_list,
    digits,
    each,
    errors_of,
    opt_str,
    req_str,
    req_time,
    usernames_of,
    wa_number,
)


def _calls(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    """Calling API: `calls[]` (connect, terminate) and call `statuses[]` (ringing, accepted, rejected)."""
    contacts = [c for c in as_list(value.get("contacts")) if isinstance(c, dict)]
    business = digits(env.display_phone_number)

    usernames = usernames_of(value)

    def customer_of(item: dict) -> tuple[str, str | None, str | None]:
        direction = opt_str(item, "direction")
        sender, to = wa_number(item.get("from")), wa_number(item.get("to")) or wa_number(item.get("recipient_id"))
        if direction == "BUSINESS_INITIATED" or (business and digits(sender) == business):
            phone, user_id = to, opt_str(item, "to_user_id") or opt_str(item, "recipient_user_id")
        else:
            phone, user_id = sender, opt_str(item, "from_user_id")
        contact = contacts[0] if len(contacts) == 1 else {}
        user_id = user_id or opt_str(contact, "user_id") or None
        customer = phone or user_id
        if not customer:
            raise Malformed("the call names no customer ('from'/'to' or a user id)")
        return customer, user_id, (opt_str(as_dict(contact.get("profile")), "name") or "").strip() or None

    def call(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise Malformed(f"call is a {type(item).__name__}, not an object")
        customer, user_id, name = customer_of(item)
        return [CallEvent(envelope=env, call_id=req_str(item, "id"), event=req_str(item, "event"),
                          direction=opt_str(item, "direction"), customer=customer,
                          timestamp=req_time(item, "timestamp"), status=opt_str(item, "status"),
                          duration=as_int(item.get("duration")), raw=item, customer_user_id=user_id,
                          profile_name=name, username=usernames.get(user_id or "") or usernames.get(customer))]

    def status(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise Malformed(f"call status is a {type(item).__name__}, not an object")
        customer, user_id, name = customer_of({**item, "direction": "BUSINESS_INITIATED"})
        return [CallEvent(envelope=env, call_id=req_str(item, "id"), event="status", direction=None,
                          customer=customer, timestamp=req_time(item, "timestamp"),
                          status=req_str(item, "status"), duration=None, raw=item,
                          customer_user_id=user_id, profile_name=name,
                          username=usernames.get(user_id or "") or usernames.get(customer))]

    events: list[WebhookEvent] = []
    if "calls" in value:
        events += each(env, value["calls"], f"{where}.calls", call)
    if "statuses" in value:
        events += each(env, value["statuses"], f"{where}.statuses", status)
    if "errors" in value and isinstance(value["errors"], list):
        events.append(ChangeErrors(envelope=env, errors=errors_of(value["errors"])))
    if not events and not any(k in value for k in ("calls", "statuses", "errors")):
        events.append(UnknownChange(env, "calls change holds no calls or statuses", value))
    return events


HANDLERS: dict[str, Handler] = {"calls": _calls}
