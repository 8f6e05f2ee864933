"""Send what the bridge owes customers on its own (`auto_replies`: away messages, satisfaction surveys), each
at most once.

A sender takes a row by moving it from `pending` to `sending` in one statement, under its worker id and a new
fence token (storage/fencing.py): of several processes one wins. Before the Graph call it looks again (window
open, not opted out, still switched on; an away message: the number still closed in the same period and nobody
answered; a survey: no other within the quiet days) and writes `attempted_at` (fenced: a claim taken over
meanwhile sends nothing); after it, the message is stored as sent by the bridge and mirrored into the thread.
Nothing sent (the throttle or the network refused before a byte left): the row goes back to `pending`. A
request that may have reached Meta is never repeated.

A sender that stops mid-way (the process died, a database outage cut its work off) leaves its row `sending`.
Every pass first recovers such rows (`recover`), as campaign recipients are: those of a silent process (its
heartbeat stopped, bot.core.liveness), this process's own that it no longer works on, and unowned ones older
than ORPHAN_AFTER. One never attempted is `pending` again (its checks run again before it goes); one whose
request may have left is `failed`, and its thread says it may not have reached the customer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.bridge import csat
from bot.bridge.away import AWAY, answered_since, fill
from bot.bridge.csat import CSAT
from bot.bridge.throughput import after_send_error
from bot.core.away import away_applies
from bot.core.config import ChannelSettings, ThreadReplies
from bot.core.loops import AUTO_REPLIES, forever
from bot.core.origin import Direction, Source
from bot.core.window import window_open
from bot.deps import Deps
from bot.meta.errors import GraphError, explain
from bot.meta.graph import SendResult
from bot.ops.sla import hours_for
from bot.slack import render
from bot.slack.outbox import wake_outbox
from scheduler.throttle import Priority, ThrottleUnavailable
from storage import repository as repo
from storage.fencing import InHand
from storage.liveness import silent_workers
from storage.models import AutoReply, Channel, Contact, Conversation, as_utc, utcnow
from storage.outbox_kinds import MessagePost, Note, enqueue

log = logging.getLogger(__name__)

INTERVAL = 1.0
BATCH = 20
SEND_TIMEOUT = 30.0  # seconds a send may wait for the number's throttle
PENDING, SENDING, SENT, SKIPPED, FAILED = "pending", "sending", "sent", "skipped", "failed"
WHAT = {AWAY: "the away message", CSAT: "the satisfaction survey"}
# An unowned claim (a sender without a heartbeat, or one from before claims were recorded) this old is
# abandoned: far longer than a send takes, throttle wait (SEND_TIMEOUT) and Graph timeout included.
ORPHAN_AFTER = timedelta(minutes=2)
INTERRUPTED = "the bridge stopped while sending it; it may or may not have reached the customer"


class AutoReplies:
    """The sender: `run_once` sends what is pending now, `run` keeps doing it."""

    def __init__(self, deps: Deps, owner: Callable[[], int | None] | None = None) -> None:
        self.deps = deps
        self._owner = owner or (lambda: None)  # this process's worker id (its heartbeat), when it has one
        self.hand = InHand()  # the rows this process is sending now, with their fence tokens

    async def run_once(self, now: datetime | None = None) -> int:
        """Recover interrupted sends, then send (or settle) the pending rows this process takes; returns how
        many it took."""
        await self.recover()
        async with self.deps.sessions() as s:
            ids = (await s.scalars(select(AutoReply.id).where(AutoReply.state == PENDING)
                                   .order_by(AutoReply.id).limit(BATCH))).all()
        taken = 0
        for reply_id in ids:
            token = await self._take(reply_id)
            if token is None:
                continue
            taken += 1
            try:
                await self._deliver(reply_id, token, now or utcnow())
            finally:  # settled, or cut off: either way no longer in this process's hands (see recover)
                self.hand.drop([(reply_id, token)])
        return taken

    async def recover(self, now: datetime | None = None) -> int:
        """Settle the rows whose sender stopped mid-way: never attempted, `pending` again; maybe sent, `failed`
        with a note in the thread (not sent again: a send to Meta is not idempotent). Returns how many."""
        now = now or utcnow()
        me = self._owner()
        recovered, noted = 0, 0
        async with self.deps.sessions() as s, s.begin():
            rows = (await s.execute(select(
                AutoReply.id, AutoReply.kind, AutoReply.conversation_id, AutoReply.owner_id, AutoReply.fence,
                AutoReply.attempted_at, AutoReply.updated_at).where(AutoReply.state == SENDING))).all()
            if not rows:
                return 0
            others = {r.owner_id for r in rows if r.owner_id is not None and r.owner_id != me}
            silent = await silent_workers(s, among=others) if others else set()
            # The hand is read after the rows: a claim committed before the read is in it.
            loose = [r for r in rows if not self.hand.holds(r.id, r.fence) and (
                r.owner_id in silent or (r.owner_id is not None and r.owner_id == me)
                or (r.owner_id is None and as_utc(r.updated_at) <= now - ORPHAN_AFTER))]
            for r in loose:
                held = (AutoReply.id == r.id, AutoReply.state == SENDING, AutoReply.fence == r.fence)
                if r.attempted_at is None:  # its request never left: safe to send, after the checks again
                    done = await s.execute(update(AutoReply).where(*held, AutoReply.attempted_at.is_(None))
                                           .values(state=PENDING, owner_id=None, fence=AutoReply.fence + 1,
                                                   updated_at=now))
                    recovered += int(getattr(done, "rowcount", 0) or 0)
                    continue
                done = await s.execute(update(AutoReply).where(*held).values(
                    state=FAILED, reason=INTERRUPTED, fence=AutoReply.fence + 1, updated_at=now))
                if getattr(done, "rowcount", 0) == 1:
                    recovered += 1
                    noted += 1
                    what = WHAT.get(r.kind, r.kind)
                    text = (f":warning: {what.capitalize()} may not have reached the customer: the bridge stopped "
                            "while sending it. It is not sent again; check the customer's chat before resending.")
                    await enqueue(s, Note(r.conversation_id, text, mrkdwn=True),
                                  dedupe_key=f"{r.kind}-interrupted:{r.id}")
        if recovered:
            log.warning("%d away message(s) or survey(s) interrupted by a stopped sender recovered (%d noted)",
                        recovered, noted)
        if noted:
            wake_outbox(self.deps)
        return recovered

    async def run(self, interval: float = INTERVAL) -> None:
        """Send what is owed until cancelled; woken (AUTO_REPLIES) after new deliveries are applied."""
        wake = self.deps.wakes.listen(AUTO_REPLIES)

        async def turn() -> None:
            await self.run_once()

        try:  # forever waits with wait_until: a shutdown's cancellation is kept (bot.core.waits)
            await forever(turn, interval, wake, monitor=self.deps.loop_health.loop("auto-replies", log),
                          doing="sending away messages and surveys")
        finally:
            self.deps.wakes.forget(AUTO_REPLIES, wake)

    async def _take(self, reply_id: int) -> int | None:
        """Claim a pending row for this process; its fence token, or None when another took it."""
        async with self.deps.sessions() as s, s.begin():
            done = await s.execute(update(AutoReply).where(AutoReply.id == reply_id, AutoReply.state == PENDING)
                                   .values(state=SENDING, owner_id=self._owner(), fence=AutoReply.fence + 1,
                                           attempted_at=None, updated_at=utcnow()))
            if getattr(done, "rowcount", 0) != 1:
                return None
            token = int(await s.scalar(select(AutoReply.fence).where(AutoReply.id == reply_id)) or 0)
            self.hand.take([(reply_id, token)])  # in hand before the claim commits (see recover)
            return token

    @staticmethod
    def _held(reply_id: int, token: int) -> tuple[Any, ...]:
        return AutoReply.id == reply_id, AutoReply.state == SENDING, AutoReply.fence == token

    async def _attempt(self, reply_id: int, token: int) -> bool:
        """Write down that the request is about to leave; False when the claim was taken over (send nothing)."""
        async with self.deps.sessions() as s, s.begin():
            done = await s.execute(update(AutoReply).where(*self._held(reply_id, token))
                                   .values(attempted_at=utcnow()))
            return bool(getattr(done, "rowcount", 0) == 1)

    async def _settle(self, reply_id: int, token: int, state: str, reason: str | None = None) -> None:
        async with self.deps.sessions() as s, s.begin():
            await s.execute(update(AutoReply).where(*self._held(reply_id, token)).values(
                state=state, reason=(reason or "")[:255] or None, updated_at=utcnow(),
                **({"owner_id": None, "attempted_at": None} if state == PENDING else {})))

    async def _deliver(self, reply_id: int, token: int, now: datetime) -> None:
        async with self.deps.sessions() as s:
            found = (await s.execute(
                select(AutoReply, Conversation, Contact, Channel)
                .join(Conversation, Conversation.id == AutoReply.conversation_id)
                .join(Contact, Contact.id == Conversation.contact_id)
                .join(Channel, Channel.id == Conversation.channel_id).where(AutoReply.id == reply_id))).first()
            if found is None:
                return
            row, conv, contact, number = found
            channel = self.deps.settings.channel_by_phone_number_id(number.phone_number_id)
            why_not = await self._why_not(s, row, conv, contact, channel, now)
        what = WHAT.get(row.kind, row.kind)
        if why_not is not None or channel is None:
            log.info("%s for conversation %s not sent: %s", what, conv.id, why_not)
            await self._settle(reply_id, token, SKIPPED, why_not)
            return
        try:
            await self.deps.throttle.acquire(channel.phone_number_id, channel.mps, Priority.INTERACTIVE,
                                             timeout=SEND_TIMEOUT)
            if not await self._attempt(reply_id, token):
                log.warning("%s for conversation %s was taken over before it was sent; not sent here", what, conv.id)
                return
            titles: list[str] | None = None
            if row.kind == CSAT:
                survey = self.deps.settings.csat_of(channel)
                text, choices = survey.texts[survey.language].question, csat.buttons(reply_id, survey)
                titles = [title for _, title in choices]
                result = await self.deps.graph.send_buttons(channel.phone_number_id, channel.access_token,
                                                            contact.wa_id, text, choices)
            else:
                text = self._away_text(channel, contact)
                result = await self.deps.graph.send_text(channel.phone_number_id, channel.access_token,
                                                         contact.wa_id, text)
        except (ThrottleUnavailable, TimeoutError) as exc:
            log.info("%s for conversation %s waits: %s", what, conv.id, exc or type(exc).__name__)
            await self._settle(reply_id, token, PENDING)  # nothing left this process: tried again next round
            return
        except GraphError as exc:
            await self._failed(row, token, channel, exc)
            return
        self._count(channel, "ok")
        await self._record(row, result, text, now, titles)

    @staticmethod
    def _away_text(channel: ChannelSettings, contact: Contact) -> str:
        name = contact.address_book_name or contact.profile_name or ""
        return fill(channel.away_message, {"name": name, "first_name": name.split()[0] if name.split() else "",
                                           "number": render.format_number(contact.wa_id), "business": channel.name})

    async def _why_not(self, session: AsyncSession, row: AutoReply, conv: Conversation, contact: Contact,
                       channel: ChannelSettings | None, now: datetime) -> str | None:
        """Why an owed message must not go out now; None when it may."""
        settings = self.deps.settings
        if row.kind == CSAT:
            found = csat.why_not(settings, channel, conv, contact, now)
            if found is None and channel is not None and await csat.recent_survey(
                    session, conv.id, now, settings.csat_of(channel).quiet_days, but=row.id):
                return "the conversation had a survey within csat.quiet_days"
            return found
        if channel is None:
            return "the number is no longer configured"
        if row.kind != AWAY or not away_applies(settings, channel):
            return "away messages are off for this number"
        if channel.thread_replies is ThreadReplies.NOTES_ONLY:
            return "the number's channel is notes-only"
        if contact.opted_out:
            return "the customer opted out"
        if not window_open(conv.last_customer_message_at, now):
            return "the customer's 24-hour window has closed"
        clock = hours_for(settings, channel)
        since = clock.closed_since(now) if clock is not None else None
        if since is None or since.isoformat() != row.period_key:
            return "the number has opened since"
        if await answered_since(session, conv.id, since):
            return "someone answered the customer meanwhile"
        return None

    async def _failed(self, row: AutoReply, token: int, channel: ChannelSettings, exc: GraphError) -> None:
        self._count(channel, "error")
        await after_send_error(self.deps, channel, exc)
        what = WHAT.get(row.kind, row.kind)
        if exc.code is None and exc.http_status is None and not exc.maybe_delivered:
            log.info("%s for conversation %s waits: %s", what, row.conversation_id, exc)
            await self._settle(row.id, token, PENDING)  # WhatsApp unreachable, nothing written: tried again
            return
        why = f"Meta error {exc.code}: {explain(exc.code)}" if exc.code is not None else \
            "no answer from WhatsApp; it may or may not have been sent"
        log.warning("%s for conversation %s not sent: %s", what, row.conversation_id, exc)
        async with self.deps.sessions() as s, s.begin():
            done = await s.execute(update(AutoReply).where(*self._held(row.id, token))
                                   .values(state=FAILED, reason=why[:255], updated_at=utcnow()))
            if getattr(done, "rowcount", 0) != 1:
                return  # taken over meanwhile: recovery has settled it and said so
            text = f":warning: {what.capitalize()} was not sent: {render.escape(why)}"
            await enqueue(s, Note(row.conversation_id, text, mrkdwn=True), dedupe_key=f"{row.kind}-failed:{row.id}")
        wake_outbox(self.deps)

    async def _record(self, row: AutoReply, result: SendResult, text: str, now: datetime,
                      titles: list[str] | None = None) -> None:
        """Store the sent message as the bridge's (a survey as its question, its buttons kept in the content),
        and owe the thread its post."""
        conv_id = row.conversation_id
        content: dict[str, object] = {"auto": row.kind, **({"buttons": titles} if titles else {})}
        async with self.deps.sessions() as s, s.begin():
            message_id = await repo.insert_message(s, {
                "wamid": result.wamid, "conversation_id": conv_id, "direction": Direction.OUTBOUND,
                "source": Source.BRIDGE, "type": "text", "text": text, "content": content,
                "wa_timestamp": now,
            })
            await s.execute(update(AutoReply).where(AutoReply.id == row.id).values(
                state=SENT, wamid=result.wamid, message_id=message_id, updated_at=utcnow()))
            if message_id is not None:
                await repo.apply_statuses(s, result.wamid)
                await enqueue(s, MessagePost(message_id, conv_id), dedupe_key=f"msg:{message_id}", order_ts=now)
        wake_outbox(self.deps)

    def _count(self, channel: ChannelSettings, outcome: str) -> None:
        self.deps.metrics.whatsapp_sends.labels(channel.name, Source.BRIDGE, outcome).inc()
