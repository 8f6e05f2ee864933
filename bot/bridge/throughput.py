"""Meta's throughput refusals fed back from every send path: 130429 slows the number in the shared throttle,
130429 and 131056 are counted per channel (doctor and /metrics read the counts; see
`bot/app/throughput_gauge.py`)."""

from __future__ import annotations

import logging

from bot.core.config import ChannelSettings
from bot.deps import Deps
from bot.meta.errors import GraphError, SendAction
from scheduler.throttle import ThrottleUnavailable
from storage.send_errors import COUNTED_CODES, count_send_error

log = logging.getLogger(__name__)

REPLY_PENALTY = 1.0  # seconds the number is held after a 130429 without Retry-After


async def after_send_error(deps: Deps, channel: ChannelSettings, exc: GraphError) -> None:
    """Penalise the number on 130429 and count the refusal; never raises (the send already failed)."""
    if exc.action is SendAction.THROTTLE:
        try:
            await deps.throttle.penalize(channel.phone_number_id, exc.retry_after or REPLY_PENALTY)
        except ThrottleUnavailable:
            log.warning("could not slow %s after a 130429: the throttle is unavailable", channel.name)
    channel_id = deps.channel_ids.get(channel.phone_number_id)
    if exc.code in COUNTED_CODES and channel_id is not None:
        try:
            await count_send_error(deps.sessions, channel_id, int(exc.code or 0))
        except Exception as err:  # a count is bookkeeping; the reply's outcome is already decided
            log.warning("could not count Meta error %s on %s: %s", exc.code, channel.name, err)
