"""A conversation as a plain-text transcript (exports and history files)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.slack.mrkdwn import format_time


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
