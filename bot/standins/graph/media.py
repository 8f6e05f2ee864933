"""Media: upload with Meta's size limits, the media node's info, and the signed download URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.standins.graph.state import GraphAccount, StoredMedia
from bot.standins.graph.wire import graph_error, invalid, missing

# Upload size limits by MIME type (Cloud API media reference).
_MB = 1024 * 1024
_SIZE_LIMITS = (("image/webp", 500 * 1024), ("image/", 5 * _MB), ("video/", 16 * _MB), ("audio/", 16 * _MB))


async def upload(g: GraphAccount, request: web.Request) -> web.Response:
    """POST /{phone_number_id}/media."""
    pnid = request.match_info["node"]
    auth = g.auth(request, pnid)
    if isinstance(auth, web.Response):
        return auth
    if not request.content_type.startswith("multipart/"):
        return invalid("Media upload must be multipart/form-data.")
    form = await request.post()
    if form.get("messaging_product") != "whatsapp":
        return missing("messaging_product")
    part = form.get("file")
    if not isinstance(part, web.FileField):
        return missing("file")
    data = part.file.read()
    mime_type = str(form.get("type") or part.content_type or "application/octet-stream")
    limit = next((size for prefix, size in _SIZE_LIMITS if mime_type.startswith(prefix)), 100 * _MB)
    if len(data) > limit:
        return graph_error(400, 131053, details=f"File is larger than {limit} bytes for {mime_type}")
    media_id = g.add_media(data, mime_type, filename=part.filename, phone_number_id=pnid)
    return web.json_response({"id": media_id})


def info(g: GraphAccount, media: StoredMedia) -> dict[str, Any]:
    """GET /{media_id}: where to download it, and what it is."""
    query = urlencode({"sig": media.sig})
    return {
        "messaging_product": "whatsapp",
        "url": f"{g.media_url_base or g.base_url}/media-download/{media.id}?{query}",
        "mime_type": media.mime_type,
        "sha256": media.sha256,
        "file_size": len(media.data),
        "id": media.id,
    }


async def download(g: GraphAccount, request: web.Request) -> web.Response:
    """The media URL: the signature and a token allowed for the owning number are both needed."""
    media = g.media.get(request.match_info["media_id"])
    if media is None or request.query.get("sig") != media.sig:
        return web.Response(status=404, text="Not Found")
    auth = g.auth(request, media.owner)
    if isinstance(auth, web.Response):
        return auth
    return web.Response(body=media.data, content_type=media.mime_type)
