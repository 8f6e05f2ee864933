"""How WhatsApp conversations look in Slack (pure: no I/O): the thread parent, each message, notes and alerts.

Every piece of customer-controlled text goes through `escape` (bot.slack.mrkdwn), so `<!channel>`, `<@U…>` or
`<url|label>` typed by a customer shows as literal text and can never ping anyone or hide a link. The names
callers know as `render.X` from the modules split off (message bodies, reply text, templates, transcripts)
stay importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bot.core.origin import Direction, Source
from bot.meta.errors import explain_reported
from bot.slack import limits
from bot.slack.display_names import shown_name
from bot.slack.limits import split_text
from bot.slack.message_body import CONTENT_SHOWN, body_text, media_line
from bot.slack.mrkdwn import escape, format_number, format_time, unescape
from bot.slack.render_model import ChannelView, ContactView, MessageView, Post
from bot.slack.reply_text import WHATSAPP_TEXT_LIMIT, is_note, slack_to_whatsapp, split_for_whatsapp, window_closed_text
from bot.slack.template_text import fill_template, template_body, template_components, template_placeholders
from bot.slack.transcript import TranscriptLine, transcript

__all__ = [
    "CONTENT_SHOWN", "CUSTOMER_ICON", "NOTE_REACTION", "NOT_SENT_REACTION", "PHONE_APP_ICON", "SECTION_LIMIT",
    "SENT_FROM_SLACK_REACTION", "STATUS_REACTIONS", "WHATSAPP_TEXT_LIMIT", "ChannelView", "ContactView",
    "MessageView", "Post", "TranscriptLine", "alert_post", "body_text", "escape", "failure_text", "fill_template",
    "format_number", "format_time", "group_sender", "is_note", "media_line", "message_posts", "note_post",
    "parent_post", "reaction_name", "revision_line", "slack_to_whatsapp", "split_for_whatsapp", "split_text",
    "status_reaction", "template_body", "template_components", "template_placeholders", "transcript", "unescape",
    "window_closed_text", "window_line",
]

SECTION_LIMIT = limits.SECTION_TEXT

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
    who = "the customer" if view.direction == Direction.INBOUND else "the phone app"
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


AUTOMATIC = {"away": "the away message (the number is closed)", "csat": "the satisfaction survey"}
"""What the bridge sent on its own, as a thread names it (messages of source `bridge`, by `content.auto`)."""


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
    if view.direction == Direction.INBOUND and isinstance(sender, Mapping):  # a group: each message names its sender
        username, icon = f"{group_sender(sender)} in {contact.label}", CUSTOMER_ICON
        fallback = f"{escape(username)}: {body}"
    elif view.direction == Direction.INBOUND:
        username, icon = contact.label, CUSTOMER_ICON
        fallback = f"{escape(contact.label)}: {body}"
    elif view.source == Source.PHONE_APP:
        # The author name already says "via phone app"; the context line names the recipient only.
        username, icon = f"{channel.name} via phone app", PHONE_APP_ICON
        blocks.append(_context(f":outbox_tray: *Outbound* to {escape(contact.label)}"))
        fallback = f"Outbound via phone app: {body}"
    elif view.source == Source.SLACK:
        who = f"<@{view.slack_user}>" if view.slack_user else "Slack"
        what = "Template" if view.type == "template" else "Reply"
        blocks.append(_context(f":outbox_tray: *Outbound* · {what} sent from Slack by {who}"))
        fallback = f"Sent from Slack by {who}: {body}"
    elif view.source == Source.BRIDGE:
        what = AUTOMATIC.get(str(view.content.get("auto") or ""), "message")
        blocks.append(_context(f":robot_face: *Outbound* · Sent automatically by Wabridge: {what}"))
        fallback = f"Sent automatically by Wabridge ({what}): {body}"
        titles = view.content.get("buttons")
        if isinstance(titles, list) and titles:  # a survey: the customer sees these buttons under the text
            body = f"{body}\n" + "  ".join(f"`{escape(str(t))}`" for t in titles)
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
