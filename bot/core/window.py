"""The 24-hour customer-service window (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta

WINDOW = timedelta(hours=24)


def window_closes_at(last_customer_message_at: datetime | None) -> datetime | None:
    """When free-form replies stop being allowed; None when the customer never wrote."""
    return None if last_customer_message_at is None else last_customer_message_at + WINDOW


def window_open(last_customer_message_at: datetime | None, now: datetime) -> bool:
    """True while the customer's last message is less than 24 hours old."""
    closes = window_closes_at(last_customer_message_at)
    return closes is not None and now < closes
