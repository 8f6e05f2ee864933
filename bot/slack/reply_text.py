"""A staff reply on its way to WhatsApp: Slack markup undone, long text split, notes told apart, and what
its author is told when the window is closed."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from bot.slack.limits import split_text
from bot.slack.mrkdwn import format_time, unescape

WHATSAPP_TEXT_LIMIT = 4096  # Cloud API: characters in a text message body
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


def window_closed_text(closes_at: datetime | None, tz: str = "UTC") -> str:
    """What the author of an undeliverable reply is told."""
    if closes_at is None:
        why = "the customer has never written to this number"
    else:
        why = f"the 24-hour window closed at {format_time(closes_at, tz)}"
    return (f":no_entry_sign: Not sent: {why}. WhatsApp only allows approved templates now. "
            "Send a template to reopen the conversation.")
