"""Media both ways: WhatsApp media into the Slack thread, and files shared in a thread out to WhatsApp.

Inbound: Graph `GET /{media_id}` gives a short-lived absolute URL, downloaded with the channel's bearer
token, then uploaded into the thread (files.getUploadURLExternal → bytes → files.completeUploadExternal).
Outbound: the file's `url_private` is downloaded with the bot token, uploaded to `POST /{phone_number_id}/media`
and sent. WhatsApp's type and size limits are checked first, and a file that cannot go is explained.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bot.core.config import ChannelSettings
from bot.deps import Deps
from bot.meta.errors import GraphError, SendAction, explain
from bot.meta.graph import MediaTooLarge, SendResult
from bot.meta.origins import UntrustedURL
from bot.slack import render
from bot.slack.file_fetch import FileOriginRefused, stream_slack_file
from bot.slack.outbox import ItemContext, Retry, Thread
from storage.models import Message

log = logging.getLogger(__name__)

MB = 1024 * 1024
KB = 1024
INBOUND_MAX_BYTES = 100 * MB  # the largest media WhatsApp carries (documents)
_GRAPH_MEDIA_ATTEMPTS = 6


@dataclass(frozen=True)
class MediaRule:
    kind: str
    mime_types: frozenset[str]
    max_bytes: int


# Cloud API supported media types and sizes (Cloud API reference: media; see docs/meta-api.md).
RULES: tuple[MediaRule, ...] = (
    MediaRule("image", frozenset({"image/jpeg", "image/png"}), 5 * MB),
    MediaRule("sticker", frozenset({"image/webp"}), 500 * KB),
    MediaRule("video", frozenset({"video/mp4", "video/3gpp"}), 16 * MB),
    MediaRule("audio", frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}), 16 * MB),
    MediaRule("document", frozenset({
        "text/plain", "application/pdf", "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-excel", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    }), 100 * MB),
)
_ALIASES = {"image/jpg": "image/jpeg", "audio/x-m4a": "audio/mp4", "audio/m4a": "audio/mp4",
            "audio/mp3": "audio/mpeg"}
LIMITS_HELP = ("WhatsApp takes images (JPEG, PNG) up to 5 MB, video (MP4, 3GPP) and audio (AAC, AMR, MP3, "
               "M4A, OGG) up to 16 MB, and documents (PDF, Word, Excel, PowerPoint, plain text) up to 100 MB.")


def human_size(n: int) -> str:
    """Bytes as people read them: 512 KB, 7.2 MB."""
    if n >= MB:
        return f"{n / MB:.1f} MB"
    if n >= KB:
        return f"{n / KB:.0f} KB"
    return f"{n} bytes"


def normalize_mime(mime: str | None, filename: str | None = None) -> str:
    """The bare MIME type (no parameters), guessed from the name when Slack gives none."""
    base = (mime or "").split(";")[0].strip().lower()
    if not base or base == "application/octet-stream":
        base = (mimetypes.guess_type(filename or "")[0] or base or "application/octet-stream").lower()
    return _ALIASES.get(base, base)


@dataclass(frozen=True)
class Verdict:
    """Whether a file can go to WhatsApp, as what kind, and if not, why in words."""

    kind: str | None
    mime_type: str
    reason: str | None = None


def whatsapp_kind(mime: str | None, size: int | None, filename: str | None = None) -> Verdict:
    """Decide how a Slack file goes to WhatsApp (pure): the message kind, or a refusal with the reason."""
    base = normalize_mime(mime, filename)
    rule = next((r for r in RULES if base in r.mime_types), None)
    name = f"`{render.escape(filename)}`" if filename else "This file"
    if rule is None:
        return Verdict(None, base, f"{name} ({render.escape(base)}) is a type WhatsApp does not accept. "
                                   + LIMITS_HELP)
    if size is not None and size > rule.max_bytes:
        return Verdict(None, base, f"{name} is {human_size(size)}; WhatsApp takes {rule.kind}s up to "
                                   f"{human_size(rule.max_bytes)}. " + LIMITS_HELP)
    return Verdict(rule.kind, base)


def _filename(msg: Message, mime: str) -> str:
    media = (msg.content or {}).get("media") or {}
    if media.get("filename"):
        return str(media["filename"])
    ext = mimetypes.guess_extension(normalize_mime(mime)) or ""
    if normalize_mime(mime) == "audio/ogg":
        ext = ".ogg"
    return f"{msg.type}-{msg.id}{ext}"


async def mirror_to_slack(ctx: ItemContext, thread: Thread, msg: Message, channel: ChannelSettings) -> None:
    """Fetch a WhatsApp media object from the Graph API and upload it into the thread (once)."""
    if "file" in ctx.parts or not msg.media_id:
        return
    graph = ctx.deps.graph
    token = channel.access_token
    try:
        info = await graph.get_media(msg.media_id, token, phone_number_id=channel.phone_number_id)
        if info.file_size is not None and info.file_size > INBOUND_MAX_BYTES:
            raise MediaTooLarge(f"{human_size(info.file_size)}")
        data = await graph.download_media(info.url, token, max_bytes=INBOUND_MAX_BYTES)
    except GraphError as exc:
        transient = exc.action in (SendAction.RETRY_BACKOFF, SendAction.THROTTLE)
        if transient and ctx.item.attempts < _GRAPH_MEDIA_ATTEMPTS:
            raise Retry(f"media {msg.media_id}: {exc}") from exc
        why = explain(exc.code) if exc.code is not None else str(exc)
        note = f":warning: The {msg.type} could not be fetched from WhatsApp ({render.escape(why)})."
        await ctx.post(thread.channel, render.note_post(note), thread_ts=thread.ts, part="file")
        return
    except MediaTooLarge:
        note = f":warning: The {msg.type} is larger than {human_size(INBOUND_MAX_BYTES)} and was not copied."
        await ctx.post(thread.channel, render.note_post(note), thread_ts=thread.ts, part="file")
        return
    except UntrustedURL as exc:
        log.warning("media %s of message %s not fetched: %s", msg.media_id, msg.id, exc)
        where = render.escape(exc.origin or "an address that is not a web origin")
        note = (f":warning: The {msg.type} was not copied: WhatsApp's answer pointed at {where}, which is not one "
                "of Meta's hosts, and the bridge sends the number's token only to Meta.")
        await ctx.post(thread.channel, render.note_post(note), thread_ts=thread.ts, part="file")
        return
    filename = _filename(msg, info.mime_type)
    await ctx.upload(thread.channel, thread.ts, data, filename, title=filename, part="file")


# ---- Slack -> WhatsApp ------------------------------------------------------------------------------


class FileRefused(Exception):
    """A Slack file that cannot be sent to WhatsApp; the message says why, for the author."""


class FileOffSlack(FileRefused):
    """A shared file whose link leaves Slack's origins: not fetched, and the thread gets a note saying so."""


async def download_slack_file(deps: Deps, file: Mapping[str, Any], max_bytes: int) -> bytes:
    """A shared file's bytes from `url_private` (which needs the bot token); only from Slack's origins."""
    url = str(file.get("url_private_download") or file.get("url_private") or "")
    if not url.startswith(("http://", "https://")):
        raise FileRefused("Slack gave no download link for the file.")
    try:
        async with stream_slack_file(deps.settings.slack, url, read_timeout=60.0) as resp:
            return await _read_all(resp, max_bytes)
    except FileOriginRefused as exc:
        raise FileOffSlack(f"The file was not sent: {exc}.") from None


async def _read_all(resp: httpx.Response, max_bytes: int) -> bytes:
    if resp.status_code >= 400:
        raise FileRefused(f"Slack refused the download (HTTP {resp.status_code}).")
    if resp.headers.get("content-type", "").startswith("text/html"):
        raise FileRefused("Slack answered with a login page: the bot needs the files:read scope.")
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.aiter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise FileRefused(f"The file is larger than {human_size(max_bytes)}.")
        chunks.append(chunk)
    return b"".join(chunks)


async def send_slack_file(deps: Deps, channel: ChannelSettings, to: str, file: Mapping[str, Any],
                          caption: str | None) -> tuple[SendResult, Verdict]:
    """Upload one Slack file to the Cloud API and send it; FileRefused when WhatsApp cannot take it."""
    filename = str(file.get("name") or file.get("title") or "file")
    size = file.get("size")
    verdict = whatsapp_kind(str(file.get("mimetype") or ""), int(size) if size is not None else None, filename)
    if verdict.kind is None:
        raise FileRefused(verdict.reason or "WhatsApp cannot take this file.")
    rule = next(r for r in RULES if r.kind == verdict.kind)
    data = await download_slack_file(deps, file, rule.max_bytes)
    again = whatsapp_kind(verdict.mime_type, len(data), filename)  # Slack's size field may be missing
    if again.kind is None:
        raise FileRefused(again.reason or "WhatsApp cannot take this file.")
    media_id = await deps.graph.upload_media(channel.phone_number_id, channel.access_token, data,
                                             verdict.mime_type, filename)
    kind = verdict.kind
    result = await deps.graph.send_media(
        channel.phone_number_id, channel.access_token, to, kind, media_id,
        caption=caption if caption and kind in ("image", "video", "document") else None,
        filename=filename if kind == "document" else None)
    return result, Verdict(kind, verdict.mime_type)
