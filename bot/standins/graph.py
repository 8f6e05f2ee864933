"""A local stand-in for Meta's Graph API (WhatsApp Cloud API): a real HTTP server on loopback.

It answers the calls the bridge makes with Meta's documented shapes and error bodies, enforces a
per-number messages-per-second cap over any sliding one-second window, and lets tests inject errors.
Used by the test suite and by `python -m bot demo`.

Why one module: it plays one whole API (one server, one state, one error vocabulary); split
across files its endpoints would share everything through imports anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import socket
import struct
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from bot.standins._http import LoopbackServer, new_digits
from bot.standins.signing import sign_meta
from bot.standins.status_feed import StatusFeed

WILDCARD = "*"
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
MESSAGE_TYPES = ("text", "template", "reaction", "location", "contacts", "interactive", *MEDIA_KINDS)
TEMPLATE_CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
SYNC_TYPES = ("smb_app_state_sync", "history")
DEFAULT_APP_FIELDS = (
    "messages",
    "smb_message_echoes",
    "smb_app_state_sync",
    "history",
    "message_template_status_update",
    "phone_number_quality_update",
    "account_update",
)
DEFAULT_PHONE_FIELDS = (
    "verified_name",
    "code_verification_status",
    "display_phone_number",
    "quality_rating",
    "platform_type",
    "throughput",
    "id",
)

# Titles Meta puts in `message` as "(#code) title"; used for injected errors.
ERROR_TITLES: Mapping[int, str] = {
    4: "Application request limit reached",
    100: "Invalid parameter",
    130429: "Rate limit hit",
    131000: "Something went wrong",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131026: "Message undeliverable",
    131031: "Business Account locked",
    131042: "Business eligibility payment issue",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
    "messages on WhatsApp from your business.",
    131051: "Unsupported message type",
    131053: "Media upload error",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132015: "Template is Paused",
    132016: "Template is Disabled",
    190: "Invalid OAuth access token",
    368: "Temporarily blocked for policies violations",
    80007: "Rate limit issues",
}

# Upload size limits by MIME type (Cloud API media reference).
_MB = 1024 * 1024
_SIZE_LIMITS = (("image/webp", 500 * 1024), ("image/", 5 * _MB), ("video/", 16 * _MB), ("audio/", 16 * _MB))
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


@dataclass
class SendRecord:
    """One message send as the stand-in received it."""

    time: float  # time.monotonic() at receipt
    phone_number_id: str
    to: str
    type: str
    payload: dict[str, Any]
    wamid: str | None = None
    error_code: int | None = None
    http_status: int = 200


@dataclass
class StoredMedia:
    """A media object held by the stand-in."""

    id: str
    data: bytes
    mime_type: str
    sha256: str
    filename: str | None
    owner: str | None  # phone_number_id that uploaded it; None when added by a test
    sig: str


@dataclass
class PhoneNumber:
    """A business phone number as GET /{phone_number_id} describes it."""

    id: str
    waba_id: str | None = None
    display_phone_number: str = "+1 555-000-0000"
    verified_name: str = "Stand-in Business"
    quality_rating: str = "GREEN"
    throughput_level: str = "STANDARD"
    messaging_limit_tier: str = "TIER_1K"
    platform_type: str = "CLOUD_API"
    is_on_biz_app: bool = False
    code_verification_status: str = "VERIFIED"
    name_status: str = "APPROVED"

    def as_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "display_phone_number": self.display_phone_number,
            "verified_name": self.verified_name,
            "quality_rating": self.quality_rating,
            "throughput": {"level": self.throughput_level},
            "messaging_limit_tier": self.messaging_limit_tier,
            "platform_type": self.platform_type,
            "is_on_biz_app": self.is_on_biz_app,
            "code_verification_status": self.code_verification_status,
            "name_status": self.name_status,
        }


@dataclass
class _Fault:
    code: int
    http_status: int
    phone_number_id: str | None = None
    to: str | None = None
    remaining: int | None = 1  # None = permanent
    details: str | None = None

    def matches(self, pnid: str, to: str) -> bool:
        return (self.phone_number_id is None or self.phone_number_id == pnid) and (
            self.to is None or _digits(self.to) == _digits(to)
        )


@dataclass
class _OAuthCode:
    token: str
    ids: tuple[str, ...]
    used: bool = False


@dataclass
class _Throttle:
    mps: float
    window: deque[float] = field(default_factory=deque)


def _digits(number: str) -> str:
    return re.sub(r"\D", "", number)


def _fbtrace() -> str:
    return secrets.token_urlsafe(12)


def graph_error(
    http_status: int,
    code: int,
    message: str | None = None,
    *,
    subcode: int | None = None,
    details: str | None = None,
    error_type: str = "OAuthException",
    user_title: str | None = None,
    user_msg: str | None = None,
) -> web.Response:
    """A response carrying Meta's error body."""
    text = message if message is not None else f"(#{code}) {ERROR_TITLES.get(code, 'Error')}"
    error: dict[str, Any] = {"message": text, "type": error_type, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if user_title:
        error["error_user_title"] = user_title
    if user_msg:
        error["error_user_msg"] = user_msg
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = _fbtrace()
    return web.json_response({"error": error}, status=http_status)


def _missing(param: str) -> web.Response:
    return graph_error(
        400, 100, f"(#100) The parameter {param} is required.", details=f"The parameter {param} is required."
    )


def _invalid(details: str, code: int = 100) -> web.Response:
    return graph_error(400, code, details=details)


def _encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"pos:{index}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not raw.startswith("pos:") or not raw[4:].isdigit():
        return None
    return int(raw[4:])


def _template_placeholders(template: Mapping[str, Any], component_type: str) -> int:
    for component in template.get("components") or []:
        if str(component.get("type", "")).upper() == component_type and component.get("text"):
            return len(set(_PLACEHOLDER.findall(str(component["text"]))))
    return 0


def _request_parameters(payload_template: Mapping[str, Any], component_type: str) -> int:
    for component in payload_template.get("components") or []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() == component_type:
            return len(component.get("parameters") or [])
    return 0


class GraphStandin(LoopbackServer):
    """Fake Meta Graph API. `tokens=None` accepts any token for any ID; otherwise token -> allowed IDs."""

    def __init__(
        self,
        *,
        tokens: Mapping[str, Iterable[str]] | None = None,
        mps: float | None = None,
        latency: float = 0.0,
        app_id: str = "300000000000001",
        app_secret: str = "standin-app-secret",
        app_name: str = "Wabridge Stand-in",
        new_template_status: str = "PENDING",
        port: int = 0,
    ) -> None:
        super().__init__(port=port, latency=latency)
        self.open_tokens = tokens is None
        self.tokens: dict[str, set[str]] = {t: set(ids) for t, ids in (tokens or {}).items()}
        self.default_mps = mps
        self.app_id = app_id
        self.app_secret = app_secret
        self.app_name = app_name
        self.new_template_status = new_template_status
        # Records, newest last.
        self.sends: list[SendRecord] = []
        self.rejected: list[SendRecord] = []
        self.throttle_hits: list[SendRecord] = []
        self.reads: list[SendRecord] = []
        self.smb_sync_requests: list[tuple[str, str, str]] = []
        self.register_calls: list[str] = []  # phone_number_ids POSTed to /register
        # State.
        self.media: dict[str, StoredMedia] = {}
        self.templates: dict[str, list[dict[str, Any]]] = {}
        self.phone_numbers: dict[str, PhoneNumber] = {}
        self.subscribed_apps: dict[str, list[dict[str, Any]]] = {}
        self.app_subscriptions: dict[str, dict[str, Any]] = {
            "whatsapp_business_account": {"fields": list(DEFAULT_APP_FIELDS), "callback_url": None}
        }
        self._throttles: dict[str, _Throttle] = {}
        self._faults: list[_Fault] = []
        self._drops: dict[str, int] = {}  # connection-level faults: mode -> sends left to affect
        self._used_connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._oauth_codes: dict[str, _OAuthCode] = {}
        self.status_feed: StatusFeed | None = None
        # Where the URLs in answers point (media `url`, `paging.next`); None: here. A test sets another origin
        # to play a proxy or an upstream bug that names somewhere else.
        self.media_url_base: str | None = None
        self.paging_base: str | None = None

    # ---- configuration helpers -------------------------------------------------------------------

    @property
    def app_token(self) -> str:
        """An app access token (`app_id|app_secret`), as Meta accepts for app-level calls."""
        return f"{self.app_id}|{self.app_secret}"

    def add_token(self, token: str, *ids: str) -> None:
        """Allow `token` for these phone number / WABA / app IDs (`"*"` for all)."""
        self.tokens.setdefault(token, set()).update(ids)

    def revoke_token(self, token: str) -> None:
        """Make a token invalid (next calls get 401 / code 190)."""
        self.tokens.pop(token, None)
        self.open_tokens = False

    def add_phone_number(self, phone_number_id: str, waba_id: str | None = None, **fields: Any) -> PhoneNumber:
        """Register a number (PhoneNumber fields: quality_rating, throughput_level, is_on_biz_app, …)."""
        number = PhoneNumber(id=phone_number_id, waba_id=waba_id, **fields)
        self.phone_numbers[phone_number_id] = number
        return number

    def set_phone_fields(self, phone_number_id: str, **fields: Any) -> None:
        """Change fields of a registered number."""
        number = self.phone_numbers.setdefault(phone_number_id, PhoneNumber(id=phone_number_id))
        for key, value in fields.items():
            if not hasattr(number, key):
                raise AttributeError(key)
            setattr(number, key, value)

    def set_mps(self, phone_number_id: str, mps: float | None) -> None:
        """Cap one number's sends per sliding second (None removes the cap)."""
        if mps is None:
            self._throttles.pop(phone_number_id, None)
        else:
            self._throttles[phone_number_id] = _Throttle(mps)

    def fail_next(
        self,
        phone_number_id: str | None = None,
        to: str | None = None,
        code: int = 131000,
        times: int = 1,
        http_status: int = 400,
        details: str | None = None,
    ) -> None:
        """Make the next `times` matching sends fail with Meta error `code`."""
        self._faults.append(_Fault(code, http_status, phone_number_id, to, times, details))

    def fail_recipient(self, to: str, code: int, http_status: int = 400, details: str | None = None) -> None:
        """Make every send to `to` fail with `code` until clear_failures()."""
        self._faults.append(_Fault(code, http_status, None, to, None, details))

    def send_status_webhooks(self, url: str | Callable[[], str | None], app_secret: str | None = None,
                             **feed: Any) -> StatusFeed:
        """From now on answer every accepted send with `sent`, `delivered` and `read` webhooks to url (or to
        what url() names at each attempt: None while nobody listens), echoing `biz_opaque_callback_data`."""
        self.status_feed = StatusFeed(url, app_secret or self.app_secret, **feed)
        return self.status_feed

    async def stop(self) -> None:
        if self.status_feed is not None:
            await self.status_feed.close()
        await super().stop()

    def clear_failures(self) -> None:
        """Drop all injected failures."""
        self._faults.clear()
        self._drops.clear()

    def drop_answer_next(self, times: int = 1) -> None:
        """Accept the next `times` sends, then reset the connection (TCP RST) before answering: the send
        happened, the sender never hears of it."""
        self._drops["after_send"] = self._drops.get("after_send", 0) + times

    def close_idle_next(self, times: int = 1) -> None:
        """The next `times` sends that arrive on a reused keep-alive connection find it closed: the server
        shuts it without reading the request, as when an idle timeout fires just as the client writes."""
        self._drops["stale"] = self._drops.get("stale", 0) + times

    def _take_drop(self, mode: str) -> bool:
        if self._drops.get(mode, 0) <= 0:
            return False
        self._drops[mode] -= 1
        return True

    def add_media(
        self, data: bytes, mime_type: str, *, filename: str | None = None, phone_number_id: str | None = None
    ) -> str:
        """Store media as if a customer had sent it; returns its media ID."""
        media_id = self._unique_id(self.media)
        self.media[media_id] = StoredMedia(
            id=media_id,
            data=data,
            mime_type=mime_type,
            sha256=hashlib.sha256(data).hexdigest(),
            filename=filename,
            owner=phone_number_id,
            sig=secrets.token_urlsafe(16),
        )
        return media_id

    def add_template(
        self,
        waba_id: str,
        name: str,
        language: str = "en_US",
        *,
        category: str = "UTILITY",
        status: str = "APPROVED",
        body: str | None = None,
        components: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Add an existing template to a WABA (`body` is a shortcut for a BODY component)."""
        parts = list(components or [])
        if body is not None:
            parts.append({"type": "BODY", "text": body})
        template = {
            "id": new_digits(),
            "name": name,
            "language": language,
            "status": status,
            "category": category,
            "components": parts,
        }
        self.templates.setdefault(waba_id, []).append(template)
        return template

    def set_template_status(self, waba_id: str, name: str, language: str, status: str) -> None:
        """Change a template's status (APPROVED, PAUSED, DISABLED, REJECTED, …)."""
        for template in self.templates.get(waba_id, []):
            if template["name"] == name and template["language"] == language:
                template["status"] = status
                return
        raise KeyError(f"{waba_id}/{name}/{language}")

    def set_app_fields(
        self,
        fields: Iterable[str],
        object_name: str = "whatsapp_business_account",
        callback_url: str | None = None,
    ) -> None:
        """Set the webhook fields the app is subscribed to (e.g. leave out smb_message_echoes)."""
        self.app_subscriptions[object_name] = {"fields": list(fields), "callback_url": callback_url}

    def add_oauth_code(self, code: str, token: str, *ids: str) -> None:
        """Make `code` exchangeable (once) for `token`, which then works for `ids`."""
        self._oauth_codes[code] = _OAuthCode(token, ids)

    @property
    def attempts(self) -> list[SendRecord]:
        """Every message send that reached the stand-in (accepted or rejected), by receive time."""
        return sorted([*self.sends, *self.rejected], key=lambda r: r.time)

    def sends_to(self, to: str) -> list[SendRecord]:
        """Accepted sends to one recipient."""
        return [s for s in self.sends if _digits(s.to) == _digits(to)]

    def reset_records(self) -> None:
        """Forget recorded traffic (state such as templates and media is kept)."""
        self.sends.clear()
        self.rejected.clear()
        self.throttle_hits.clear()
        self.reads.clear()
        for throttle in self._throttles.values():
            throttle.window.clear()

    async def deliver_webhook(
        self, url: str, payload: Mapping[str, Any] | bytes, *, app_secret: str | None = None
    ) -> tuple[int, str]:
        """POST a signed webhook the way Meta does; returns (status, body text)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign_meta(app_secret or self.app_secret, body),
            "User-Agent": "facebookexternalua",
        }
        async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.text()

    # ---- internals -------------------------------------------------------------------------------

    @staticmethod
    def _unique_id(existing: Mapping[str, Any]) -> str:
        while True:
            candidate = new_digits(16)
            if candidate not in existing:
                return candidate

    def _routes(self, app: web.Application) -> None:
        v = "/{version:v\\d+\\.\\d+}"
        app.router.add_get(v + "/oauth/access_token", self._oauth_access_token)
        app.router.add_get(v + "/debug_token", self._debug_token)
        app.router.add_get("/media-download/{media_id}", self._media_download)
        app.router.add_post(v + "/{node}/messages", self._messages)
        app.router.add_post(v + "/{node}/media", self._upload_media)
        app.router.add_get(v + "/{node}/message_templates", self._list_templates)
        app.router.add_post(v + "/{node}/message_templates", self._create_template)
        app.router.add_get(v + "/{node}/subscribed_apps", self._get_subscribed_apps)
        app.router.add_post(v + "/{node}/subscribed_apps", self._post_subscribed_apps)
        app.router.add_delete(v + "/{node}/subscribed_apps", self._delete_subscribed_apps)
        app.router.add_get(v + "/{node}/subscriptions", self._app_subscriptions)
        app.router.add_post(v + "/{node}/smb_app_data", self._smb_app_data)
        app.router.add_post(v + "/{node}/register", self._register)
        app.router.add_get(v + "/{node}", self._get_node)

    @staticmethod
    def _token_of(request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip() or None
        return request.query.get("access_token") or None

    def _token_valid(self, token: str) -> bool:
        return token == self.app_token or self.open_tokens or token in self.tokens

    def _token_allows(self, token: str, object_id: str) -> bool:
        if token == self.app_token:
            return object_id == self.app_id
        if token in self.tokens:
            ids = self.tokens[token]
            return WILDCARD in ids or object_id in ids
        return self.open_tokens

    def _auth(self, request: web.Request, object_id: str | None) -> web.Response | str:
        token = self._token_of(request)
        if token is None:
            return graph_error(
                400, 104, "An access token is required to request this resource.", error_type="OAuthException"
            )
        if not self._token_valid(token):
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if object_id is not None and not self._token_allows(token, object_id):
            return graph_error(
                400,
                100,
                f"Unsupported {request.method.lower()} request. Object with ID '{object_id}' does not exist, "
                "cannot be loaded due to missing permissions, or does not support this operation.",
                subcode=33,
                error_type="GraphMethodException",
            )
        return token

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any] | None:
        """JSON or form body as a dict; None when it cannot be parsed."""
        if request.content_type == "application/json":
            try:
                data = await request.json()
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def _throttled(self, pnid: str, now: float) -> bool:
        throttle = self._throttles.get(pnid)
        if throttle is None and self.default_mps is not None:
            throttle = self._throttles.setdefault(pnid, _Throttle(self.default_mps))
        if throttle is None:
            return False
        window = throttle.window
        while window and window[0] <= now - 1.0:
            window.popleft()
        return len(window) >= throttle.mps

    def _take_fault(self, pnid: str, to: str) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(pnid, to):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    # ---- /messages -------------------------------------------------------------------------------

    @staticmethod
    def _validate_message(payload: Mapping[str, Any]) -> web.Response | None:
        if payload.get("messaging_product") != "whatsapp":
            return _missing("messaging_product")
        # A phone number goes in `to`, a business-scoped user id in `recipient`; `to` wins when both are set.
        if not payload.get("to") and not payload.get("recipient"):
            return _missing("to")
        opaque = payload.get("biz_opaque_callback_data")
        if opaque is not None and (not isinstance(opaque, str) or len(opaque) > 512):
            return _invalid("Param biz_opaque_callback_data must be a string of at most 512 characters.")
        kind = payload.get("type", "text")
        if kind not in MESSAGE_TYPES:
            return graph_error(400, 131051, details=f"Message type {kind!r} is not supported.")
        content = payload.get(kind)
        if not isinstance(content, dict):
            return _missing(kind)
        if kind == "text" and not str(content.get("body") or "").strip():
            return _missing("text['body']")
        if kind == "text" and len(str(content["body"])) > 4096:
            return _invalid("text['body'] is longer than 4096 characters.")
        if kind == "template":
            if not content.get("name"):
                return _missing("template['name']")
            language = content.get("language")
            if not isinstance(language, dict) or not language.get("code"):
                return _missing("template['language']['code']")
        if kind in MEDIA_KINDS:
            if not content.get("id") and not content.get("link"):
                return _missing(f"{kind}['id'] or {kind}['link']")
            if content.get("caption") and kind in ("audio", "sticker"):
                return _invalid(f"Param {kind}['caption'] is not allowed for {kind} messages.")
            if len(str(content.get("caption") or "")) > 1024:
                return _invalid(f"{kind}['caption'] is longer than 1024 characters.")
        if kind == "reaction" and (not content.get("message_id") or "emoji" not in content):
            return _missing("reaction['message_id'] and reaction['emoji']")
        return None

    def _check_template(self, pnid: str, content: Mapping[str, Any]) -> tuple[int, web.Response] | None:
        number = self.phone_numbers.get(pnid)
        if number is None or number.waba_id is None or not self.templates.get(number.waba_id):
            return None  # nothing registered for this number: accept any template
        name = content.get("name")
        language = (content.get("language") or {}).get("code")
        found = next(
            (t for t in self.templates[number.waba_id] if t["name"] == name and t["language"] == language),
            None,
        )
        if found is None or found["status"] not in ("APPROVED", "PAUSED", "DISABLED"):
            details = f"template name ({name}) does not exist in {language}"
            return 132001, graph_error(404 if found is None else 400, 132001, details=details)
        if found["status"] == "PAUSED":
            return 132015, graph_error(400, 132015, details=f"Template {name} is paused")
        if found["status"] == "DISABLED":
            return 132016, graph_error(400, 132016, details=f"Template {name} is disabled")
        expected = _template_placeholders(found, "BODY")
        given = _request_parameters(content, "BODY")
        if expected != given:
            details = (
                f"body: number of localizable_params ({given}) does not match the expected "
                f"number of params ({expected})"
            )
            return 132000, graph_error(400, 132000, details=details)
        return None

    async def _messages(self, request: web.Request) -> web.Response:
        connection = request.transport
        reused = connection is not None and connection in self._used_connections
        if connection is not None:
            self._used_connections.add(connection)
        if reused and connection is not None and self._take_drop("stale"):
            connection.close()
            return web.Response(status=204)  # never written: the connection is gone
        pnid = request.match_info["node"]
        auth = self._auth(request, pnid)
        if isinstance(auth, web.Response):
            return auth
        now = time.monotonic()
        payload = await self._body(request)
        if payload is None:
            return _invalid("Request body is not valid JSON.")
        if payload.get("status") == "read":
            if not payload.get("message_id"):
                return _missing("message_id")
            self.reads.append(SendRecord(now, pnid, "", "read", payload))
            return web.json_response({"success": True})
        invalid = self._validate_message(payload)
        if invalid is not None:
            return invalid
        to = str(payload.get("to") or payload["recipient"])
        by_user_id = not payload.get("to")
        group = payload.get("recipient_type") == "group"  # Groups API: `to` is the group's id
        kind = str(payload.get("type", "text"))
        record = SendRecord(now, pnid, to, kind, payload)

        def reject(response: web.Response, code: int) -> web.Response:
            record.error_code, record.http_status = code, response.status
            self.rejected.append(record)
            return response

        if self._throttled(pnid, now):
            self.throttle_hits.append(record)
            details = (
                "Message failed to send because there were too many messages sent from this phone "
                "number in a short period of time"
            )
            return reject(graph_error(400, 130429, details=details), 130429)
        fault = self._take_fault(pnid, to)
        if fault is not None:
            return reject(graph_error(fault.http_status, fault.code, details=fault.details), fault.code)
        if kind == "template":
            problem = self._check_template(pnid, payload["template"])
            if problem is not None:
                return reject(problem[1], problem[0])
        record.wamid = "wamid." + secrets.token_urlsafe(27)
        self.sends.append(record)
        throttle = self._throttles.get(pnid)
        if throttle is not None:
            throttle.window.append(now)
        if self.status_feed is not None:
            number = self.phone_numbers.get(pnid)
            self.status_feed.schedule(
                waba_id=(number.waba_id if number is not None else None) or "200000000000001",
                phone_number_id=pnid, display_phone_number=number.display_phone_number if number else "",
                wamid=record.wamid, recipient=to if group else _digits(to), template=kind == "template",
                callback_data=str(payload["biz_opaque_callback_data"]) if payload.get("biz_opaque_callback_data")
                else None, group=group)
        message: dict[str, Any] = {"id": record.wamid}
        if kind == "template":
            message["message_status"] = "accepted"
        if connection is not None and self._take_drop("after_send"):
            sock = connection.get_extra_info("socket")
            if sock is not None:  # linger 0: the close is a reset, which the sender reads as ReadError
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.abort()
            return web.Response(status=204)  # never written: the connection is gone
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "user_id": to} if by_user_id else {"input": to, "wa_id": _digits(to)}],
                "messages": [message],
            }
        )

    # ---- media -----------------------------------------------------------------------------------

    async def _upload_media(self, request: web.Request) -> web.Response:
        pnid = request.match_info["node"]
        auth = self._auth(request, pnid)
        if isinstance(auth, web.Response):
            return auth
        if not request.content_type.startswith("multipart/"):
            return _invalid("Media upload must be multipart/form-data.")
        form = await request.post()
        if form.get("messaging_product") != "whatsapp":
            return _missing("messaging_product")
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return _missing("file")
        data = upload.file.read()
        mime_type = str(form.get("type") or upload.content_type or "application/octet-stream")
        limit = next((size for prefix, size in _SIZE_LIMITS if mime_type.startswith(prefix)), 100 * _MB)
        if len(data) > limit:
            return graph_error(400, 131053, details=f"File is larger than {limit} bytes for {mime_type}")
        media_id = self.add_media(data, mime_type, filename=upload.filename, phone_number_id=pnid)
        return web.json_response({"id": media_id})

    def _media_info(self, media: StoredMedia) -> dict[str, Any]:
        query = urlencode({"sig": media.sig})
        return {
            "messaging_product": "whatsapp",
            "url": f"{self.media_url_base or self.base_url}/media-download/{media.id}?{query}",
            "mime_type": media.mime_type,
            "sha256": media.sha256,
            "file_size": len(media.data),
            "id": media.id,
        }

    async def _media_download(self, request: web.Request) -> web.Response:
        media = self.media.get(request.match_info["media_id"])
        if media is None or request.query.get("sig") != media.sig:
            return web.Response(status=404, text="Not Found")
        auth = self._auth(request, media.owner)
        if isinstance(auth, web.Response):
            return auth
        return web.Response(body=media.data, content_type=media.mime_type)

    # ---- node reads ------------------------------------------------------------------------------

    async def _get_node(self, request: web.Request) -> web.Response:
        node = request.match_info["node"]
        if node in self.media:
            media = self.media[node]
            auth = self._auth(request, media.owner)
            if isinstance(auth, web.Response):
                return auth
            return web.json_response(self._media_info(media))
        auth = self._auth(request, node)
        if isinstance(auth, web.Response):
            return auth
        number = self.phone_numbers.get(node)
        if number is None and node in self.tokens.get(auth, set()) and node not in self.templates:
            number = self.add_phone_number(node)
        if number is None:
            return graph_error(
                400,
                100,
                f"Unsupported get request. Object with ID '{node}' does not exist, cannot be loaded due "
                "to missing permissions, or does not support this operation.",
                subcode=33,
                error_type="GraphMethodException",
            )
        everything = number.as_graph()
        wanted = [f for f in request.query.get("fields", "").split(",") if f] or list(DEFAULT_PHONE_FIELDS)
        result = {f: everything[f] for f in wanted if f in everything}
        result["id"] = number.id
        return web.json_response(result)

    # ---- templates -------------------------------------------------------------------------------

    async def _list_templates(self, request: web.Request) -> web.Response:
        waba = request.match_info["node"]
        auth = self._auth(request, waba)
        if isinstance(auth, web.Response):
            return auth
        try:
            limit = max(1, min(int(request.query.get("limit", "25")), 1000))
        except ValueError:
            return _invalid("Param limit must be an integer.")
        items = list(self.templates.get(waba, []))
        if request.query.get("name"):
            items = [t for t in items if request.query["name"] in t["name"]]
        if request.query.get("status"):
            statuses = set(request.query["status"].upper().split(","))
            items = [t for t in items if t["status"] in statuses]
        start = 0
        if "after" in request.query:
            position = _decode_cursor(request.query["after"])
            if position is None:
                return _invalid("Invalid cursor.")
            start = position + 1
        page = items[start : start + limit]
        fields = [f for f in request.query.get("fields", "").split(",") if f]
        data = [{k: v for k, v in t.items() if not fields or k in fields or k == "id"} for t in page]
        body: dict[str, Any] = {"data": data}
        if page:
            after = _encode_cursor(start + len(page) - 1)
            body["paging"] = {"cursors": {"before": _encode_cursor(start), "after": after}}
            if start + len(page) < len(items):
                query = {k: v for k, v in request.query.items() if k not in ("after", "before")}
                query.update({"limit": str(limit), "after": after})
                body["paging"]["next"] = (
                    f"{self.paging_base or self.base_url}/{request.match_info['version']}/{waba}/message_templates?"
                    + urlencode(query)
                )
        return web.json_response(body)

    async def _create_template(self, request: web.Request) -> web.Response:
        waba = request.match_info["node"]
        auth = self._auth(request, waba)
        if isinstance(auth, web.Response):
            return auth
        body = await self._body(request)
        if body is None:
            return _invalid("Request body is not valid JSON.")
        for key in ("name", "language", "category", "components"):
            if not body.get(key):
                return _missing(key)
        components = body["components"]
        if isinstance(components, str):
            try:
                components = json.loads(components)
            except ValueError:
                return _invalid("Param components must be a JSON array.")
        if not isinstance(components, list):
            return _invalid("Param components must be an array.")
        name, language = str(body["name"]), str(body["language"])
        category = str(body["category"]).upper()
        if not _TEMPLATE_NAME.match(name):
            return _invalid("Param name must contain only lowercase letters, digits and underscores.")
        if category not in TEMPLATE_CATEGORIES:
            return _invalid(f"Param category must be one of {', '.join(TEMPLATE_CATEGORIES)}.")
        existing = self.templates.get(waba, [])
        if any(t["name"] == name and t["language"] == language for t in existing):
            return graph_error(
                400,
                100,
                "Invalid parameter",
                subcode=2388024,
                user_title="Content in this language already exists",
                user_msg=f"Content for {name} in {language} already exists.",
            )
        template = self.add_template(
            waba, name, language, category=category, status=self.new_template_status, components=components
        )
        return web.json_response({"id": template["id"], "status": template["status"], "category": template["category"]})

    # ---- subscriptions ---------------------------------------------------------------------------

    async def _get_subscribed_apps(self, request: web.Request) -> web.Response:
        waba = request.match_info["node"]
        auth = self._auth(request, waba)
        if isinstance(auth, web.Response):
            return auth
        return web.json_response({"data": self.subscribed_apps.get(waba, [])})

    async def _post_subscribed_apps(self, request: web.Request) -> web.Response:
        waba = request.match_info["node"]
        auth = self._auth(request, waba)
        if isinstance(auth, web.Response):
            return auth
        apps = self.subscribed_apps.setdefault(waba, [])
        if not any(a["whatsapp_business_api_data"]["id"] == self.app_id for a in apps):
            apps.append(
                {
                    "whatsapp_business_api_data": {
                        "id": self.app_id,
                        "link": f"https://www.facebook.com/games/?app_id={self.app_id}",
                        "name": self.app_name,
                    }
                }
            )
        return web.json_response({"success": True})

    async def _delete_subscribed_apps(self, request: web.Request) -> web.Response:
        waba = request.match_info["node"]
        auth = self._auth(request, waba)
        if isinstance(auth, web.Response):
            return auth
        self.subscribed_apps.pop(waba, None)
        return web.json_response({"success": True})

    async def _app_subscriptions(self, request: web.Request) -> web.Response:
        app_id = request.match_info["node"]
        auth = self._auth(request, app_id)
        if isinstance(auth, web.Response):
            return auth
        if app_id != self.app_id:
            return graph_error(
                400,
                100,
                f"Unsupported get request. Object with ID '{app_id}' does not exist.",
                subcode=33,
                error_type="GraphMethodException",
            )
        version = request.match_info["version"]
        data = [
            {
                "object": obj,
                "callback_url": sub["callback_url"] or "https://example.invalid/webhooks/meta",
                "active": True,
                "fields": [{"name": name, "version": version} for name in sub["fields"]],
            }
            for obj, sub in self.app_subscriptions.items()
        ]
        return web.json_response({"data": data})

    async def _smb_app_data(self, request: web.Request) -> web.Response:
        pnid = request.match_info["node"]
        auth = self._auth(request, pnid)
        if isinstance(auth, web.Response):
            return auth
        body = await self._body(request)
        if body is None or body.get("messaging_product") != "whatsapp":
            return _missing("messaging_product")
        sync_type = body.get("sync_type")
        if sync_type not in SYNC_TYPES:
            return _invalid(f"Param sync_type must be one of {', '.join(SYNC_TYPES)}.")
        if any(p == pnid and s == sync_type for p, s, _ in self.smb_sync_requests):
            # Meta allows each sync once per onboarding; the exact error it returns is not documented.
            return _invalid(f"{sync_type} was already requested for this phone number.")
        request_id = secrets.token_hex(16)
        self.smb_sync_requests.append((pnid, str(sync_type), request_id))
        return web.json_response({"messaging_product": "whatsapp", "request_id": request_id})

    async def _register(self, request: web.Request) -> web.Response:
        """Recorded so tests can tell it was (or, for Coexistence numbers, was not) called."""
        pnid = request.match_info["node"]
        auth = self._auth(request, pnid)
        if isinstance(auth, web.Response):
            return auth
        self.register_calls.append(pnid)
        return web.json_response({"success": True})

    # ---- app-level -------------------------------------------------------------------------------

    async def _oauth_access_token(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("client_id") != self.app_id or query.get("client_secret") != self.app_secret:
            return graph_error(400, 1, "Error validating client secret.")
        code = query.get("code")
        if not code:
            return _missing("code")
        grant = self._oauth_codes.get(code)
        if grant is None:
            return graph_error(400, 100, "Invalid verification code format.", subcode=36007)
        if grant.used:
            return graph_error(400, 100, "This authorization code has been used.", subcode=36009)
        grant.used = True
        self.add_token(grant.token, *grant.ids)
        return web.json_response({"access_token": grant.token, "token_type": "bearer"})

    async def _debug_token(self, request: web.Request) -> web.Response:
        auth = self._auth(request, None)
        if isinstance(auth, web.Response):
            return auth
        input_token = request.query.get("input_token")
        if not input_token:
            return _missing("input_token")
        valid = self._token_valid(input_token) and input_token != self.app_token
        ids = sorted(i for i in self.tokens.get(input_token, set()) if i != WILDCARD)
        data: dict[str, Any] = {
            "app_id": self.app_id,
            "type": "SYSTEM_USER",
            "application": self.app_name,
            "expires_at": 0,
            "is_valid": valid,
        }
        if valid:
            scopes = ["whatsapp_business_management", "whatsapp_business_messaging"]
            data["scopes"] = scopes
            data["granular_scopes"] = [{"scope": s, "target_ids": ids} for s in scopes]
        else:
            data["error"] = {"code": 190, "message": "Invalid OAuth access token."}
        return web.json_response({"data": data})
