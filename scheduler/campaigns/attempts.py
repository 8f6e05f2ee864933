"""`attempted_at`, committed just before a recipient's request leaves: what tells, after a crash, a recipient
that may have been sent (`unknown`) from one that was only claimed (back to `pending`).

Senders granted by the throttle at about the same moment share one commit, so the mark costs each send
about one commit's latency, not one commit each. That latency is measured (``lead()``) and senders take
their throttle slots that far ahead, so it does not slow the campaign either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from sqlalchemy import tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.campaigns.policy import Claimed, Outcome, Result
from scheduler.campaigns.records import RecipientStatus
from storage.models import CampaignRecipient, utcnow

log = logging.getLogger(__name__)
R = CampaignRecipient

MAX_LEAD = 0.06  # a slower database delays requests past their slots (rate lost), never before them


@dataclass
class Lead:
    """How long before its request a sender takes its throttle slot: the 95th percentile of its waits for
    the mark, tracked a step at a time (no samples kept).

    It starts high and moves slowly. A lead that shrinks costs nothing, but one that grows while the
    pacer (not the window) sets the pace, as in a run's first second, leaves a gap between sends; a mark
    that outlasts the lead delays its send (rate lost) but never brings it forward.
    """

    value: float = 0.05
    quantile: float = 0.95
    step: float = 0.0005

    def add(self, seconds: float) -> None:
        if seconds > self.value:
            self.value = min(MAX_LEAD, self.value + self.step * self.quantile)
        else:
            self.value = max(0.0, self.value - self.step * (1 - self.quantile))


@dataclass
class _Mark:
    recipient_id: int
    owner: int | None
    fence: int | None
    done: asyncio.Future[bool]


class AttemptMarks:
    """One per runner; `mark()` returns once the mark is committed."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._waiting: list[_Mark] = []
        self._flusher: asyncio.Task[None] | None = None
        self._lead = Lead()

    def lead(self) -> float:
        """How long before its request a sender should take its throttle slot."""
        return self._lead.value

    async def before_send(self, rec: Claimed, owner: int | None, retry_in: float) -> Result | None:
        """None when rec may be sent now (its attempt is committed); else the result to record instead:
        a database failure retries later; a recipient taken over by another process (this one went unheard
        too long) is not sent here, as that could be a second message."""
        try:
            marked = await self.mark(rec.id, owner if rec.fence is not None else None, rec.fence)
        except Exception as exc:
            log.warning("cannot mark campaign recipient %s attempted (%s); later", rec.id, exc)
            return Result(rec, Outcome.RETRY, delay=retry_in, note=str(exc))
        if not marked or (rec.guard is not None and not rec.guard()):
            log.warning("campaign recipient %s was taken over by another process; not sent here", rec.id)
            return Result(rec, Outcome.RELEASE)
        return None

    async def mark(self, recipient_id: int, owner: int | None, fence: int | None) -> bool:
        """Commit the mark; False when the recipient is no longer this claim's (taken over): do not send."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Mark(recipient_id, owner, fence, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        started = time.monotonic()
        marked = await asyncio.shield(done)
        self._lead.add(time.monotonic() - started)
        return marked

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                marked = await self._write(batch)
            except Exception as exc:
                for m in batch:
                    if not m.done.done():
                        m.done.set_exception(exc)
                continue
            for m in batch:
                if not m.done.done():
                    m.done.set_result(m.recipient_id in marked)

    async def _write(self, batch: list[_Mark]) -> set[int]:
        """One statement for the recipients claimed with an owner (matched on owner and fence), one for
        those without; returns the ids marked."""
        now = utcnow()
        fenced: dict[int, list[tuple[int, int | None]]] = {}
        plain: list[int] = []
        for m in batch:
            if m.owner is None:
                plain.append(m.recipient_id)
            else:
                fenced.setdefault(m.owner, []).append((m.recipient_id, m.fence))
        sending = R.status == RecipientStatus.SENDING.value
        statements = [update(R).where(R.id.in_(plain), sending)] if plain else []
        statements += [update(R).where(tuple_(R.id, R.fence).in_(pairs), R.owner_id == owner, sending)
                       for owner, pairs in fenced.items()]
        marked: set[int] = set()
        async with self._sessions() as session, session.begin():
            for statement in statements:
                result = await session.execute(statement.values(attempted_at=now).returning(R.id)
                                               .execution_options(synchronize_session=False))
                marked.update(result.scalars().all())
        return marked
