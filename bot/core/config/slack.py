"""The `slack:` section: one workspace's token or many through OAuth, and who may do what."""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import urlsplit

from pydantic import (
    Field,
    field_validator,
)

from bot.core.config.base import Strict
from bot.core.workspace import is_workspace_id


class Role(StrEnum):
    """Who may do something from Slack."""

    ANYONE = "anyone"
    CHANNEL_MEMBERS = "channel_members"  # members of the Slack channel the conversation lives in
    CAMPAIGN_MANAGERS = "campaign_managers"  # listed in slack.campaign_managers (users or user groups)


class ReplyRole(StrEnum):
    """Whose thread replies reach the customer."""

    # Members of the workspace the app is installed in (with slack.client_id: the channel's slack_team):
    # no Slack Connect users from other organisations, no guests.
    WORKSPACE_MEMBERS = "workspace_members"
    ANYONE = "anyone"  # everyone who can write in the channel, Slack Connect users and guests included


class PermissionSettings(Strict):
    send_templates: Role = Role.CHANNEL_MEMBERS
    opt_out: Role = Role.CHANNEL_MEMBERS
    export: Role = Role.CAMPAIGN_MANAGERS
    inbox: Role = Role.CHANNEL_MEMBERS  # take, assign, resolve and reopen; also who may be assigned
    reply_to_customers: ReplyRole = ReplyRole.WORKSPACE_MEMBERS


class WorkspaceSlackSettings(Strict):
    """One workspace's own answers to who may do what (many workspaces); unset keys take the deployment's."""

    campaign_managers: list[str] | None = None
    permissions: PermissionSettings | None = None


class SlackSettings(Strict):
    api_url: str = "https://slack.com/api/"
    # One workspace: its bot token. Many workspaces: client_id and client_secret (bolt's OAuth install at
    # /slack/install), each workspace's token then lives in the database, sealed with meta.token_key.
    bot_token: str = ""
    client_id: str = ""
    client_secret: str = ""
    # Bot scopes asked for at install (empty: the ones slack-manifest.yaml lists).
    scopes: list[str] = Field(default_factory=list)
    signing_secret: str
    app_token: str = ""
    alerts_channel: str = ""
    campaign_managers: list[str] = Field(default_factory=list)
    note_prefixes: list[str] = Field(default_factory=lambda: ["note:", "//"])
    # A message the customer deleted stays visible to staff, struck through; false hides its text.
    show_deleted_text: bool = True
    # Extra origins (scheme://host[:port]) besides https://files.slack.com and slack.api_url's own that may
    # receive the bot token when downloading shared files; e.g. an Enterprise Grid file host.
    file_origins: list[str] = Field(default_factory=list)
    permissions: PermissionSettings = Field(default_factory=PermissionSettings)
    # Many workspaces: per workspace (T…) campaign managers and permissions, instead of the two above.
    workspaces: dict[str, WorkspaceSlackSettings] = Field(default_factory=dict)

    @field_validator("file_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        for value in values:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
                    or parts.query or parts.fragment or parts.username is not None:
                raise ValueError(f"{value!r} is not an origin; write it as https://host or https://host:port")
        return values

    @field_validator("workspaces")
    @classmethod
    def _workspace_keys(cls, value: dict[str, WorkspaceSlackSettings]) -> dict[str, WorkspaceSlackSettings]:
        for key in value:
            if not is_workspace_id(key):
                raise ValueError(f"{key!r} is not a Slack team id; key each workspace by its T… id")
        return value

    def managers_of(self, workspace: str | None) -> list[str]:
        """Who may run campaigns in a workspace: its own list, else the deployment's."""
        own = self.workspaces.get(workspace or "")
        return own.campaign_managers if own is not None and own.campaign_managers is not None \
            else self.campaign_managers

    def permissions_of(self, workspace: str | None) -> PermissionSettings:
        own = self.workspaces.get(workspace or "")
        return own.permissions if own is not None and own.permissions is not None else self.permissions

    @property
    def many_workspaces(self) -> bool:
        """True when workspaces install the app through OAuth (slack.client_id) rather than one bot token."""
        return bool(self.client_id)
