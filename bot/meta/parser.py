"""Pure decoding of Meta webhook deliveries into typed events (no I/O).

A delivery holds entry[] (one per WABA), each with changes[]; one change's value can hold many
messages or statuses. Every one of them becomes an event. Whatever cannot be understood becomes
an UnknownChange (unknown field or content) or a ParseProblem (malformed part) so that nothing
is dropped silently and one bad message never hides its neighbours. This module walks the delivery;
each webhook field is decoded by its update family in bot/meta/updates/ (as pywa keeps one module per update).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from bot.meta.events import Envelope, ParseProblem, UnknownChange, WebhookEvent
from bot.meta.updates import account, calls, echoes, groups, history, messages, templates
from bot.meta.updates.content import parse_content
from bot.meta.updates.read import (
    Handler,
    Malformed,
    as_dict,
    as_id,
    as_list,
    as_time,
    parse_errors,
    problem,
    wa_number,
)

__all__ = ["event_type_of", "parse_content", "parse_delivery", "parse_errors"]

OBJECT = "whatsapp_business_account"
_NO_ENVELOPE = Envelope(waba_id="", field="", phone_number_id=None, display_phone_number=None)

# The decoder of each webhook field, from its update family.
_HANDLERS: dict[str, Handler] = {
    **messages.HANDLERS, **echoes.HANDLERS, **history.HANDLERS, **templates.HANDLERS, **account.HANDLERS,
    **calls.HANDLERS, **groups.HANDLERS,
}

# webhook_logs.event_type per field (the messages field is split by content, see _change_kinds).
_FIELD_KINDS = {
    "smb_message_echoes": "smb_message_echo",
    "history": "history",
    "smb_app_state_sync": "app_state_sync",
    "message_template_status_update": "template_status",
    "message_template_quality_update": "template_status",
    "template_category_update": "template_status",
    "phone_number_quality_update": "quality_update",
    "account_update": "account_update",
    "user_preferences": "user_preferences",
    "message_template_components_update": "template_status",
    "calls": "call",
    "user_id_update": "user_id_update",
    "security": "account_update",
    "account_settings_update": "account_update",
    "group_lifecycle_update": "group",
    "group_participants_update": "group",
    "group_settings_update": "group",
    "group_status_update": "group",
    "automatic_events": "automatic_event",
    "business_username_updates": "business_username",
    "business_username_update": "business_username",
}


# ---------------------------------------------------------------------------------------------
# Walking the delivery.


def _field_of(entry: dict, change: dict, value: object) -> str | None:
    # Some of Meta's published examples put `field` beside `changes` or inside `value`.
    for holder in (change, entry, as_dict(value)):
        fld = holder.get("field")
        if isinstance(fld, str) and fld:
            return fld
    return None


class _Slot(NamedTuple):
    """One change of a delivery, or the reason the walk could not reach one."""

    where: str
    envelope: Envelope
    field: str | None
    value: object
    problem: str | None = None  # set: a ParseProblem about `value`
    unknown: str | None = None  # set: an UnknownChange with this reason


def _slots(payload: object) -> Iterable[_Slot]:
    """Walk entry[] and changes[], yielding every change with its envelope, in payload order."""
    if not isinstance(payload, dict):
        yield _Slot("payload", _NO_ENVELOPE, None, payload, problem="payload is not a JSON object")
        return
    obj = payload.get("object")
    if obj is not None and obj != OBJECT:
        yield _Slot("payload", _NO_ENVELOPE, None, payload, unknown=f"object {obj!r} is not {OBJECT}")
        return
    entries = payload.get("entry")
    if not isinstance(entries, list):
        yield _Slot("entry", _NO_ENVELOPE, None, entries, problem="'entry' is missing or not a list")
        return
    for i, entry in enumerate(entries):
        where = f"entry[{i}]"
        if not isinstance(entry, dict):
            yield _Slot(where, _NO_ENVELOPE, None, entry, problem="entry is not an object")
            continue
        # Envelopes built directly: three `dataclasses.replace` per change were half of this walk's time.
        waba_id, entry_time = as_id(entry.get("id")) or "", as_time(entry.get("time"))
        entry_env = Envelope(waba_id=waba_id, field="", phone_number_id=None, display_phone_number=None,
                             entry_time=entry_time)
        changes = entry.get("changes")
        if not isinstance(changes, list):
            yield _Slot(
                f"{where}.changes", entry_env, None, changes, problem="'changes' is missing or not a list"
            )
            continue
        for j, change in enumerate(changes):
            cwhere = f"{where}.changes[{j}]"
            if not isinstance(change, dict):
                yield _Slot(cwhere, entry_env, None, change, problem="change is not an object")
                continue
            value = change.get("value")
            fld = _field_of(entry, change, value)
            if fld is None:
                yield _Slot(cwhere, entry_env, None, change, problem="change has no 'field'")
                continue
            if not isinstance(value, dict):
                env = Envelope(waba_id=waba_id, field=fld, phone_number_id=None, display_phone_number=None,
                               entry_time=entry_time)
                yield _Slot(f"{cwhere}.value", env, fld, value, problem="'value' is missing or not an object")
                continue
            meta = as_dict(value.get("metadata"))
            env = Envelope(
                waba_id=waba_id, field=fld, phone_number_id=as_id(meta.get("phone_number_id")),
                display_phone_number=wa_number(meta.get("display_phone_number"))
                or wa_number(value.get("display_phone_number")),
                entry_time=entry_time,
            )
            yield _Slot(f"{cwhere}.value", env, fld, value)


def parse_delivery(payload: object) -> list[WebhookEvent]:
    """Decode one webhook delivery (decoded JSON) into events, in payload order.

    Input of the wrong shape becomes a ParseProblem (the parser's own `Malformed`); any other exception is a
    bug of ours and reaches the caller, whose retry keeps the delivery."""
    events: list[WebhookEvent] = []
    try:
        for slot in _slots(payload):
            env, value = slot.envelope, slot.value
            if slot.problem is not None:
                events.append(ParseProblem(env, slot.where, slot.problem, value))
            elif slot.unknown is not None:
                events.append(UnknownChange(env, slot.unknown, value))
            elif slot.field not in _HANDLERS or not isinstance(value, dict):
                events.append(UnknownChange(env, f"unknown field {slot.field!r}", value))
            else:
                try:
                    events.extend(_HANDLERS[slot.field](env, value, slot.where))
                except Malformed as exc:  # a change-level defect costs only that change
                    events.append(problem(env, slot.where, exc, value))
    except Malformed as exc:
        events.append(problem(_NO_ENVELOPE, "payload", exc, payload))
    return events


def _change_kinds(fld: str | None, value: object) -> list[str]:
    if fld is None:
        return ["unknown"]
    if fld == "messages":
        v = as_dict(value)
        kinds = []
        if as_list(v.get("messages")):
            kinds.append("message")
        if as_list(v.get("statuses")):
            kinds.append("status")
        return kinds or ["message"]
    return [_FIELD_KINDS.get(fld, "unknown")]


def _change_kinds_lean(payload: object) -> list[str]:
    """The kinds `_slots` + `_change_kinds` give, without building envelopes (the webhook's hot path).

    Same walk, same shape checks, same order; it only skips what the kind does not depend on (ids, times,
    phone numbers). tests/test_parser.py checks the two agree on every sample and on generated payloads."""
    if not isinstance(payload, dict):
        return ["unknown"]
    obj = payload.get("object")
    if obj is not None and obj != OBJECT:
        return ["unknown"]
    entries = payload.get("entry")
    if not isinstance(entries, list):
        return ["unknown"]
    kinds: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            kinds.append("unknown")
            continue
        changes = entry.get("changes")
        if not isinstance(changes, list):
            kinds.append("unknown")
            continue
        for change in changes:
            if not isinstance(change, dict):
                kinds.append("unknown")
                continue
            value = change.get("value")
            fld = _field_of(entry, change, value)
            if fld is None or not isinstance(value, dict):
                kinds.append("unknown")
                continue
            kinds += _change_kinds(fld, value)
    return kinds


def event_type_of(payload: object) -> str:
    """The webhook_logs.event_type for a delivery: message, smb_message_echo, status, template_status, quality_update, account_update, history, app_state_sync, unknown (first change's kind; 'mixed' if several kinds)."""  # noqa: E501
    try:
        kinds = _change_kinds_lean(payload)
    except Exception:
        return "unknown"
    if not kinds:
        return "unknown"
    first = kinds[0]
    return first if all(k == first for k in kinds) else "mixed"
