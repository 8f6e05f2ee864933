"""Builders shared by tests: settings, signed Meta deliveries, webhook payloads."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.config import Settings, parse_settings
from bot.core.workspace import DEFAULT_WORKSPACE
from bot.meta.signature import sign
from storage.models import SlackOutbox, utcnow

APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
SIGNING_SECRET = "test-slack-signing-secret"
BOT_TOKEN = "xoxb-test-bot-token"
WA_TOKEN = "EAAG-test-token"
PNID = "100000000000001"
WABA = "200000000000001"
BUSINESS = "915224000000"
SLACK_CHANNEL = "C0LUCKNOW"


def make_settings(db_url: str, *, redis_url: str = "", graph_url: str = "http://127.0.0.1:9",
                  slack_url: str = "http://127.0.0.1:9/api/", **extra: Any) -> Settings:
    """Settings for one channel pointed at the given database and stand-ins."""
    raw: dict[str, Any] = {
        "database_url": db_url,
        "redis_url": redis_url,
        "meta": {"graph_url": graph_url, "app_id": "300000000000001", "app_secret": APP_SECRET,
                 "verify_token": VERIFY_TOKEN},
        "slack": {"api_url": slack_url, "bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET,
                  "alerts_channel": "C0ALERTS", "campaign_managers": ["UMANAGER"]},
        "channels": [{"name": "lucknow", "phone_number_id": PNID, "waba_id": WABA,
                      "display_phone_number": "+91 522 400 0000", "mode": "coexistence",
                      "access_token": WA_TOKEN, "slack_channel": SLACK_CHANNEL}],
    }
    for key, value in extra.items():
        raw[key] = value
    return parse_settings(raw, env={})


def midday_zone(now: datetime | None = None) -> str:
    """A fixed-offset time zone in which it is now about noon: figures for "today" and "this week" then hold
    for events of the last hours whenever the tests run (a real zone's midnight would split them)."""
    hour = (now or utcnow()).hour
    offset = 12 - hour  # -11 .. +12; Etc/GMT's sign is inverted (Etc/GMT-5 is UTC+5)
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def signed(body: dict[str, Any] | bytes, secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    """A body and the headers Meta would send with it."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw, {"X-Hub-Signature-256": sign(secret, raw), "Content-Type": "application/json"}


def envelope(field: str, value: dict[str, Any], waba: str = WABA) -> dict[str, Any]:
    return {"object": "whatsapp_business_account",
            "entry": [{"id": waba, "changes": [{"field": field, "value": value}]}]}


def metadata() -> dict[str, str]:
    return {"display_phone_number": BUSINESS, "phone_number_id": PNID}


def inbound_text(wamid: str, text: str, *, wa_id: str = "919812345678", name: str = "Ravi",
                 ts: int = 1_760_000_000, context_id: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"from": wa_id, "id": wamid, "timestamp": str(ts), "type": "text",
                           "text": {"body": text}}
    if context_id:
        msg["context"] = {"from": BUSINESS, "id": context_id}
    return envelope("messages", {"messaging_product": "whatsapp", "metadata": metadata(),
                                 "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                                 "messages": [msg]})


def echo_text(wamid: str, text: str, *, to: str = "919812345678", ts: int = 1_760_000_100) -> dict[str, Any]:
    return envelope("smb_message_echoes", {
        "messaging_product": "whatsapp", "metadata": metadata(),
        "message_echoes": [{"from": BUSINESS, "to": to, "id": wamid, "timestamp": str(ts), "type": "text",
                            "text": {"body": text}}]})


def status(wamid: str, state: str, *, recipient: str = "919812345678", ts: int = 1_760_000_200,
           error_code: int | None = None, pricing: dict[str, Any] | None = None) -> dict[str, Any]:
    st: dict[str, Any] = {"id": wamid, "status": state, "timestamp": str(ts), "recipient_id": recipient}
    if error_code is not None:
        st["errors"] = [{"code": error_code, "title": "Re-engagement message",
                         "message": "Re-engagement message",
                         "error_data": {"details": "Message failed to send because more than 24 hours "
                                                   "have passed since the customer last replied."}}]
    if pricing is not None:
        st["pricing"] = pricing
    return envelope("messages", {"messaging_product": "whatsapp", "metadata": metadata(), "statuses": [st]})


def history_chunk(conversations: int, per_conversation: int = 2, *, chunk_order: int = 1, progress: int = 50,
                  first_wa_id: int = 919800000000, text: str = "Is the flat ready to move in?") -> dict[str, Any]:
    """One `history` webhook as Meta sends it during onboarding: `conversations` threads, each with
    `per_conversation` messages alternating customer and business (about 180 bytes a message)."""
    threads = []
    for c in range(conversations):
        wa_id = str(first_wa_id + c)
        messages = []
        for m in range(per_conversation):
            customer = m % 2 == 0
            msg: dict[str, Any] = {"from": wa_id if customer else BUSINESS, "id": f"wamid.H{chunk_order}.{c}.{m}",
                                   "timestamp": str(1_748_678_400 + m * 60), "type": "text",
                                   "text": {"body": text}, "history_context": {"status": "READ"}}
            if not customer:
                msg["to"] = wa_id
            messages.append(msg)
        threads.append({"id": wa_id, "messages": messages})
    return envelope("history", {"messaging_product": "whatsapp", "metadata": metadata(), "history": [
        {"metadata": {"phase": 1, "chunk_order": chunk_order, "progress": progress}, "threads": threads}]})


async def owe_raw(session: AsyncSession, *, kind: str, payload: dict[str, Any], dedupe_key: str,
                  thread_key: str = "t", order_ts: datetime | None = None, conversation_id: int | None = None,
                  slack_team: str = DEFAULT_WORKSPACE) -> SlackOutbox:
    """An outbox row written as stored, without a kind class: a test kind's, or an earlier version's."""
    row = SlackOutbox(dedupe_key=dedupe_key, thread_key=thread_key, kind=kind, payload=payload,
                      order_ts=order_ts or utcnow(), conversation_id=conversation_id, attempts=0,
                      created_at=utcnow(), slack_team=slack_team)
    session.add(row)
    await session.flush()
    return row
