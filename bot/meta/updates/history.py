"""Coexistence onboarding syncs: `history` (past threads, media follow-ups) and `smb_app_state_sync` (contacts)."""

from __future__ import annotations

from typing import NamedTuple

from bot.meta.events import (
    ContactSync,
    Direction,
    Envelope,
    HistoryChunk,
    HistoryMessage,
    ParseProblem,
    UnknownChange,
    WebhookEvent,
)
from bot.meta.updates.content import parse_content
from bot.meta.updates.read import (
    Handler,
    Malformed,
    as_dict,
    as_int,
    as_list,
    as_time,
    digits,
    each,
    errors_of,
    opt_str,
    problem,
    req_obj,
    req_str,
    req_time,
    usernames_of,
    wa_number,
)


class _Customer(NamedTuple):
    """Who a history thread (or media follow-up) is with: any of phone, BSUID, username."""

    phone: str | None = None
    user_id: str | None = None
    username: str | None = None


def _thread_customer(thread: dict) -> _Customer:
    """A thread's `id` is the customer's number; it is empty for a username-era customer, whose ids are then in
    the thread's `context` (`wa_id`, `user_id`, `username`)."""
    ctx = as_dict(thread.get("context"))
    return _Customer(wa_number(thread.get("id")) or wa_number(ctx.get("wa_id")), opt_str(ctx, "user_id") or None,
                     opt_str(ctx, "username") or None)


def _history_outbound(env: Envelope, item: dict, customer: _Customer | None) -> bool:
    """The direction comes from `from`: the business's number is the business, the customer's number or a
    `from_user_id` (only customers have one) is the customer. `to` decides only when `from` says nothing."""
    sender = wa_number(item.get("from"))
    business = digits(env.display_phone_number)
    if sender and business:
        return digits(sender) == business
    if opt_str(item, "from_user_id"):
        return False
    if sender and customer is not None and customer.phone:
        return digits(sender) != digits(customer.phone)
    return bool(wa_number(item.get("to")) or opt_str(item, "to_user_id")) if not sender else False


def _history_message(env: Envelope, item: object, thread: _Customer | None,
                     usernames: dict[str, str] | None = None, echo: bool = False) -> HistoryMessage:
    """One history message, the customer's or the business's (`echo`: a follow-up from `message_echoes`)."""
    if not isinstance(item, dict):
        raise Malformed(f"history message is a {type(item).__name__}, not an object")
    outbound = echo or _history_outbound(env, item, thread)
    if thread is not None and (thread.phone or thread.user_id):
        customer = thread
    elif outbound:  # media follow-ups arrive without a thread: the other side is the customer
        customer = _Customer(wa_number(item.get("to")), opt_str(item, "to_user_id") or None)
    else:
        customer = _Customer(wa_number(item.get("from")), opt_str(item, "from_user_id") or None)
    wa_id = customer.phone or customer.user_id
    if not wa_id:
        raise Malformed("cannot tell the customer: no thread id or context, 'from' or 'to'")
    names = usernames or {}
    username = customer.username or names.get(customer.user_id or "") or names.get(customer.phone or "")
    hist = as_dict(item.get("history_context"))
    status = opt_str(hist, "status")
    return HistoryMessage(
        wamid=req_str(item, "id"),
        wa_id=wa_id,
        direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
        timestamp=req_time(item, "timestamp"),
        content=parse_content(item),
        status=status.lower() if status else None,
        raw=item,
        phone=customer.phone,
        user_id=customer.user_id,
        username=username,
    )


def _history(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    problems: list[WebhookEvent] = []
    usernames = usernames_of(value)

    def messages_of(items: object, path: str, thread: _Customer | None, echo: bool = False) -> list[HistoryMessage]:
        out: list[HistoryMessage] = []
        if not isinstance(items, list):
            problems.append(ParseProblem(env, path, "expected a list", items))
            return out
        for i, item in enumerate(items):
            try:
                out.append(_history_message(env, item, thread, usernames, echo))
            except Malformed as exc:
                problems.append(problem(env, f"{path}[{i}]", exc, item))
        return out

    chunks: list[WebhookEvent] = []
    if "history" in value:
        items = value["history"]
        if not isinstance(items, list):
            return [ParseProblem(env, f"{where}.history", "expected a list", items)]
        for k, item in enumerate(items):
            path = f"{where}.history[{k}]"
            if not isinstance(item, dict):
                problems.append(ParseProblem(env, path, "history entry is not an object", item))
                continue
            meta = as_dict(item.get("metadata"))
            msgs: list[HistoryMessage] = []
            for t, thread in enumerate(as_list(item.get("threads"))):
                if not isinstance(thread, dict):
                    problems.append(
                        ParseProblem(env, f"{path}.threads[{t}]", "thread is not an object", thread)
                    )
                    continue
                tpath = f"{path}.threads[{t}].messages"
                msgs += messages_of(thread.get("messages", []), tpath, _thread_customer(thread))
            chunks.append(
                HistoryChunk(
                    envelope=env,
                    phase=as_int(meta.get("phase")),
                    chunk_order=as_int(meta.get("chunk_order")),
                    progress=as_int(meta.get("progress")),
                    messages=msgs,
                    errors=errors_of(item.get("errors")),
                    raw=item,
                )
            )
    elif "messages" in value or "message_echoes" in value:  # media content for earlier media_placeholders
        msgs = messages_of(value.get("messages", []), f"{where}.messages", None)
        if "message_echoes" in value:
            msgs += messages_of(value["message_echoes"], f"{where}.message_echoes", None, echo=True)
        chunks.append(HistoryChunk(env, None, None, None, msgs, errors_of(value.get("errors")), value))
    else:
        return [UnknownChange(env, "history change holds neither history nor messages", value)]
    return chunks + problems


def _state_sync(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    def entry(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise Malformed(f"state_sync entry is a {type(item).__name__}, not an object")
        if item.get("type") != "contact":
            return [UnknownChange(env, f"state_sync entry of type {item.get('type')!r}", item)]
        contact = req_obj(item, "contact")
        # The phone number is empty for a username-era customer; the BSUID then names them.
        phone, user_id = wa_number(contact.get("phone_number")), opt_str(contact, "user_id") or None
        wa_id = phone or user_id
        if not wa_id:
            raise Malformed("contact.phone_number and contact.user_id are both missing")
        return [
            ContactSync(
                envelope=env,
                action=req_str(item, "action"),
                wa_id=wa_id,
                full_name=opt_str(contact, "full_name"),
                first_name=opt_str(contact, "first_name"),
                timestamp=as_time(as_dict(item.get("metadata")).get("timestamp")),
                phone=phone,
                user_id=user_id,
                username=opt_str(contact, "username") or None,
            )
        ]

    if "state_sync" not in value:
        return [UnknownChange(env, "smb_app_state_sync change holds no state_sync", value)]
    return each(env, value["state_sync"], f"{where}.state_sync", entry)


HANDLERS: dict[str, Handler] = {"history": _history, "smb_app_state_sync": _state_sync}
