"""One person's traces in WhatsApp groups: their entry in each group's participants and the messages they sent
there (storage.erasure.Person, within the channels in scope). The group, its thread and everyone else's
messages stay; the bridge's posts of the person's messages in the thread (every part, and the files it uploaded)
are redacted one by one (returned as posts and files); a parent that carried one is refreshed instead."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.identity_hash import USERNAME
from bot.core.origin import Direction
from storage import repository as repo
from storage.erasure import Person
from storage.models import Conversation, Message, MessageStatus, WhatsAppGroup, utcnow
from storage.redactions import outbox_results, posts_of


def names_person(member: dict[str, Any], person: Person) -> bool:
    """Whether a participant entry or a message's sender is this person (any of their ids)."""
    ids = {v for k, v in person.ids if k != USERNAME}
    usernames = {v.lstrip("@").lower() for k, v in person.ids if k == USERNAME}
    username = str(member.get("username") or "").lstrip("@").lower()
    return bool((member.get("wa_id") and member["wa_id"] in ids) or (member.get("user_id") and member["user_id"] in ids)
                or (username and username in usernames))


async def erase_from_groups(session: AsyncSession, person: Person, channel_ids: Sequence[int] | None,
                            record_id: int) -> tuple[dict[str, int], list[list[str]]]:
    """Take the person out of the groups' participants and delete their group messages; returns counts and what
    to redact in Slack: posts ([channel, ts, workspace, "post"]) and files ([channel, file id, workspace, "file"])."""
    where = [] if channel_ids is None else [Conversation.channel_id.in_(list(channel_ids))]
    groups = (await session.execute(select(WhatsAppGroup, Conversation.id, Conversation.slack_channel,
                                           Conversation.slack_team, Conversation.slack_thread_ts)
                                    .join(Conversation, Conversation.contact_id == WhatsAppGroup.contact_id)
                                    .where(*where))).all()
    counts = {"group_memberships": 0, "group_messages": 0}
    posts: list[list[str]] = []
    for group, conv_id, slack_channel, team, thread_ts in groups:
        kept = [p for p in group.participants or [] if not names_person(p, person)]
        if len(kept) != len(group.participants or []):
            counts["group_memberships"] += 1
            group.participants = kept
            await repo.owe_parent_refresh(session, conv_id, f"erased:{record_id}", utcnow())
        rows = (await session.execute(select(Message.id, Message.wamid, Message.source, Message.slack_ts,
                                             Message.slack_posts, Message.content)
                                      .where(Message.conversation_id == conv_id,
                                             Message.direction == Direction.INBOUND))).all()
        theirs = [r for r in rows if names_person(dict((r.content or {}).get("group_sender") or {}), person)]
        if not theirs:
            continue
        wamids = [r.wamid for r in theirs if r.wamid]
        if wamids:
            await session.execute(delete(MessageStatus).where(MessageStatus.wamid.in_(wamids)))
        results = await outbox_results(session, [r.id for r in theirs if r.slack_posts is None])
        await session.execute(delete(Message).where(Message.id.in_([r.id for r in theirs])))
        counts["group_messages"] += len(theirs)
        if not slack_channel:
            continue
        for r in theirs:
            made, files = posts_of(r.source, r.slack_ts, r.slack_posts, results.get(f"msg:{r.id}"))
            for ts in made:
                if ts == thread_ts:  # the parent carried it: re-rendered without it, the group's header kept
                    await repo.owe_parent_refresh(session, conv_id, f"erased:{record_id}", utcnow())
                else:
                    posts.append([str(slack_channel), ts, str(team), "post"])
            posts += [[str(slack_channel), f, str(team), "file"] for f in files]
    return counts, posts
