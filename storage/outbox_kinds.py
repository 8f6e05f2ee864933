"""What the Slack outbox carries: one frozen dataclass per kind, which names the thread it is ordered in.

A kind is stored as `slack_outbox.kind` (the class's `KIND`) and `payload` (its fields as JSON, those of its
row's columns left out), the same shapes rows had before these classes existed: rows queued by an earlier
version are still read, and an earlier version still reads the rows queued here. `enqueue(session, Note(...))`
owes Slack one post; the outbox's consumers register a handler per class (bot.slack.outbox_handlers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, ClassVar, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.workspace import DEFAULT_WORKSPACE
from storage.models import SlackOutbox, utcnow
from storage.upsert import insert_ignore

ALERTS_THREAD = "alerts"  # every alert (template, quality, account, payment, campaign) is posted in this order
_CAMPAIGN = "campaign:"

K = TypeVar("K", bound="OutboxKind")


def conversation_thread(conversation_id: int) -> str:
    """The thread key of a conversation's posts (its messages, statuses and notes, in WhatsApp's order)."""
    return f"conv:{conversation_id}"


def campaign_thread(run_id: int) -> str:
    """The thread key of a campaign run's posts (its progress message, its unknown-outcome notices)."""
    return f"{_CAMPAIGN}{run_id}"


def run_of_thread(thread_key: str) -> int | None:
    """The campaign run a thread key belongs to, if it is a run's."""
    rest = thread_key.removeprefix(_CAMPAIGN)
    return int(rest) if rest != thread_key and rest.isdigit() else None


class BadPayload(Exception):
    """A stored payload that does not fit its kind's class (missing a field its handler needs)."""


class OutboxKind:
    """One kind of Slack outbox item; subclasses are frozen dataclasses whose fields make its payload."""

    __slots__ = ()
    KIND: ClassVar[str]
    ROW_FIELDS: ClassVar[frozenset[str]] = frozenset()
    """Fields kept in the row's columns (the conversation) rather than in its payload."""

    @property
    def thread_key(self) -> str:
        """The thread this item is ordered in: only its head is ever in flight."""
        raise NotImplementedError

    @property
    def conversation(self) -> int | None:
        """The conversation it belongs to (its workspace delivers it), if any."""
        return None

    def payload(self) -> dict[str, Any]:
        """The stored payload: every field but the row's own, absent where unset."""
        return {f.name: value for f in fields(cast(Any, self)) if f.name not in self.ROW_FIELDS
                and (value := getattr(self, f.name)) is not None}

    @classmethod
    def from_row(cls: type[K], payload: Mapping[str, Any], conversation_id: int | None) -> K:
        """The item a stored row holds; keys the class does not know (a newer version's) are left aside."""
        names = {f.name for f in fields(cast(Any, cls))}
        values = {k: v for k, v in payload.items() if k in names}
        if "conversation_id" in names and values.get("conversation_id") is None and conversation_id is not None:
            values["conversation_id"] = conversation_id
        try:
            return cls(**values)
        except TypeError as exc:
            raise BadPayload(f"{cls.KIND} payload {dict(payload)!r}: {exc}") from exc


class _InConversation(OutboxKind):
    """A post in a conversation's thread."""

    __slots__ = ()
    conversation_id: int

    @property
    def thread_key(self) -> str:
        return conversation_thread(self.conversation_id)

    @property
    def conversation(self) -> int | None:
        return self.conversation_id


@dataclass(frozen=True, slots=True)
class MessagePost(_InConversation):
    """A stored message mirrored into its conversation's thread."""

    KIND: ClassVar[str] = "message"
    ROW_FIELDS: ClassVar[frozenset[str]] = frozenset({"conversation_id"})
    message_id: int
    conversation_id: int


@dataclass(frozen=True, slots=True)
class StatusMark(_InConversation):
    """A delivery status of a mirrored message: its reaction, and for a failure a note explaining it."""

    KIND: ClassVar[str] = "status"
    ROW_FIELDS: ClassVar[frozenset[str]] = frozenset({"conversation_id"})
    message_id: int
    status: str
    conversation_id: int
    error_code: int | None = None
    error_title: str | None = None


@dataclass(frozen=True, slots=True)
class Note(_InConversation):
    """A line from the bridge itself in a conversation's thread (`mrkdwn`: the text is Slack markup)."""

    KIND: ClassVar[str] = "note"
    conversation_id: int
    text: str
    mrkdwn: bool = False


@dataclass(frozen=True, slots=True)
class Revision(_InConversation):
    """A stored message was edited or deleted: its mirrored post is rendered again."""

    KIND: ClassVar[str] = "revision"
    ROW_FIELDS: ClassVar[frozenset[str]] = frozenset({"conversation_id"})
    message_id: int
    conversation_id: int


@dataclass(frozen=True, slots=True)
class HistoryPost(_InConversation):
    """The imported WhatsApp Business app history, asked for in the conversation's thread."""

    KIND: ClassVar[str] = "history"
    conversation_id: int
    requested_by: str | None = None


@dataclass(frozen=True, slots=True)
class ParentRefresh(OutboxKind):
    """The thread's parent rendered again (name, window, inbox state), in a thread of its own."""

    KIND: ClassVar[str] = "thread_parent"
    conversation_id: int

    @property
    def thread_key(self) -> str:
        # Apart from the conversation's messages, which never wait for chat.update's smaller allowance.
        return f"parent:{self.conversation_id}"

    @property
    def conversation(self) -> int | None:
        return self.conversation_id


@dataclass(frozen=True, slots=True)
class Alert(OutboxKind):
    """A template, quality, account or campaign change for the alerts channel (`channel`: another one)."""

    KIND: ClassVar[str] = "alert"
    alert: str
    subject: str
    state: str
    text: str
    icon: str | None = None
    channel: str | None = None

    @property
    def thread_key(self) -> str:
        return ALERTS_THREAD


@dataclass(frozen=True, slots=True)
class HistoryProgress(OutboxKind):
    """A history import's one progress message, posted then kept up to date."""

    KIND: ClassVar[str] = "history_progress"
    sync_id: int

    @property
    def thread_key(self) -> str:
        return f"sync:{self.sync_id}"


@dataclass(frozen=True, slots=True)
class OnboardingNotice(OutboxKind):
    """How an onboarding went, for the alerts channel (else `slack_channel`)."""

    KIND: ClassVar[str] = "onboarding_notice"
    text: str
    slack_channel: str | None = None
    link_id: int = 0  # 0 in rows queued before it was stored: only ordering needs it, and that was done

    @property
    def thread_key(self) -> str:
        return f"onboarding:{self.link_id}"


@dataclass(frozen=True, slots=True)
class CampaignProgress(OutboxKind):
    """A campaign run's progress message, posted once then edited."""

    KIND: ClassVar[str] = "campaign_progress"
    run_id: int

    @property
    def thread_key(self) -> str:
        return campaign_thread(self.run_id)


@dataclass(frozen=True, slots=True)
class CampaignUnknown(OutboxKind):
    """A notice in the campaign's channel that some sends' outcomes are unknown, with a button to resend."""

    KIND: ClassVar[str] = "campaign_unknown"
    run_id: int
    channel: str
    campaign_id: int
    name: str
    count: int
    newest_id: int
    created_by: str | None = None

    @property
    def thread_key(self) -> str:
        return campaign_thread(self.run_id)


def outbox_row(item: OutboxKind, *, dedupe_key: str, order_ts: datetime | None = None,
               slack_team: str = DEFAULT_WORKSPACE) -> dict[str, Any]:
    """The `slack_outbox` row that owes `item` (for inserts of many rows at once)."""
    now = utcnow()
    return {"dedupe_key": dedupe_key, "thread_key": item.thread_key, "kind": item.KIND, "payload": item.payload(),
            "order_ts": order_ts or now, "conversation_id": item.conversation, "attempts": 0, "created_at": now,
            "slack_team": slack_team}


async def enqueue(session: AsyncSession, item: OutboxKind, *, dedupe_key: str, order_ts: datetime | None = None,
                  slack_team: str = DEFAULT_WORKSPACE) -> bool:
    """Owe Slack one post (once per dedupe_key; True when it is new), delivered later by the outbox worker to
    `slack_team` (a conversation's items go to the conversation's workspace whatever this says)."""
    row = outbox_row(item, dedupe_key=dedupe_key, order_ts=order_ts, slack_team=slack_team)
    return await insert_ignore(session, SlackOutbox, row, ["dedupe_key"]) is not None


__all__ = ["ALERTS_THREAD", "Alert", "BadPayload", "CampaignProgress", "CampaignUnknown", "HistoryPost",
           "HistoryProgress", "MessagePost", "Note", "OnboardingNotice", "OutboxKind", "ParentRefresh", "Revision",
           "StatusMark", "campaign_thread", "conversation_thread", "enqueue", "outbox_row", "run_of_thread"]
