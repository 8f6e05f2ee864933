"""Webhook subscriptions: which apps a WABA sends to, and which fields the app subscribed to."""

from __future__ import annotations

from aiohttp import web

from bot.standins.graph.state import GraphAccount
from bot.standins.graph.wire import unknown_object


async def get_subscribed_apps(g: GraphAccount, request: web.Request) -> web.Response:
    """GET /{waba_id}/subscribed_apps."""
    waba = request.match_info["node"]
    auth = g.auth(request, waba)
    if isinstance(auth, web.Response):
        return auth
    return web.json_response({"data": g.subscribed_apps.get(waba, [])})


async def post_subscribed_apps(g: GraphAccount, request: web.Request) -> web.Response:
    """POST /{waba_id}/subscribed_apps: subscribe this app (once)."""
    waba = request.match_info["node"]
    auth = g.auth(request, waba)
    if isinstance(auth, web.Response):
        return auth
    apps = g.subscribed_apps.setdefault(waba, [])
    if not any(a["whatsapp_business_api_data"]["id"] == g.app_id for a in apps):
        apps.append(
            {
                "whatsapp_business_api_data": {
                    "id": g.app_id,
                    "link": f"https://www.facebook.com/games/?app_id={g.app_id}",
                    "name": g.app_name,
                }
            }
        )
    return web.json_response({"success": True})


async def delete_subscribed_apps(g: GraphAccount, request: web.Request) -> web.Response:
    """DELETE /{waba_id}/subscribed_apps."""
    waba = request.match_info["node"]
    auth = g.auth(request, waba)
    if isinstance(auth, web.Response):
        return auth
    g.subscribed_apps.pop(waba, None)
    return web.json_response({"success": True})


async def app_subscriptions(g: GraphAccount, request: web.Request) -> web.Response:
    """GET /{app_id}/subscriptions: the app's webhook objects and fields."""
    app_id = request.match_info["node"]
    auth = g.auth(request, app_id)
    if isinstance(auth, web.Response):
        return auth
    if app_id != g.app_id:
        return unknown_object("get", app_id, ".")
    version = request.match_info["version"]
    data = [
        {
            "object": obj,
            "callback_url": sub["callback_url"] or "https://example.invalid/webhooks/meta",
            "active": True,
            "fields": [{"name": name, "version": version} for name in sub["fields"]],
        }
        for obj, sub in g.app_subscriptions.items()
    ]
    return web.json_response({"data": data})
