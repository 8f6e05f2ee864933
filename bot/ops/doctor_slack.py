"""Doctor's checks of Slack's side: the bot token, its scopes against the manifest, the alerts channel."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.ops.checks import CheckResult, failed, passed, warned
from bot.ops.checks import all_passed as all_passed  # re-exported for the commands that run doctor
from bot.ops.doctor_env import DoctorEnv, unreachable
from bot.slack.errors import slack_reason

# Slack bot scopes the code uses; the same list as slack-manifest.yaml (a test keeps them equal).
REQUIRED_SLACK_SCOPES = ("channels:history", "groups:history", "channels:read", "groups:read", "chat:write",
                         "chat:write.customize", "commands",
                         "files:read", "files:write", "im:write", "reactions:write", "users:read",
                         "usergroups:read")


# Scopes whose absence only degrades a feature (a warning, not a failure): reactions:read lets a ✅ on a thread
# parent resolve the conversation (the Resolve button works without it). channels:read and groups:read, which
# name #channels in replies, are required for slack.permissions anyway.
USEFUL_SLACK_SCOPES: tuple[str, ...] = ("reactions:read",)


def check_slack_scopes(granted: Iterable[str]) -> CheckResult:
    """The bot token's scopes (auth.test's x-oauth-scopes header) against what the bridge uses."""
    have = {s.strip() for s in granted if s.strip()}
    missing = [s for s in REQUIRED_SLACK_SCOPES if s not in have]
    fix = ("api.slack.com/apps > your app > OAuth & Permissions > Bot Token Scopes: add {}; then reinstall "
           "the app and update SLACK_BOT_TOKEN")
    if missing:
        return failed("slack scopes", f"missing: {', '.join(missing)}", fix.format(", ".join(missing)))
    optional = [s for s in USEFUL_SLACK_SCOPES if s not in have]
    if optional:
        return warned("slack scopes", f"required scopes present; optional missing: {', '.join(optional)}",
                      fix.format(", ".join(optional)))
    return passed("slack scopes", "all needed scopes granted")


def _header(headers: Any, name: str) -> str:
    if headers is None:
        return ""
    for key, value in dict(headers).items():
        if str(key).lower() == name:
            return str(value)
    return ""


async def check_slack(env: DoctorEnv) -> list[CheckResult]:
    try:
        response = await env.slack.auth_test()
    except Exception as exc:
        lost = unreachable("slack auth", "Slack", env.settings.slack.api_url, exc)
        if lost is not None:
            return [lost]
        if not isinstance(exc, SlackApiError):
            raise
        return [failed("slack auth", f"auth.test: {slack_reason(exc)}",
                       "check slack.bot_token (xoxb-…) and that the app is installed in the workspace")]
    team, user = response.get("team"), response.get("user")
    results = [passed("slack auth", f"bot {user} in {team}")]
    scopes = _header(response.headers, "x-oauth-scopes")
    results.append(check_slack_scopes(scopes.split(",")))
    alerts = env.settings.slack.alerts_channel
    if not alerts:
        results.append(warned("slack alerts channel", "slack.alerts_channel is not set: template, quality and "
                              "account alerts have nowhere to go", "set SLACK_ALERTS_CHANNEL to a channel ID"))
    return results
