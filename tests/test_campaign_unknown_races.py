"""A status webhook and the recovery of a silent sender's recipient at the same moment (PostgreSQL, where
they run side by side): whichever commits first, the recipient ends `sent` with the wamid Meta named, never
`unknown` with a wamid (which no later status settles)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from scheduler.campaigns.recovery import take_back_orphans
from scheduler.campaigns.unknown_store import CallbackReport, note_callbacks
from scheduler.campaigns.unknowns import callback_data
from storage import liveness
from storage.models import CampaignRecipient, utcnow
from tests.helpers import PNID, make_settings
from tests.test_campaign_support import Db, make_campaign, numbers, open_db, start_run

R = CampaignRecipient
pytestmark = pytest.mark.postgres


async def _in_flight_of_a_dead_sender(db: Db) -> tuple[int, str]:
    """One recipient whose request may have left (`sending`, attempted) and whose sender fell silent."""
    [wa_id] = numbers(1)
    run_id = await start_run(db, await make_campaign(db, [wa_id]))
    dead = await liveness.register(db.sessions, "dead", now=utcnow() - timedelta(seconds=30))
    async with db.sessions() as s, s.begin():
        rid = (await s.scalars(select(R.id).where(R.run_id == run_id))).one()
        await s.execute(update(R).where(R.id == rid).values(
            status="sending", owner_id=dead, fence=1, attempts=1, claimed_at=utcnow(), attempted_at=utcnow()))
    return rid, wa_id


async def _state(db: Db, rid: int) -> tuple[str, str | None]:
    async with db.sessions() as s:
        row = (await s.execute(select(R.status, R.wamid).where(R.id == rid))).one()
    return row.status, row.wamid


async def test_recovery_while_a_status_pins_the_wamid_leaves_the_recipient_to_be_sent(pg_url: str) -> None:
    db = await open_db(make_settings(pg_url))
    try:
        rid, wa_id = await _in_flight_of_a_dead_sender(db)
        report = CallbackReport(callback_data(rid), "wamid.LATE", "sent", wa_id, phone_number_id=PNID)
        async with db.sessions() as status_tx:
            await status_tx.begin()
            assert await note_callbacks(status_tx, [report]) == 1
            await status_tx.flush()  # the wamid is written, not yet committed

            async def recover() -> None:
                async with db.sessions() as s, s.begin():
                    await take_back_orphans(s)

            recovery = asyncio.create_task(recover())
            await asyncio.sleep(0.5)  # the recovery pass runs while the status transaction is open
            await status_tx.commit()
        await asyncio.wait_for(recovery, 10)
        await recover()  # the next pass (every second in serve)
        assert await _state(db, rid) == ("sent", "wamid.LATE")
    finally:
        await db.close()


async def test_a_status_arriving_while_recovery_marks_the_recipient_unknown_settles_it(pg_url: str) -> None:
    db = await open_db(make_settings(pg_url))
    try:
        rid, wa_id = await _in_flight_of_a_dead_sender(db)
        report = CallbackReport(callback_data(rid), "wamid.LATE", "delivered", wa_id, phone_number_id=PNID)

        async def status() -> None:
            async with db.sessions() as s, s.begin():
                await note_callbacks(s, [report])

        async with db.sessions() as recovery_tx:
            await recovery_tx.begin()
            assert dict(await take_back_orphans(recovery_tx)) == {"unknown": 1}
            webhook = asyncio.create_task(status())
            await asyncio.sleep(0.5)  # the status batch runs while the recovery transaction is open
            await recovery_tx.commit()
        await asyncio.wait_for(webhook, 10)
        assert await _state(db, rid) == ("sent", "wamid.LATE")
    finally:
        await db.close()
