"""The `channels:` list (one entry per WhatsApp number) and the team inbox's settings: assignment, SLA,
business hours (with holidays), the away message."""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from bot.core.config.base import Strict
from bot.core.config.replies import CsatSettings, known_zone
from bot.core.workspace import is_workspace_id

DEFAULT_MPS = {"coexistence": 5, "cloud_api": 80}
MAX_MPS = 1000


class Mode(StrEnum):
    COEXISTENCE = "coexistence"
    CLOUD_API = "cloud_api"


class ThreadReplies(StrEnum):
    TWO_WAY = "two_way"
    NOTES_ONLY = "notes_only"


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WORKWEEK: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
_TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


class AutoAssign(StrEnum):
    OFF = "off"
    FIRST_REPLY = "first_reply"  # whoever answers an unowned conversation first from Slack owns it


class InboxSettings(Strict):
    """The team inbox on thread parents (owner, status, labels)."""

    auto_assign: AutoAssign = AutoAssign.OFF
    labels: list[str] = Field(default_factory=list, max_length=100)  # a multi-select holds 100 options

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        cleaned = [label.strip() for label in value]
        if any(not label or len(label) > 64 or ":" in label or " " in label for label in cleaned):
            raise ValueError("each label is one word of 1 to 64 characters, without ':' (e.g. fees, admissions)")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("a label is listed twice")
        return cleaned


class SlaSettings(Strict):
    """First-response target: a conversation waiting longer gets one reminder in its thread."""

    first_response_minutes: int | None = Field(default=None, gt=0)
    mention: str = ""  # Slack user group (S…) or user (U…) named in the reminder


class BusinessHoursSettings(Strict):
    """Opening hours: only time inside them counts towards waits and first responses, and a customer writing
    outside them may get the number's away message. `timezone` empty: the top-level `timezone`.

    `overnight: true`: each opening closes on the next day (opens 18:00, closes 02:00); `days` and `holidays`
    then name the day an opening starts on."""

    opens: str = "09:00"
    closes: str = "18:00"
    days: list[Weekday] = Field(default_factory=lambda: list(WORKWEEK))
    timezone: str = ""
    holidays: list[date] = Field(default_factory=list)  # closed all day, e.g. 2026-12-25
    overnight: bool = False  # closes the day after it opens

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value) if value else value

    @field_validator("opens", "closes")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        if not _TIME_OF_DAY.fullmatch(value):
            hint = "; for closing at midnight write \"00:00\" with overnight: true" if value == "24:00" else ""
            raise ValueError(f"{value!r} is not a time of day: write HH:MM from 00:00 to 23:59, e.g. \"18:30\"{hint}")
        return value

    @model_validator(mode="after")
    def _opens_before_closes(self) -> BusinessHoursSettings:
        shown = f"opens {self.opens}, closes {self.closes}"
        if self.overnight and self.closes > self.opens:
            raise ValueError(f"overnight: true closes on the next day, so closes must be no later than opens "
                             f"({shown}); remove overnight for hours within one day")
        if not self.overnight and self.opens >= self.closes:
            raise ValueError(f"opens must be earlier than closes ({shown}); for hours past midnight add "
                             "overnight: true (closes on the next day)")
        return self


class ChannelSettings(Strict):
    name: str
    phone_number_id: str
    waba_id: str
    display_phone_number: str = ""
    mode: Mode = Mode.COEXISTENCE
    mps: int = Field(default=0, ge=0, le=MAX_MPS)
    access_token: str
    slack_channel: str
    # The Slack workspace (T…, or E… for an org-wide install) this number belongs to; required with
    # slack.client_id, ignored without it (single-workspace mode files everything under "default").
    slack_team: str = ""
    thread_replies: ThreadReplies = ThreadReplies.TWO_WAY
    sla: SlaSettings | None = None  # overrides the top-level sla for this channel
    # Where a reply to a campaign from someone with no conversation yet opens its thread (empty: slack_channel).
    # Slack paces posts per channel, so a second channel takes a reply storm's new threads in parallel.
    campaign_replies_channel: str = ""
    # Opening hours of this number (None: the top-level business_hours) and what a customer writing outside
    # them is told, once per closed period (empty: nothing; see away.mode).
    hours: BusinessHoursSettings | None = None
    away_message: str = Field(default="", max_length=4096)
    csat: CsatSettings | None = None  # this number's satisfaction survey (None: the top-level csat)

    @field_validator("phone_number_id")
    @classmethod
    def _digits(cls, value: str) -> str:
        # Meta's id of the number, not the number itself: a "+91 522…" here is the display number.
        if not value.isascii() or not value.isdigit():
            raise ValueError("must be Meta's phone number ID (digits only, e.g. \"100000000000001\"), "
                             "not the phone number")
        return value

    @field_validator("slack_team")
    @classmethod
    def _team_id(cls, value: str) -> str:
        if value and not is_workspace_id(value):
            raise ValueError(f"{value!r} is not a Slack team id; write the workspace's T… id "
                             "(or E… for an Enterprise Grid org install)")
        return value

    @model_validator(mode="after")
    def _default_mps(self) -> ChannelSettings:
        if self.mps == 0:
            object.__setattr__(self, "mps", DEFAULT_MPS[self.mode.value])
        return self
