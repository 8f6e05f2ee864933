"""Opt-out decisions from what a customer wrote or pressed (pure)."""

from __future__ import annotations

from enum import StrEnum

from bot.core.config import OptOutSettings


class OptChange(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


def _normalise(text: str) -> str:
    return " ".join(text.strip().strip(".!").split()).upper()


def opt_change(settings: OptOutSettings, text: str | None, payload: str | None = None) -> OptChange | None:
    """OPT_OUT for a whole-message keyword (STOP) or opt-out quick reply, OPT_IN for START, else None."""
    if payload and payload in settings.quick_reply_payloads:
        return OptChange.OPT_OUT
    if not text:
        return None
    said = _normalise(text)
    if said in {_normalise(k) for k in settings.keywords}:
        return OptChange.OPT_OUT
    if said in {_normalise(k) for k in settings.opt_in_keywords}:
        return OptChange.OPT_IN
    return None
