"""A customer's data on request: export it, or erase it from the database and redact their Slack threads.

The CLI (`wabridge contact export|forget`) and the message shortcuts share these. An erasure is recorded
first (`erasures`: who asked, when, the salted hashes of the person's ids, nothing else that names them),
then carried out in steps that a stop can resume (`resume`, also run by the retention pass).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.config import ConfigError, Settings
from bot.core.identity_hash import identity_hash, salt_of
from bot.deps import SlackPace
from bot.ops.export import normalize_number
from bot.ops.slack_redaction import Pace, SlackUnavailable, delete_file, redact_post, redact_thread, redacted_text
from storage import erasure
from storage.erasure_groups import erase_from_groups
from storage.models import Erasure, utcnow
from storage.person_data import collect

log = logging.getLogger(__name__)

MESSAGE_BATCH = 500  # messages deleted per transaction: short enough not to hold up live writes
LOG_SPAN = 500  # deliveries read per transaction when looking for the person's in webhook_logs
LOG_ROUNDS, LOG_WAIT = 20, 1.0  # how often, and how many seconds apart, queued deliveries naming them are awaited
# The retention pass leaves younger erasures to the process that took the request (a long thread is redacted at
# Slack's pace for chat.update, about 50 posts a minute).
RESUME_AFTER = timedelta(minutes=30)


ClientFor = Callable[[str], Awaitable[AsyncWebClient | None]]
"""The Slack client of a workspace (bot.core.workspace key), None when there is none to use now."""


def one_client(slack: AsyncWebClient | None, team: str | None = None) -> ClientFor | None:
    """Redact with slack: every thread, or (team given) only the threads of that workspace."""
    if slack is None:
        return None

    async def client_for(thread_team: str) -> AsyncWebClient | None:
        return slack if team is None or thread_team == team else None

    return client_for


class PersonNotFound(Exception):
    """No contact matches what was asked for; the message says what was looked for."""


@dataclass(frozen=True)
class Outcome:
    """What an erasure did: rows by kind, and what Slack would not redact (each with Slack's reason)."""

    erasure_id: int
    state: str
    counts: dict[str, int] = field(default_factory=dict)
    slack_refused: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        done = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(self.counts.items()) if n) or "no rows"
        text = f"Erasure #{self.erasure_id} ({self.state}): {done}."
        if self.slack_refused:
            text += f" Slack refused {len(self.slack_refused)}: " + "; ".join(
                f"{r.get('what', 'thread')} {r.get('ts', '')} ({r.get('error')})" for r in self.slack_refused[:10])
        return text


def query_values(query: str, default_region: str) -> list[str]:
    """What a typed number, user id or username may be stored as."""
    text = query.strip()
    values = [text, text.lstrip("@")]
    if text and re.sub(r"[\s\-()+.]", "", text).isdigit():
        values.append(normalize_number(text, default_region))
    return [v for v in values if v]


async def _person(session: AsyncSession, settings: Settings, query: str,
                  channel_ids: Sequence[int] | None) -> erasure.Person:
    person = await erasure.find_person(session, query_values(query, settings.default_region), channel_ids)
    if person is None:
        raise PersonNotFound(f"no contact matches {query!r} (a number, a user id or a username)")
    return person


def _hashes(settings: Settings, person: erasure.Person, *, required: bool) -> list[str]:
    try:
        salt = salt_of(settings)
    except ConfigError:
        if required:
            raise
        return []
    return sorted({identity_hash(salt, kind, value) for kind, value in person.ids})


async def export_person(sessions: async_sessionmaker[AsyncSession], settings: Settings, query: str, *,
                        channel_ids: Sequence[int] | None = None, exported_by: str = "") -> dict[str, Any]:
    """Everything stored about the person query names, in scope, as one JSON-ready document."""
    async with sessions() as session:
        person = await _person(session, settings, query, channel_ids)
        data = await collect(session, person, channel_ids, _hashes(settings, person, required=False))
    return {"exported_at": utcnow().isoformat(), "exported_by": exported_by,
            "scope": "all numbers" if channel_ids is None else {"channel_ids": sorted(channel_ids)}, **data}


async def forget(sessions: async_sessionmaker[AsyncSession], settings: Settings, slack: ClientFor | None,
                 query: str, *, requested_by: str, channel_ids: Sequence[int] | None = None,
                 pacer: SlackPace | None = None) -> Outcome:
    """Erase the person query names (ConfigError first when no salt is set); each Slack thread is redacted with
    its workspace's client from slack (a thread without one waits for a later pass), its calls in their turn in
    `pacer` when given."""
    salt_of(settings)
    async with sessions() as session, session.begin():
        person = await _person(session, settings, query, channel_ids)
        record = await erasure.begin(session, person, requested_by=requested_by,
                                     hashes=_hashes(settings, person, required=True), channel_ids=channel_ids)
        record_id = record.id
    log.info("erasure %s started by %s: %d conversations", record_id, requested_by, len(person.conversation_ids))
    return await carry_on(sessions, settings, slack, record_id, pacer=pacer)


async def carry_on(sessions: async_sessionmaker[AsyncSession], settings: Settings, slack: ClientFor | None,
                   record_id: int, *, pacer: SlackPace | None = None) -> Outcome:
    """Take an erasure as far as it can go from wherever it stopped."""
    async with sessions() as session:
        record = await session.get(Erasure, record_id)
        if record is None:
            raise PersonNotFound(f"no erasure #{record_id}")
        state = record.state
    if state == erasure.ERASING:
        await _erase_rows(sessions, record_id)
    if slack is not None:
        await _redact(sessions, settings, slack, record_id, pacer)
    async with sessions() as session:
        record = await session.get(Erasure, record_id)
        assert record is not None
        return Outcome(record.id, record.state, dict(record.counts or {}), list(record.slack_refused or []))


async def _erase_rows(sessions: async_sessionmaker[AsyncSession], record_id: int) -> None:
    async with sessions() as session:
        record = await session.get(Erasure, record_id)
        assert record is not None
        person = await erasure.person_of(session, record)
        numbers = await erasure.numbers_of(session, record.scope)
    removed = 0
    while True:
        async with sessions() as session, session.begin():
            n = await erasure.erase_messages(session, person.conversation_ids, MESSAGE_BATCH)
        removed += n
        if n < MESSAGE_BATCH:
            break
    logs, start = 0, 0
    for _ in range(LOG_ROUNDS):
        after, waiting = start, None
        while person.values:
            async with sessions() as session, session.begin():
                scan = await erasure.erase_logs(session, person.values, after, LOG_SPAN, numbers)
            logs += scan.deleted
            if waiting is None and scan.first_waiting is not None:
                waiting = scan.first_waiting
            if scan.last_id == after:
                break
            after = scan.last_id
        if waiting is None:
            break
        # Deliveries naming them are still queued: once applied, what they stored goes too (finish below).
        start = waiting - 1
        await asyncio.sleep(LOG_WAIT)
    async with sessions() as session, session.begin():
        record = await session.get(Erasure, record_id)
        assert record is not None
        in_groups, posts = await erase_from_groups(session, person, record.scope, record_id)
        record.counts = {**(record.counts or {}), "messages": removed, "webhook_logs": logs, **in_groups}
        record.threads = [*(record.threads or []), *posts]
        counts = await erasure.finish(session, record, person, record.scope)
    log.info("erasure %s: rows erased", record_id, extra={"erased": counts})


async def _redact(sessions: async_sessionmaker[AsyncSession], settings: Settings, slack: ClientFor,
                  record_id: int, pacer: SlackPace | None) -> None:
    async with sessions() as session:
        record = await session.get(Erasure, record_id)
        if record is None or record.state != erasure.REDACTING:
            return
        threads = [erasure.thread_of(t) for t in record.threads or []]
        posts = {erasure.thread_of(t)[:2] for t in record.threads or [] if erasure.is_single_post(t)}
        files = {erasure.thread_of(t)[:2] for t in record.threads or [] if erasure.is_file(t)}
        requested_at = record.requested_at
    text = redacted_text(requested_at.astimezone(ZoneInfo(settings.timezone)))
    for channel, ts, team in threads:
        client = await slack(team)
        if client is None:
            log.info("erasure %s: no Slack client for workspace %s yet; its thread waits", record_id, team)
            continue
        pace = Pace(pacer, team) if pacer is not None else None
        try:
            if (channel, ts) in files:
                refused = await delete_file(client, channel, ts, pace)
            else:
                redact = redact_post if (channel, ts) in posts else redact_thread
                refused = await redact(client, channel, ts, text, pace)
        except (SlackUnavailable, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("erasure %s: Slack thread %s/%s left for the next pass: %s", record_id, channel, ts, exc)
            return
        async with sessions() as session, session.begin():
            record = await session.get(Erasure, record_id)
            assert record is not None
            record.threads = [t for t in record.threads if erasure.thread_of(t)[:2] != (channel, ts)]
            record.slack_refused = [*(record.slack_refused or []), *refused]
    async with sessions() as session, session.begin():
        record = await session.get(Erasure, record_id)
        assert record is not None
        if not record.threads:
            record.state, record.finished_at = erasure.DONE, utcnow()


async def resume(sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 slack: ClientFor | None, *, idle: timedelta | None = None, pacer: SlackPace | None = None
                 ) -> list[Outcome]:
    """Carry every unfinished erasure on (after a stop), or only those requested more than `idle` ago (younger
    ones may still be at work in the process that took the request); returns what each one did."""
    async with sessions() as session:
        ids = [r.id for r in await erasure.unfinished(session, None if idle is None else utcnow() - idle)]
    return [await carry_on(sessions, settings, slack, i, pacer=pacer) for i in ids]
