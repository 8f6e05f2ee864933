"""App-level token calls: the embedded-signup code exchange and debug_token."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.standins.graph.state import WILDCARD, GraphAccount
from bot.standins.graph.wire import graph_error, missing


async def oauth_access_token(g: GraphAccount, request: web.Request) -> web.Response:
    """GET /oauth/access_token: a code (used once) for its token, with the app's credentials."""
    query = request.query
    if query.get("client_id") != g.app_id or query.get("client_secret") != g.app_secret:
        return graph_error(400, 1, "Error validating client secret.")
    code = query.get("code")
    if not code:
        return missing("code")
    grant = g._oauth_codes.get(code)
    if grant is None:
        return graph_error(400, 100, "Invalid verification code format.", subcode=36007)
    if grant.used:
        return graph_error(400, 100, "This authorization code has been used.", subcode=36009)
    grant.used = True
    g.add_token(grant.token, *grant.ids)
    return web.json_response({"access_token": grant.token, "token_type": "bearer"})


async def debug_token(g: GraphAccount, request: web.Request) -> web.Response:
    """GET /debug_token: whether a token is valid, its scopes and the ids they reach."""
    auth = g.auth(request, None)
    if isinstance(auth, web.Response):
        return auth
    input_token = request.query.get("input_token")
    if not input_token:
        return missing("input_token")
    valid = g.token_valid(input_token) and input_token != g.app_token
    ids = sorted(i for i in g.tokens.get(input_token, set()) if i != WILDCARD)
    data: dict[str, Any] = {
        "app_id": g.app_id,
        "type": "SYSTEM_USER",
        "application": g.app_name,
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
