"""How WhatsApp conversations look in Slack (pure: no I/O).

Every piece of customer-controlled text goes through `escape`, so `<!channel>`, `<@U…>` or `<url|label>`
typed by a customer shows as literal text and can never ping anyone or hide a link.

Why one module: it is the project's single Slack renderer, so that escaping and layout rules
live in one place that every post goes through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

from bot.core.readable import epoch, flow_answers
from bot.meta.errors import explain_reported
from bot.slack import limits
from bot.slack.display_names import shown_name
from bot.slack.limits import split_text

SECTION_LIMIT = limits.SECTION_TEXT
WHATSAPP_TEXT_LIMIT = 4096  # Cloud API: characters in a text message body

CUSTOMER_ICON = ":bust_in_silhouette:"
PHONE_APP_ICON = ":iphone:"

# Status -> reaction on the mirrored message. WhatsApp shows one tick, two ticks, two blue ticks.
STATUS_REACTIONS: Mapping[str, str] = {
    "sent": "heavy_check_mark",
    "delivered": "ballot_box_with_check",
    "read": "eyes",
    "played": "eyes",
    "failed": "x",
    "deleted": "wastebasket",
}
NOTE_REACTION = "lock"
SENT_FROM_SLACK_REACTION = "outbox_tray"
NOT_SENT_REACTION = "no_entry_sign"  # a thread reply WhatsApp did not take (window closed)

# Emoji customers use most, as Slack reaction names; others are shown as a line of text instead.
_EMOJI_NAMES: Mapping[str, str] = {
    "👍": "+1", "👎": "-1", "❤️": "heart", "❤": "heart", "😂": "joy", "😮": "open_mouth",
    "😢": "cry", "🙏": "pray", "👏": "clap", "🔥": "fire", "🎉": "tada", "😀": "grinning",
    "😊": "blush", "😍": "heart_eyes", "🤔": "thinking_face", "👌": "ok_hand", "✅": "white_check_mark",
    "💯": "100", "😡": "rage", "😭": "sob", "🙂": "slightly_smiling_face", "😁": "grin",
    "🥰": "smiling_face_with_3_hearts", "👀": "eyes", "💪": "muscle", "🤝": "handshake",
}

def escape(text: str) -> str:
    """Escape text for Slack mrkdwn: & < > become entities, so nothing can ping or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Undo Slack's entity escaping (Slack sends & < > typed by a person as entities)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def format_number(wa_id: str) -> str:
    """A WhatsApp id as an international number (+91 98123 45678); unchanged if it is not one."""
    digits = wa_id.lstrip("+")
    if not digits.isdigit():
        return wa_id
    try:
        number = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:
        return "+" + digits
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def format_time(at: datetime, tz: str = "UTC") -> str:
    """A timestamp as staff read it: `14 Oct 10:20 IST`."""
    try:
        zone = ZoneInfo(tz)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    local = at.astimezone(zone)
    return f"{local.day} {local:%b %H:%M} {local.tzname() or tz}"


# ---- data the renderer works from -------------------------------------------------------------------


@dataclass(frozen=True)
class ContactView:
    """Who the customer is. Names are WhatsApp's (the customer's own text): shown cleaned and isolated."""

    wa_id: str
    name: str | None = None
    username: str | None = None
    members: tuple[str, ...] = ()  # a group's participants, as labels

    @property
    def is_group(self) -> bool:
        return self.wa_id.startswith("group:")  # a WhatsApp group's thread (bot.bridge.group_events)

    @property
    def has_number(self) -> bool:
        return not any(ch.isalpha() for ch in self.wa_id)  # business-scoped user ids always hold letters

    @property
    def shown_name(self) -> str | None:
        """The profile name as shown in Slack (see bot.slack.display_names); None when nothing is left."""
        return shown_name(self.name)

    @property
    def shown_username(self) -> str | None:
        return shown_name(self.username)

    @property
    def label(self) -> str:
        name = self.shown_name
        if self.is_group:
            return name or "WhatsApp group"
        if not self.has_number:  # a business-scoped user id means nothing to staff: show who it is
            return name or self.shown_username or "WhatsApp user (number hidden)"
        number = format_number(self.wa_id)
        return f"{name} ({number})" if name else number


@dataclass(frozen=True)
class ChannelView:
    """Which WhatsApp number the conversation is on."""

    name: str
    display_phone_number: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.display_phone_number})" if self.display_phone_number else self.name


@dataclass(frozen=True)
class MessageView:
    """One stored message, with what rendering needs from around it."""

    direction: str  # inbound | outbound
    source: str  # customer | phone_app | slack | campaign | api
    type: str
    text: str | None = None
    content: Mapping[str, Any] = field(default_factory=dict)
    slack_user: str | None = None
    quoted: str | None = None  # text of the message this one replies to, when known
    campaign: str | None = None  # name of the campaign a customer reply answers


@dataclass
class Post:
    """One Slack message: fallback text, blocks and the optional author override."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    username: str | None = None
    icon_emoji: str | None = None


def _section(text: str) -> dict[str, Any]:
    return limits.section(text)


def _context(*texts: str) -> dict[str, Any]:
    return limits.context(*texts)


def _sections(text: str) -> list[dict[str, Any]]:
    return limits.sections(text)


def _quote(text: str) -> str:
    # A real ">" starts a blockquote; the quoted text itself was escaped, so it cannot close or nest one.
    return "\n".join("> " + line for line in text.splitlines() or [""])


def _packed(blocks: list[dict[str, Any]], text: str, username: str | None, icon: str | None) -> list[Post]:
    """One post, or several when the blocks hold more than one Slack message takes (never cut)."""
    parts = limits.pack_blocks(blocks)
    if len(parts) == 1:
        return [Post(text=limits.summary(text), blocks=parts[0], username=username, icon_emoji=icon)]
    return [Post(text=limits.summary(f"({i} of {len(parts)}) {text}"), blocks=part, username=username,
                 icon_emoji=icon) for i, part in enumerate(parts, start=1)]


# ---- the thread parent ---------------------------------------------------------------------------


def window_line(closes_at: datetime | None, now: datetime, tz: str = "UTC") -> str:
    """The 24-hour window's state in words."""
    if closes_at is None:
        return ":lock: Window closed: the customer has not written yet (templates only)"
    if now < closes_at:
        return f":large_green_circle: Window open until {format_time(closes_at, tz)}"
    return f":lock: Window closed at {format_time(closes_at, tz)} (templates only)"


def parent_post(contact: ContactView, channel: ChannelView, closes_at: datetime | None, now: datetime,
                tz: str = "UTC") -> Post:
    """The thread's first message: who the customer is (a group: its subject and participants), which number,
    the window's state."""
    if contact.is_group:
        return _group_parent(contact, channel, closes_at, now, tz)
    shown, username = contact.shown_name, contact.shown_username
    name = escape(shown or username or "Unknown name")  # the number follows: it is not repeated here
    if contact.has_number:
        number = escape(format_number(contact.wa_id))
    else:
        number = "number hidden" + (f" (username {escape(username)})" if username and shown else "")
    head = f":speech_balloon: *{name}* · {number}"
    details = f"WhatsApp number: *{escape(channel.label)}*"
    return Post(
        text=limits.summary(f"{name} · {number} on {escape(channel.name)}"),
        blocks=[_section(head), _context(details, window_line(closes_at, now, tz))],
    )


def _group_parent(contact: ContactView, channel: ChannelView, closes_at: datetime | None, now: datetime,
                  tz: str) -> Post:
    name = escape(contact.label)
    count = len(contact.members)
    people = (f"{count} participant{'s' if count != 1 else ''}: " + escape(", ".join(
        shown_name(m) or m for m in contact.members))) if count else "participants not known yet"
    head = f":busts_in_silhouette: *{name}* · WhatsApp group"
    return Post(text=limits.summary(f"{name} · WhatsApp group on {escape(channel.name)}"),
                blocks=[_section(head), _context(people),
                        _context(f"WhatsApp number: *{escape(channel.label)}*", window_line(closes_at, now, tz))])


def group_sender(sender: Mapping[str, Any]) -> str:
    """Who wrote a group message: their name (and number), else username or number."""
    name = shown_name(str(sender.get("name") or "")) or None
    number = format_number(str(sender["wa_id"])) if sender.get("wa_id") else None
    if name:
        return f"{name} ({number})" if number else name
    return shown_name(str(sender.get("username") or "")) or number or "A participant"


# ---- one message -----------------------------------------------------------------------------------


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


def _extras(view: MessageView) -> list[str]:
    """Context lines: replied-to quote, forwarded, ad referral, campaign answered."""
    c = view.content
    lines: list[str] = []
    ctx = c.get("context") or {}
    if ctx.get("forwarded") or ctx.get("frequently_forwarded"):
        lines.append(":arrow_right_hook: Forwarded" + (" many times" if ctx.get("frequently_forwarded") else ""))
    ref = c.get("referral") or {}
    if ref:
        what = ref.get("headline") or ref.get("body") or ref.get("source_type") or "an ad"
        src = f" ({escape(str(ref['source_url']))})" if ref.get("source_url") else ""
        lines.append(f":mega: Came from an ad: {escape(str(what))}{src}")
    errors = c.get("errors") or []
    if errors and view.type in CONTENT_SHOWN:  # the unreadable kinds say it in their body already
        first = errors[0]
        lines.append(f":warning: Meta reported error {escape(str(first.get('code')))} with this message: "
                     f"{escape(str(first.get('title') or first.get('message') or 'no title'))}")
    product = ctx.get("referred_product") or {}
    if product.get("product_retailer_id"):
        catalog = f" from catalog {escape(str(product['catalog_id']))}" if product.get("catalog_id") else ""
        lines.append(f":shopping_bags: Asked about product *{escape(str(product['product_retailer_id']))}*{catalog}")
    if view.campaign:
        lines.append(f":loudspeaker: Reply to campaign *{escape(view.campaign)}*")
    return lines


def _struck(text: str) -> str:
    return "\n".join(f"~{line}~" if line.strip() else line for line in text.splitlines())


def revision_line(view: MessageView, tz: str = "UTC") -> str | None:
    """The "edited" / "deleted" mark of a message changed after it was sent; None if it never was."""
    c = view.content
    who = "the customer" if view.direction == "inbound" else "the phone app"
    revoked = c.get("revoked_at")
    if revoked:
        try:
            at = format_time(datetime.fromisoformat(str(revoked)), tz)
        except ValueError:
            at = str(revoked)
        return f":wastebasket: Deleted by {who} at {escape(at)}"
    edited = c.get("edited_at")
    if edited or c.get("edits"):
        versions = len(c.get("versions") or [])
        try:
            at = " at " + format_time(datetime.fromisoformat(str(edited)), tz) if edited else ""
        except ValueError:
            at = ""
        earlier = f" ({versions} earlier version{'s' if versions != 1 else ''} kept)" if versions else ""
        return f":pencil2: Edited by {who}{escape(at)}{earlier}"
    return None


def message_posts(view: MessageView, contact: ContactView, channel: ChannelView, *, tz: str = "UTC",
                  show_deleted_text: bool = True) -> list[Post]:
    """The Slack post(s) for one stored message: as the customer, 'via phone app', or by its sender."""
    body = body_text(view, tz)
    mark = revision_line(view, tz)
    if view.content.get("revoked_at"):
        body = _struck(body) if show_deleted_text else "_This message was deleted._"
    blocks: list[dict[str, Any]] = []
    ctx = view.content.get("context") or {}
    if view.quoted is not None or ctx.get("id"):
        quoted = escape(view.quoted) if view.quoted is not None else "an earlier message"
        blocks.append(_section("_Replying to:_\n" + _quote(limits.clip(quoted, 600))))
    username: str | None = None
    icon: str | None = None
    sender = view.content.get("group_sender")
    if view.direction == "inbound" and isinstance(sender, Mapping):  # a group: each message names its sender
        username, icon = f"{group_sender(sender)} in {contact.label}", CUSTOMER_ICON
        fallback = f"{escape(username)}: {body}"
    elif view.direction == "inbound":
        username, icon = contact.label, CUSTOMER_ICON
        fallback = f"{escape(contact.label)}: {body}"
    elif view.source == "phone_app":
        # The author name already says "via phone app"; the context line names the recipient only.
        username, icon = f"{channel.name} via phone app", PHONE_APP_ICON
        blocks.append(_context(f":outbox_tray: *Outbound* to {escape(contact.label)}"))
        fallback = f"Outbound via phone app: {body}"
    elif view.source == "slack":
        who = f"<@{view.slack_user}>" if view.slack_user else "Slack"
        what = "Template" if view.type == "template" else "Reply"
        blocks.append(_context(f":outbox_tray: *Outbound* · {what} sent from Slack by {who}"))
        fallback = f"Sent from Slack by {who}: {body}"
    else:
        blocks.append(_context(f":outbox_tray: *Outbound* via {escape(view.source)}"))
        fallback = f"Outbound via {escape(view.source)}: {body}"
    blocks.extend(_sections(body) or [_section(" ")])
    extras = _extras(view)
    if mark:
        extras.insert(0, mark)
        fallback = f"{fallback} ({'deleted' if view.content.get('revoked_at') else 'edited'})"
    if extras:
        blocks.append(_context(*extras))
    return _packed(blocks, fallback, username, icon)


# ---- statuses, notes, alerts ---------------------------------------------------------------------


def status_reaction(status: str) -> str | None:
    """The reaction that shows a delivery status on the mirrored message."""
    return STATUS_REACTIONS.get(status)


def failure_text(code: int | None, title: str | None) -> str:
    """The thread note for a failed delivery: Meta's code and what it means (a failed status is final)."""
    meaning = explain_reported(code)
    what = f"Meta error {code}" if code is not None else "Meta error"
    title_part = f" ({escape(title)})" if title else ""
    return f":warning: *Not delivered.* {what}{title_part}: {escape(meaning)}"


def note_post(text: str) -> Post:
    """A note from the bridge itself inside a thread (opt-out changes, failures, …)."""
    return Post(text=limits.summary(text), blocks=[_context(text)])


def alert_post(payload: Mapping[str, Any]) -> Post:
    """An alerts-channel post for a template, quality or account change."""
    icons = {"template_status": ":clipboard:", "quality": ":chart_with_downwards_trend:",
             "account": ":rotating_light:"}
    icon = str(payload.get("icon") or icons.get(str(payload.get("alert")), ":rotating_light:"))
    text = f"{icon} {escape(str(payload.get('text') or payload.get('state') or 'Alert'))}"
    # One message: an alert's text is Meta's wording, shortened visibly if it ever exceeds a section.
    return Post(text=limits.summary(text), blocks=[_section(text)])


def reaction_name(emoji: str) -> str | None:
    """Slack's name for a WhatsApp reaction emoji, when it is a common one."""
    return _EMOJI_NAMES.get(emoji) or _EMOJI_NAMES.get(emoji.replace("\ufe0f", ""))


# ---- Slack -> WhatsApp ------------------------------------------------------------------------------

_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def slack_to_whatsapp(text: str) -> str:
    """Slack message text as a customer should read it: links spelled out, entities undone."""

    def link(m: re.Match[str]) -> str:
        target, label = m.group(1), m.group(2)
        if target.startswith("@") or target.startswith("#"):
            return f"{target[0]}{label}" if label else target
        if target.startswith("!"):
            return f"@{label or target[1:].split('^')[0]}"
        if target.startswith("mailto:"):
            return label or target[7:]
        if label and label != target:
            return f"{label} ({target})"
        return target

    return unescape(_LINK.sub(link, text))


def split_for_whatsapp(text: str, limit: int = WHATSAPP_TEXT_LIMIT) -> list[str]:
    """A long reply as several WhatsApp messages (a text body takes at most 4,096 characters)."""
    return [chunk for chunk in split_text(text, limit) if chunk.strip()]


def is_note(text: str | None, prefixes: Iterable[str]) -> bool:
    """True when a thread message is an internal note (starts with a configured prefix)."""
    stripped = (text or "").lstrip().lower()
    return any(p and stripped.startswith(p.lower()) for p in prefixes)


# ---- windows, templates, transcripts --------------------------------------------------------------


def window_closed_text(closes_at: datetime | None, tz: str = "UTC") -> str:
    """What the author of an undeliverable reply is told."""
    if closes_at is None:
        why = "the customer has never written to this number"
    else:
        why = f"the 24-hour window closed at {format_time(closes_at, tz)}"
    return (f":no_entry_sign: Not sent: {why}. WhatsApp only allows approved templates now. "
            "Send a template to reopen the conversation.")


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def template_placeholders(components: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The variables a template needs, as (component type lower-cased, placeholder name) in order."""
    found: list[tuple[str, str]] = []
    for comp in components:
        ctype = str(comp.get("type", "")).lower()
        if ctype not in ("header", "body") or comp.get("format", "TEXT").upper() != "TEXT":
            continue
        seen: list[str] = []
        for name in _PLACEHOLDER.findall(str(comp.get("text") or "")):
            if name not in seen:
                seen.append(name)
        found.extend((ctype, n) for n in seen)
    return found


def template_body(components: Sequence[Mapping[str, Any]]) -> str:
    """The template's body text (with placeholders)."""
    return next((str(c.get("text") or "") for c in components if str(c.get("type", "")).lower() == "body"), "")


def fill_template(text: str, values: Mapping[str, str]) -> str:
    """Template text with its placeholders replaced by values (missing ones left as they are)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def template_components(values: Sequence[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Cloud API `components` for (component, placeholder, value) triples, positional or named."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for ctype, name, value in values:
        param: dict[str, Any] = {"type": "text", "text": value}
        if not name.isdigit():
            param["parameter_name"] = name
        by_type.setdefault(ctype, []).append(param)
    return [{"type": ctype, "parameters": params} for ctype, params in by_type.items()]


@dataclass(frozen=True)
class TranscriptLine:
    at: datetime
    who: str
    text: str


def transcript(title: str, lines: Iterable[TranscriptLine], tz: str = "UTC") -> str:
    """A plain-text transcript of a conversation, oldest first."""
    out = [title, "=" * len(title), ""]
    for line in lines:
        out.append(f"[{format_time(line.at, tz)}] {line.who}: {line.text}")
    return "\n".join(out) + "\n"
