"""What the Slack outbox does after a failed call, and which items go first: pure decisions, no I/O."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

# Slack answers that mean "try again later" but leave the outcome unknown.
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout",
                              "team_added_to_org"})
# Answers that only an operator can fix (token, membership, archive): keep the items, retry slowly.
CONFIG_ERRORS = frozenset({"not_in_channel", "channel_not_found", "is_archived", "invalid_auth", "not_authed",
                           "account_inactive", "token_revoked", "token_expired", "missing_scope",
                           "restricted_action", "ekm_access_denied", "no_permission"})
# Answers about the message itself: it can never go as it is, whatever the number of attempts.
FORMAT_ERRORS = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_too_long", "msg_blocks_too_long",
                           "invalid_arguments", "invalid_arg_name", "invalid_array_arg", "invalid_charset",
                           "invalid_form_data", "invalid_post_type", "no_text", "too_many_attachments",
                           "invalid_attachments", "invalid_metadata_format", "invalid_metadata_schema",
                           "metadata_too_large", "metadata_must_be_sent_from_app", "markdown_text_conflict"})
RATE_LIMITED = "ratelimited"
TRANSPORT_ERROR = "transport_error"  # timeout or dropped connection: the call may have been carried out


class Action(enum.Enum):
    RETRY = "retry"  # release the item, try again after `delay`
    PLAIN_TEXT = "plain_text"  # send the same words without blocks, once
    GIVE_UP = "give_up"  # close the item with the reason; it can never be delivered


@dataclass(frozen=True)
class Outcome:
    action: Action
    delay: float = 0.0
    uncertain: bool = False  # the failed call may have reached Slack: look before posting again
    operator: bool = False  # only a person can fix it (log loudly)


@dataclass(frozen=True)
class Backoff:
    """Exponential delay for the n-th failed attempt, capped, with a little jitter."""

    base: float = 1.0
    cap: float = 60.0

    def delay(self, attempts: int, jitter: float | None = None) -> float:
        spread = random.random() if jitter is None else jitter
        return min(self.cap, self.base * (2 ** max(0, attempts - 1))) * (0.9 + 0.2 * spread)


def decide(error: str, attempts: int, *, status: int = 200, retry_after: float | None = None,
           plain_text_tried: bool = False, backoff: Backoff = Backoff()) -> Outcome:
    """The outcome of a Slack call that failed with `error` (HTTP `status`) on the item's n-th attempt."""
    if status == 429 or error == RATE_LIMITED:
        return Outcome(Action.RETRY, delay=max(0.0, retry_after if retry_after is not None else 1.0))
    if status >= 500 or error in TRANSIENT_ERRORS or error == TRANSPORT_ERROR:
        return Outcome(Action.RETRY, delay=backoff.delay(attempts), uncertain=True)
    if error in FORMAT_ERRORS:
        # Never an endless retry: Slack will refuse the same content every time.
        return Outcome(Action.GIVE_UP if plain_text_tried else Action.PLAIN_TEXT)
    # Operator-fixable (membership, token) or unknown: keep the item and retry slowly; never drop it.
    return Outcome(Action.RETRY, delay=backoff.delay(attempts), operator=error in CONFIG_ERRORS)


# Lower goes first while a channel is backed up: what a person is waiting to read, then the rest.
_PRIORITY = {"message": 0, "note": 0, "alert": 0, "thread_parent": 2, "status": 2, "history": 3,
             "history_progress": 3, "campaign_progress": 3, "onboarding_notice": 3}


def priority_of(kind: str) -> int:
    """An outbox kind's place in the queue for a busy channel (unknown kinds go with status updates)."""
    return _PRIORITY.get(kind, 2)


COALESCED_KINDS = frozenset({"history_progress", "campaign_progress", "thread_parent"})
"""Kinds whose handler shows the state at delivery time: the one delivered closes those owed after it."""

TURN_FIRST = {"thread_parent": "chat.update"}
"""Kinds whose Slack call is known before the handler runs, paced per workspace: the item waits for its slot
before closing those owed after it and reading what to show. A parent refresh far from its turn (chat.update
goes about once a second per workspace) then goes back to the table having read nothing, and what it shows is
read just before it is sent."""

_STATUS_RANK = {"sent": 1, "delivered": 2, "read": 3, "played": 3}


def superseded(item_status: str | None, current_status: str | None) -> bool:
    """Whether a sent/delivered/read update is older than the message's state now (a later item covers it)."""
    mine, now = _STATUS_RANK.get(item_status or ""), _STATUS_RANK.get(current_status or "")
    return mine is not None and now is not None and now > mine
