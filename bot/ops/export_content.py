"""Every message kind in full, as plain text for the audit export (pure).

An audit needs what was said, not a summary: every phone number of a contact card, a location's name,
address and coordinates, the row a customer picked from a list, which message a reaction was to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _card(card: Mapping[str, Any]) -> str:
    name_obj = card.get("name") or {}
    name = _s(name_obj.get("formatted_name")) or " ".join(
        _s(name_obj.get(k)) for k in ("first_name", "last_name") if name_obj.get(k)) or "Contact"
    lines = [f"Contact card: {name}"]
    org = card.get("org") or {}
    if org.get("company"):
        lines.append(f"  Company: {org['company']}" + (f", {org['title']}" if org.get("title") else ""))
    for phone in card.get("phones") or []:
        kind = f" ({phone['type']})" if phone.get("type") else ""
        wa = f" [WhatsApp {phone['wa_id']}]" if phone.get("wa_id") and phone.get("phone") else ""
        lines.append(f"  Phone: {_s(phone.get('phone') or phone.get('wa_id'))}{kind}{wa}")
    for email in card.get("emails") or []:
        lines.append(f"  Email: {_s(email.get('email'))}" + (f" ({email['type']})" if email.get("type") else ""))
    for url in card.get("urls") or []:
        lines.append(f"  Web: {_s(url.get('url'))}")
    for address in card.get("addresses") or []:
        parts = [_s(address.get(k)) for k in ("street", "city", "state", "zip", "country") if address.get(k)]
        lines.append(f"  Address: {', '.join(parts)}")
    if card.get("birthday"):
        lines.append(f"  Birthday: {card['birthday']}")
    return "\n".join(lines)


def _location(loc: Mapping[str, Any]) -> str:
    lines = ["Location:"]
    if loc.get("name"):
        lines.append(f"  Name: {loc['name']}")
    if loc.get("address"):
        lines.append(f"  Address: {loc['address']}")
    lines.append(f"  Coordinates: {_s(loc.get('latitude'))}, {_s(loc.get('longitude'))}")
    if loc.get("url"):
        lines.append(f"  Link: {loc['url']}")
    return "\n".join(lines)


def _interactive(info: Mapping[str, Any]) -> str:
    kind = info.get("type")
    if kind == "nfm_reply":
        return f"Form submitted ({_s(info.get('name') or 'flow')}): {_s(info.get('body') or info.get('response_json'))}"
    verb = "Picked from a list" if kind == "list_reply" else "Tapped a reply button"
    out = f"{verb}: {_s(info.get('title'))}"
    if info.get("description"):
        out += f" ({info['description']})"
    if info.get("id"):
        out += f" [id {info['id']}]"
    return out


def _order(order: Mapping[str, Any]) -> str:
    lines = [f"Order from catalog {_s(order.get('catalog_id')) or '?'}:"]
    for item in order.get("product_items") or []:
        price = f" at {item['item_price']} {_s(item.get('currency'))}".rstrip() if item.get("item_price") else ""
        lines.append(f"  {_s(item.get('quantity', 1))} x {_s(item.get('product_retailer_id'))}{price}")
    if order.get("text"):
        lines.append(f"  Note: {order['text']}")
    return "\n".join(lines)


def full_text(kind: str, text: str | None, content: Mapping[str, Any] | None) -> str:
    """The whole content of a stored message as plain text, whatever its kind."""
    c = content or {}
    if kind == "contacts" and c.get("contacts"):
        return "\n".join(_card(card) for card in c["contacts"])
    if kind == "location" and isinstance(c.get("location"), Mapping):
        return _location(c["location"])
    if kind == "interactive" and isinstance(c.get("interactive"), Mapping):
        return _interactive(c["interactive"])
    if kind == "order" and isinstance(c.get("order"), Mapping):
        return _order(c["order"])
    if kind == "reaction" and isinstance(c.get("reaction"), Mapping):
        r = c["reaction"]
        to = f" to message {r['message_id']}" if r.get("message_id") else ""
        return f"Reacted {r['emoji']}{to}" if r.get("emoji") else f"Removed a reaction{to}"
    if kind == "button":
        raw = c.get("button")
        button: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        return f"Tapped a button: {text or _s(button.get('text'))}" + (
            f" [payload {button['payload']}]" if button.get("payload") else "")
    media = c.get("media") if isinstance(c.get("media"), Mapping) else None
    if media:
        label = "Voice note" if kind == "audio" and media.get("voice") else kind.capitalize()
        name = f" {media['filename']}" if media.get("filename") else ""
        mime = f" ({media['mime_type']})" if media.get("mime_type") else ""
        caption = text or _s(media.get("caption"))
        return f"{label}{name}{mime}" + (f": {caption}" if caption else "")
    template = c.get("template") if isinstance(c.get("template"), Mapping) else None
    if kind == "template" or template:
        t = template or {}
        head = f"Template {_s(t.get('name') or c.get('name'))}" + (f" ({t['language']})" if t.get("language") else "")
        return f"{head}: {text}" if text else head
    if text:
        return text
    problem = ""
    errors = c.get("errors") or []
    if errors and isinstance(errors[0], Mapping):
        problem = f": {_s(errors[0].get('title') or errors[0].get('message') or errors[0].get('code'))}"
    return f"Unsupported message ({_s(c.get('unsupported_type') or kind)}){problem}"
