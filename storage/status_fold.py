"""Pure folding of status reports: coalesce a batch per (wamid, status), then fold them into a message or a
campaign recipient (later states win, every error kept in the history). Both the set-based batch path
(`storage.status_batch`) and the one-wamid path (`repository.apply_statuses`) fold with these."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# Later states win; failed and deleted end the line whatever came before.
STATUS_RANK = {"accepted": 0, "sent": 1, "delivered": 2, "read": 3, "played": 3, "failed": 4, "deleted": 5}

RECIPIENT_UPDATABLE = frozenset({"sent", "delivered", "read", "failed", "unknown"})


@dataclass(frozen=True)
class StatusRow:
    """One status report as stored in message_statuses."""

    wamid: str
    status: str
    wa_timestamp: datetime
    recipient_id: str | None = None
    error_code: int | None = None
    error_title: str | None = None
    pricing: dict[str, Any] | None = None

    def as_values(self) -> dict[str, Any]:
        return {"wamid": self.wamid, "status": self.status, "wa_timestamp": self.wa_timestamp,
                "recipient_id": self.recipient_id, "error_code": self.error_code,
                "error_title": self.error_title, "pricing": self.pricing}


def status_item_order(status: str, reported_at: datetime, message_at: datetime) -> datetime:
    """Where a status's Slack item sorts in its thread: after its message (Meta's clock may be behind ours)
    and, among the same message's statuses, in the order of the states, whatever order they were stored in:
    a later state's item adds the ticks of those it superseded only once their items have run."""
    return max(reported_at, message_at) + timedelta(microseconds=STATUS_RANK.get(status, 0))


def status_advances(current: str | None, new: str) -> bool:
    """True when new is a later state than current (statuses can arrive out of order)."""
    return STATUS_RANK.get(new, 0) > STATUS_RANK.get(current or "", -1)


def coalesce(rows: Iterable[StatusRow]) -> list[StatusRow]:
    """One row per (wamid, status), the first report kept (as the unique key would), in timestamp order and,
    within one second (Meta's timestamps have no finer grain), in the order of the states."""
    seen: dict[tuple[str, str], StatusRow] = {}
    for row in rows:
        seen.setdefault((row.wamid, row.status), row)
    return sorted(seen.values(), key=lambda r: (r.wamid, r.wa_timestamp, STATUS_RANK.get(r.status, 0), r.status))


@dataclass
class MessageFold:
    """A message's status fields after folding new reports in; applied lists the statuses it gained."""

    status: str | None
    status_history: list[dict[str, Any]]
    error_code: int | None
    error_title: str | None
    pricing_category: str | None
    billable: bool | None
    applied: list[StatusRow] = field(default_factory=list)


def fold_message(fold: MessageFold, rows: Sequence[StatusRow]) -> MessageFold:
    """Fold rows (one wamid, timestamp order) into fold; a status already in the history is skipped."""
    seen = {h.get("status") for h in fold.status_history}
    history = list(fold.status_history)
    for st in rows:
        if st.status in seen:
            continue
        seen.add(st.status)
        history.append({"status": st.status, "at": st.wa_timestamp.isoformat(),
                        **({"error_code": st.error_code} if st.error_code else {})})
        fold.applied.append(st)
        if status_advances(fold.status, st.status):
            fold.status = st.status
        if st.error_code:
            fold.error_code, fold.error_title = st.error_code, st.error_title
        if st.pricing:
            fold.pricing_category = st.pricing.get("category")
            fold.billable = st.pricing.get("billable")
    fold.status_history = history
    return fold


@dataclass
class RecipientFold:
    """A campaign recipient's status fields after folding new reports in."""

    status: str
    error_code: int | None
    error_title: str | None
    pricing_category: str | None
    billable: bool | None


def fold_recipient(fold: RecipientFold, rows: Sequence[StatusRow]) -> RecipientFold:
    """Fold rows into a recipient; one still being sent keeps its state (the runner folds them in after)."""
    for st in rows:
        if fold.status in RECIPIENT_UPDATABLE and status_advances(
            fold.status if fold.status != "unknown" else None, st.status
        ):
            fold.status = "read" if st.status == "played" else st.status
        if st.error_code:
            fold.error_code, fold.error_title = st.error_code, st.error_title
        if st.pricing:
            fold.pricing_category = st.pricing.get("category")
            fold.billable = st.pricing.get("billable")
    return fold
