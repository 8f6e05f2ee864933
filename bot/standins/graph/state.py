"""What the Graph stand-in's Meta knows: tokens, numbers, templates, media, subscriptions, and what it received.

Every endpoint family reads and writes this one object; the server around it only routes.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.standins._http import new_digits
from bot.standins.graph.faults import GraphFaults
from bot.standins.graph.wire import digits, graph_error, unknown_object
from bot.standins.status_feed import StatusFeed

WILDCARD = "*"
DEFAULT_APP_FIELDS = (
    "messages",
    "smb_message_echoes",
    "smb_app_state_sync",
    "history",
    "message_template_status_update",
    "phone_number_quality_update",
    "account_update",
)


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
        """Every field Meta can answer for the number."""
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
class OAuthCode:
    """An embedded-signup code, exchangeable once for its token."""

    token: str
    ids: tuple[str, ...]
    used: bool = False


class GraphAccount(GraphFaults):
    """Meta's side of the app: `tokens=None` accepts any token for any ID; otherwise token -> allowed IDs."""

    def __init__(
        self,
        *,
        tokens: Mapping[str, Iterable[str]] | None,
        mps: float | None,
        app_id: str,
        app_secret: str,
        app_name: str,
        new_template_status: str,
    ) -> None:
        super().__init__(mps=mps)
        self.open_tokens = tokens is None
        self.tokens: dict[str, set[str]] = {t: set(ids) for t, ids in (tokens or {}).items()}
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
        self._oauth_codes: dict[str, OAuthCode] = {}
        self.status_feed: StatusFeed | None = None
        # Where the URLs in answers point (media `url`, `paging.next`); None: here. A test sets another origin
        # to play a proxy or an upstream bug that names somewhere else.
        self.media_url_base: str | None = None
        self.paging_base: str | None = None

    @property
    def base_url(self) -> str:
        """Where the stand-in serves (media and paging URLs point there); the server provides it."""
        raise NotImplementedError

    # ---- setting the scene -----------------------------------------------------------------------

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
        self._oauth_codes[code] = OAuthCode(token, ids)

    # ---- inspection ------------------------------------------------------------------------------

    @property
    def attempts(self) -> list[SendRecord]:
        """Every message send that reached the stand-in (accepted or rejected), by receive time."""
        return sorted([*self.sends, *self.rejected], key=lambda r: r.time)

    def sends_to(self, to: str) -> list[SendRecord]:
        """Accepted sends to one recipient."""
        return [s for s in self.sends if digits(s.to) == digits(to)]

    def reset_records(self) -> None:
        """Forget recorded traffic (state such as templates and media is kept)."""
        self.sends.clear()
        self.rejected.clear()
        self.throttle_hits.clear()
        self.reads.clear()
        self.forget_sends()

    # ---- what the endpoints share ----------------------------------------------------------------

    @staticmethod
    def _unique_id(existing: Mapping[str, Any]) -> str:
        while True:
            candidate = new_digits(16)
            if candidate not in existing:
                return candidate

    @staticmethod
    def _token_of(request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip() or None
        return request.query.get("access_token") or None

    def token_valid(self, token: str) -> bool:
        """Whether Meta would accept this token at all."""
        return token == self.app_token or self.open_tokens or token in self.tokens

    def _token_allows(self, token: str, object_id: str) -> bool:
        if token == self.app_token:
            return object_id == self.app_id
        if token in self.tokens:
            ids = self.tokens[token]
            return WILDCARD in ids or object_id in ids
        return self.open_tokens

    def auth(self, request: web.Request, object_id: str | None) -> web.Response | str:
        """The request's token when it may act on `object_id`, else Meta's error answer."""
        token = self._token_of(request)
        if token is None:
            return graph_error(
                400, 104, "An access token is required to request this resource.", error_type="OAuthException"
            )
        if not self.token_valid(token):
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if object_id is not None and not self._token_allows(token, object_id):
            return unknown_object(request.method.lower(), object_id,
                                  ", cannot be loaded due to missing permissions, or does not support this operation.")
        return token
