"""`doctor`'s checks of app.yaml itself: unset secrets, and whether anybody may run `/campaign`."""

from __future__ import annotations

import re

from slack_sdk.web.async_client import AsyncWebClient

from bot.core.config import Settings
from bot.ops.checks import CheckResult, failed, passed, warned
from bot.ops.reachability import network_cause, network_fix
from bot.slack.errors import slack_reason

_SLACK_ID = re.compile(r"[UWS][A-Z0-9]{2,}")
MANAGERS_FIX = ("list who may run /campaign under slack.campaign_managers in app.yaml: Slack user ids (U…) or "
                "user group ids (S…), e.g. campaign_managers: [U0123ABCD, S0456EFGH]; a member's id is in "
                "their Slack profile > More > Copy member ID")


def secret_findings(settings: Settings) -> list[CheckResult]:
    """A failure per unset secret, with the variable to export (or the key to set)."""
    return [failed(f"secret {key}", "not set or empty: `wabridge serve` refuses to start without it",
                   settings.how_to_set(key)) for key in settings.unset_secrets]


async def campaign_managers_check(settings: Settings, slack: AsyncWebClient | None) -> CheckResult:
    """Somebody may run `/campaign`: slack.campaign_managers names users, or user groups with members."""
    name = "campaign managers"
    managers = settings.slack.campaign_managers
    if not managers:
        return failed(name, "slack.campaign_managers is empty: nobody may create or control campaigns, nor run "
                            "/campaign doctor, spend or export", MANAGERS_FIX)
    bad = [m for m in managers if not _SLACK_ID.fullmatch(m)]
    if bad:
        return failed(name, f"not Slack ids: {', '.join(bad)} (user ids start with U or W, user groups with S)",
                      MANAGERS_FIX)
    users = [m for m in managers if not m.startswith("S")]
    groups = [m for m in managers if m.startswith("S")]
    summary = f"{len(users)} user(s) and {len(groups)} user group(s) may run /campaign"
    if users or not groups or slack is None:
        return passed(name, summary)
    members: set[str] = set()
    for group in groups:  # only groups: somebody has to be in one of them
        try:
            response = await slack.usergroups_users_list(usergroup=group)
        except Exception as exc:
            cause = network_cause(exc)
            return warned(name, f"{summary}; user group {group} could not be read: {cause or slack_reason(exc)}",
                          network_fix(settings.slack.api_url) if cause else
                          "check the group id and the usergroups:read scope")
        members.update(str(u) for u in response.get("users") or [])
    if not members:
        return failed(name, f"the user group(s) {', '.join(groups)} have no members: nobody may run /campaign",
                      "add the managers to the user group in Slack, or list their user ids under "
                      "slack.campaign_managers")
    return passed(name, f"{summary} ({len(members)} member(s) in the groups)")
