"""The recipients' queue in the database: claiming, recording outcomes, recovering after a crash.

How a recipient moves: `pending` -> claimed in a batch (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite
every write transaction holds the database lock and the UPDATE is conditional on `pending`) and marked
`sending` in a commit made BEFORE any call to Meta -> `sent` with its wamid (or failed / retried / skipped)
in a batch's result commit. A process that dies leaves its batch `sending`; once the lease has passed,
recovery turns those into `unknown`: they may or may not have been sent, and re-sending blindly could send
twice.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, exists, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.identity_hash import wa_id_hash
from bot.meta.errors import GraphError
from scheduler.campaigns import progress
from scheduler.campaigns.jobs import alert
from scheduler.campaigns.policy import Claimed, Outcome, Result
from scheduler.campaigns.records import CampaignStatus, RecipientStatus, RunStatus
from scheduler.campaigns.unknown_store import recover_own
from storage import erasure
from storage import repository as repo
from storage.fencing import InHand, claim_values
from storage.models import Campaign, CampaignRecipient, CampaignRun, Contact, MessageStatus, as_utc, utcnow

log = logging.getLogger(__name__)

R = CampaignRecipient
_TABLE = cast(Table, R.__table__)


class RecipientQueue:
    """Every SQL statement of the campaign runner; one per process, shared by its runs."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], lease: float, *,
                 owner: Callable[[], int | None] | None = None,
                 guard: Callable[[], Callable[[], bool]] | None = None, salt: bytes | None = None) -> None:
        self._sessions = sessions
        self._lease = lease
        self._salt = salt  # of the hashes erased people are kept out of campaigns by (privacy.salt)
        # This process's worker id and heartbeat guard: claims are then bound to its liveness (taken back by
        # scheduler.campaigns.recovery once it is silent) and fenced.
        self._owner = owner or (lambda: None)
        self._guard = guard
        # Recipients this process claimed and still works on -> their claim's fence token: added before the
        # claim commits, dropped once their outcome is written (or their pass ends). Its own `sending` rows
        # missing here were cut off (a database outage ended their pass, a claim's commit answer was lost):
        # `release_own` gives them their fates without waiting for this process to fall silent.
        self.in_hand = InHand()

    async def run_status(self, run_id: int) -> str | None:
        async with self._sessions() as session:
            status = await session.scalar(select(CampaignRun.status).where(CampaignRun.id == run_id))
        return None if status is None else str(status)

    async def running_runs(self) -> list[int]:
        async with self._sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(CampaignRun.id)
                        .where(CampaignRun.status == RunStatus.RUNNING.value)
                        .order_by(CampaignRun.id)
                    )
                ).all()
            )

    async def recover(self, now: datetime | None = None) -> int:
        """Mark recipients left `sending` past the lease as `unknown` (never re-sent blindly)."""
        now = now or utcnow()
        cutoff = now - timedelta(seconds=self._lease)
        live = select(CampaignRun.id).where(
            CampaignRun.status.in_((RunStatus.RUNNING.value, RunStatus.PAUSED.value, RunStatus.CANCELLED.value))
        )
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(R)
                .where(
                    R.run_id.in_(live),
                    R.status == RecipientStatus.SENDING.value,
                    R.claimed_at < cutoff,
                    R.owner_id.is_(None),  # claims bound to a process are taken back by its silence instead
                )
                .values(
                    status=RecipientStatus.UNKNOWN.value, error_title="in flight when its sender stopped; not re-sent"
                )
            )
            n = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if n:
            log.warning("campaign runner: %s recipients were in flight when a sender died; marked unknown", n)
        return n

    async def _erased(self, session: AsyncSession, ids: list[int]) -> set[int]:
        """Recipients whose data was erased on request: they stay opted out, by the hash of their id."""
        if self._salt is None:
            return set()
        salt = self._salt
        rows = (await session.execute(select(CampaignRecipient.id, CampaignRecipient.wa_id)
                                      .where(CampaignRecipient.id.in_(ids)))).all()
        hashes = {r.id: wa_id_hash(salt, r.wa_id) for r in rows}
        erased = await erasure.is_suppressed(session, list(hashes.values()))
        return {i for i, h in hashes.items() if h in erased}

    async def claim(self, run_id: int, limit: int, *, marketing: bool) -> list[Claimed]:
        """Mark up to limit due recipients `sending` and commit, before anything is sent to Meta."""
        while True:
            claimed, skipped = await self._claim_once(run_id, limit, marketing)
            if claimed or not skipped:
                return claimed
            # A whole batch of opted-out contacts was skipped: look again rather than report "nothing left".

    async def _claim_once(self, run_id: int, limit: int, marketing: bool) -> tuple[list[Claimed], bool]:
        now = utcnow()
        claimable = and_(
            R.run_id == run_id,
            R.status == RecipientStatus.PENDING.value,
            or_(R.next_attempt_at.is_(None), R.next_attempt_at <= now),
        )
        async with self._sessions() as session, session.begin():
            query = select(R.id).where(claimable).limit(limit)
            if session.bind.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = list((await session.scalars(query)).all())
            if not ids:
                return [], False
            skipped = False
            if marketing:
                # Opt-outs that came in after the run started are honoured here, just before sending.
                opted = set(
                    (
                        await session.scalars(
                            select(R.id)
                            .join(Contact, Contact.wa_id == R.wa_id)
                            .where(R.id.in_(ids), Contact.opted_out.is_(True))
                        )
                    ).all()
                )
                opted |= await self._erased(session, ids)
                if opted:
                    skipped = True
                    await session.execute(
                        update(R)
                        .where(R.id.in_(opted), R.status == RecipientStatus.PENDING.value)
                        .values(status=RecipientStatus.SKIPPED.value, error_title="opted out of marketing")
                    )
                    ids = [i for i in ids if i not in opted]
            if not ids:
                return [], skipped
            owner = self._owner()
            owned = claim_values(_TABLE, owner) if owner is not None else {"owner_id": None}
            rows = (
                await session.execute(
                    update(R)
                    .where(R.id.in_(ids), R.status == RecipientStatus.PENDING.value)
                    .values(status=RecipientStatus.SENDING.value, claimed_at=now, attempts=R.attempts + 1,
                            attempted_at=None, **owned)
                    .returning(R.id, R.wa_id, R.fields, R.attempts, R.fence)
                )
            ).all()
            if owner is not None:
                # In hand before the commit: `release_own` must never see the committed claim without it.
                taken = [(int(r.id), int(r.fence)) for r in rows]
                self.in_hand.take(taken)
                try:
                    await session.commit()
                except BaseException:
                    # Claimed or not (a lost answer), this process will not send them: `release_own` puts
                    # back what did commit.
                    self.in_hand.drop(taken)
                    raise
        guard = self._guard() if self._guard is not None else None
        claimed = [Claimed(r.id, r.wa_id, dict(r.fields or {}), int(r.attempts),
                           int(r.fence) if owner is not None else None, guard) for r in rows]
        return sorted(claimed, key=lambda c: c.id), skipped

    def forget(self, claims: list[Claimed]) -> None:
        """This process no longer works on these claims (their pass ended): whatever is still `sending` of
        them is left to `release_own`."""
        self.in_hand.drop((c.id, c.fence) for c in claims if c.fence is not None)

    async def release_own(self) -> Counter[str]:
        """Give this process's cut-off recipients their fates: `unknown` if their request may have left,
        `pending` if not, `sent` if Meta named their message (see `in_hand`)."""
        owner = self._owner()
        if owner is None:
            return Counter()
        async with self._sessions() as session, session.begin():
            return await recover_own(session, owner, self.in_hand)

    async def refresh(self, ids: list[int]) -> None:
        """Extend the lease of a batch still being worked on (a long throttle penalty, a slow Meta)."""
        if not ids:
            return
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(R).where(R.id.in_(ids), R.status == RecipientStatus.SENDING.value).values(claimed_at=utcnow())
            )

    async def next_retry_in(self, run_id: int) -> float | None:
        """Seconds until the earliest deferred recipient is due; None when nothing is pending at all."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(func.count(), func.min(R.next_attempt_at)).where(
                        R.run_id == run_id, R.status == RecipientStatus.PENDING.value
                    )
                )
            ).one()
        if not row[0]:
            return None
        soonest = row[1]
        if soonest is None:
            return 0.0
        return max(0.0, (as_utc(soonest) - utcnow()).total_seconds())

    async def write(self, run_id: int, campaign_id: int, results: list[Result]) -> None:
        """Record a batch of outcomes in one transaction (one statement per kind of outcome)."""
        if not results:
            return
        now = utcnow()
        table = cast(Table, R.__table__)
        rid: Any = bindparam("rid")
        expected = RecipientStatus.SENDING.value
        by_kind: dict[Outcome, list[dict[str, Any]]] = {}
        pause: Result | None = None
        opt_outs: list[Result] = []
        for res in results:
            err = res.error
            title = res.note or (err.explanation if err else None)
            row: dict[str, Any] = {"rid": res.recipient.id, "code": err.code if err else None,
                                   "title": title[:500] if title else None,
                                   "b_owner": self._owner() if res.recipient.fence is not None else None,
                                   "b_fence": res.recipient.fence}
            if res.outcome is Outcome.SENT:
                row["wamid"] = res.wamid
            elif res.outcome is Outcome.RETRY:
                row["due"] = now + timedelta(seconds=res.delay)
            elif res.outcome is Outcome.PAUSE:
                pause = pause or res
            elif res.outcome is Outcome.OPT_OUT:
                opt_outs.append(res)
            kind = {Outcome.OPT_OUT: Outcome.FAILED, Outcome.PAUSE: Outcome.RELEASE}.get(res.outcome, res.outcome)
            if res.outcome is Outcome.PAUSE:
                row["keep_error"] = True
            by_kind.setdefault(kind, []).append(row)
        # Still this claim's: same owner and token (claims made without an owner have no token to match).
        # Rows another process took over (this one was silent too long) match nothing and are skipped: their
        # outcome is the new claimant's, or recovery's and Meta's status webhooks'.
        bound = any(res.recipient.fence is not None for res in results)
        held = (and_(table.c.owner_id == bindparam("b_owner"), table.c.fence == bindparam("b_fence")) if bound
                else true())
        mine = and_(table.c.id == rid, table.c.status == expected, held)
        statements: dict[Outcome, Any] = {
            # Also over `unknown`: recovery may have given up on a slow send that did go out.
            Outcome.SENT: update(table).where(table.c.id == rid, or_(
                and_(table.c.status == expected, held), table.c.status == RecipientStatus.UNKNOWN.value)).values(
                status=RecipientStatus.SENT.value, wamid=bindparam("wamid"), sent_at=now, error_code=None,
                error_title=None, owner_id=None),
            Outcome.RETRY: update(table).where(mine).values(
                status=RecipientStatus.PENDING.value, next_attempt_at=bindparam("due"), owner_id=None,
                error_code=bindparam("code"), error_title=bindparam("title")),
            Outcome.FAILED: update(table).where(mine).values(owner_id=None,
                status=RecipientStatus.FAILED.value, error_code=bindparam("code"), error_title=bindparam("title")),
            Outcome.UNKNOWN: update(table).where(mine).values(owner_id=None,
                status=RecipientStatus.UNKNOWN.value, error_code=bindparam("code"), error_title=bindparam("title")),
        }
        async with self._sessions() as session, session.begin():
            for kind, rows in by_kind.items():
                if kind is Outcome.RELEASE:
                    # Not attempted (or refused by Meta for an account-wide reason): the attempt does not count.
                    plain = [r for r in rows if not r.get("keep_error")]
                    refused = [r for r in rows if r.get("keep_error")]
                    if plain:
                        await session.execute(update(table).where(mine).values(
                            status=RecipientStatus.PENDING.value, attempts=table.c.attempts - 1, owner_id=None,
                            attempted_at=None), plain)
                    if refused:
                        await session.execute(update(table).where(mine).values(
                            status=RecipientStatus.PENDING.value, attempts=table.c.attempts - 1, owner_id=None,
                            attempted_at=None, error_code=bindparam("code"), error_title=bindparam("title")), refused)
                    continue
                await session.execute(statements[kind], rows)
            for res in opt_outs:
                code = res.error.code if res.error else None
                contact = await repo.contact_for(session, res.recipient.wa_id)
                await repo.set_opt_out(session, contact.id, True, reason=f"Meta error {code}: stopped marketing")
            wamids = [r["wamid"] for r in by_kind.get(Outcome.SENT, [])]
            if wamids:
                # Statuses can arrive before the send call returns: fold in any that came first.
                early = (await session.scalars(select(MessageStatus.wamid).where(
                    MessageStatus.wamid.in_(wamids)).distinct())).all()
                for wamid in early:
                    await repo.apply_statuses(session, wamid)
        self.forget([res.recipient for res in results])
        if pause is not None:
            await self.pause(run_id, campaign_id, pause.note or "account problem", pause.error)

    async def pause(self, run_id: int, campaign_id: int, reason: str, err: GraphError | None) -> None:
        """Pause a campaign from inside (an account-wide error); the first process to do so alerts."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(CampaignRun)
                .where(CampaignRun.id == run_id, CampaignRun.status == RunStatus.RUNNING.value)
                .values(status=RunStatus.PAUSED.value)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return
            camp = await session.get(Campaign, campaign_id)
            if camp is not None and camp.status in (CampaignStatus.RUNNING.value, CampaignStatus.SCHEDULED.value):
                camp.status = CampaignStatus.PAUSED.value
                camp.pause_reason = reason[:500]
            name = camp.name if camp else str(campaign_id)
            await alert(
                session,
                f"{campaign_id}:paused:{run_id}:{utcnow().isoformat()}",
                f"campaign {campaign_id}",
                "paused",
                f":warning: Campaign #{campaign_id} {name} paused: {reason}. "
                f"Fix it, then `/campaign resume {campaign_id}`.",
                campaign_id=campaign_id,
            )
            await progress.enqueue(session, run_id, f"paused:{utcnow().isoformat()}")
        log.warning("campaign %s paused: %s", campaign_id, reason)

    async def finish_if_done(self, run_id: int) -> bool:
        """Close a run with nothing pending or in flight, and post its final report."""
        async with self._sessions() as session, session.begin():
            left = await session.scalar(
                select(
                    exists().where(
                        R.run_id == run_id, R.status.in_((RecipientStatus.PENDING.value, RecipientStatus.SENDING.value))
                    )
                )
            )
            if left:
                return False
            result = await session.execute(
                update(CampaignRun)
                .where(CampaignRun.id == run_id, CampaignRun.status == RunStatus.RUNNING.value)
                .values(status=RunStatus.DONE.value, finished_at=utcnow())
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            run = await session.get(CampaignRun, run_id)
            camp = await session.get(Campaign, run.campaign_id) if run else None
            if camp is not None and camp.schedule_kind != "cron" and camp.status == CampaignStatus.RUNNING.value:
                camp.status = CampaignStatus.DONE.value
            await progress.enqueue(session, run_id, "final")
        log.info("campaign run %s finished", run_id)
        return True
