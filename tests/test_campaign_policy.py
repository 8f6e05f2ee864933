"""What a failed campaign send means for its recipient: the pure rules, without a database or Meta."""

from __future__ import annotations

import aiohttp
import httpx
import pytest

from bot.meta.errors import GraphError
from scheduler.campaigns.policy import Claimed, Outcome, RunnerConfig, decide, penalty_hold

CONFIG = RunnerConfig(max_attempts=3, throttle_retries=2, pair_retry=6.0, backoff_base=2.0)


def _rec(attempts: int = 1) -> Claimed:
    return Claimed(1, "919800000001", {}, attempts)


def _meta(code: int, status: int = 400) -> GraphError:
    return GraphError(status, code)


def _cut_off(cause: BaseException) -> GraphError:
    try:
        raise GraphError(None, None, message="no answer") from cause
    except GraphError as err:
        return err


@pytest.mark.parametrize(("code", "outcome"), [
    (131026, Outcome.FAILED), (131050, Outcome.OPT_OUT), (131042, Outcome.PAUSE), (190, Outcome.PAUSE),
    (131056, Outcome.RETRY),
])
def test_meta_errors_map_to_their_outcome(code: int, outcome: Outcome) -> None:
    result = decide(_meta(code), _rec(), CONFIG, throttled=0, hold=0.0)
    assert result is not None and result.outcome is outcome


def test_130429_retries_in_place_then_defers_by_the_hold() -> None:
    err = _meta(130429)
    assert decide(err, _rec(), CONFIG, throttled=1, hold=2.0) is None
    deferred = decide(err, _rec(), CONFIG, throttled=2, hold=2.0)
    assert deferred is not None and deferred.outcome is Outcome.RETRY and deferred.delay == 2.0
    assert penalty_hold(err, CONFIG, 1) < penalty_hold(err, CONFIG, 3) <= CONFIG.penalty_max


@pytest.mark.parametrize("cause", [httpx.ReadTimeout("slow"), aiohttp.ServerDisconnectedError(),
                                   aiohttp.SocketTimeoutError("slow")])
def test_a_request_sent_but_unanswered_is_unknown_never_retried(cause: BaseException) -> None:
    result = decide(_cut_off(cause), _rec(), CONFIG, throttled=0, hold=0.0)
    assert result is not None and result.outcome is Outcome.UNKNOWN


def test_transient_failures_back_off_exponentially_then_give_up() -> None:
    err = _cut_off(httpx.ConnectError("refused"))
    delays = [decide(err, _rec(n), CONFIG, throttled=0, hold=0.0) for n in (1, 2)]
    assert [r.delay for r in delays if r is not None] == [2.0, 4.0]
    last = decide(err, _rec(3), CONFIG, throttled=0, hold=0.0)
    assert last is not None and last.outcome is Outcome.FAILED
