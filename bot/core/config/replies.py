"""What the bridge says on its own: the away message's mode and the satisfaction survey (docs/away-messages.md,
docs/csat.md); and the time zone check opening hours share with the top level."""

from __future__ import annotations

from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from bot.core.config.base import Strict


def known_zone(value: str) -> str:
    """An IANA time zone name this machine knows, else a one-line error."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Asia/Kolkata") from None
    return value


class AwayMode(StrEnum):
    """Who answers a customer writing outside the opening hours."""

    OFF = "off"  # nobody: away messages are not sent at all
    # Every number with an away_message, Coexistence ones too (switch the phone app's own away message off).
    ALWAYS = "always"
    # Only Cloud API numbers: on a Coexistence number the WhatsApp Business app's away message answers.
    CLOUD_API_ONLY = "cloud_api_only"


class AwaySettings(Strict):
    mode: AwayMode = AwayMode.CLOUD_API_ONLY


class CsatTexts(Strict):
    """A satisfaction survey's words in one language: the question and three buttons, best first."""

    question: str = Field(default="How did we do? Tap one (you may add a comment in your next message).",
                          min_length=1, max_length=1024)
    buttons: list[str] = Field(default_factory=lambda: ["Great", "OK", "Not good"], min_length=3, max_length=3)

    @field_validator("buttons")
    @classmethod
    def _titles(cls, value: list[str]) -> list[str]:
        # WhatsApp reply buttons: a title of 1 to 20 characters, unique within the message.
        for title in value:
            if not title.strip() or len(title) > 20:
                raise ValueError(f"{title!r}: a button's title has 1 to 20 characters")
        if len(set(value)) != len(value):
            raise ValueError("the three buttons need different titles")
        return value


class CsatSettings(Strict):
    """The satisfaction survey sent after a conversation is resolved (off unless enabled)."""

    enabled: bool = False
    language: str = "en"  # which of `texts` is sent
    texts: dict[str, CsatTexts] = Field(default_factory=lambda: {"en": CsatTexts()})
    quiet_days: float = Field(default=7, ge=0)  # no second survey to the same conversation within this
    comment_minutes: float = Field(default=60, ge=0)  # a text this soon after the answer is its comment

    @model_validator(mode="after")
    def _language_known(self) -> CsatSettings:
        if self.language not in self.texts:
            raise ValueError(f"csat.language: {self.language!r} has no entry under csat.texts")
        return self
