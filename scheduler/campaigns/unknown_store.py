"""Recipients left in flight by a silent process, and `unknown` ones: recovered, settled, offered again.

The rules are in `scheduler.campaigns.unknowns`; this module reads and writes the rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.workspace import in_scope
from scheduler.campaigns.records import CampaignStatus, RecipientStatus, RunStatus
from scheduler.campaigns.unknowns import orphan_fate, quiet_enough, recipient_of, settles_unknown
from storage import repository as repo
from storage.fencing import InHand
from storage.models import Campaign, CampaignRecipient, CampaignRun, Channel, as_utc, utcnow

R = CampaignRecipient
_TABLE = cast(Table, R.__table__)


async def recover_orphans(session: AsyncSession, silent_owners: set[int]) -> Counter[str]:
    """Take the recipients of silent owners back: each gets its `orphan_fate`; every claim on them is void."""
    if not silent_owners:
        return Counter()
    rows = (await session.execute(
        select(R.id, R.status, R.attempted_at, R.wamid)
        .where(R.owner_id.in_(silent_owners), R.status == RecipientStatus.SENDING.value)
        .order_by(R.id).with_for_update(skip_locked=True)
    )).all()
    return await _give_fates(session, rows, lambda ids: (_TABLE.c.id.in_(ids),
                                                         _TABLE.c.owner_id.in_(silent_owners)))


async def recover_own(session: AsyncSession, owner: int, in_hand: InHand) -> Counter[str]:
    """This process's own recipients that it no longer works on (a pass cut off by a database outage, a claim
    whose commit answer was lost), given the same fates as a silent process's.

    in_hand holds each recipient this process still works on with its claim's fence token; it is read after
    the rows, so a claim made meanwhile is either in it or not yet committed. Each row is matched on the fence
    read with it: a recipient written and claimed again meanwhile is left alone."""
    rows = (await session.execute(
        select(R.id, R.status, R.attempted_at, R.wamid, R.fence)
        .where(R.owner_id == owner, R.status == RecipientStatus.SENDING.value)
        .order_by(R.id).with_for_update(skip_locked=True)
    )).all()
    loose = [row for row in rows if not in_hand.holds(row.id, row.fence)]
    if not loose:
        return Counter()
    fences = {row.id: row.fence for row in loose}
    return await _give_fates(session, loose, lambda ids: (
        tuple_(_TABLE.c.id, _TABLE.c.fence).in_([(i, fences[i]) for i in ids]), _TABLE.c.owner_id == owner))


async def _give_fates(session: AsyncSession, rows: Sequence[Any],
                      held: Callable[[list[int]], tuple[ColumnElement[bool], ...]]) -> Counter[str]:
    """Each in-flight row gets its `orphan_fate` (sent, unknown, pending); held(ids) says whose rows they
    must still be for the update to apply.

    The rows were read locked (FOR UPDATE), skipping those another transaction is writing: a status webhook
    pinning its wamid on one must not be overwritten by a fate decided without it (`unknown` with a wamid
    is never settled again). A skipped row gets its fate on the next pass."""
    by_fate: dict[RecipientStatus, list[int]] = {}
    for row in rows:
        fate = orphan_fate(row.status, row.attempted_at, row.wamid)
        if fate is not None:
            by_fate.setdefault(fate, []).append(row.id)
    done: Counter[str] = Counter()
    now = utcnow()
    values: dict[RecipientStatus, dict[str, Any]] = {
        RecipientStatus.SENT: {"sent_at": now},
        RecipientStatus.UNKNOWN: {"error_title": "in flight when its sender stopped; not re-sent"},
        # Never attempted: the claim does not count as an attempt.
        RecipientStatus.PENDING: {"attempts": _TABLE.c.attempts - 1, "claimed_at": None},
    }
    for fate, ids in by_fate.items():
        result = await session.execute(
            update(_TABLE)
            .where(*held(ids), _TABLE.c.status == RecipientStatus.SENDING.value)
            .values(status=fate.value, owner_id=None, fence=_TABLE.c.fence + 1, **values[fate])
        )
        done[fate.value] += int(result.rowcount or 0)  # type: ignore[attr-defined]
        if fate is RecipientStatus.SENT:
            for wamid in (await session.scalars(select(R.wamid).where(R.id.in_(ids)))).all():
                if wamid:
                    await repo.apply_statuses(session, wamid)
    return done


async def note_callback(session: AsyncSession, data: str | None, wamid: str, status: str,
                        wa_id: str | None, error: tuple[int | None, str | None] = (None, None), *,
                        phone_number_id: str | None) -> bool:
    """Pin a status webhook's message on the recipient its callback data names, and settle the recipient
    if its outcome was not known. Call before `repository.apply_statuses`, which then folds in the rest.

    Only a status from the number the recipient's campaign sends from counts: the callback data is plain
    text any business can put on its own sends, and every number subscribed to the app reports here."""
    recipient_id = recipient_of(data)
    if recipient_id is None or not phone_number_id:
        return False
    if (await _numbers_of(session, {recipient_id})).get(recipient_id) != phone_number_id:
        return False
    return await _settle(session, recipient_id, wamid, status, wa_id, error)


async def _numbers_of(session: AsyncSession, recipient_ids: set[int]) -> dict[int, str]:
    """The phone_number_id each recipient's campaign sends from."""
    rows = (await session.execute(
        select(R.id, Channel.phone_number_id).join(CampaignRun, CampaignRun.id == R.run_id)
        .join(Campaign, Campaign.id == CampaignRun.campaign_id).join(Channel, Channel.id == Campaign.channel_id)
        .where(R.id.in_(recipient_ids))
    )).all()
    return {int(rid): str(pnid) for rid, pnid in rows}


async def _settle(session: AsyncSession, recipient_id: int, wamid: str, status: str, wa_id: str | None,
                  error: tuple[int | None, str | None]) -> bool:
    # Locked and read afresh: recovery may be turning this `sending` row `unknown` right now; decided on the
    # row as it was, the wamid would land on an `unknown` row that no later status settles.
    rec = await session.get(R, recipient_id, with_for_update=True, populate_existing=True)
    if rec is None or (wa_id and rec.wa_id != wa_id):
        return False  # not ours, or not the number the callback data was sent to
    if rec.wamid is None:
        rec.wamid = wamid
    elif rec.wamid != wamid:
        return False
    fate = settles_unknown(rec.status, status)
    if fate is RecipientStatus.SENT:
        rec.status, rec.sent_at, rec.error_code, rec.error_title = fate.value, utcnow(), None, None
    elif fate is RecipientStatus.FAILED:
        rec.status, rec.error_code, rec.error_title = fate.value, error[0], error[1]
    if fate is not None:
        rec.owner_id, rec.fence = None, rec.fence + 1  # any resend already claimed must not go out
    return True


@dataclass(frozen=True)
class CallbackReport:
    """A status webhook's fields that `note_callback` needs."""

    data: str
    wamid: str
    status: str
    wa_id: str | None
    error: tuple[int | None, str | None] = (None, None)
    phone_number_id: str | None = None  # the number the status came from (the webhook's metadata)


async def note_callbacks(session: AsyncSession, reports: list[CallbackReport]) -> int:
    """`note_callback` for a batch of status webhooks: one indexed read finds the few recipients still without
    a wamid (unknown, or offered again); only those are touched. Returns how many were."""
    named = {rid for r in reports if (rid := recipient_of(r.data)) is not None}
    if not named:
        return 0
    open_ids = set((await session.scalars(  # locked in id order, as recovery locks them (no deadlock)
        select(R.id).where(R.id.in_(named), R.wamid.is_(None)).order_by(R.id).with_for_update())).all())
    numbers = await _numbers_of(session, open_ids) if open_ids else {}
    touched = 0
    for r in reports:
        rid = recipient_of(r.data)
        if rid in open_ids and r.phone_number_id and numbers.get(rid) == r.phone_number_id:
            touched += await _settle(session, rid, r.wamid, r.status, r.wa_id, r.error)
    return touched


@dataclass(frozen=True)
class UnknownRun:
    """A run with recipients still `unknown` after the quiet period."""

    run_id: int
    campaign_id: int
    campaign_name: str
    slack_channel: str | None
    created_by: str | None
    count: int
    newest_id: int
    last_attempt: datetime


async def quiet_unknowns(session: AsyncSession, now: datetime, quiet: timedelta) -> list[UnknownRun]:
    """Runs whose `unknown` recipients have all been quiet for `quiet` (their last attempt at least that old)."""
    rows = (await session.execute(
        select(R.run_id, func.count(), func.max(R.id), func.max(func.coalesce(R.attempted_at, R.claimed_at)))
        .where(R.status == RecipientStatus.UNKNOWN.value, R.wamid.is_(None)).group_by(R.run_id)
    )).all()
    found: list[UnknownRun] = []
    for run_id, count, newest_id, last_attempt in rows:
        if last_attempt is None or not quiet_enough(as_utc(last_attempt), now, quiet):
            continue
        run = await session.get(CampaignRun, run_id)
        camp = await session.get(Campaign, run.campaign_id) if run else None
        if run is None or camp is None or camp.status == CampaignStatus.CANCELLED.value:
            continue
        found.append(UnknownRun(run_id, camp.id, camp.name, run.slack_channel or camp.slack_channel,
                                camp.created_by, int(count), int(newest_id), as_utc(last_attempt)))
    return found


async def unknown_count(session: AsyncSession, campaign_id: int) -> int:
    return int(await session.scalar(
        select(func.count()).select_from(R).join(CampaignRun, CampaignRun.id == R.run_id)
        .where(CampaignRun.campaign_id == campaign_id, R.status == RecipientStatus.UNKNOWN.value)
    ) or 0)


async def resend_unknown(session: AsyncSession, campaign_id: int, *, up_to: int | None = None) -> int:
    """Offer a campaign's `unknown` recipients for sending again (those with id <= up_to, when given: what
    the manager was shown); reopens their runs. Returns how many; 0 when already done (a second click)."""
    owner = await session.scalar(select(Campaign.slack_team).where(Campaign.id == campaign_id))
    if owner is not None and not in_scope(owner, f"campaign {campaign_id}"):
        return 0  # another workspace's campaign: a Slack request never reaches it
    runs = select(CampaignRun.id).where(CampaignRun.campaign_id == campaign_id,
                                        CampaignRun.status != RunStatus.CANCELLED.value)
    # One whose message Meta named (a wamid) did reach Meta: never offered again.
    where = [R.run_id.in_(runs), R.status == RecipientStatus.UNKNOWN.value, R.wamid.is_(None)]
    if up_to is not None:
        where.append(R.id <= up_to)
    run_ids = set((await session.scalars(select(R.run_id).where(*where).distinct())).all())
    result = await session.execute(
        update(R).execution_options(synchronize_session=False).where(*where)
        .values(status=RecipientStatus.PENDING.value, attempted_at=None, claimed_at=None, next_attempt_at=None,
                owner_id=None, fence=R.fence + 1, error_code=None,
                error_title="sent again: no status from Meta for its first attempt")
    )
    n = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if not n:
        return 0
    await session.execute(update(CampaignRun).where(CampaignRun.id.in_(run_ids),
                                                    CampaignRun.status == RunStatus.DONE.value)
                          .values(status=RunStatus.RUNNING.value, finished_at=None))
    await session.execute(update(Campaign).where(Campaign.id == campaign_id,
                                                 Campaign.status == CampaignStatus.DONE.value)
                          .values(status=CampaignStatus.RUNNING.value))
    return n
