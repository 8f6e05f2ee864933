"""The `smb_message_echoes` field: messages the business sent from the WhatsApp Business App (Coexistence)."""

from __future__ import annotations

from bot.meta.events import (
    Envelope,
    MessageEcho,
    UnknownChange,
    WebhookEvent,
)
from bot.meta.updates.content import parse_content
from bot.meta.updates.read import (
    Handler,
    Malformed,
    each,
    opt_str,
    req_str,
    req_time,
    usernames_of,
    wa_number,
)


def _echoes(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    usernames = usernames_of(value)

    def echo(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise Malformed(f"echo is a {type(item).__name__}, not an object")
        to_phone = wa_number(item.get("to"))
        to_user_id = opt_str(item, "to_user_id") or None
        to = to_phone or to_user_id
        if not to:
            raise Malformed("'to' is missing")
        return [
            MessageEcho(
                envelope=env,
                wamid=req_str(item, "id"),
                from_number=wa_number(item.get("from")) or env.display_phone_number or "",
                to_wa_id=to,
                timestamp=req_time(item, "timestamp"),
                content=parse_content(item),
                raw=item,
                to_phone=to_phone,
                to_user_id=to_user_id,
                username=usernames.get(to_user_id or "") or usernames.get(to_phone or ""),
            )
        ]

    if "message_echoes" not in value:
        return [UnknownChange(env, "smb_message_echoes change holds no message_echoes", value)]
    return each(env, value["message_echoes"], f"{where}.message_echoes", echo)


HANDLERS: dict[str, Handler] = {"smb_message_echoes": _echoes}
