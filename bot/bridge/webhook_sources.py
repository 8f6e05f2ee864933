"""Whose delivery a webhook is: the workspace of the number it names, read when it is stored.

The webhook worker takes live deliveries round robin across these sources (storage.webhook_logs.claim_batch),
so one business's storm never queues in front of another business's customers."""

from __future__ import annotations

from typing import Any

from bot.core.config import Settings

SOURCE_LENGTH = 64


def first_number(payload: Any) -> str:
    """The phone_number_id of a delivery's first change ('' when it names none: account or template updates)."""
    try:
        for entry in payload.get("entry") or ():
            for change in entry.get("changes") or ():
                value = change.get("value")
                number = value.get("metadata", {}).get("phone_number_id") if isinstance(value, dict) else None
                if number:
                    return str(number)
    except (AttributeError, TypeError):
        pass
    return ""


def first_waba(payload: Any) -> str:
    """The WhatsApp Business Account id of a delivery's first entry ('' when there is none)."""
    try:
        entries = payload.get("entry") or []
        return str(entries[0].get("id") or "") if entries else ""
    except (AttributeError, TypeError, KeyError):
        return ""


class WebhookSources:
    """The source of each delivery: its number's workspace, else the number, else its WABA."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._channels = -1
        self._teams: dict[str, str] = {}

    def _teams_of(self, settings: Settings) -> dict[str, str]:
        # Numbers connected at run time join settings.channels in place: re-read when their count changes.
        if settings is not self._settings or len(settings.channels) != self._channels:
            self._settings, self._channels = settings, len(settings.channels)
            self._teams = {c.phone_number_id: settings.workspace_of(c) for c in settings.channels}
        return self._teams

    def of(self, settings: Settings, payload: Any) -> str:
        """The delivery's source, at most SOURCE_LENGTH characters."""
        number = first_number(payload)
        if number:
            team = self._teams_of(settings).get(number)
            source = f"team:{team}" if team else f"number:{number}"
        else:
            waba = first_waba(payload)
            source = f"waba:{waba}" if waba else ""
        return source[:SOURCE_LENGTH]


SOURCES = WebhookSources()
"""The process's one instance (the request path reads it for every delivery)."""
