"""What doctor's checks talk to, and the failure that blames the network rather than a setting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import Settings
from bot.meta.graph import GraphClient
from bot.ops.checks import CheckResult, failed
from bot.ops.checks import all_passed as all_passed  # re-exported for the commands that run doctor
from bot.ops.reachability import network_cause, network_fix


def unreachable(name: str, service: str, url: str, exc: BaseException) -> CheckResult | None:
    """A failure that blames the network when the service was not reached, else None."""
    cause = network_cause(exc)
    return failed(name, f"{service} not reached: {cause}", network_fix(url)) if cause else None


@dataclass
class DoctorEnv:
    """What the checks talk to."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    graph: GraphClient
    slack: AsyncWebClient
    now: datetime | None = None


def ago(delta: timedelta) -> str:
    """A duration as a person says it (seconds, minutes, hours or days)."""
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"
