"""Doctor's checks of what the database saw: webhooks arriving, Meta's error counts, the Slack backlog, log tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.config import ChannelSettings, Mode
from bot.core.readable import day_time
from bot.ops.checks import CheckResult, failed, passed, warned
from bot.ops.checks import all_passed as all_passed  # re-exported for the commands that run doctor
from bot.ops.doctor_env import DoctorEnv, ago
from bot.slack.backlog import WARN_AFTER_SECONDS, ChannelLag
from storage.models import CampaignRecipient, MessageStatus, WebhookLog, as_utc
from storage.retention import TableStat
from storage.send_errors import counts_since

ECHO_SILENCE = timedelta(days=7)


ERROR_WINDOW = timedelta(hours=24)


PAYMENT_ERROR = 131042


THROUGHPUT_ERROR = 130429


def check_traffic(last_any: datetime | None, last_echo: datetime | None, last_message: datetime | None,
                  coexistence: bool, now: datetime) -> list[CheckResult]:
    """When the last webhook and the last echo arrived; a silent echo feed on a busy number is suspect."""
    results: list[CheckResult] = []
    if last_any is None:
        results.append(failed("last webhook", "no webhook received yet",
                              "check the callback URL and verify token in App Dashboard > WhatsApp > "
                              "Configuration, and that the app is subscribed to the WABA"))
    else:
        results.append(passed("last webhook", f"received {ago(now - last_any)} ago"))
    if not coexistence:
        return results
    recent_messages = last_message is not None and now - last_message < ECHO_SILENCE
    if last_echo is not None and now - last_echo < ECHO_SILENCE:
        results.append(passed("last echo", f"received {ago(now - last_echo)} ago"))
    elif recent_messages:
        seen = "never" if last_echo is None else f"last {ago(now - last_echo)} ago"
        results.append(warned("last echo", f"customer messages arrive but no echo in 7 days ({seen}): "
                                           "replies sent from the phone app are not reaching Slack",
                              "check that the app subscribes to smb_message_echoes (App Dashboard > WhatsApp "
                              "> Configuration > Webhook fields)"))
    else:
        seen = "none yet" if last_echo is None else f"last {ago(now - last_echo)} ago"
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
        age = f", oldest {day_time(oldest, tz)} ({ago(now - oldest)})" if oldest else ""
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


def check_slack_backlog(lags: Sequence[ChannelLag]) -> list[CheckResult]:
    """A warning per Slack channel whose owed posts take minutes at Slack's per-channel rate."""
    long = [lag for lag in lags if lag.wait_seconds >= WARN_AFTER_SECONDS]
    if not long:
        owed = sum(lag.owed for lag in lags)
        return [passed("slack backlog", f"{owed} item(s) owed to Slack" if owed else "nothing owed to Slack")]
    return [warned(f"slack backlog {lag.channel}",
                   f"{lag.owed} item(s) owed: at least {ago(timedelta(seconds=lag.wait_seconds))} at Slack's "
                   "one post per second per channel",
                   "check that the outbox worker runs (serve, or --role worker) and Slack answers; to spread "
                   "campaign replies, set campaign_replies_channel on the number") for lag in long]
