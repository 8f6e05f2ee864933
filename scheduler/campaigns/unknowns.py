"""Recipients whose send may or may not have reached Meta: the rules, without I/O.

A recipient is claimed (`sending`, owned by one process) before anything is sent, and gets `attempted_at`
committed just before its request leaves. When its owner goes silent, only an attempted recipient can have
been sent, so only it becomes `unknown`; the others go back to `pending` and are sent normally. Every
campaign send carries ``biz_opaque_callback_data`` naming the recipient, so Meta's status webhooks settle an
`unknown` one as sent (or failed) even though the send's answer was lost. What is still `unknown` after a
quiet period is offered to the campaign's manager to send again (or sent again automatically when
`campaigns.resend_unknown_after` is set): by then Meta would have reported a message it had accepted.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from scheduler.campaigns.records import RecipientStatus

CALLBACK_PREFIX = "wabridge:recipient:"
_CALLBACK = re.compile(r"^wabridge:recipient:(\d{1,18})$")
# Meta reports `sent` within seconds of accepting a message; a minute of silence says it never had it.
DEFAULT_QUIET = timedelta(minutes=1)


def callback_data(recipient_id: int) -> str:
    """The `biz_opaque_callback_data` a campaign send carries."""
    return f"{CALLBACK_PREFIX}{recipient_id}"


def recipient_of(data: str | None) -> int | None:
    """The recipient id a status webhook's `biz_opaque_callback_data` names, or None if it is not ours."""
    if not data:
        return None
    found = _CALLBACK.match(data)
    return int(found.group(1)) if found else None


def orphan_fate(status: str, attempted_at: datetime | None, wamid: str | None) -> RecipientStatus | None:
    """What becomes of a recipient whose owner went silent: `sent` if Meta already named its message,
    `unknown` if its request may have left, `pending` if it was claimed but never attempted; None if it is
    not in flight at all."""
    if status != RecipientStatus.SENDING.value:
        return None
    if wamid:
        return RecipientStatus.SENT
    return RecipientStatus.UNKNOWN if attempted_at is not None else RecipientStatus.PENDING


def settles_unknown(status: str, reported: str) -> RecipientStatus | None:
    """The status a recipient takes from a webhook status naming it (by its callback data), or None.

    `unknown`: its request did reach Meta after all. `pending`: it was offered for sending again, and the
    first send turns out to have gone (so the second must not). A recipient still `sending` is left to
    its sender (or to recovery), which records the outcome itself."""
    if status not in (RecipientStatus.UNKNOWN.value, RecipientStatus.PENDING.value):
        return None
    if reported == "failed":
        return RecipientStatus.FAILED
    if reported in ("sent", "delivered", "read", "played"):
        return RecipientStatus.SENT
    return None


def quiet_enough(unknown_since: datetime | None, now: datetime, quiet: timedelta = DEFAULT_QUIET) -> bool:
    """True once an `unknown` recipient has gone without any status for the quiet period."""
    return unknown_since is not None and now - unknown_since >= quiet
