"""`doctor`: check the set-up end to end and say, for each problem, exactly how to fix it.

Each check returns a CheckResult; nothing here prints. A failing check makes the run fail; a warning is
shown with its fix but does not (it points at something worth a look, not something broken). This module
holds the run's order and the report; the checks live by side: doctor_meta, doctor_slack, doctor_traffic,
doctor_config and doctor_workspaces (their names stay importable from here).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, text

from bot.core.config import Settings
from bot.ops.checks import CheckResult, Severity, failed, passed, warned
from bot.ops.checks import all_passed as all_passed  # re-exported for the commands that run doctor
from bot.ops.doctor_config import campaign_managers_check, secret_findings
from bot.ops.doctor_env import DoctorEnv
from bot.ops.doctor_hours import hours_findings
from bot.ops.doctor_meta import (
    REQUIRED_FIELDS,
    app_token_for,
    check_app_fields,
    check_fields,
    check_number,
    check_throughput,
    check_token,
    check_waba_subscription,
    subscribe_fix,
)
from bot.ops.doctor_slack import REQUIRED_SLACK_SCOPES, USEFUL_SLACK_SCOPES, check_slack, check_slack_scopes
from bot.ops.doctor_traffic import (
    check_error_counts,
    check_log_tables,
    check_slack_backlog,
    check_traffic,
    traffic_checks,
)
from bot.ops.doctor_workspaces import check_workspaces, workspace_rows
from bot.ops.sync_status import latest_views, sync_problems
from bot.slack.backlog import estimate, owed_per_channel
from storage.models import WebhookLog, utcnow
from storage.retention import table_stats


async def check_database(env: DoctorEnv) -> tuple[CheckResult, bool]:
    try:
        async with env.sessions() as session:
            await session.execute(text("SELECT 1"))
            await session.scalar(select(func.count()).select_from(WebhookLog))
    except Exception as exc:
        return failed("database", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                      "check database_url, that the server runs, and `wabridge migrate`"), False
    return passed("database", "reachable, schema present"), True


async def check_redis(settings: Settings) -> CheckResult:
    if not settings.redis_url:
        return passed("redis", "not configured: in-process throttle, valid for one serve process only")
    import redis.asyncio as aioredis

    client = aioredis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.ping()
    except Exception as exc:
        return failed("redis", f"{type(exc).__name__}: {exc}", "check redis_url and that Redis runs")
    finally:
        await client.aclose()
    return passed("redis", "reachable")


async def sync_checks(env: DoctorEnv, now: datetime) -> list[CheckResult]:
    """Business App syncs (contacts, history) asked of Meta that never completed or stalled."""
    out = []
    for name, detail, fix, failure in sync_problems(await latest_views(env.sessions), now):
        out.append(failed(name, detail, fix) if failure else warned(name, detail, fix) if fix
                   else passed(name, detail))
    return out


async def run_doctor(env: DoctorEnv, channel: str | None = None, *, team: str | None = None) -> list[CheckResult]:
    """Every check, in a stable order: storage, Meta per channel, webhooks, traffic, Slack."""
    settings = env.settings
    now = env.now or utcnow()
    channels = [settings.channel(channel)] if channel else list(settings.channels)
    if team is not None:  # one workspace's numbers only
        channels = [c for c in channels if settings.workspace_of(c) == team]
    results: list[CheckResult] = secret_findings(settings)
    db, db_ok = await check_database(env)
    results.append(db)
    results.append(await check_redis(settings))
    if not channels:
        results.append(failed("channels", "no channel configured", "add a channels: entry to app.yaml"))
    for ch in channels:
        if not ch.access_token:
            continue  # its secret's finding says what to set; every Graph call would be refused
        results.append(await check_token(env, ch))
        results.append(await check_waba_subscription(env, ch))
        results.append(await check_number(env, ch))
    results.append(await check_app_fields(env, channels))
    results.extend(hours_findings(settings, channels, now))
    if db_ok:
        results.extend(await traffic_checks(env, channels, now))
        results.extend(await sync_checks(env, now))
        async with env.sessions() as session:
            results.extend(check_slack_backlog(estimate(await owed_per_channel(session))))
            stats = await table_stats(session)
        results.append(check_log_tables(stats, settings.retention.days, now, settings.timezone))
    slack_token = bool(settings.slack.bot_token)
    if settings.slack.many_workspaces:
        # No one bot token to test: each workspace's installation is the finding.
        if db_ok:
            async with env.sessions() as session:
                results.extend(check_workspaces(await workspace_rows(session), settings, team))
    elif slack_token:
        results.extend(await check_slack(env))
    results.append(await campaign_managers_check(settings, env.slack if slack_token else None))
    return results


def render_text(results: Sequence[CheckResult]) -> str:
    """Plain text for the terminal: every check, then each failure and warning with its fix."""
    mark = {Severity.OK: "ok  ", Severity.WARN: "warn", Severity.FAIL: "FAIL"}
    lines = [f"[{mark[r.level]}] {r.name}: {r.detail}" for r in results]
    problems = [r for r in results if r.level is not Severity.OK]
    if problems:
        lines.append("")
        for r in problems:
            lines.append(f"{'FAIL' if r.level is Severity.FAIL else 'warn'} {r.name}: {r.detail}")
            lines.append(f"     fix: {r.fix}")
    failures = sum(1 for r in results if not r.ok)
    lines.append("")
    lines.append("all checks passed" if failures == 0 else f"{failures} check(s) failed")
    return "\n".join(lines)


__all__ = [
    "REQUIRED_FIELDS", "REQUIRED_SLACK_SCOPES", "USEFUL_SLACK_SCOPES", "DoctorEnv", "Severity", "all_passed",
    "app_token_for", "check_app_fields", "check_database", "check_error_counts", "check_fields", "check_log_tables",
    "check_number", "check_redis", "check_slack", "check_slack_backlog", "check_slack_scopes", "check_throughput",
    "check_token", "check_traffic", "check_waba_subscription", "render_text", "run_doctor", "subscribe_fix",
    "sync_checks", "traffic_checks",
]
