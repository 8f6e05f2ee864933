"""The `messages` field: customers' messages (and the statuses of ours, see statuses.py) with their contacts."""

from __future__ import annotations

from functools import partial

from bot.meta.events import (
    ChangeErrors,
    Envelope,
    InboundMessage,
    ParseProblem,
    UnknownChange,
    WebhookEvent,
)
from bot.meta.updates.content import parse_content
from bot.meta.updates.read import (
    Handler,
    Malformed,
    as_dict,
    as_list,
    each,
    errors_of,
    opt_str,
    req_str,
    req_time,
    wa_number,
)
from bot.meta.updates.statuses import status_update


def _messages(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    profiles: dict[str, dict] = {}
    contacts = [c for c in as_list(value.get("contacts")) if isinstance(c, dict)]
    for c in contacts:
        for key in (wa_number(c.get("wa_id")), opt_str(c, "user_id"), opt_str(c, "parent_user_id")):
            if key:
                profiles[key] = c

    def inbound(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise Malformed(f"message is a {type(item).__name__}, not an object")
        phone = wa_number(item.get("from"))
        user_id = opt_str(item, "from_user_id") or None
        parent_user_id = opt_str(item, "from_parent_user_id") or None
        if not (phone or user_id or parent_user_id) and item.get("type") == "system":
            # A user-id change may name the customer only inside `system`: by the id it replaces, else
            # by the number; never by the new id alone when the old one is given.
            sysobj = as_dict(item.get("system"))
            user_id = opt_str(sysobj, "previous_user_id") or None
            phone = None if user_id else wa_number(sysobj.get("wa_id"))
            user_id = user_id or (None if phone else opt_str(sysobj, "user_id") or None)
        sender = phone or user_id or parent_user_id
        if sender is None:
            raise Malformed("'from' and 'from_user_id' are both missing")
        contact = profiles.get(sender) or (contacts[0] if len(contacts) == 1 else {})
        parent_user_id = parent_user_id or opt_str(contact, "parent_user_id") or None
        profile = as_dict(contact.get("profile"))
        return [
            InboundMessage(
                envelope=env,
                wamid=req_str(item, "id"),
                from_wa_id=sender,
                profile_name=(opt_str(profile, "name") or "").strip() or None,  # a blank name is no name
                timestamp=req_time(item, "timestamp"),
                content=parse_content(item),
                raw=item,
                user_id=user_id or opt_str(contact, "user_id") or None,
                username=opt_str(profile, "username"),
                phone=phone,
                parent_user_id=parent_user_id,
                group_id=opt_str(item, "group_id") or None,
            )
        ]

    events: list[WebhookEvent] = []
    if "messages" in value:
        events += each(env, value["messages"], f"{where}.messages", inbound)
    if "statuses" in value:
        events += each(env, value["statuses"], f"{where}.statuses", partial(status_update, env))
    if "errors" in value:
        if isinstance(value["errors"], list):
            events.append(ChangeErrors(envelope=env, errors=errors_of(value["errors"])))
        else:
            events.append(ParseProblem(env, f"{where}.errors", "expected a list", value["errors"]))
    if not any(k in value for k in ("messages", "statuses", "errors")):
        events.append(UnknownChange(env, "messages change holds no messages, statuses or errors", value))
    return events


HANDLERS: dict[str, Handler] = {"messages": _messages}
