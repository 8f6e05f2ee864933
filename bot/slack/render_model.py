"""What the renderer works from (the customer, the number, one stored message) and what it makes (a Post)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.core.origin import Direction, Source
from bot.slack.display_names import shown_name
from bot.slack.mrkdwn import format_number


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

    direction: Direction
    source: Source
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
