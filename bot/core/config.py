"""Load app.yaml into typed settings, with ${VAR} and ${VAR:-default} taken from the environment.

Why one module: the whole app.yaml schema is here, each key's validation next to its default, so the
file reads as the reference docs/deployment.md mirrors.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.core.workspace import DEFAULT_WORKSPACE, is_workspace_id

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")

DEFAULT_MPS = {"coexistence": 5, "cloud_api": 80}
MAX_MPS = 1000


class ConfigError(Exception):
    """A configuration problem, phrased for the operator and naming the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class _Missing:
    """Marks a ${VAR} with no value and no default; reported only if the key is actually required."""

    def __init__(self, var: str) -> None:
        self.var = var


def interpolate(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Replace ${VAR} / ${VAR:-default} in every string of a loaded YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    whole = _VAR.fullmatch(value)
    if whole:
        name, default = whole.group("name"), whole.group("default")
        if name in env:
            return env[name]
        if default is not None:
            return default
        return _Missing(name)

    def repl(m: re.Match[str]) -> str:
        name, default = m.group("name"), m.group("default")
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(path, f"environment variable {name} is not set")

    return _VAR.sub(repl, value)


class Mode(StrEnum):
    COEXISTENCE = "coexistence"
    CLOUD_API = "cloud_api"


class ThreadReplies(StrEnum):
    TWO_WAY = "two_way"
    NOTES_ONLY = "notes_only"


DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    host: str = "0.0.0.0"
    port: int = 8080
    # Meta sends webhooks of up to 3 MB (history chunks of thousands of conversations come close): 8 MiB
    # leaves room for that and for Meta growing its chunks.
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    public_url: str = ""
    # /metrics is off unless one of these is set. metrics_token: it asks for `Authorization: Bearer <token>`;
    # metrics_port: it is served only there (on metrics_host), not on the main port; metrics_public: it is
    # served on the main port to anyone (only for a port no one outside a private network reaches).
    metrics_token: str = ""
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_public: bool = False


class MetaSettings(_Strict):
    graph_url: str = "https://graph.facebook.com"
    api_version: str = "v23.0"
    app_id: str = ""
    app_secret: str
    verify_token: str
    app_token: str = ""  # app access token (app_id|secret) for reading webhook subscriptions
    # Facebook Login for Business configuration used by the /onboard page (embedded signup).
    embedded_signup_config_id: str = ""
    # Fernet key(s) encrypting onboarded channels' tokens at rest; comma-separated, the first encrypts.
    token_key: str = ""

    @field_validator("token_key")
    @classmethod
    def _fernet_keys(cls, value: str) -> str:
        for key in filter(None, (k.strip() for k in value.split(","))):
            try:
                raw = base64.urlsafe_b64decode(key.encode("ascii"))
            except (ValueError, UnicodeEncodeError):
                raw = b""
            if len(raw) != 32:
                raise ValueError("not a Fernet key (32 url-safe base64 bytes); make one with "
                                 "`python -c 'from cryptography.fernet import Fernet; "
                                 "print(Fernet.generate_key().decode())'`")
        return value


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


class PermissionSettings(_Strict):
    send_templates: Role = Role.CHANNEL_MEMBERS
    opt_out: Role = Role.CHANNEL_MEMBERS
    export: Role = Role.CAMPAIGN_MANAGERS
    inbox: Role = Role.CHANNEL_MEMBERS  # take, assign, resolve and reopen; also who may be assigned
    reply_to_customers: ReplyRole = ReplyRole.WORKSPACE_MEMBERS


class WorkspaceSlackSettings(_Strict):
    """One workspace's own answers to who may do what (many workspaces); unset keys take the deployment's."""

    campaign_managers: list[str] | None = None
    permissions: PermissionSettings | None = None


class SlackSettings(_Strict):
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


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WORKWEEK: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")


class AutoAssign(StrEnum):
    OFF = "off"
    FIRST_REPLY = "first_reply"  # whoever answers an unowned conversation first from Slack owns it


class InboxSettings(_Strict):
    """The team inbox on thread parents (owner, status)."""

    auto_assign: AutoAssign = AutoAssign.OFF


class SlaSettings(_Strict):
    """First-response target: a conversation waiting longer gets one reminder in its thread."""

    first_response_minutes: int | None = Field(default=None, gt=0)
    mention: str = ""  # Slack user group (S…) or user (U…) named in the reminder


def _zone(value: str) -> str:
    """An IANA time zone name this machine knows, else a one-line error."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Asia/Kolkata") from None
    return value


class BusinessHoursSettings(_Strict):
    """Opening hours: only time inside them counts towards waits and first responses, and a customer writing
    outside them may get the number's away message. `timezone` empty: the top-level `timezone`."""

    opens: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    closes: str = Field(default="18:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    days: list[Weekday] = Field(default_factory=lambda: list(WORKWEEK))
    timezone: str = ""
    holidays: list[date] = Field(default_factory=list)  # closed all day, e.g. 2026-12-25

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone(value) if value else value

    @model_validator(mode="after")
    def _opens_before_closes(self) -> BusinessHoursSettings:
        if self.opens >= self.closes:
            raise ValueError(f"opens must be earlier than closes (opens {self.opens}, closes {self.closes})")
        return self


class AwayMode(StrEnum):
    """Who answers a customer writing outside the opening hours."""

    OFF = "off"  # nobody: away messages are not sent at all
    # Every number with an away_message, Coexistence ones too (switch the phone app's own away message off).
    ALWAYS = "always"
    # Only Cloud API numbers: on a Coexistence number the WhatsApp Business app's away message answers.
    CLOUD_API_ONLY = "cloud_api_only"


class AwaySettings(_Strict):
    mode: AwayMode = AwayMode.CLOUD_API_ONLY


class CsatTexts(_Strict):
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


class CsatSettings(_Strict):
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


class ChannelSettings(_Strict):
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
    csat: CsatSettings | None = None  # this number's survey (None: the top-level csat)

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


class OptOutSettings(_Strict):
    keywords: list[str] = Field(default_factory=lambda: ["STOP", "UNSUBSCRIBE"])
    opt_in_keywords: list[str] = Field(default_factory=lambda: ["START"])
    quick_reply_payloads: list[str] = Field(default_factory=list)


class PricingSettings(_Strict):
    currency: str = "USD"
    platform_fee: float = 0.0
    rates: dict[str, dict[str, float]] = Field(default_factory=dict)


class CampaignsSettings(_Strict):
    # Seconds a recipient may stay `unknown` (no status from Meta) before it is sent again without asking;
    # unset: never automatically, the campaign's manager decides with "Resend N" or `campaign resend-unknown`.
    resend_unknown_after: float | None = Field(default=None, ge=30)
    # Seconds of silence after which `unknown` recipients are shown to the manager.
    unknown_quiet: float = Field(default=60.0, gt=0)


class RetentionSettings(_Strict):
    """How long finished log rows (processed deliveries, handled Slack events, delivered posts) are kept, and
    customers' data when set: messages (with their statuses), media references, erasure audit records.
    Unset: kept until erased on request (docs/privacy.md)."""

    days: float = Field(default=30, gt=0)
    batch_size: int = Field(default=1000, gt=0)
    interval_seconds: float = Field(default=3600, gt=0)
    messages_days: float | None = Field(default=None, gt=0)
    media_days: float | None = Field(default=None, gt=0)
    audit_days: float | None = Field(default=None, gt=0)


class PrivacySettings(_Strict):
    """Erasure on request: the salt of the identity hashes kept after an erasure (audit and opt-out).

    Empty: the first meta.token_key is used. Never change it once used, or erased people's opt-outs are lost."""

    salt: str = ""


class WorkerSettings(_Strict):
    """Deliveries claimed per batch: live (customer messages, echoes) and bulk (statuses, history, …)."""

    live_batch: int = Field(default=100, gt=0, le=1000)
    bulk_batch: int = Field(default=200, gt=0, le=1000)


class Settings(_Strict):
    server: ServerSettings = Field(default_factory=ServerSettings)
    database_url: str = "sqlite+aiosqlite:///wabridge.db"
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
        return _zone(value)

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
        return next((c for c in self.channels if c.phone_number_id == phone_number_id), None)

    def hours_of(self, channel: ChannelSettings) -> BusinessHoursSettings | None:
        """The channel's opening hours: its own, else the top-level business_hours; None when neither is set."""
        return channel.hours or self.business_hours

    def csat_of(self, channel: ChannelSettings) -> CsatSettings:
        """The channel's satisfaction survey: its own, else the top-level one."""
        return channel.csat or self.csat

    def hours_zone(self, hours: BusinessHoursSettings) -> str:
        """The time zone opening hours are read in: their own, else the top-level one."""
        return hours.timezone or self.timezone


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


SECRETS = ("meta.app_secret", "meta.verify_token", "slack.bot_token", "slack.signing_secret")
# Secrets that slack.client_id (many workspaces, tokens from the OAuth install) makes unnecessary.
ONE_WORKSPACE_SECRETS = ("slack.bot_token",)


class Need(StrEnum):
    """Which secrets a command uses: it is refused only when one of those is unset."""

    META = "meta"  # meta.app_secret, meta.verify_token: webhooks from Meta
    SLACK = "slack"  # slack.bot_token, slack.signing_secret
    CHANNELS = "channels"  # each channel's access_token: calls to the Graph API


EVERY_SECRET: frozenset[Need] = frozenset(Need)


def _group(path: str) -> Need:
    return Need.CHANNELS if path.startswith("channels[") else Need(path.split(".", 1)[0])


def _put(tree: dict[str, Any], path: str, value: str) -> None:
    """Set a secret's dotted path (meta.x, slack.x, channels[i].x) in a loaded tree, creating its section."""
    node: Any = tree
    parts = re.split(r"\.|(?=\[)", path)
    for part in parts[:-1]:
        if part.startswith("["):
            node = node[int(part[1:-1])]
        else:
            if node.get(part) is None:
                node[part] = {}
            elif not isinstance(node[part], dict | list):
                return  # a section of the wrong type: the model names it
            node = node[part]
    node[parts[-1]] = value


def _env_vars(raw: Any, path: str = "") -> dict[str, str]:
    """Every key whose whole value is ${VAR} or ${VAR:-default}, with the variable's name."""
    if isinstance(raw, dict):
        return {k: v for key, value in raw.items()
                for k, v in _env_vars(value, f"{path}.{key}" if path else str(key)).items()}
    if isinstance(raw, list):
        return {k: v for i, value in enumerate(raw) for k, v in _env_vars(value, f"{path}[{i}]").items()}
    whole = _VAR.fullmatch(raw) if isinstance(raw, str) else None
    return {path: whole.group("name")} if whole else {}


def _at(tree: Any, path: str) -> Any:
    """The value at a dotted path such as channels[0].access_token, or None."""
    node: Any = tree
    for part in re.split(r"\.|(?=\[)", path):
        if part.startswith("["):
            index = int(part[1:-1])
            node = node[index] if isinstance(node, list) and index < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return node


def _unset_secrets(raw: Any, tree: Any) -> list[tuple[str, str]]:
    """Every secret that is absent or empty: (key, `key (export VAR)` where the file names a variable)."""
    client_id = _at(tree, "slack.client_id")
    many = isinstance(client_id, str) and bool(client_id.strip())
    paths = [p for p in SECRETS if not (many and p in ONE_WORKSPACE_SECRETS)]
    channels = tree.get("channels") if isinstance(tree, dict) else None
    if isinstance(channels, list):
        paths += [f"channels[{i}].access_token" for i, ch in enumerate(channels) if isinstance(ch, dict)]
    unset: list[tuple[str, str]] = []
    for path in paths:
        node = _at(tree, path)
        if isinstance(node, str) and node.strip():
            continue
        if node is not None and not isinstance(node, str):
            continue  # a wrong type: the model names it
        written = _at(raw, path)
        var = _VAR.fullmatch(written) if isinstance(written, str) else None
        unset.append((path, f"{path} (export {var.group('name')})" if var else path))
    return unset


# A validator's message may start with the key it is about ("channels[0].slack_team: …"): that key is named.
_KEY_PATH = re.compile(r"[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)+|channels\[\d+\]\.[a-z_]+")


def _first_error(exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    loc = ".".join(
        f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]
    ).replace(".[", "[")
    msg = err["msg"]
    if err["type"] == "missing":
        return ConfigError(loc, "required key is missing")
    if err["type"] == "extra_forbidden":
        return ConfigError(loc, "unknown key")
    if msg.startswith("Value error, "):
        text = msg.removeprefix("Value error, ")
        if ": " in text and _KEY_PATH.fullmatch(text.split(": ", 1)[0]):
            key, text = text.split(": ", 1)
            return ConfigError(key, text)
        return ConfigError(loc, text)
    return ConfigError(loc, msg)


def _strip_missing(tree: Any) -> tuple[Any, dict[str, str]]:
    missing: dict[str, str] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                p = f"{path}.{k}" if path else str(k)
                if isinstance(v, _Missing):
                    missing[p] = v.var
                    continue
                out[k] = walk(v, p)
            return out
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    return walk(tree, ""), missing


def parse_settings(raw: Any, env: Mapping[str, str] | None = None, *,
                   needs: frozenset[Need] = EVERY_SECRET) -> Settings:
    """Validate a loaded YAML tree into Settings; ConfigError names the first bad key.

    Only the secrets of `needs` must be set; the others may be unset (they read as "" and are listed in
    `unset_secrets`), so a command that never talks to Meta or Slack runs without their secrets."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("(top)", "the config must be a mapping of keys")
    tree = interpolate(raw, os.environ if env is None else env)
    tree, missing = _strip_missing(tree)
    unset = _unset_secrets(raw, tree)
    refused = [text for path, text in unset if _group(path) in needs]
    if refused:
        raise ConfigError("secrets", "not set or empty: " + ", ".join(refused))
    for path, _ in unset:
        _put(tree, path, "")
    try:
        settings = Settings.model_validate(tree, context={"needs": needs})
    except ValidationError as exc:
        err = _first_error(exc)
        if err.key in missing:
            err = ConfigError(err.key, f"secret not set: export {missing[err.key]}")
        raise err from None
    settings._unset = [path for path, _ in unset]
    settings._env_vars = _env_vars(raw)
    return settings


def load_settings(path: str | Path, env: Mapping[str, str] | None = None, *,
                  needs: frozenset[Need] = EVERY_SECRET) -> Settings:
    """Read and validate the YAML config file at path (see parse_settings for `needs`)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(str(p), "config file not found")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(str(p), f"not valid YAML{where}") from None
    return parse_settings(raw, env, needs=needs)
