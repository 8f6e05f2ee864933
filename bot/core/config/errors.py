"""How configuration problems are told (naming the key) and which secrets each command needs."""

from __future__ import annotations

from enum import StrEnum


class ConfigError(Exception):
    """A configuration problem, phrased for the operator and naming the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


SECRETS = ("meta.app_secret", "meta.verify_token", "slack.bot_token", "slack.signing_secret")
# Secrets that slack.client_id (many workspaces, tokens from the OAuth install) makes unnecessary.
ONE_WORKSPACE_SECRETS = ("slack.bot_token",)


class Need(StrEnum):
    """Which secrets a command uses: it is refused only when one of those is unset."""

    META = "meta"  # meta.app_secret, meta.verify_token: webhooks from Meta
    SLACK = "slack"  # slack.bot_token, slack.signing_secret
    CHANNELS = "channels"  # each channel's access_token: calls to the Graph API


EVERY_SECRET: frozenset[Need] = frozenset(Need)
