"""What every process does every second for campaigns: take back the recipients of silent processes; and,
less often, look for `unknown` recipients to show or resend (`scheduler.campaigns.unknown_notice`)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import Settings
from bot.core.loop_health import LoopHealth
from bot.core.loops import CAMPAIGNS, SLACK_OUTBOX, WakeHub, forever, monitor_of
from scheduler.campaigns.records import RecipientStatus
from scheduler.campaigns.unknown_notice import check_unknowns
from scheduler.campaigns.unknown_store import recover_orphans
from storage.liveness import silent_workers
from storage.models import CampaignRecipient, utcnow

log = logging.getLogger(__name__)

ORPHAN_EVERY = 1.0
UNKNOWN_EVERY = 10.0


async def take_back_orphans(session: AsyncSession) -> Counter[str]:
    """Recipients held `sending` by processes now silent: sent, unknown or pending again (`orphan_fate`)."""
    owners = set((await session.scalars(
        select(CampaignRecipient.owner_id).where(CampaignRecipient.owner_id.is_not(None),
                                                 CampaignRecipient.status == RecipientStatus.SENDING.value)
        .distinct()
    )).all())
    silent = await silent_workers(session, among={o for o in owners if o is not None})
    return await recover_orphans(session, silent)


async def run_recovery(sessions: async_sessionmaker[AsyncSession], settings: Settings, *,
                       orphan_every: float = ORPHAN_EVERY, unknown_every: float = UNKNOWN_EVERY,
                       wakes: WakeHub | None = None, health: LoopHealth | None = None) -> None:
    """Loop forever (a background task of `serve`)."""
    loop = asyncio.get_running_loop()
    last_unknown = float("-inf")

    async def turn() -> None:
        nonlocal last_unknown
        async with sessions() as session, session.begin():
            done = await take_back_orphans(session)
        if done:
            log.warning("campaign recipients of silent processes taken back: %s", dict(done))
            if done.get(RecipientStatus.PENDING.value) and wakes is not None:
                wakes.wake(CAMPAIGNS)  # recipients to send again: look for them now, not at the next poll
        if loop.time() - last_unknown >= unknown_every:
            last_unknown = loop.time()
            async with sessions() as session, session.begin():
                noticed, resent = await check_unknowns(session, settings, utcnow())
            if noticed or resent:
                log.info("unknown campaign recipients: %s notices owed, %s resent", noticed, resent)
                if wakes is not None:
                    wakes.wake(SLACK_OUTBOX, CAMPAIGNS)  # the notices to post, the recipients to resend

    await forever(turn, orphan_every, monitor=monitor_of(health, "campaign recovery", log), doing="recovery pass")
