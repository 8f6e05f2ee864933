"""Load app.yaml into typed settings, with ${VAR} and ${VAR:-default} taken from the environment.

One module per part of the schema (each key's validation next to its default; docs/deployment.md mirrors
them) and one for loading; every name is importable from here.
"""

from bot.core.config.channels import (
    DEFAULT_MPS,
    MAX_MPS,
    AutoAssign,
    BusinessHoursSettings,
    ChannelSettings,
    InboxSettings,
    Mode,
    SlaSettings,
    ThreadReplies,
    Weekday,
)
from bot.core.config.errors import EVERY_SECRET, ONE_WORKSPACE_SECRETS, SECRETS, ConfigError, Need
from bot.core.config.load import interpolate, load_settings, parse_settings
from bot.core.config.replies import AwayMode, AwaySettings, CsatSettings, CsatTexts
from bot.core.config.sections import (
    DEFAULT_MAX_BODY_BYTES,
    CampaignsSettings,
    MetaSettings,
    OptOutSettings,
    PricingSettings,
    PrivacySettings,
    RetentionSettings,
    ServerSettings,
    WorkerSettings,
)
from bot.core.config.settings import Settings, normalize_database_url
from bot.core.config.slack import PermissionSettings, ReplyRole, Role, SlackSettings, WorkspaceSlackSettings

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MPS",
    "EVERY_SECRET",
    "MAX_MPS",
    "ONE_WORKSPACE_SECRETS",
    "SECRETS",
    "AutoAssign",
    "AwayMode",
    "AwaySettings",
    "BusinessHoursSettings",
    "CampaignsSettings",
    "ChannelSettings",
    "ConfigError",
    "CsatSettings",
    "CsatTexts",
    "InboxSettings",
    "MetaSettings",
    "Mode",
    "Need",
    "OptOutSettings",
    "PermissionSettings",
    "PricingSettings",
    "PrivacySettings",
    "ReplyRole",
    "RetentionSettings",
    "Role",
    "ServerSettings",
    "Settings",
    "SlaSettings",
    "SlackSettings",
    "ThreadReplies",
    "Weekday",
    "WorkerSettings",
    "WorkspaceSlackSettings",
    "interpolate",
    "load_settings",
    "normalize_database_url",
    "parse_settings",
]
