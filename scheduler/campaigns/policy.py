"""What a campaign send's outcome means for its recipient: pure rules, no I/O.

- 130429 (throughput): the caller penalises the number; the same recipient is retried in place up to
  ``throttle_retries`` times, then goes back to `pending` after the hold.
- 131056 (pair rate): back to `pending` after ``pair_retry``; others go on.
- 131026, 131049, 131050, 131051 and other per-recipient errors: `failed`; 131050 also opts out.
- 131042, 190, 368, 131031 and other account-wide errors: the campaign pauses (nothing was sent).
- a request sent but not answered (read timeout, dropped connection): `unknown`, never re-sent blindly.
- 5xx, connection failures: back to `pending` with exponential backoff, up to ``max_attempts``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from bot.meta.errors import GraphError, SendAction
from bot.meta.sender import may_have_been_sent


@dataclass(frozen=True)
class RunnerConfig:
    """Timings and sizes; the defaults suit production, tests shorten them."""

    lease: float = 60.0  # a recipient `sending` for longer than this, unrefreshed, was left by a dead sender
    poll: float = 0.5  # how often new runs are looked for
    status_interval: float = 0.25  # how often a run's status is re-read (pause/cancel latency)
    pair_retry: float = 6.0  # 131056: wait before trying that recipient again
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    max_attempts: int = 8
    penalty: float = 1.0  # 130429: first hold of the whole number, doubling while it repeats
    penalty_max: float = 30.0
    throttle_retries: int = 5  # 130429 retries of one recipient in place before it goes back to pending
    progress_interval: float = 5.0
    slot_hold: float = 15.0  # a send unanswered this long no longer counts against the cap (> Graph timeout)
    batch: int | None = None  # default: from the number's cap
    workers: int | None = None


class Outcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    OPT_OUT = "opt_out"
    RETRY = "retry"
    RELEASE = "release"  # not attempted (stopped): back to pending, attempt not counted
    UNKNOWN = "unknown"
    PAUSE = "pause"


@dataclass
class Claimed:
    id: int
    wa_id: str
    fields: dict[str, Any]
    attempts: int
    fence: int | None = None  # this claim's token, when claims are bound to the process's liveness
    guard: Callable[[], bool] | None = None  # false once this process may have lost the claim


@dataclass
class Result:
    recipient: Claimed
    outcome: Outcome
    wamid: str | None = None
    delay: float = 0.0
    error: GraphError | None = None
    note: str | None = None


def read_timeout(err: GraphError) -> bool:
    """True when the request was sent but no answer came: Meta may have accepted it."""
    cause = err.__cause__
    return err.maybe_delivered or isinstance(cause, (httpx.ReadTimeout, httpx.RemoteProtocolError)) \
        or may_have_been_sent(err)


def penalty_hold(err: GraphError, config: RunnerConfig, streak: int) -> float:
    """How long a 130429 holds the whole number: Meta's Retry-After, else doubling with the streak."""
    return err.retry_after or min(config.penalty_max, config.penalty * 2 ** (streak - 1))


def decide(err: GraphError, rec: Claimed, config: RunnerConfig, *, throttled: int, hold: float) -> Result | None:
    """The result of a failed send; None to retry the same recipient at once (a 130429 within its retries)."""
    action = err.action
    if action is SendAction.THROTTLE:
        if throttled < config.throttle_retries:
            return None
        return Result(rec, Outcome.RETRY, delay=hold, error=err)
    if action is SendAction.RETRY_RECIPIENT_LATER:
        return Result(rec, Outcome.RETRY, delay=config.pair_retry, error=err)
    if action is SendAction.OPT_OUT:
        return Result(rec, Outcome.OPT_OUT, error=err)
    if action in (SendAction.FAIL_RECIPIENT, SendAction.WINDOW_CLOSED):
        return Result(rec, Outcome.FAILED, error=err)
    if action is SendAction.PAUSE_AND_ALERT:
        return Result(rec, Outcome.PAUSE, error=err, note=f"{err.explanation} (Meta error {err.code})")
    if read_timeout(err):
        note = "no answer from Meta after the request was sent; not re-sent"
        return Result(rec, Outcome.UNKNOWN, error=err, note=note)
    return backoff(rec, err, config)


def backoff(rec: Claimed, err: GraphError, config: RunnerConfig) -> Result:
    """A transient failure: try again later, exponentially, until ``max_attempts``."""
    if rec.attempts >= config.max_attempts:
        return Result(rec, Outcome.FAILED, error=err, note=f"gave up after {rec.attempts} attempts")
    delay = min(config.backoff_max, config.backoff_base * 2 ** (rec.attempts - 1))
    return Result(rec, Outcome.RETRY, delay=delay, error=err)
