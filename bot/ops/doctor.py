"""`doctor`: check the set-up end to end and say, for each problem, exactly how to fix it.

Each check returns a CheckResult; nothing here prints. A failing check makes the run fail; a warning is
shown with its fix but does not (it points at something worth a look, not something broken).

Why one module: the checks are short, independent functions run from one list; keeping them
together keeps the list, the order of the report and the fixes' wording in one view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import ChannelSettings, Mode, Settings
from bot.core.readable import day_time
from bot.meta.graph import GraphClient, GraphError
from bot.ops.checks import CheckResult, Severity, failed, passed, warned
from bot.ops.checks import all_passed as all_passed  # re-exported for the commands that run doctor
from bot.ops.doctor_config import campaign_managers_check, secret_findings
from bot.ops.doctor_workspaces import check_workspaces, workspace_rows
from bot.ops.reachability import network_cause, network_fix
from bot.slack.backlog import WARN_AFTER_SECONDS, ChannelLag, estimate, owed_per_channel
from bot.slack.errors import slack_reason
from storage.models import CampaignRecipient, MessageStatus, WebhookLog, as_utc, utcnow
from storage.retention import TableStat, table_stats
from storage.send_errors import counts_since

# Webhook fields the bridge needs on the app's whatsapp_business_account subscription.
REQUIRED_FIELDS = ("messages", "message_template_status_update")
COEXISTENCE_FIELDS = ("smb_message_echoes",)
# Fields the bridge uses when present; missing ones are a warning.
USEFUL_FIELDS = ("phone_number_quality_update", "account_update", "message_template_quality_update",
                 "template_category_update", "history", "smb_app_state_sync")
WABA_OBJECT = "whatsapp_business_account"

# Slack bot scopes the code uses; the same list as slack-manifest.yaml (a test keeps them equal).
REQUIRED_SLACK_SCOPES = ("channels:history", "groups:history", "channels:read", "groups:read", "chat:write",
                         "chat:write.customize", "commands",
                         "files:read", "files:write", "im:write", "reactions:write", "users:read",
                         "usergroups:read")
# Scopes whose absence only degrades a feature (a warning, not a failure): reactions:read lets a ✅ on a thread
# parent resolve the conversation (the Resolve button works without it). channels:read and groups:read, which
# name #channels in replies, are required for slack.permissions anyway.
USEFUL_SLACK_SCOPES: tuple[str, ...] = ("reactions:read",)
REQUIRED_TOKEN_SCOPES = ("whatsapp_business_messaging", "whatsapp_business_management")

# Meta's documented throughput per number (Throughput page): 80 by default, 1,000 after the automatic
# upgrade, and a fixed 20 for numbers shared with the WhatsApp Business app (Coexistence).
THROUGHPUT_MPS = {"STANDARD": 80, "HIGH": 1000}
COEXISTENCE_MPS = 20
ECHO_SILENCE = timedelta(days=7)
ERROR_WINDOW = timedelta(hours=24)
PAYMENT_ERROR = 131042
THROUGHPUT_ERROR = 130429


# ---- pure checks --------------------------------------------------------------------------------


def app_token_for(settings: Settings) -> str:
    """The app access token: meta.app_token, else Meta's `app_id|app_secret` form."""
    meta = settings.meta
    if meta.app_token:
        return meta.app_token
    return f"{meta.app_id}|{meta.app_secret}" if meta.app_id else ""


def subscribe_fix(settings: Settings, fields: Sequence[str]) -> str:
    """How to add webhook fields to the app, by hand or with one Graph call."""
    meta = settings.meta
    all_fields = ",".join(dict.fromkeys([*REQUIRED_FIELDS, *COEXISTENCE_FIELDS, *USEFUL_FIELDS]))
    callback = (settings.server.public_url.rstrip("/") or "https://YOUR-HOST") + "/webhooks/meta"
    return (f"App Dashboard > WhatsApp > Configuration > Webhook fields: subscribe {', '.join(fields)}. "
            f"Or: curl -X POST '{meta.graph_url.rstrip('/')}/{meta.api_version}/{meta.app_id or 'APP_ID'}"
            f"/subscriptions' -d object={WABA_OBJECT} -d callback_url={callback} "
            f"-d verify_token=$META_VERIFY_TOKEN -d fields={all_fields} "
            "-d access_token='APP_ID|APP_SECRET'")


def check_fields(subscriptions: Sequence[Mapping[str, Any]], need_echoes: bool,
                 settings: Settings) -> CheckResult:
    """The app's whatsapp_business_account subscription covers the fields the bridge needs."""
    name = "webhook fields"
    sub = next((s for s in subscriptions if s.get("object") == WABA_OBJECT), None)
    if sub is None:
        required = [*REQUIRED_FIELDS, *(COEXISTENCE_FIELDS if need_echoes else ())]
        return failed(name, f"the app has no {WABA_OBJECT} webhook subscription",
                      subscribe_fix(settings, required))
    have = {str(f.get("name") if isinstance(f, Mapping) else f) for f in sub.get("fields") or []}
    required = [*REQUIRED_FIELDS, *(COEXISTENCE_FIELDS if need_echoes else ())]
    missing = [f for f in required if f not in have]
    if sub.get("active") is False:
        return failed(name, "the app's webhook subscription is inactive",
                      "App Dashboard > WhatsApp > Configuration: verify and save the callback URL")
    if missing:
        why = " (echoes of messages sent from the WhatsApp Business app)" if "smb_message_echoes" in missing \
            else ""
        return failed(name, f"missing webhook field{'s' if len(missing) > 1 else ''}: "
                            f"{', '.join(missing)}{why}", subscribe_fix(settings, missing))
    optional = [f for f in USEFUL_FIELDS if f not in have]
    if optional:
        return warned(name, f"subscribed: {', '.join(sorted(have & set(required)))}; "
                            f"not subscribed: {', '.join(optional)}", subscribe_fix(settings, optional))
    return passed(name, f"subscribed: {', '.join(required)}")


def check_throughput(channel: ChannelSettings, number: Mapping[str, Any]) -> CheckResult:
    """Configured mps against what Meta allows this number."""
    name = f"{channel.name}: throughput"
    throughput = number.get("throughput")
    level = str(throughput.get("level") or "").upper() if isinstance(throughput, Mapping) else ""
    shared = channel.mode is Mode.COEXISTENCE or bool(number.get("is_on_biz_app"))
    meta_mps = COEXISTENCE_MPS if shared else THROUGHPUT_MPS.get(level)
    basis = ("Meta documents a fixed 20 mps for numbers shared with the WhatsApp Business app"
             if shared else f"throughput level {level or 'unknown'}")
    if meta_mps is None:
        return warned(name, f"Meta reports throughput level {level or 'none'}; configured {channel.mps} mps",
                      "check the number in WhatsApp Manager > Phone numbers")
    if channel.mps > meta_mps:
        return failed(name, f"configured {channel.mps} mps but {basis} ({meta_mps} mps): sends will hit "
                            "130429", f"set channels[{channel.name}].mps to {meta_mps} or less")
    if channel.mps < meta_mps:
        note = " (Wabridge defaults Coexistence numbers to 5)" if shared else ""
        return passed(name, f"configured {channel.mps} mps, below Meta's {meta_mps} ({basis}){note}; "
                            "raise mps in app.yaml to send faster")
    return passed(name, f"configured {channel.mps} mps = Meta's {meta_mps} ({basis})")


def check_traffic(last_any: datetime | None, last_echo: datetime | None, last_message: datetime | None,
                  coexistence: bool, now: datetime) -> list[CheckResult]:
    """When the last webhook and the last echo arrived; a silent echo feed on a busy number is suspect."""
    results: list[CheckResult] = []
    if last_any is None:
        results.append(failed("last webhook", "no webhook received yet",
                              "check the callback URL and verify token in App Dashboard > WhatsApp > "
                              "Configuration, and that the app is subscribed to the WABA"))
    else:
        results.append(passed("last webhook", f"received {_ago(now - last_any)} ago"))
    if not coexistence:
        return results
    recent_messages = last_message is not None and now - last_message < ECHO_SILENCE
    if last_echo is not None and now - last_echo < ECHO_SILENCE:
        results.append(passed("last echo", f"received {_ago(now - last_echo)} ago"))
    elif recent_messages:
        seen = "never" if last_echo is None else f"last {_ago(now - last_echo)} ago"
        results.append(warned("last echo", f"customer messages arrive but no echo in 7 days ({seen}): "
                                           "replies sent from the phone app are not reaching Slack",
                              "check that the app subscribes to smb_message_echoes (App Dashboard > WhatsApp "
                              "> Configuration > Webhook fields)"))
    else:
        seen = "none yet" if last_echo is None else f"last {_ago(now - last_echo)} ago"
        results.append(passed("last echo", f"{seen} (no recent customer messages either)"))
    return results


def check_error_counts(payment: int, throughput: int) -> list[CheckResult]:
    """131042 (payment) and 130429 (throughput) over the last 24 hours."""
    results = []
    if payment:
        results.append(failed("131042 payment errors (24 h)", f"{payment} message(s) refused for a payment "
                              "issue", "WhatsApp Manager > Business Settings > Payment methods: add or fix "
                              "the payment method for the WABA, then resume paused campaigns"))
    else:
        results.append(passed("131042 payment errors (24 h)", "none"))
    if throughput:
        results.append(warned("130429 throughput errors (24 h)", f"{throughput} send(s) hit Meta's throughput "
                              "limit (they were retried)", "lower the channel's mps in app.yaml"))
    else:
        results.append(passed("130429 throughput errors (24 h)", "none"))
    return results


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


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def _header(headers: Any, name: str) -> str:
    if headers is None:
        return ""
    for key, value in dict(headers).items():
        if str(key).lower() == name:
            return str(value)
    return ""


# ---- checks with I/O ----------------------------------------------------------------------------


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


async def check_token(env: DoctorEnv, channel: ChannelSettings) -> CheckResult:
    """The channel's token is valid, carries the WhatsApp scopes and reaches the WABA."""
    name = f"{channel.name}: access token"
    fix = (f"Business Settings > System users: generate a token with whatsapp_business_messaging and "
           f"whatsapp_business_management for WABA {channel.waba_id}, then update channels[{channel.name}]"
           ".access_token")
    app_token = app_token_for(env.settings)
    if app_token:
        try:
            info = await env.graph.debug_token(channel.access_token, app_token)
        except GraphError as exc:
            return unreachable(name, "Meta's Graph API", env.settings.meta.graph_url, exc) or failed(
                name, f"could not inspect the token: {exc}", "check meta.app_id and meta.app_token (or "
                                                             "meta.app_secret)")
        if not info.get("is_valid"):
            reason = (info.get("error") or {}).get("message") if isinstance(info.get("error"), dict) else None
            return failed(name, f"invalid{': ' + reason if reason else ''}", fix)
        scopes = {str(s) for s in info.get("scopes") or []}
        missing = [s for s in REQUIRED_TOKEN_SCOPES if s not in scopes]
        if missing:
            return failed(name, f"token lacks {', '.join(missing)}", fix)
        targets = {str(t) for g in info.get("granular_scopes") or [] if isinstance(g, dict)
                   for t in g.get("target_ids") or []}
        if targets and channel.waba_id not in targets:
            return failed(name, f"token is not granted WABA {channel.waba_id}", fix)
        expires = info.get("expires_at")
        tail = "never expires" if not expires else \
            f"expires {datetime.fromtimestamp(int(expires), UTC):%Y-%m-%d}"
        return passed(name, f"valid, scoped for WhatsApp, {tail}")
    try:
        await env.graph.get_phone_number(channel.phone_number_id, channel.access_token, fields=("id",))
    except GraphError as exc:
        return unreachable(name, "Meta's Graph API", env.settings.meta.graph_url, exc) or failed(name, str(exc), fix)
    return passed(name, "valid (number readable; to also check its scopes: "
                        f"{env.settings.how_to_set('meta.app_id')})")


async def check_waba_subscription(env: DoctorEnv, channel: ChannelSettings) -> CheckResult:
    """The app is subscribed to the channel's WABA (else Meta sends it no webhooks for that WABA)."""
    name = f"{channel.name}: app subscribed to WABA"
    meta = env.settings.meta
    fix = (f"curl -X POST '{meta.graph_url.rstrip('/')}/{meta.api_version}/{channel.waba_id}/subscribed_apps' "
           f"-H 'Authorization: Bearer <channel token>'")
    try:
        apps = await env.graph.get_subscribed_apps(channel.waba_id, channel.access_token)
    except GraphError as exc:
        return unreachable(name, "Meta's Graph API", meta.graph_url, exc) or failed(name, str(exc), fix)
    ids = {str((a.get("whatsapp_business_api_data") or {}).get("id") or a.get("id") or "") for a in apps}
    if meta.app_id and meta.app_id in ids:
        return passed(name, f"app {meta.app_id} subscribed")
    if not meta.app_id and apps:
        return passed(name, f"{len(apps)} app(s) subscribed (to check it is this one: "
                            f"{env.settings.how_to_set('meta.app_id')})")
    return failed(name, f"app {meta.app_id or '?'} is not subscribed to WABA {channel.waba_id}", fix)


async def check_app_fields(env: DoctorEnv, channels: Sequence[ChannelSettings]) -> CheckResult:
    """GET /{app_id}/subscriptions: the fields the app receives."""
    settings = env.settings
    if not settings.meta.app_id:
        return failed("webhook fields", "meta.app_id is not set, so the app's webhook fields cannot be read",
                      f"{settings.how_to_set('meta.app_id')} (the App ID at the top of the App Dashboard); "
                      "meta.app_secret or meta.app_token then reads the fields")
    try:
        subs = await env.graph.get_app_subscriptions(settings.meta.app_id, app_token_for(settings))
    except GraphError as exc:
        return unreachable("webhook fields", "Meta's Graph API", settings.meta.graph_url, exc) or failed(
            "webhook fields", f"could not read the app's subscriptions: {exc}",
            "check meta.app_id and meta.app_token (an app token: APP_ID|APP_SECRET)")
    need_echoes = any(c.mode is Mode.COEXISTENCE for c in channels)
    return check_fields(subs, need_echoes, settings)


async def check_number(env: DoctorEnv, channel: ChannelSettings) -> CheckResult:
    """Throughput from the Graph API against the configured mps."""
    try:
        number = await env.graph.get_phone_number(
            channel.phone_number_id, channel.access_token,
            fields=("id", "throughput", "platform_type", "is_on_biz_app", "quality_rating"))
    except GraphError as exc:
        name = f"{channel.name}: throughput"
        return unreachable(name, "Meta's Graph API", env.settings.meta.graph_url, exc) or failed(
            name, f"could not read the number: {exc}", "check phone_number_id and the token")
    return check_throughput(channel, number)


async def _last_received(session: AsyncSession, *kinds: str) -> datetime | None:
    query = select(func.max(WebhookLog.received_at))
    if kinds:
        query = query.where(WebhookLog.event_type.in_(kinds))
    value = await session.scalar(query)
    return _aware(value)


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    return as_utc(value)


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


async def traffic_checks(env: DoctorEnv, channels: Sequence[ChannelSettings], now: datetime
                         ) -> list[CheckResult]:
    async with env.sessions() as session:
        last_any = await _last_received(session)
        last_echo = await _last_received(session, "smb_message_echo")
        last_message = await _last_received(session, "message")
        since = now - ERROR_WINDOW
        counts = {}
        for code in (PAYMENT_ERROR, THROUGHPUT_ERROR):
            statuses = await session.scalar(select(func.count()).select_from(MessageStatus).where(
                MessageStatus.error_code == code, MessageStatus.created_at >= since)) or 0
            counts[code] = int(statuses)
        # Send-time refusals: 130429s are counted as they happen (a recipient's error column is cleared when
        # a later attempt succeeds, so it cannot tell); 131042s stay on the recipients they failed.
        refused = await counts_since(session, since)
        counts[THROUGHPUT_ERROR] += sum(n for (_, code), n in refused.items() if code == THROUGHPUT_ERROR)
        counts[PAYMENT_ERROR] += int(await session.scalar(select(func.count()).select_from(CampaignRecipient).where(
            CampaignRecipient.error_code == PAYMENT_ERROR,
            or_(CampaignRecipient.sent_at >= since, CampaignRecipient.claimed_at >= since,
                CampaignRecipient.next_attempt_at >= since))) or 0)
    coexistence = any(c.mode is Mode.COEXISTENCE for c in channels)
    return [*check_traffic(last_any, last_echo, last_message, coexistence, now),
            *check_error_counts(counts[PAYMENT_ERROR], counts[THROUGHPUT_ERROR])]


def check_log_tables(stats: Sequence[TableStat], retention_days: float, now: datetime,
                     tz: str = "UTC") -> CheckResult:
    """Size and oldest row of each log table (in `tz`); a warning when rows outlive retention by over a day."""
    parts = []
    stale = []
    for st in stats:
        size = f", {st.bytes / 1_048_576:.1f} MB" if st.bytes is not None else ""
        oldest = _aware(st.oldest)
        age = f", oldest {day_time(oldest, tz)} ({_ago(now - oldest)})" if oldest else ""
        parts.append(f"{st.name} {st.rows:,} rows{size}{age}")
        if oldest is not None and now - oldest > timedelta(days=retention_days + 1):
            stale.append(st.name)
    detail = "; ".join(parts)
    if stale:
        return warned("log tables", detail,
                      f"{', '.join(stale)} keep rows past retention.days ({retention_days:g}): pending work is "
                      "never pruned, so check for deliveries or posts stuck with errors, and that a `serve` "
                      "with background workers runs")
    return passed("log tables", detail)


async def sync_checks(env: DoctorEnv, now: datetime) -> list[CheckResult]:
    """Business App syncs (contacts, history) asked of Meta that never completed or stalled."""
    from bot.onboarding.syncs import latest_views, sync_problems

    out = []
    for name, detail, fix, failure in sync_problems(await latest_views(env.sessions), now):
        out.append(failed(name, detail, fix) if failure else warned(name, detail, fix) if fix
                   else passed(name, detail))
    return out


def check_slack_backlog(lags: Sequence[ChannelLag]) -> list[CheckResult]:
    """A warning per Slack channel whose owed posts take minutes at Slack's per-channel rate."""
    long = [lag for lag in lags if lag.wait_seconds >= WARN_AFTER_SECONDS]
    if not long:
        owed = sum(lag.owed for lag in lags)
        return [passed("slack backlog", f"{owed} item(s) owed to Slack" if owed else "nothing owed to Slack")]
    return [warned(f"slack backlog {lag.channel}",
                   f"{lag.owed} item(s) owed: at least {_ago(timedelta(seconds=lag.wait_seconds))} at Slack's "
                   "one post per second per channel",
                   "check that the outbox worker runs (serve, or --role worker) and Slack answers; to spread "
                   "campaign replies, set campaign_replies_channel on the number") for lag in long]


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
