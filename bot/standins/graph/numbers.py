"""Node reads (a phone number's fields, a media object) and a number's onboarding calls: register, app sync."""

from __future__ import annotations

import secrets

from aiohttp import web

from bot.standins.graph import media as media_api
from bot.standins.graph.state import GraphAccount
from bot.standins.graph.wire import body_of, invalid, missing, unknown_object

SYNC_TYPES = ("smb_app_state_sync", "history")
DEFAULT_PHONE_FIELDS = (
    "verified_name",
    "code_verification_status",
    "display_phone_number",
    "quality_rating",
    "platform_type",
    "throughput",
    "id",
)


async def get_node(g: GraphAccount, request: web.Request) -> web.Response:
    """GET /{id}: a media object, or a phone number's requested fields."""
    node = request.match_info["node"]
    if node in g.media:
        media = g.media[node]
        auth = g.auth(request, media.owner)
        if isinstance(auth, web.Response):
            return auth
        return web.json_response(media_api.info(g, media))
    auth = g.auth(request, node)
    if isinstance(auth, web.Response):
        return auth
    number = g.phone_numbers.get(node)
    if number is None and node in g.tokens.get(auth, set()) and node not in g.templates:
        number = g.add_phone_number(node)
    if number is None:
        return unknown_object("get", node,
                              ", cannot be loaded due to missing permissions, or does not support this operation.")
    everything = number.as_graph()
    wanted = [f for f in request.query.get("fields", "").split(",") if f] or list(DEFAULT_PHONE_FIELDS)
    result = {f: everything[f] for f in wanted if f in everything}
    result["id"] = number.id
    return web.json_response(result)


async def smb_app_data(g: GraphAccount, request: web.Request) -> web.Response:
    """POST /{phone_number_id}/smb_app_data: a Coexistence number's contacts or history sync, once each."""
    pnid = request.match_info["node"]
    auth = g.auth(request, pnid)
    if isinstance(auth, web.Response):
        return auth
    body = await body_of(request)
    if body is None or body.get("messaging_product") != "whatsapp":
        return missing("messaging_product")
    sync_type = body.get("sync_type")
    if sync_type not in SYNC_TYPES:
        return invalid(f"Param sync_type must be one of {', '.join(SYNC_TYPES)}.")
    if any(p == pnid and s == sync_type for p, s, _ in g.smb_sync_requests):
        # Meta allows each sync once per onboarding; the exact error it returns is not documented.
        return invalid(f"{sync_type} was already requested for this phone number.")
    request_id = secrets.token_hex(16)
    g.smb_sync_requests.append((pnid, str(sync_type), request_id))
    return web.json_response({"messaging_product": "whatsapp", "request_id": request_id})


async def register(g: GraphAccount, request: web.Request) -> web.Response:
    """POST /{phone_number_id}/register: recorded so tests can tell it was (or, for Coexistence numbers, was
    not) called."""
    pnid = request.match_info["node"]
    auth = g.auth(request, pnid)
    if isinstance(auth, web.Response):
        return auth
    g.register_calls.append(pnid)
    return web.json_response({"success": True})
