"""The one client for Meta's Graph API (WhatsApp Cloud API and the few management calls the bridge needs).

Tokens are passed per call because each channel (WhatsApp number) has its own. Every failure surfaces as
`GraphError`; its `.action` says what a sender should do. A URL an answer names is followed with the token only
on Graph's own origins (`bot.meta.origins`).

Every Graph call shares one transport, its stale-connection retry, error parsing and origin
rule; the calls themselves are a few lines each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx

from bot.meta.callback import opaque
from bot.meta.delivery import Delivery, RequestTrace, delivery_of
from bot.meta.errors import GraphError, SendAction, parse_error_body
from bot.meta.origins import META_MEDIA_ORIGIN, UntrustedURL, origin_of
from bot.meta.recipients import address_of

__all__ = [
    "DEFAULT_PHONE_FIELDS",
    "DEFAULT_TEMPLATE_FIELDS",
    "MEDIA_KINDS",
    "GraphClient",
    "GraphError",
    "MediaInfo",
    "MediaTooLarge",
    "SendAction",
    "SendResult",
    "UntrustedURL",
]

log = logging.getLogger(__name__)

MEDIA_KINDS = frozenset({"image", "video", "audio", "document", "sticker"})
DEFAULT_PHONE_FIELDS = (
    "id",
    "display_phone_number",
    "verified_name",
    "quality_rating",
    "messaging_limit_tier",
    "throughput",
    "platform_type",
    "is_on_biz_app",
    "code_verification_status",
    "name_status",
)
DEFAULT_TEMPLATE_FIELDS = ("id", "name", "status", "language", "category", "components")
SyncType = Literal["smb_app_state_sync", "history"]


@dataclass(frozen=True)
class SendResult:
    """Meta's answer to a message send."""

    wamid: str
    wa_id: str | None
    message_status: str | None = None  # e.g. "accepted" for templates, when Meta includes it


@dataclass(frozen=True)
class MediaInfo:
    """Metadata of an uploaded or received media object; `url` is short-lived and needs the token."""

    id: str
    url: str
    mime_type: str
    sha256: str | None
    file_size: int | None


class MediaTooLarge(Exception):
    """A media download exceeded the caller's size limit."""


def _seg(value: str) -> str:
    return quote(str(value), safe="")


class GraphClient:
    """Async Graph API client on httpx; one instance can serve every channel."""

    def __init__(
        self,
        base_url: str,
        api_version: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version.strip("/")
        # The token goes only to the configured Graph origin and Meta's media host, whatever a URL in an
        # answer names: an answer is data, and a proxy or a bug upstream could point anywhere.
        self.trusted_origins = frozenset({origin_of(httpx.URL(self.base_url)), META_MEDIA_ORIGIN})
        self._http = httpx.AsyncClient(
            base_url=f"{self.base_url}/{self.api_version}/",
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "wabridge"},
        )

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- transport -------------------------------------------------------------------------------

    async def _send(self, method: str, url: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for attempt in range(2):
            trace = RequestTrace()
            try:
                response = await self._http.request(method, url, headers=headers, extensions={"trace": trace},
                                                    **kwargs)
                break
            except httpx.TransportError as exc:
                delivery = delivery_of(exc, trace)
                if delivery is Delivery.STALE_CONNECTION and attempt == 0:
                    continue  # Meta closed the idle connection before reading; a new one is safe
                kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "network error"
                if delivery is Delivery.UNKNOWN:
                    raise GraphError(None, None, message=f"{kind} after the request was sent: {exc!r}",
                                     maybe_delivered=True) from exc
                raise GraphError(None, None, message=f"{kind}: {exc!r}") from exc
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            raise parse_error_body(response.status_code, body, response.headers.get("Retry-After"))
        return response

    def followable(self, url: str) -> str:
        """An URL from an answer made absolute against Graph's base; UntrustedURL when it leaves Graph's origins."""
        try:
            absolute = httpx.URL(f"{self.base_url}/{self.api_version}/").join(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise UntrustedURL(str(url), "") from None
        origin = origin_of(absolute)
        if origin not in self.trusted_origins:
            raise UntrustedURL(str(url), origin)
        return str(absolute)

    async def _json(self, method: str, url: str, token: str | None, **kwargs: Any) -> dict[str, Any]:
        response = await self._send(method, url, token, **kwargs)
        try:
            body = response.json()
        except ValueError as exc:
            raise GraphError(response.status_code, None, message="response is not JSON") from exc
        if not isinstance(body, dict):
            raise GraphError(response.status_code, None, message="response is not a JSON object")
        if isinstance(body.get("error"), dict):  # Graph sometimes reports errors with a 200
            raise parse_error_body(response.status_code, body)
        return body

    # ---- messages --------------------------------------------------------------------------------

    async def _send_message(self, phone_number_id: str, token: str, payload: dict[str, Any]) -> SendResult:
        body = await self._json("POST", f"{_seg(phone_number_id)}/messages", token, json=payload)
        messages = body.get("messages") or []
        if not messages or not messages[0].get("id"):
            raise GraphError(200, None, message="send response has no message id", raw=body)
        contacts = body.get("contacts") or []
        wa_id = contacts[0].get("wa_id") if contacts else None
        return SendResult(messages[0]["id"], wa_id, messages[0].get("message_status"))

    @staticmethod
    def _envelope(to: str, kind: str, content: dict[str, Any], reply_to: str | None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            **address_of(to),  # `to`, `recipient` (a user id) or a group (see bot.meta.recipients)
            "type": kind,
            kind: content,
        }
        if reply_to:
            payload["context"] = {"message_id": reply_to}
        return payload

    async def send_text(
        self,
        phone_number_id: str,
        token: str,
        to: str,
        body: str,
        *,
        reply_to: str | None = None,
        preview_url: bool = False,
    ) -> SendResult:
        """Send a free-form text message (only inside the 24-hour window)."""
        content = {"body": body, "preview_url": preview_url}
        return await self._send_message(phone_number_id, token, self._envelope(to, "text", content, reply_to))

    async def send_buttons(
        self, phone_number_id: str, token: str, to: str, body: str, buttons: Sequence[tuple[str, str]],
    ) -> SendResult:
        """Send an interactive message with up to three reply buttons ((id, title) each; only inside the
        24-hour window). A tap comes back as an inbound `interactive` `button_reply` naming the id."""
        content = {"type": "button", "body": {"text": body},
                   "action": {"buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in buttons]}}
        return await self._send_message(phone_number_id, token, self._envelope(to, "interactive", content, None))

    async def send_template(
        self,
        phone_number_id: str,
        token: str,
        to: str,
        name: str,
        language: str,
        components: Iterable[Mapping[str, Any]] | None = None,
        *,
        callback_data: str | None = None,
    ) -> SendResult:
        """Send an approved template; `components` carry header/body/button parameters; `callback_data` goes
        out as `biz_opaque_callback_data` (<= 512 characters), echoed on every status of the message."""
        content: dict[str, Any] = {"name": name, "language": {"code": language}}
        parts = [dict(c) for c in components or ()]
        if parts:
            content["components"] = parts
        payload = self._envelope(to, "template", content, None)
        if callback_data:
            payload["biz_opaque_callback_data"] = opaque(callback_data)
        return await self._send_message(phone_number_id, token, payload)

    async def send_media(
        self,
        phone_number_id: str,
        token: str,
        to: str,
        kind: str,
        media_id: str,
        caption: str | None = None,
        filename: str | None = None,
        *,
        reply_to: str | None = None,
    ) -> SendResult:
        """Send an uploaded media object (image, video, audio, document or sticker)."""
        if kind not in MEDIA_KINDS:
            raise ValueError(f"unknown media kind {kind!r}")
        # WhatsApp rejects captions on audio/stickers and file names on anything but documents.
        if caption and kind in ("audio", "sticker"):
            raise ValueError(f"{kind} messages cannot have a caption")
        if filename and kind != "document":
            raise ValueError("only documents carry a filename")
        content: dict[str, Any] = {"id": media_id}
        if caption:
            content["caption"] = caption
        if filename:
            content["filename"] = filename
        return await self._send_message(phone_number_id, token, self._envelope(to, kind, content, reply_to))

    async def send_reaction(
        self, phone_number_id: str, token: str, to: str, message_id: str, emoji: str
    ) -> SendResult:
        """React to a message; an empty emoji removes the reaction."""
        content = {"message_id": message_id, "emoji": emoji}
        return await self._send_message(phone_number_id, token, self._envelope(to, "reaction", content, None))

    async def mark_read(
        self, phone_number_id: str, token: str, message_id: str, *, typing_indicator: bool = False
    ) -> bool:
        """Mark an inbound message (and those before it) as read; optionally show "typing…"."""
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        }
        if typing_indicator:
            payload["typing_indicator"] = {"type": "text"}
        body = await self._json("POST", f"{_seg(phone_number_id)}/messages", token, json=payload)
        return bool(body.get("success"))

    # ---- media -----------------------------------------------------------------------------------

    async def upload_media(
        self, phone_number_id: str, token: str, data: bytes, mime_type: str, filename: str
    ) -> str:
        """Upload bytes for later sending; returns the media id."""
        body = await self._json(
            "POST",
            f"{_seg(phone_number_id)}/media",
            token,
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, data, mime_type)},
        )
        media_id = body.get("id")
        if not media_id:
            raise GraphError(200, None, message="upload response has no id", raw=body)
        return str(media_id)

    async def get_media(self, media_id: str, token: str, *, phone_number_id: str | None = None) -> MediaInfo:
        """Look up a media object: its short-lived download URL and metadata."""
        params = {"phone_number_id": phone_number_id} if phone_number_id else None
        body = await self._json("GET", _seg(media_id), token, params=params)
        size = body.get("file_size")
        return MediaInfo(
            id=str(body.get("id") or media_id),
            url=str(body["url"]),
            mime_type=str(body.get("mime_type") or "application/octet-stream"),
            sha256=body.get("sha256"),
            file_size=int(size) if size is not None else None,
        )

    async def download_media(self, url: str, token: str, *, max_bytes: int | None = None) -> bytes:
        """Fetch media bytes from the absolute URL `get_media` returned, with the bearer token; UntrustedURL
        (nothing sent) when it is not on Graph's origin or Meta's media host."""
        if not url.startswith(("http://", "https://")):
            raise UntrustedURL(url, "")
        url = self.followable(url)
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    try:
                        body: Any = json.loads(raw)
                    except ValueError:
                        body = raw.decode("utf-8", "replace")
                    raise parse_error_body(response.status_code, body, response.headers.get("Retry-After"))
                chunks: list[bytes] = []
                total = 0
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    if max_bytes is not None and total > max_bytes:
                        raise MediaTooLarge(f"media larger than {max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TimeoutException as exc:
            raise GraphError(None, None, message=f"timeout: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise GraphError(None, None, message=f"network error: {exc!r}") from exc

    # ---- templates -------------------------------------------------------------------------------

    async def list_templates(
        self,
        waba_id: str,
        token: str,
        *,
        fields: Iterable[str] = DEFAULT_TEMPLATE_FIELDS,
        limit: int = 100,
        name: str | None = None,
        status: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield every template of a WABA, following `paging.next` across pages."""
        params: dict[str, Any] = {"fields": ",".join(fields), "limit": limit}
        if name:
            params["name"] = name
        if status:
            params["status"] = status
        body = await self._json("GET", f"{_seg(waba_id)}/message_templates", token, params=params)
        seen: set[str] = set()
        while True:
            for template in body.get("data") or []:
                yield template
            paging = body.get("paging") or {}
            next_url = paging.get("next")
            if not next_url or next_url in seen or not body.get("data"):
                return
            seen.add(next_url)
            try:
                followed = self.followable(str(next_url))
            except UntrustedURL as exc:
                log.warning("templates of WABA %s: stopped paging, the next page is elsewhere: %s", waba_id, exc)
                return
            body = await self._json("GET", followed, token)

    async def create_template(self, waba_id: str, token: str, template: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a template for review; returns `{id, status, category}`."""
        return await self._json("POST", f"{_seg(waba_id)}/message_templates", token, json=dict(template))

    # ---- subscriptions and account ---------------------------------------------------------------

    async def get_subscribed_apps(self, waba_id: str, token: str) -> list[dict[str, Any]]:
        """Apps subscribed to a WABA's webhooks."""
        body = await self._json("GET", f"{_seg(waba_id)}/subscribed_apps", token)
        return list(body.get("data") or [])

    async def subscribe_app(self, waba_id: str, token: str) -> bool:
        """Subscribe the token's app to a WABA's webhooks."""
        body = await self._json("POST", f"{_seg(waba_id)}/subscribed_apps", token)
        return bool(body.get("success"))

    async def get_app_subscriptions(self, app_id: str, app_token: str) -> list[dict[str, Any]]:
        """Webhook subscriptions set on the app: `[{object, callback_url, active, fields: [{name}]}]`."""
        body = await self._json("GET", f"{_seg(app_id)}/subscriptions", app_token)
        return list(body.get("data") or [])

    async def get_phone_number(
        self, phone_number_id: str, token: str, fields: Iterable[str] = DEFAULT_PHONE_FIELDS
    ) -> dict[str, Any]:
        """Read a business phone number (throughput.level, quality_rating, messaging_limit_tier, …)."""
        return await self._json("GET", _seg(phone_number_id), token, params={"fields": ",".join(fields)})

    async def debug_token(self, input_token: str, app_token: str) -> dict[str, Any]:
        """Inspect a token (validity, scopes, granular target ids) with an app token."""
        body = await self._json("GET", "debug_token", app_token, params={"input_token": input_token})
        data = body.get("data")
        return data if isinstance(data, dict) else {}

    async def smb_app_data(self, phone_number_id: str, token: str, sync_type: SyncType) -> str:
        """Ask Meta to sync Business App contacts or history (once each, within 24 h of onboarding)."""
        body = await self._json(
            "POST",
            f"{_seg(phone_number_id)}/smb_app_data",
            token,
            json={"messaging_product": "whatsapp", "sync_type": sync_type},
        )
        return str(body.get("request_id") or "")

    async def exchange_code(
        self, app_id: str, app_secret: str, code: str, *, redirect_uri: str | None = None
    ) -> str:
        """Exchange an embedded-signup code for a business access token."""
        params = {"client_id": app_id, "client_secret": app_secret, "code": code}
        if redirect_uri is not None:
            params["redirect_uri"] = redirect_uri
        body = await self._json("GET", "oauth/access_token", None, params=params)
        token = body.get("access_token")
        if not token:
            raise GraphError(200, None, message="token exchange returned no access_token", raw=body)
        return str(token)
