"""Slack mrkdwn basics every post shares: customer text escaped so it can never ping or link, numbers and
times as staff read them."""

from __future__ import annotations

import functools
from datetime import datetime
from zoneinfo import ZoneInfo

import phonenumbers


def escape(text: str) -> str:
    """Escape text for Slack mrkdwn: & < > become entities, so nothing can ping or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Undo Slack's entity escaping (Slack sends & < > typed by a person as entities)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@functools.lru_cache(maxsize=4096)
def format_number(wa_id: str) -> str:
    """A WhatsApp id as an international number (+91 98123 45678); unchanged if it is not one.

    Kept for the busiest numbers: parsing one costs more CPU than the rest of a message's rendering."""
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
