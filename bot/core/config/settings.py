"""The whole app.yaml as one typed Settings, with the checks that span sections (workspaces, channels)."""

from __future__ import annotations

from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.core.config.base import Strict
from bot.core.config.channels import BusinessHoursSettings, ChannelSettings, InboxSettings, SlaSettings
from bot.core.config.errors import EVERY_SECRET, ConfigError, Need
from bot.core.config.replies import AwaySettings, CsatSettings, known_zone
from bot.core.config.sections import (
    CampaignsSettings,
    MetaSettings,
    OptOutSettings,
    PricingSettings,
    PrivacySettings,
    RetentionSettings,
    ServerSettings,
    WorkerSettings,
)
from bot.core.config.slack import SlackSettings
from bot.core.workspace import DEFAULT_WORKSPACE


class Settings(Strict):
    server: ServerSettings = Field(default_factory=ServerSettings)
    database_url: str = "sqlite+aiosqlite:///wabridge.db"
    # PostgreSQL connections one process keeps open; as many more while busy. Processes times (pool * 2)
    # must stay under the server's max_connections (or go through PgBouncer).
    database_pool_size: int = Field(default=30, gt=0, le=200)
    redis_url: str = ""
    meta: MetaSettings
    slack: SlackSettings
    channels: list[ChannelSettings] = Field(default_factory=list)
    pricing: PricingSettings = Field(default_factory=PricingSettings)
    opt_out: OptOutSettings = Field(default_factory=OptOutSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    default_region: str = "IN"
    timezone: str = "Asia/Kolkata"
    sla: SlaSettings = Field(default_factory=SlaSettings)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    business_hours: BusinessHoursSettings | None = None
    away: AwaySettings = Field(default_factory=AwaySettings)
    csat: CsatSettings = Field(default_factory=CsatSettings)
    campaigns: CampaignsSettings = Field(default_factory=CampaignsSettings)
    # phone_number_ids of the channels this process took from /onboard rather than app.yaml.
    _onboarded: set[str] = PrivateAttr(default_factory=set)
    _by_number: dict[str, int] = PrivateAttr(default_factory=dict)  # phone_number_id -> index in channels
    # Secrets the command did not need and the file or environment left unset (their keys).
    _unset: list[str] = PrivateAttr(default_factory=list)
    # Keys whose whole value in app.yaml is ${VAR}: key -> VAR.
    _env_vars: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def unset_secrets(self) -> list[str]:
        """Secrets left unset because the command that loaded the settings does not use them."""
        return list(self._unset)

    def how_to_set(self, key: str) -> str:
        """The fix for an unset key: the variable app.yaml reads it from, else the key in app.yaml."""
        var = self._env_vars.get(key)
        return f"export {var} (app.yaml reads {key} from ${{{var}}})" if var else f"set {key} in app.yaml"

    @property
    def onboarded_ids(self) -> set[str]:
        """The live set (callers add to it) of channels that came from onboarding."""
        return self._onboarded

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, channels: list[ChannelSettings]) -> list[ChannelSettings]:
        for attr in ("name", "phone_number_id"):
            seen: set[str] = set()
            for i, ch in enumerate(channels):
                value = getattr(ch, attr)
                if value in seen:
                    raise ValueError(f"channels[{i}].{attr}: duplicate {attr} {value!r}")
                seen.add(value)
        return channels

    @model_validator(mode="after")
    def _workspaces(self, info: ValidationInfo) -> Settings:
        slack = self.slack
        needs_slack = Need.SLACK in (info.context or {}).get("needs", EVERY_SECRET)
        if slack.client_id and not slack.client_secret:
            raise ValueError("slack.client_secret: required with slack.client_id; export SLACK_CLIENT_SECRET "
                             "(Basic Information > App Credentials)")
        if slack.client_secret and not slack.client_id:
            raise ValueError("slack.client_id: required with slack.client_secret; export SLACK_CLIENT_ID")
        if needs_slack and not slack.client_id and not slack.bot_token:
            raise ValueError("slack.bot_token: not set; export SLACK_BOT_TOKEN for one workspace, or set "
                             "slack.client_id and slack.client_secret to install in many")
        if slack.client_id and not self.meta.token_key:
            raise ValueError("meta.token_key: required with slack.client_id (workspaces' tokens are stored "
                             "sealed with it); export WABRIDGE_TOKEN_KEY")
        if slack.client_id:
            for i, ch in enumerate(self.channels):
                if not ch.slack_team:
                    raise ValueError(f"channels[{i}].slack_team: required with slack.client_id; write the T… id "
                                     "of the workspace this number belongs to")
        return self

    def workspace_of(self, channel: ChannelSettings) -> str:
        """The workspace key a channel's rows are filed under (see bot.core.workspace)."""
        return channel.slack_team if self.slack.many_workspaces else DEFAULT_WORKSPACE

    def channel(self, name: str) -> ChannelSettings:
        """The channel called name; ConfigError when there is none."""
        for ch in self.channels:
            if ch.name == name:
                return ch
        raise ConfigError("channels", f"no channel named {name!r}")

    def channel_by_phone_number_id(self, phone_number_id: str) -> ChannelSettings | None:
        """The channel of a number; indexed, because every delivery and post asks (1,000+ numbers per process)."""
        index = self._by_number.get(phone_number_id)
        if index is not None and index < len(self.channels):
            found = self.channels[index]
            if found.phone_number_id == phone_number_id:
                return found
        # Not indexed, or the list changed since (numbers connected or replaced at runtime): index it afresh.
        self._by_number = {c.phone_number_id: i for i, c in reversed(list(enumerate(self.channels)))}
        index = self._by_number.get(phone_number_id)
        return self.channels[index] if index is not None else None

    def hours_of(self, channel: ChannelSettings) -> BusinessHoursSettings | None:
        """The channel's opening hours: its own, else the top-level business_hours; None when neither is set."""
        return channel.hours or self.business_hours

    def hours_zone(self, hours: BusinessHoursSettings) -> str:
        """The time zone opening hours are read in: their own, else the top-level one."""
        return hours.timezone or self.timezone

    def csat_of(self, channel: ChannelSettings) -> CsatSettings:
        """The channel's satisfaction survey: its own, else the top-level one."""
        return channel.csat or self.csat


_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
                  "postgresql+asyncpg": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite",
                  "sqlite+aiosqlite": "sqlite+aiosqlite"}


def normalize_database_url(url: str) -> str:
    """The URL with the async driver this app uses (postgres://, postgresql://, sqlite:// are accepted)."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        raise ValueError("not a database URL; use postgresql://user:password@host/db or sqlite:///path.db")
    driver = _ASYNC_DRIVERS.get(scheme.lower())
    if driver is None:
        raise ValueError(f"{scheme}:// is not supported; use postgresql://user:password@host/db "
                         "(asyncpg) or sqlite:///path.db (aiosqlite)")
    return f"{driver}://{rest}"
