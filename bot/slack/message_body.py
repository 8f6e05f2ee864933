"""One WhatsApp message's content as Slack mrkdwn, whatever its kind (unknown kinds are named, never dropped)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.core.readable import epoch, flow_answers
from bot.slack.display_names import shown_name
from bot.slack.mrkdwn import escape
from bot.slack.render_model import MessageView


def _map_link(lat: Any, lon: Any, label: str) -> str:
    try:
        la, lo = float(lat), float(lon)
    except (TypeError, ValueError):
        return escape(label)
    url = f"https://www.google.com/maps/search/?api=1&query={la:.6f},{lo:.6f}"
    return f"<{escape(url)}|{escape(label)}>"


def _location(loc: Mapping[str, Any]) -> str:
    name, address = loc.get("name"), loc.get("address")
    label = " — ".join(str(p) for p in (name, address) if p) or f"{loc.get('latitude')}, {loc.get('longitude')}"
    return f":round_pushpin: Location: {_map_link(loc.get('latitude'), loc.get('longitude'), label)}"


def _contact_card(card: Mapping[str, Any]) -> str:
    name_obj = card.get("name") or {}
    name = name_obj.get("formatted_name") or " ".join(
        str(name_obj.get(k)) for k in ("first_name", "last_name") if name_obj.get(k))
    lines = [f":bust_in_silhouette: *{escape(shown_name(str(name or '')) or 'Contact')}*"]
    org = card.get("org") or {}
    if org.get("company"):
        lines.append(f"Company: {escape(str(org['company']))}")
    for phone in card.get("phones") or []:
        kind = f" ({escape(str(phone['type']))})" if phone.get("type") else ""
        lines.append(f":telephone_receiver: {escape(str(phone.get('phone') or phone.get('wa_id') or ''))}{kind}")
    for email in card.get("emails") or []:
        lines.append(f":email: {escape(str(email.get('email') or ''))}")
    for url in card.get("urls") or []:
        lines.append(f":link: {escape(str(url.get('url') or ''))}")
    return "\n".join(lines)


def _flow(info: Mapping[str, Any]) -> str:
    answers = flow_answers(info.get("response_json"))
    head = ":memo: Form submitted"
    if info.get("name") and info.get("name") != "flow":
        head += f" ({escape(str(info['name']))})"
    if not answers:
        return f"{head}: {escape(str(info.get('body') or 'no answers'))}"
    return head + "\n" + "\n".join(f"• *{escape(k)}:* {escape(v)}" for k, v in answers)


def _call_permission(info: Mapping[str, Any], tz: str) -> str:
    response = str(info.get("response") or "").lower()
    if response == "accept":
        if info.get("is_permanent"):
            return ":telephone_receiver: Accepted calls from the business (permanently)"
        until = epoch(info.get("expires_at"))
        return ":telephone_receiver: Accepted calls from the business" + (
            f" until {_day_month(until, tz)}" if until else "")
    if response == "reject":
        return ":telephone_receiver: Declined calls from the business"
    return f":telephone_receiver: Answered the call request: {escape(response or 'no answer')}"


def _day_month(at: datetime, tz: str) -> str:
    try:
        local = at.astimezone(ZoneInfo(tz))
    except (KeyError, ValueError):
        local = at
    return f"{local.day} {local:%b}"


def _interactive(info: Mapping[str, Any], tz: str = "UTC") -> str:
    itype = info.get("type")
    if itype == "nfm_reply":
        return _flow(info)
    if itype == "call_permission_reply":
        return _call_permission(info, tz)
    title = escape(str(info.get("title") or info.get("id") or "?"))
    desc = f" — {escape(str(info['description']))}" if info.get("description") else ""
    verb = "Picked from the list" if itype == "list_reply" else "Chose"
    return f":radio_button: {verb}: *{title}*{desc}"


def _order(order: Mapping[str, Any]) -> str:
    items = order.get("product_items") or []
    lines = [f":shopping_trolley: Order with {len(items)} item{'s' if len(items) != 1 else ''}"]
    for it in items:
        qty = it.get("quantity", 1)
        price = f" @ {it.get('item_price')} {it.get('currency') or ''}".rstrip() if it.get("item_price") else ""
        lines.append(f"• {escape(str(qty))} x {escape(str(it.get('product_retailer_id') or '?'))}"
                     f"{escape(price)}")
    if order.get("text"):
        lines.append(escape(str(order["text"])))
    return "\n".join(lines)


_MEDIA_ICONS = {"image": ":frame_with_picture:", "video": ":movie_camera:", "audio": ":sound:",
                "document": ":page_facing_up:", "sticker": ":art:"}


def media_line(kind: str, content: Mapping[str, Any]) -> str:
    """What a media message is, above the uploaded file."""
    media = content.get("media") or {}
    if kind == "audio" and media.get("voice"):
        label = "Voice note"
    else:
        label = kind.capitalize()
    name = f" `{escape(str(media['filename']))}`" if media.get("filename") else ""
    caption = content.get("text") or media.get("caption")
    line = f"{_MEDIA_ICONS.get(kind, ':paperclip:')} {label}{name}"
    return f"{line}\n{escape(str(caption))}" if caption else line


def body_text(view: MessageView, tz: str = "UTC") -> str:
    """The message's content as mrkdwn, whatever its kind (unknown kinds are named, never dropped)."""
    c = view.content
    kind = view.type
    if kind == "text":
        return escape(view.text or "")
    if kind in _MEDIA_ICONS:
        return media_line(kind, c)
    if kind == "location" and c.get("location"):
        return _location(c["location"])
    if kind == "contacts":
        cards = c.get("contacts") or []
        return "\n\n".join(_contact_card(card) for card in cards) or ":bust_in_silhouette: Contact card"
    if kind == "interactive" and c.get("interactive"):
        return _interactive(c["interactive"], tz)
    if kind == "csat_answer":  # a tap on the satisfaction survey's buttons (bot.bridge.csat)
        title = escape(str((c.get("interactive") or {}).get("title") or "?"))
        return f":bar_chart: Answered the satisfaction survey: *{title}*"
    if kind == "button":
        return f":radio_button: Tapped: *{escape(view.text or str((c.get('button') or {}).get('payload') or '?'))}*"
    if kind == "order" and c.get("order"):
        return _order(c["order"])
    if kind == "system":
        return f":information_source: {escape(view.text or 'System message')}"
    if kind == "reaction":
        reaction = c.get("reaction") or {}
        emoji = reaction.get("emoji")
        return "Removed a reaction" if not emoji else f"Reacted {escape(str(emoji))}"
    if kind == "template":
        return escape(view.text or "")
    if kind == "revoke":
        return ":wastebasket: Deleted a message that is not in this thread"
    if kind == "request_welcome":
        return ":wave: Opened the chat for the first time"
    return _unreadable(c, kind)


# Kinds with a body of their own (errors Meta attaches to them go in the context line).
CONTENT_SHOWN = frozenset({"text", "image", "audio", "video", "document", "sticker", "location", "contacts",
                           "interactive", "button", "reaction", "order", "system", "revoke", "request_welcome"})

# Types Meta names in `unsupported.type` / legacy `type`, as staff would say them.
_NO_NAME = frozenset({"", "unsupported", "unknown", "media_placeholder"})


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _unreadable(c: Mapping[str, Any], kind: str) -> str:
    """A message this app cannot show, in one line: what it was and what to do; Meta's code when it gave one
    (never the parser's own wording, which stays in the stored content for audit)."""
    inner = str(c.get("unsupported_type") or c.get("original_type") or kind)
    errors = c.get("errors") or []
    first = errors[0] if errors else {}
    code = first.get("code")
    name = "" if inner in _NO_NAME else f" (*{escape(inner)}*)"
    if errors and code != 131051:
        title = first.get("title") or first.get("message")
        what = f"Meta error {escape(str(code))}" + (f": {escape(str(title))}" if title else "")
        label = f"{_article(inner)} *{escape(inner)}* message" if inner not in _NO_NAME else "a message"
        return (f":warning: Sent {label} that WhatsApp could not deliver here ({what}). "
                "Ask the customer to send it again, or open WhatsApp on the phone.")
    if c.get("problem") and not errors:
        return f":warning: Sent a message this app could not read{name}. Open WhatsApp on the phone to see it."
    return (f":warning: Sent a message of a kind WhatsApp does not pass on to this app{name}. "
            "Open WhatsApp on the phone to see it.")
