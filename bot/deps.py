"""The shared clients one process uses: database sessions, the Graph client, Slack's Web API, the throttle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import ChannelSettings, Settings
from bot.core.loop_health import LoopHealth
from bot.core.loops import WakeHub
from bot.core.metrics import Metrics
from bot.core.name_cache import NameCache
from bot.meta.graph import GraphClient
from scheduler.throttle import Throttle


class WorkspaceClients(Protocol):
    """Slack clients per workspace (many-workspace mode): each with that workspace's own bot token."""

    async def client(self, team: str) -> AsyncWebClient | None:
        """The workspace's client; None while it has no installation (uninstalled, revoked, never)."""
        ...

    def forget(self, team: str) -> None:
        """Drop what is cached for the workspace (its tokens were deleted or replaced)."""
        ...


class SlackPace(Protocol):
    """This process's Slack pacer (bot.slack.pacer.Pacer), for Slack calls made outside the outbox."""

    async def acquire(self, method: str, channel: str | None, priority: int = 0, workspace: str = "") -> None:
        """Wait for the call's slot; lower priorities go first."""
        ...

    async def pause(self, method: str, channel: str | None, seconds: float, workspace: str = "") -> None:
        """Slack answered 429 with Retry-After `seconds`: hold the bucket."""
        ...


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
    slack_names: NameCache = field(default_factory=NameCache)  # Slack names for ids in replies to customers
    # "New rows are committed": wakes this process's workers of a queue (bot.core.loops), e.g. the outbox.
    wakes: WakeHub = field(default_factory=WakeHub)
    loop_health: LoopHealth = field(default_factory=LoopHealth)  # what /healthz reports of the loops
    # Many-workspace mode only: the installations (tokens sealed) and a client per workspace from them.
    installations: AsyncInstallationStore | None = None
    workspaces: WorkspaceClients | None = None
    # Sessions for reads outside any transaction (storage.db.make_read_sessionmaker); `sessions` when unset.
    reads: async_sessionmaker[AsyncSession] | None = None
    # The pacer the outbox uses (buckets in Redis when configured): other Slack calls wait their turn in it too.
    pacer: SlackPace | None = None

    def read_session(self) -> AsyncSession:
        """A session for reads only, without a transaction where the database allows it."""
        return (self.reads or self.sessions)()

    @property
    def many_workspaces(self) -> bool:
        return self.workspaces is not None

    async def slack_for(self, team: str) -> AsyncWebClient | None:
        """The Slack client for a workspace's calls: the one bot token's in single-workspace mode."""
        return self.slack if self.workspaces is None else await self.workspaces.client(team)

    def channel_for_slack(self, slack_channel: str) -> ChannelSettings | None:
        """The WhatsApp channel bridged into a Slack channel, if any."""
        return next((c for c in self.settings.channels
                     if slack_channel in (c.slack_channel, c.campaign_replies_channel)), None)
