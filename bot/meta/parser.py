"""Pure decoding of Meta webhook deliveries into typed events (no I/O, never raises).

A delivery holds entry[] (one per WABA), each with changes[]; one change's value can hold many
messages or statuses. Every one of them becomes an event. Whatever cannot be understood becomes
an UnknownChange (unknown field or content) or a ParseProblem (malformed part) so that nothing
is dropped silently and one bad message never hides its neighbours.

Why one module: it is the project's single webhook parser; every field's decoder shares the
envelope, the never-raise guards and the problem records, and one table of shapes is easier to audit than
five files that must agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import NamedTuple

from bot.meta.events import (
    AccountUpdate,
    AutomaticEvent,
    BusinessUsername,
    CallEvent,
    ChangeErrors,
    ContactSync,
    Direction,
    Envelope,
    GroupEvent,
    GroupMember,
    HistoryChunk,
    HistoryMessage,
    InboundMessage,
    Media,
    MessageContent,
    MessageEcho,
    MetaError,
    ParseProblem,
    Pricing,
    QualityUpdate,
    SecurityEvent,
    StatusUpdate,
    TemplateCategory,
    TemplateComponents,
    TemplateQuality,
    TemplateStatus,
    UnknownChange,
    UserIdChange,
    UserPreference,
    WebhookEvent,
)

OBJECT = "whatsapp_business_account"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_NO_ENVELOPE = Envelope(waba_id="", field="", phone_number_id=None, display_phone_number=None)


class _Malformed(Exception):
    """A required key is missing or has the wrong type; becomes a ParseProblem, never escapes."""


# ---------------------------------------------------------------------------------------------
# Small readers. Meta's JSON is trusted for nothing: each reader checks the type it returns.


def _dict(x: object) -> dict:
    return x if isinstance(x, dict) else {}


def _list(x: object) -> list:
    return x if isinstance(x, list) else []


def _storable(v: str) -> str:
    """NUL and lone surrogates are legal JSON escapes but no database text can hold them: U+FFFD instead.
    (json.loads joins valid surrogate pairs, so any surrogate left in a str is a lone one.)"""
    return _UNSTORABLE.sub("\ufffd", v)


def _str(d: dict, key: str) -> str | None:
    v = d.get(key)
    return _storable(v) if isinstance(v, str) else None


def _id(x: object) -> str | None:
    """Ids arrive as strings, but template ids are JSON integers."""
    if isinstance(x, str):
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    return None


def _wa(x: object) -> str | None:
    """A phone number / wa_id as Meta sends it, without whitespace or a leading '+'; None if empty."""
    v = _id(x)
    if v is None:
        return None
    v = v.strip().removeprefix("+")
    return v or None


def _digits(x: str | None) -> str:
    return "".join(ch for ch in x if ch.isdigit()) if x else ""


def _int(x: object) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, str):
        try:
            return int(x.strip())
        except ValueError:
            return None
    return None


def _time(x: object) -> datetime | None:
    """Unix seconds (int, float or numeric string) as an aware UTC datetime; None if unreadable."""
    if isinstance(x, bool):
        return None
    value: float
    if isinstance(x, int | float):
        value = x
    elif isinstance(x, str):
        try:
            value = float(x.strip())
        except ValueError:
            return None
    else:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _req_str(d: dict, key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise _Malformed(f"'{key}' is missing or not a non-empty string")
    return _storable(v)


def _req_time(d: dict, key: str) -> datetime:
    t = _time(d.get(key))
    if t is None:
        raise _Malformed(f"'{key}' is missing or not a Unix timestamp")
    return t


def _obj(d: dict, key: str) -> dict:
    v = d.get(key)
    if not isinstance(v, dict):
        raise _Malformed(f"'{key}' object is missing or not an object")
    return v


def _errors(x: object) -> list[MetaError]:
    """Meta's error objects; an unreadable entry is kept as code 0 rather than dropped."""
    out: list[MetaError] = []
    for item in _list(x):
        if not isinstance(item, dict):
            out.append(MetaError(0, "unreadable error entry", type(item).__name__, None))
            continue
        code = _int(item.get("code"))
        message = _str(item, "message")
        out.append(
            MetaError(
                code=code if code is not None else 0,
                title=_str(item, "title") or message or "",
                message=message,
                details=_str(_dict(item.get("error_data")), "details"),
                href=_str(item, "href"),
            )
        )
    return out


def parse_errors(x: object) -> list[MetaError]:
    """Meta's `errors[]` wherever they sit (e.g. inside a group setting)."""
    return _errors(x)


def _problem(env: Envelope, where: str, exc: BaseException, value: object) -> ParseProblem:
    text = str(exc) if isinstance(exc, _Malformed) else f"{type(exc).__name__}: {exc}"
    return ParseProblem(envelope=env, where=where, error=text, value=value)


def _each(
    env: Envelope, items: object, where: str, build: Callable[[object], Iterable[WebhookEvent]]
) -> list[WebhookEvent]:
    """Run `build` on every element of a list; a failure costs only that element."""
    if not isinstance(items, list):
        return [ParseProblem(env, where, f"expected a list, got {type(items).__name__}", items)]
    out: list[WebhookEvent] = []
    for i, item in enumerate(items):
        try:
            out.extend(build(item))
        except _Malformed as exc:  # one element's defect must not lose the others
            out.append(_problem(env, f"{where}[{i}]", exc, item))
    return out


# ---------------------------------------------------------------------------------------------
# Message content, shared by inbound messages, echoes and history.

_EMPTY_CONTENT = MessageContent(
    kind="unsupported",
    original_type="",
    text=None,
    media=None,
    location=None,
    contacts=[],
    interactive=None,
    button=None,
    reaction=None,
    order=None,
    system=None,
    referral=None,
    context=None,
    errors=[],
)


def _media(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = _obj(m, mtype)
    caption = _str(o, "caption")
    media = Media(
        id=_id(o.get("id")),
        mime_type=_str(o, "mime_type"),
        sha256=_str(o, "sha256"),
        caption=caption,
        filename=_str(o, "filename"),
        voice=o.get("voice") is True,
        animated=o.get("animated") is True,
        url=_str(o, "url"),
    )
    return replace(base, kind=mtype, text=caption, media=media)


def _text(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    return replace(base, kind="text", text=_req_str(_obj(m, "text"), "body"))


def _location(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = _obj(m, "location")
    lat, lon = o.get("latitude"), o.get("longitude")
    for name, v in (("latitude", lat), ("longitude", lon)):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _Malformed(f"location.{name} is missing or not a number")
    loc = {
        "latitude": lat,
        "longitude": lon,
        "name": _str(o, "name"),
        "address": _str(o, "address"),
        "url": _str(o, "url"),
    }
    return replace(base, kind="location", location=loc)


def _contacts(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    cards = m.get("contacts")
    if not isinstance(cards, list) or not cards or not all(isinstance(c, dict) for c in cards):
        raise _Malformed("'contacts' is missing or not a list of objects")
    return replace(base, kind="contacts", contacts=list(cards))


def _interactive(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = _obj(m, "interactive")
    itype = _req_str(o, "type")
    sub = _obj(o, itype)
    info: dict = {"type": itype, "id": None, "title": None, "description": None}
    text: str | None
    if itype in ("button_reply", "list_reply"):
        info.update(id=_str(sub, "id"), title=_str(sub, "title"), description=_str(sub, "description"))
        text = info["title"]
    elif itype == "nfm_reply":  # a completed WhatsApp Flow
        body = _str(sub, "body")
        info.update(name=_str(sub, "name"), body=body, response_json=sub.get("response_json"))
        text = body
    elif itype == "call_permission_reply":
        response = _str(sub, "response")
        info.update(response=response, is_permanent=sub.get("is_permanent") is True,
                    expires_at=_int(sub.get("expiration_timestamp")),
                    response_source=_str(sub, "response_source"))
        text = response
    else:  # a reply type this code does not know yet: keep the sub-object as data
        info.update(id=_id(sub.get("id")), title=_str(sub, "title"), data=sub)
        text = info["title"]
    return replace(base, kind="interactive", text=text, interactive=info)


def _button(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = _obj(m, "button")
    text = _str(o, "text")
    return replace(base, kind="button", text=text, button={"payload": _str(o, "payload"), "text": text})


def _reaction(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = _obj(m, "reaction")
    # Removing a reaction sends the webhook again without `emoji` (older versions: empty string).
    emoji = _str(o, "emoji") or ""
    reaction = {"message_id": _req_str(o, "message_id"), "emoji": emoji, "removed": emoji == ""}
    return replace(base, kind="reaction", text=emoji or None, reaction=reaction)


def _order(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = _obj(m, "order")
    text = _str(o, "text")
    order = {
        "catalog_id": _id(o.get("catalog_id")),
        "text": text,
        "product_items": [p for p in _list(o.get("product_items")) if isinstance(p, dict)],
    }
    return replace(base, kind="order", text=text, order=order)


def _system(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = _obj(m, "system")
    system = {
        "body": _str(o, "body"),
        "type": _str(o, "type"),
        # `new_wa_id` is how webhooks up to v11.0 spelled the new number.
        "wa_id": _wa(o.get("wa_id")) or _wa(o.get("new_wa_id")),
        "user_id": _str(o, "user_id"),
        "previous_user_id": _str(o, "previous_user_id"),
        "customer": _wa(o.get("customer")),
    }
    return replace(base, kind="system", text=system["body"], system=system)


def _edit(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    """The new version of an edited message: its content, marked with the wamid it replaces."""
    o = _obj(m, "edit")
    original = _req_str(o, "original_message_id")
    inner = o.get("message")
    if not isinstance(inner, dict):
        raise _Malformed("edit.message is missing or not an object")
    content = parse_content(inner)
    return replace(content, original_type="edit", edits=original,
                   context=content.context or base.context, errors=base.errors + content.errors)


def _request_welcome(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    """The customer opened the chat for the first time (Meta's welcome-message trigger; no content)."""
    return replace(base, kind="request_welcome")


def _revoke(m: dict, mtype: str, base: MessageContent) -> MessageContent:
    o = _obj(m, "revoke")
    return replace(base, kind="revoke", revokes=_req_str(o, "original_message_id"))


_BUILDERS: dict[str, Callable[[dict, str, MessageContent], MessageContent]] = {
    "text": _text,
    "image": _media,
    "audio": _media,
    "video": _media,
    "document": _media,
    "sticker": _media,
    "location": _location,
    "contacts": _contacts,
    "interactive": _interactive,
    "button": _button,
    "reaction": _reaction,
    "order": _order,
    "system": _system,
    "edit": _edit,
    "revoke": _revoke,
    "request_welcome": _request_welcome,
}


def _context(x: object) -> dict | None:
    if not isinstance(x, dict):
        return None
    ctx: dict = {
        "from": _wa(x.get("from")),
        "id": _str(x, "id"),
        "forwarded": x.get("forwarded") is True,
        "frequently_forwarded": x.get("frequently_forwarded") is True,
    }
    product = x.get("referred_product")
    if isinstance(product, dict):  # "Message business" on a product: which one the customer asks about
        ctx["referred_product"] = {"catalog_id": _id(product.get("catalog_id")),
                                   "product_retailer_id": _id(product.get("product_retailer_id"))}
    return ctx


def parse_content(message: object) -> MessageContent:
    """The content of one message object (messages[], message_echoes[] or a history message)."""
    m = _dict(message)
    mtype = m.get("type")
    base = replace(
        _EMPTY_CONTENT,
        original_type=mtype if isinstance(mtype, str) else "",
        errors=_errors(m.get("errors")),
        context=_context(m.get("context")),
        referral=m["referral"] if isinstance(m.get("referral"), dict) else None,
    )
    if not isinstance(mtype, str) or not mtype:
        return replace(base, problem="message has no 'type'")
    build = _BUILDERS.get(mtype)
    if build is None:  # "unsupported", legacy "unknown", "media_placeholder", or a type new to us
        inner = _dict(m.get(mtype))
        return replace(base, unsupported_type=_str(inner, "type"))
    try:
        return build(m, mtype, base)
    except _Malformed as exc:
        return replace(base, problem=f"{mtype}: {exc}")


# ---------------------------------------------------------------------------------------------
# One handler per webhook field. Each gets the change's envelope, value (a dict) and JSON path.

Handler = Callable[[Envelope, dict, str], list[WebhookEvent]]


def _messages(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    profiles: dict[str, dict] = {}
    contacts = [c for c in _list(value.get("contacts")) if isinstance(c, dict)]
    for c in contacts:
        for key in (_wa(c.get("wa_id")), _str(c, "user_id"), _str(c, "parent_user_id")):
            if key:
                profiles[key] = c

    def inbound(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise _Malformed(f"message is a {type(item).__name__}, not an object")
        phone = _wa(item.get("from"))
        user_id = _str(item, "from_user_id") or None
        parent_user_id = _str(item, "from_parent_user_id") or None
        if not (phone or user_id or parent_user_id) and item.get("type") == "system":
            # A user-id change may name the customer only inside `system`: by the id it replaces, else
            # by the number; never by the new id alone when the old one is given.
            sysobj = _dict(item.get("system"))
            user_id = _str(sysobj, "previous_user_id") or None
            phone = None if user_id else _wa(sysobj.get("wa_id"))
            user_id = user_id or (None if phone else _str(sysobj, "user_id") or None)
        sender = phone or user_id or parent_user_id
        if sender is None:
            raise _Malformed("'from' and 'from_user_id' are both missing")
        contact = profiles.get(sender) or (contacts[0] if len(contacts) == 1 else {})
        parent_user_id = parent_user_id or _str(contact, "parent_user_id") or None
        profile = _dict(contact.get("profile"))
        return [
            InboundMessage(
                envelope=env,
                wamid=_req_str(item, "id"),
                from_wa_id=sender,
                profile_name=(_str(profile, "name") or "").strip() or None,  # a blank name is no name
                timestamp=_req_time(item, "timestamp"),
                content=parse_content(item),
                raw=item,
                user_id=user_id or _str(contact, "user_id") or None,
                username=_str(profile, "username"),
                phone=phone,
                parent_user_id=parent_user_id,
                group_id=_str(item, "group_id") or None,
            )
        ]

    def status(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise _Malformed(f"status is a {type(item).__name__}, not an object")
        conv = _dict(item.get("conversation"))
        pricing = item.get("pricing")
        billable = pricing.get("billable") if isinstance(pricing, dict) else None
        return [
            StatusUpdate(
                envelope=env,
                wamid=_req_str(item, "id"),
                status=_req_str(item, "status"),
                timestamp=_req_time(item, "timestamp"),
                recipient_id=_wa(item.get("recipient_id")),
                errors=_errors(item.get("errors")),
                conversation_id=_str(conv, "id"),
                conversation_origin=_str(_dict(conv.get("origin")), "type"),
                pricing=Pricing(
                    billable=billable if isinstance(billable, bool) else None,
                    pricing_model=_str(pricing, "pricing_model"),
                    category=_str(pricing, "category"),
                    type=_str(pricing, "type"),
                )
                if isinstance(pricing, dict)
                else None,
                raw=item,
                conversation_expires_at=_time(conv.get("expiration_timestamp")),
                biz_opaque_callback_data=_str(item, "biz_opaque_callback_data"),
                recipient_user_id=_str(item, "recipient_user_id"),
            )
        ]

    events: list[WebhookEvent] = []
    if "messages" in value:
        events += _each(env, value["messages"], f"{where}.messages", inbound)
    if "statuses" in value:
        events += _each(env, value["statuses"], f"{where}.statuses", status)
    if "errors" in value:
        if isinstance(value["errors"], list):
            events.append(ChangeErrors(envelope=env, errors=_errors(value["errors"])))
        else:
            events.append(ParseProblem(env, f"{where}.errors", "expected a list", value["errors"]))
    if not any(k in value for k in ("messages", "statuses", "errors")):
        events.append(UnknownChange(env, "messages change holds no messages, statuses or errors", value))
    return events


def _usernames(value: dict) -> dict[str, str]:
    """Each contacts[] entry's username by every id it carries (phone and BSUID)."""
    out: dict[str, str] = {}
    for c in _list(value.get("contacts")):
        name = _str(_dict(_dict(c).get("profile")), "username")
        if name:
            for key in (_wa(_dict(c).get("wa_id")), _str(_dict(c), "user_id")):
                if key:
                    out[key] = name
    return out


def _echoes(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    usernames = _usernames(value)

    def echo(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise _Malformed(f"echo is a {type(item).__name__}, not an object")
        to_phone = _wa(item.get("to"))
        to_user_id = _str(item, "to_user_id") or None
        to = to_phone or to_user_id
        if not to:
            raise _Malformed("'to' is missing")
        return [
            MessageEcho(
                envelope=env,
                wamid=_req_str(item, "id"),
                from_number=_wa(item.get("from")) or env.display_phone_number or "",
                to_wa_id=to,
                timestamp=_req_time(item, "timestamp"),
                content=parse_content(item),
                raw=item,
                to_phone=to_phone,
                to_user_id=to_user_id,
                username=usernames.get(to_user_id or "") or usernames.get(to_phone or ""),
            )
        ]

    if "message_echoes" not in value:
        return [UnknownChange(env, "smb_message_echoes change holds no message_echoes", value)]
    return _each(env, value["message_echoes"], f"{where}.message_echoes", echo)


class _Customer(NamedTuple):
    """Who a history thread (or media follow-up) is with: any of phone, BSUID, username."""

    phone: str | None = None
    user_id: str | None = None
    username: str | None = None


def _thread_customer(thread: dict) -> _Customer:
    """A thread's `id` is the customer's number; it is empty for a username-era customer, whose ids are then in
    the thread's `context` (`wa_id`, `user_id`, `username`)."""
    ctx = _dict(thread.get("context"))
    return _Customer(_wa(thread.get("id")) or _wa(ctx.get("wa_id")), _str(ctx, "user_id") or None,
                     _str(ctx, "username") or None)


def _history_outbound(env: Envelope, item: dict, customer: _Customer | None) -> bool:
    """The direction comes from `from`: the business's number is the business, the customer's number or a
    `from_user_id` (only customers have one) is the customer. `to` decides only when `from` says nothing."""
    sender = _wa(item.get("from"))
    business = _digits(env.display_phone_number)
    if sender and business:
        return _digits(sender) == business
    if _str(item, "from_user_id"):
        return False
    if sender and customer is not None and customer.phone:
        return _digits(sender) != _digits(customer.phone)
    return bool(_wa(item.get("to")) or _str(item, "to_user_id")) if not sender else False


def _history_message(env: Envelope, item: object, thread: _Customer | None,
                     usernames: dict[str, str] | None = None, echo: bool = False) -> HistoryMessage:
    """One history message, the customer's or the business's (`echo`: a follow-up from `message_echoes`)."""
    if not isinstance(item, dict):
        raise _Malformed(f"history message is a {type(item).__name__}, not an object")
    outbound = echo or _history_outbound(env, item, thread)
    if thread is not None and (thread.phone or thread.user_id):
        customer = thread
    elif outbound:  # media follow-ups arrive without a thread: the other side is the customer
        customer = _Customer(_wa(item.get("to")), _str(item, "to_user_id") or None)
    else:
        customer = _Customer(_wa(item.get("from")), _str(item, "from_user_id") or None)
    wa_id = customer.phone or customer.user_id
    if not wa_id:
        raise _Malformed("cannot tell the customer: no thread id or context, 'from' or 'to'")
    names = usernames or {}
    username = customer.username or names.get(customer.user_id or "") or names.get(customer.phone or "")
    hist = _dict(item.get("history_context"))
    status = _str(hist, "status")
    return HistoryMessage(
        wamid=_req_str(item, "id"),
        wa_id=wa_id,
        direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
        timestamp=_req_time(item, "timestamp"),
        content=parse_content(item),
        status=status.lower() if status else None,
        raw=item,
        phone=customer.phone,
        user_id=customer.user_id,
        username=username,
    )


def _history(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    problems: list[WebhookEvent] = []
    usernames = _usernames(value)

    def messages_of(items: object, path: str, thread: _Customer | None, echo: bool = False) -> list[HistoryMessage]:
        out: list[HistoryMessage] = []
        if not isinstance(items, list):
            problems.append(ParseProblem(env, path, "expected a list", items))
            return out
        for i, item in enumerate(items):
            try:
                out.append(_history_message(env, item, thread, usernames, echo))
            except _Malformed as exc:
                problems.append(_problem(env, f"{path}[{i}]", exc, item))
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
            meta = _dict(item.get("metadata"))
            msgs: list[HistoryMessage] = []
            for t, thread in enumerate(_list(item.get("threads"))):
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
                    phase=_int(meta.get("phase")),
                    chunk_order=_int(meta.get("chunk_order")),
                    progress=_int(meta.get("progress")),
                    messages=msgs,
                    errors=_errors(item.get("errors")),
                    raw=item,
                )
            )
    elif "messages" in value or "message_echoes" in value:  # media content for earlier media_placeholders
        msgs = messages_of(value.get("messages", []), f"{where}.messages", None)
        if "message_echoes" in value:
            msgs += messages_of(value["message_echoes"], f"{where}.message_echoes", None, echo=True)
        chunks.append(HistoryChunk(env, None, None, None, msgs, _errors(value.get("errors")), value))
    else:
        return [UnknownChange(env, "history change holds neither history nor messages", value)]
    return chunks + problems


def _state_sync(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    def entry(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise _Malformed(f"state_sync entry is a {type(item).__name__}, not an object")
        if item.get("type") != "contact":
            return [UnknownChange(env, f"state_sync entry of type {item.get('type')!r}", item)]
        contact = _obj(item, "contact")
        # The phone number is empty for a username-era customer; the BSUID then names them.
        phone, user_id = _wa(contact.get("phone_number")), _str(contact, "user_id") or None
        wa_id = phone or user_id
        if not wa_id:
            raise _Malformed("contact.phone_number and contact.user_id are both missing")
        return [
            ContactSync(
                envelope=env,
                action=_req_str(item, "action"),
                wa_id=wa_id,
                full_name=_str(contact, "full_name"),
                first_name=_str(contact, "first_name"),
                timestamp=_time(_dict(item.get("metadata")).get("timestamp")),
                phone=phone,
                user_id=user_id,
                username=_str(contact, "username") or None,
            )
        ]

    if "state_sync" not in value:
        return [UnknownChange(env, "smb_app_state_sync change holds no state_sync", value)]
    return _each(env, value["state_sync"], f"{where}.state_sync", entry)


def _user_preferences(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    def entry(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise _Malformed(f"user_preferences entry is a {type(item).__name__}, not an object")
        user_id = _str(item, "user_id") or None
        wa_id = _wa(item.get("wa_id")) or user_id
        if not wa_id:
            raise _Malformed("user_preferences entry has no wa_id or user_id")
        return [UserPreference(envelope=env, wa_id=wa_id, category=_req_str(item, "category"),
                               value=_req_str(item, "value"), detail=_str(item, "detail"),
                               timestamp=_time(item.get("timestamp")), user_id=user_id)]

    if "user_preferences" not in value:
        return [UnknownChange(env, "user_preferences change holds no user_preferences", value)]
    return _each(env, value["user_preferences"], f"{where}.user_preferences", entry)


def _user_id_update(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    """`user_id_update[]`: a customer's BSUID was replaced (`user_id.previous` -> `user_id.current`)."""
    def entry(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise _Malformed(f"user_id_update entry is a {type(item).__name__}, not an object")
        ids = _obj(item, "user_id")
        return [UserIdChange(envelope=env, previous_user_id=_req_str(ids, "previous"),
                             current_user_id=_req_str(ids, "current"), phone=_wa(item.get("wa_id")),
                             detail=_str(item, "detail"), timestamp=_time(item.get("timestamp")))]

    if "user_id_update" not in value:
        return [UnknownChange(env, "user_id_update change holds no user_id_update", value)]
    return _each(env, value["user_id_update"], f"{where}.user_id_update", entry)


def _business_username(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    """`business_username_updates`: the number's own username was approved, reserved or deleted."""
    return [BusinessUsername(envelope=env, display_phone_number=_wa(value.get("display_phone_number")),
                             username=_str(value, "username") or None, status=_req_str(value, "status"),
                             raw=value)]


def _account_settings(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    """`account_settings_update`: a number's settings (e.g. calling) changed; read as an account event whose
    details are the settings Meta sent, whatever their names."""
    details = {k: v for k, v in value.items() if k not in ("messaging_product", "metadata")}
    return [AccountUpdate(envelope=env, event="ACCOUNT_SETTINGS_UPDATE",
                          phone_number=env.display_phone_number, details=details, raw=value)]


def _security(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    return [SecurityEvent(envelope=env, display_phone_number=_wa(value.get("display_phone_number")),
                          event=_req_str(value, "event"), requester=_str(value, "requester") or None)]


def _automatic_events(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    def entry(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise _Malformed(f"automatic event is a {type(item).__name__}, not an object")
        data = _dict(item.get("custom_data"))
        return [AutomaticEvent(envelope=env, wamid=_req_str(item, "id"), event_name=_req_str(item, "event_name"),
                               timestamp=_time(item.get("timestamp")), ctwa_clid=_str(item, "ctwa_clid"),
                               currency=_str(data, "currency"), value=_int(data.get("value")))]

    if "automatic_events" not in value:
        return [UnknownChange(env, "automatic_events change holds no automatic_events", value)]
    return _each(env, value["automatic_events"], f"{where}.automatic_events", entry)


def _member(x: object) -> GroupMember:
    d = _dict(x)
    return GroupMember(wa_id=_wa(d.get("wa_id")), user_id=_str(d, "user_id") or None,
                       username=_str(d, "username") or None, input=_wa(d.get("input")),
                       errors=_errors(d.get("errors")))


def _groups(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    """The four groups fields: each `groups[]` element is one event, told apart by its `type`."""
    def entry(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise _Malformed(f"group entry is a {type(item).__name__}, not an object")
        settings = {k: item[k] for k in ("group_subject", "group_description", "profile_picture")
                    if isinstance(item.get(k), dict)}
        subject = _str(item, "subject") or _str(_dict(item.get("group_subject")), "text")
        requester = _member(item) if (item.get("wa_id") or item.get("user_id")) else None
        return [GroupEvent(
            envelope=env, group_id=_req_str(item, "group_id"), type=_req_str(item, "type"),
            timestamp=_time(item.get("timestamp")), subject=subject,
            description=_str(item, "description") or _str(_dict(item.get("group_description")), "text"),
            invite_link=_str(item, "invite_link"),
            added=[_member(m) for m in _list(item.get("added_participants"))],
            removed=[_member(m) for m in _list(item.get("removed_participants"))],
            failed=[_member(m) for m in _list(item.get("failed_participants"))],
            member=requester, initiated_by=_str(item, "initiated_by") or _str(value, "initiated_by"),
            reason=_str(item, "reason"), request_id=_str(item, "request_id"),
            join_request_id=_str(item, "join_request_id"), settings=settings,
            errors=_errors(item.get("errors")), raw=item)]

    if "groups" not in value:
        return [UnknownChange(env, f"{env.field} change holds no groups", value)]
    return _each(env, value["groups"], f"{where}.groups", entry)


def _template_quality(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    return [
        TemplateQuality(
            envelope=env,
            template_id=_id(value.get("message_template_id")),
            name=_str(value, "message_template_name"),
            language=_str(value, "message_template_language"),
            previous_score=_str(value, "previous_quality_score"),
            new_score=_str(value, "new_quality_score"),
            raw=value,
        )
    ]


def _template_status(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    if "event" not in value and "new_quality_score" in value:
        # Meta's own quality-update example is labelled with this field; read it as what it is.
        return _template_quality(env, value, where)
    details = {
        k: value[k]
        for k in ("rejection_info", "disable_info", "other_info")
        if isinstance(value.get(k), dict)
    }
    return [
        TemplateStatus(
            envelope=env,
            event=_req_str(value, "event"),
            template_id=_id(value.get("message_template_id")),
            name=_str(value, "message_template_name"),
            language=_str(value, "message_template_language"),
            reason=_str(value, "reason"),
            raw=value,
            category=_str(value, "message_template_category"),
            details=details,
        )
    ]


def _template_category(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    return [
        TemplateCategory(
            envelope=env,
            template_id=_id(value.get("message_template_id")),
            name=_str(value, "message_template_name"),
            language=_str(value, "message_template_language"),
            previous_category=_str(value, "previous_category"),
            new_category=_str(value, "new_category"),
            correct_category=_str(value, "correct_category"),
            effective_at=_time(value.get("category_update_timestamp")),
            raw=value,
        )
    ]


def _template_components(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    return [
        TemplateComponents(
            envelope=env,
            template_id=_id(value.get("message_template_id")),
            name=_str(value, "message_template_name"),
            language=_str(value, "message_template_language"),
            element=_str(value, "message_template_element"),
            title=_str(value, "message_template_title"),
            footer=_str(value, "message_template_footer"),
            buttons=[b for b in _list(value.get("message_template_buttons")) if isinstance(b, dict)],
            raw=value,
        )
    ]


def _calls(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    """Calling API: `calls[]` (connect, terminate) and call `statuses[]` (ringing, accepted, rejected)."""
    contacts = [c for c in _list(value.get("contacts")) if isinstance(c, dict)]
    business = _digits(env.display_phone_number)

    usernames = _usernames(value)

    def customer_of(item: dict) -> tuple[str, str | None, str | None]:
        direction = _str(item, "direction")
        sender, to = _wa(item.get("from")), _wa(item.get("to")) or _wa(item.get("recipient_id"))
        if direction == "BUSINESS_INITIATED" or (business and _digits(sender) == business):
            phone, user_id = to, _str(item, "to_user_id") or _str(item, "recipient_user_id")
        else:
            phone, user_id = sender, _str(item, "from_user_id")
        contact = contacts[0] if len(contacts) == 1 else {}
        user_id = user_id or _str(contact, "user_id") or None
        customer = phone or user_id
        if not customer:
            raise _Malformed("the call names no customer ('from'/'to' or a user id)")
        return customer, user_id, (_str(_dict(contact.get("profile")), "name") or "").strip() or None

    def call(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise _Malformed(f"call is a {type(item).__name__}, not an object")
        customer, user_id, name = customer_of(item)
        return [CallEvent(envelope=env, call_id=_req_str(item, "id"), event=_req_str(item, "event"),
                          direction=_str(item, "direction"), customer=customer,
                          timestamp=_req_time(item, "timestamp"), status=_str(item, "status"),
                          duration=_int(item.get("duration")), raw=item, customer_user_id=user_id,
                          profile_name=name, username=usernames.get(user_id or "") or usernames.get(customer))]

    def status(item: object) -> list[WebhookEvent]:
        if not isinstance(item, dict):
            raise _Malformed(f"call status is a {type(item).__name__}, not an object")
        customer, user_id, name = customer_of({**item, "direction": "BUSINESS_INITIATED"})
        return [CallEvent(envelope=env, call_id=_req_str(item, "id"), event="status", direction=None,
                          customer=customer, timestamp=_req_time(item, "timestamp"),
                          status=_req_str(item, "status"), duration=None, raw=item,
                          customer_user_id=user_id, profile_name=name,
                          username=usernames.get(user_id or "") or usernames.get(customer))]

    events: list[WebhookEvent] = []
    if "calls" in value:
        events += _each(env, value["calls"], f"{where}.calls", call)
    if "statuses" in value:
        events += _each(env, value["statuses"], f"{where}.statuses", status)
    if "errors" in value and isinstance(value["errors"], list):
        events.append(ChangeErrors(envelope=env, errors=_errors(value["errors"])))
    if not events and not any(k in value for k in ("calls", "statuses", "errors")):
        events.append(UnknownChange(env, "calls change holds no calls or statuses", value))
    return events


def _quality(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    return [
        QualityUpdate(
            envelope=env,
            display_phone_number=_wa(value.get("display_phone_number")),
            event=_req_str(value, "event"),
            current_limit=_str(value, "current_limit"),
            raw=value,
            old_limit=_str(value, "old_limit"),
            max_daily_conversations_per_business=_str(value, "max_daily_conversations_per_business"),
        )
    ]


def _account(env: Envelope, value: dict, where: str) -> list[WebhookEvent]:
    return [
        AccountUpdate(
            envelope=env,
            event=_req_str(value, "event"),
            phone_number=_wa(value.get("phone_number")),
            details={k: v for k, v in value.items() if k not in ("event", "phone_number")},
            raw=value,
        )
    ]


_HANDLERS: dict[str, Handler] = {
    "messages": _messages,
    "smb_message_echoes": _echoes,
    "history": _history,
    "smb_app_state_sync": _state_sync,
    "message_template_status_update": _template_status,
    "message_template_quality_update": _template_quality,
    "template_category_update": _template_category,
    "phone_number_quality_update": _quality,
    "account_update": _account,
    "user_preferences": _user_preferences,
    "message_template_components_update": _template_components,
    "calls": _calls,
    "user_id_update": _user_id_update,
    "security": _security,
    "account_settings_update": _account_settings,
    "group_lifecycle_update": _groups,
    "group_participants_update": _groups,
    "group_settings_update": _groups,
    "group_status_update": _groups,
    "automatic_events": _automatic_events,
    "business_username_updates": _business_username,
    "business_username_update": _business_username,  # the singular some samples use
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
    for holder in (change, entry, _dict(value)):
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
        entry_env = replace(
            _NO_ENVELOPE, waba_id=_id(entry.get("id")) or "", entry_time=_time(entry.get("time"))
        )
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
            env = replace(entry_env, field=fld)
            if not isinstance(value, dict):
                yield _Slot(f"{cwhere}.value", env, fld, value, problem="'value' is missing or not an object")
                continue
            meta = _dict(value.get("metadata"))
            env = replace(
                env,
                phone_number_id=_id(meta.get("phone_number_id")),
                display_phone_number=_wa(meta.get("display_phone_number"))
                or _wa(value.get("display_phone_number")),
            )
            yield _Slot(f"{cwhere}.value", env, fld, value)


def parse_delivery(payload: object) -> list[WebhookEvent]:
    """Decode one webhook delivery (decoded JSON) into events, in payload order.

    Input of the wrong shape becomes a ParseProblem (the parser's own `_Malformed`); any other exception is a
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
                except _Malformed as exc:  # a change-level defect costs only that change
                    events.append(_problem(env, slot.where, exc, value))
    except _Malformed as exc:
        events.append(_problem(_NO_ENVELOPE, "payload", exc, payload))
    return events


def _change_kinds(fld: str | None, value: object) -> list[str]:
    if fld is None:
        return ["unknown"]
    if fld == "messages":
        v = _dict(value)
        kinds = []
        if _list(v.get("messages")):
            kinds.append("message")
        if _list(v.get("statuses")):
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
