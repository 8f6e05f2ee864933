"""Message content, shared by inbound messages, echoes and history: one decoder per message type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bot.meta.events import (
    Media,
    MessageContent,
)
from bot.meta.updates.read import (
    Malformed,
    as_dict,
    as_id,
    as_int,
    as_list,
    errors_of,
    opt_str,
    req_obj,
    req_str,
    wa_number,
)

_EMPTY_CONTENT = MessageContent(
    kind="unsupported",
    original_type="",
    text=None,
    media=None,
    location=None,
    contacts=[],
    interactive=None,
    button=None,
    reaction=None,
    order=None,
    system=None,
    referral=None,
    context=None,
    errors=[],
)


def _media(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = req_obj(m, mtype)
    caption = opt_str(o, "caption")
    media = Media(
        id=as_id(o.get("id")),
        mime_type=opt_str(o, "mime_type"),
        sha256=opt_str(o, "sha256"),
        caption=caption,
        filename=opt_str(o, "filename"),
        voice=o.get("voice") is True,
        animated=o.get("animated") is True,
        url=opt_str(o, "url"),
    )
    return replace(base, kind=mtype, text=caption, media=media)


def _text(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    return replace(base, kind="text", text=req_str(req_obj(m, "text"), "body"))


def _location(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = req_obj(m, "location")
    lat, lon = o.get("latitude"), o.get("longitude")
    for name, v in (("latitude", lat), ("longitude", lon)):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise Malformed(f"location.{name} is missing or not a number")
    loc = {
        "latitude": lat,
        "longitude": lon,
        "name": opt_str(o, "name"),
        "address": opt_str(o, "address"),
        "url": opt_str(o, "url"),
    }
    return replace(base, kind="location", location=loc)


def _contacts(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    cards = m.get("contacts")
    if not isinstance(cards, list) or not cards or not all(isinstance(c, dict) for c in cards):
        raise Malformed("'contacts' is missing or not a list of objects")
    return replace(base, kind="contacts", contacts=list(cards))


def _interactive(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = req_obj(m, "interactive")
    itype = req_str(o, "type")
    sub = req_obj(o, itype)
    info: dict = {"type": itype, "id": None, "title": None, "description": None}
    text: str | None
    if itype in ("button_reply", "list_reply"):
        info.update(id=opt_str(sub, "id"), title=opt_str(sub, "title"), description=opt_str(sub, "description"))
        text = info["title"]
    elif itype == "nfm_reply":  # a completed WhatsApp Flow
        body = opt_str(sub, "body")
        info.update(name=opt_str(sub, "name"), body=body, response_json=sub.get("response_json"))
        text = body
    elif itype == "call_permission_reply":
        response = opt_str(sub, "response")
        info.update(response=response, is_permanent=sub.get("is_permanent") is True,
                    expires_at=as_int(sub.get("expiration_timestamp")),
                    response_source=opt_str(sub, "response_source"))
        text = response
    else:  # a reply type this code does not know yet: keep the sub-object as data
        info.update(id=as_id(sub.get("id")), title=opt_str(sub, "title"), data=sub)
        text = info["title"]
    return replace(base, kind="interactive", text=text, interactive=info)


def _button(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = req_obj(m, "button")
    text = opt_str(o, "text")
    return replace(base, kind="button", text=text, button={"payload": opt_str(o, "payload"), "text": text})


def _reaction(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = req_obj(m, "reaction")
    # Removing a reaction sends the webhook again without `emoji` (older versions: empty string).
    emoji = opt_str(o, "emoji") or ""
    reaction = {"message_id": req_str(o, "message_id"), "emoji": emoji, "removed": emoji == ""}
    return replace(base, kind="reaction", text=emoji or None, reaction=reaction)


def _order(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = req_obj(m, "order")
    text = opt_str(o, "text")
    order = {
        "catalog_id": as_id(o.get("catalog_id")),
        "text": text,
        "product_items": [p for p in as_list(o.get("product_items")) if isinstance(p, dict)],
    }
    return replace(base, kind="order", text=text, order=order)


def _system(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = req_obj(m, "system")
    system = {
        "body": opt_str(o, "body"),
        "type": opt_str(o, "type"),
        # `new_wa_id` is how webhooks up to v11.0 spelled the new number.
        "wa_id": wa_number(o.get("wa_id")) or wa_number(o.get("new_wa_id")),
        "user_id": opt_str(o, "user_id"),
        "previous_user_id": opt_str(o, "previous_user_id"),
        "customer": wa_number(o.get("customer")),
    }
    return replace(base, kind="system", text=system["body"], system=system)


def _edit(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    """The new version of an edited message: its content, marked with the wamid it replaces."""
    o = req_obj(m, "edit")
    original = req_str(o, "original_message_id")
    inner = o.get("message")
    if not isinstance(inner, dict):
        raise Malformed("edit.message is missing or not an object")
    content = parse_content(inner)
    return replace(content, original_type="edit", edits=original,
                   context=content.context or base.context, errors=base.errors + content.errors)


def _request_welcome(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    """The customer opened the chat for the first time (Meta's welcome-message trigger; no content)."""
    return replace(base, kind="request_welcome")


def _revoke(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = req_obj(m, "revoke")
    return replace(base, kind="revoke", revokes=req_str(o, "original_message_id"))


_BUILDERS: dict[str, Callable[[dict, str, MessageContent], MessageContent]] = {
    "text": _text,
    "image": _media,
    "audio": _media,
    "video": _media,
    "document": _media,
    "sticker": _media,
    "location": _location,
    "contacts": _contacts,
    "interactive": _interactive,
    "button": _button,
    "reaction": _reaction,
    "order": _order,
    "system": _system,
    "edit": _edit,
    "revoke": _revoke,
    "request_welcome": _request_welcome,
}


def _context(x: object) -> dict | None:
    if not isinstance(x, dict):
        return None
    ctx: dict = {
        "from": wa_number(x.get("from")),
        "id": opt_str(x, "id"),
        "forwarded": x.get("forwarded") is True,
        "frequently_forwarded": x.get("frequently_forwarded") is True,
    }
    product = x.get("referred_product")
    if isinstance(product, dict):  # "Message business" on a product: which one the customer asks about
        ctx["referred_product"] = {"catalog_id": as_id(product.get("catalog_id")),
                                   "product_retailer_id": as_id(product.get("product_retailer_id"))}
    return ctx


def parse_content(message: object) -> MessageContent:
    """The content of one message object (messages[], message_echoes[] or a history message)."""
    m = as_dict(message)
    mtype = m.get("type")
    base = replace(
        _EMPTY_CONTENT,
        original_type=mtype if isinstance(mtype, str) else "",
        errors=errors_of(m.get("errors")),
        context=_context(m.get("context")),
        referral=m["referral"] if isinstance(m.get("referral"), dict) else None,
    )
    if not isinstance(mtype, str) or not mtype:
        return replace(base, problem="message has no 'type'")
    build = _BUILDERS.get(mtype)
    if build is None:  # "unsupported", legacy "unknown", "media_placeholder", or a type new to us
        inner = as_dict(m.get(mtype))
        return replace(base, unsupported_type=opt_str(inner, "type"))
    try:
        return build(m, mtype, base)
    except Malformed as exc:
        return replace(base, problem=f"{mtype}: {exc}")
