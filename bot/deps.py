"""The shared clients one process uses: database sessions, the Graph client, Slack's Web API, the throttle."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import ChannelSettings, Settings
from bot.core.metrics import Metrics
from bot.meta.graph import GraphClient
from scheduler.throttle import Throttle


@dataclass
class Deps:
    """Built once per application (see bot.app.deps_ctx) and handed to workers and Slack listeners."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    graph: GraphClient
    slack: AsyncWebClient
    throttle: Throttle
    metrics: Metrics
    channel_ids: dict[str, int]  # phone_number_id -> channels.id

    def channel_for_slack(self, slack_channel: str) -> ChannelSettings | None:
        """The WhatsApp channel bridged into a Slack channel, if any."""
        return next((c for c in self.settings.channels if c.slack_channel == slack_channel), None)
