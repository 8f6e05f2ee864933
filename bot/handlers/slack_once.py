"""Acting once on Slack interactions that send or change something (see `bot/slack/once.py`)."""

from __future__ import annotations

import logging
from typing import Any

from bot.bridge.reply_threads import BridgedThread
from bot.bridge.throughput import after_send_error
from bot.deps import Deps
from bot.meta.errors import GraphError
from bot.slack import once

log = logging.getLogger(__name__)


async def settle_send_failure(deps: Deps, thread: BridgedThread, key: str, exc: BaseException,
                              answer: dict[str, Any]) -> None:
    """Keep the claim when the template may have gone (no answer from Meta), else free it for a retry."""
    if isinstance(exc, GraphError):
        await after_send_error(deps, thread.channel, exc)
    if isinstance(exc, GraphError) and exc.maybe_delivered:
        await once.settle(deps.sessions, key, answer)
    else:
        await once.release(deps.sessions, key)


async def first_delivery(deps: Deps, name: str, body: dict[str, Any], thread: BridgedThread, user: str) -> bool:
    """Claim a shortcut's delivery; False for a replay (Slack gives each invocation its own action_ts)."""
    stamp = str(body.get("action_ts") or body.get("trigger_id") or "")
    key = once.action_key(name, user, str(thread.conversation_id), stamp)
    if await once.claim(deps.sessions, key) is not None:
        log.info("%s shortcut %s by %s already handled", name, stamp, user)
        return False
    await once.settle(deps.sessions, key, {})
    return True
