"""`biz_opaque_callback_data`: the text a send carries that Meta echoes on every status of the message."""

from __future__ import annotations

MAX_LENGTH = 512  # Meta refuses longer values


def opaque(data: str) -> str:
    """The value checked against Meta's limit (a ValueError rather than a refused send)."""
    if len(data) > MAX_LENGTH:
        raise ValueError(f"biz_opaque_callback_data is limited to {MAX_LENGTH} characters")
    return data
