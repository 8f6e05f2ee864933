"""The small app.yaml sections: server, Meta, opt-out, pricing, campaigns, retention, privacy, workers."""

from __future__ import annotations

import base64

from pydantic import (
    Field,
    field_validator,
)

from bot.core.config.base import Strict

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


class ServerSettings(Strict):
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


class MetaSettings(Strict):
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


class OptOutSettings(Strict):
    keywords: list[str] = Field(default_factory=lambda: ["STOP", "UNSUBSCRIBE"])
    opt_in_keywords: list[str] = Field(default_factory=lambda: ["START"])
    quick_reply_payloads: list[str] = Field(default_factory=list)


class PricingSettings(Strict):
    currency: str = "USD"
    platform_fee: float = 0.0
    rates: dict[str, dict[str, float]] = Field(default_factory=dict)


class CampaignsSettings(Strict):
    # Seconds a recipient may stay `unknown` (no status from Meta) before it is sent again without asking;
    # unset: never automatically, the campaign's manager decides with "Resend N" or `campaign resend-unknown`.
    resend_unknown_after: float | None = Field(default=None, ge=30)
    # Seconds of silence after which `unknown` recipients are shown to the manager.
    unknown_quiet: float = Field(default=60.0, gt=0)


class RetentionSettings(Strict):
    """How long finished log rows (processed deliveries, handled Slack events, delivered posts) are kept, and
    customers' data when set: messages (with their statuses), media references, erasure audit records.
    Unset: kept until erased on request (docs/privacy.md)."""

    days: float = Field(default=30, gt=0)
    batch_size: int = Field(default=1000, gt=0)
    interval_seconds: float = Field(default=3600, gt=0)
    messages_days: float | None = Field(default=None, gt=0)
    media_days: float | None = Field(default=None, gt=0)
    audit_days: float | None = Field(default=None, gt=0)
    # Messages aged out by messages_days have the bridge's Slack posts redacted too, and media aged out by
    # media_days the files it uploaded deleted (slowly, behind live posts).
    redact_slack: bool = True


class PrivacySettings(Strict):
    """Erasure on request: the salt of the identity hashes kept after an erasure (audit and opt-out).

    Empty: the first meta.token_key is used. Never change it once used, or erased people's opt-outs are lost."""

    salt: str = ""


class WorkerSettings(Strict):
    """Deliveries claimed per batch: live (customer messages, echoes) and bulk (statuses, history, …); Slack
    outbox items in flight at once per process (each thread still one at a time, each channel paced)."""

    live_batch: int = Field(default=100, gt=0, le=1000)
    bulk_batch: int = Field(default=200, gt=0, le=1000)
    outbox_concurrency: int = Field(default=64, gt=0, le=1024)
