"""A WABA's message templates: the paged, filtered list and creation with Meta's checks."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.standins.graph.state import GraphAccount
from bot.standins.graph.wire import body_of, decode_cursor, encode_cursor, graph_error, invalid, missing

TEMPLATE_CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")


async def list_templates(g: GraphAccount, request: web.Request) -> web.Response:
    """GET /{waba_id}/message_templates (name and status filters, cursor paging)."""
    waba = request.match_info["node"]
    auth = g.auth(request, waba)
    if isinstance(auth, web.Response):
        return auth
    try:
        limit = max(1, min(int(request.query.get("limit", "25")), 1000))
    except ValueError:
        return invalid("Param limit must be an integer.")
    items = list(g.templates.get(waba, []))
    if request.query.get("name"):
        items = [t for t in items if request.query["name"] in t["name"]]
    if request.query.get("status"):
        statuses = set(request.query["status"].upper().split(","))
        items = [t for t in items if t["status"] in statuses]
    start = 0
    if "after" in request.query:
        position = decode_cursor(request.query["after"])
        if position is None:
            return invalid("Invalid cursor.")
        start = position + 1
    page = items[start : start + limit]
    fields = [f for f in request.query.get("fields", "").split(",") if f]
    data = [{k: v for k, v in t.items() if not fields or k in fields or k == "id"} for t in page]
    body: dict[str, Any] = {"data": data}
    if page:
        after = encode_cursor(start + len(page) - 1)
        body["paging"] = {"cursors": {"before": encode_cursor(start), "after": after}}
        if start + len(page) < len(items):
            query = {k: v for k, v in request.query.items() if k not in ("after", "before")}
            query.update({"limit": str(limit), "after": after})
            body["paging"]["next"] = (
                f"{g.paging_base or g.base_url}/{request.match_info['version']}/{waba}/message_templates?"
                + urlencode(query)
            )
    return web.json_response(body)


async def create_template(g: GraphAccount, request: web.Request) -> web.Response:
    """POST /{waba_id}/message_templates: a new template in `new_template_status`."""
    waba = request.match_info["node"]
    auth = g.auth(request, waba)
    if isinstance(auth, web.Response):
        return auth
    body = await body_of(request)
    if body is None:
        return invalid("Request body is not valid JSON.")
    for key in ("name", "language", "category", "components"):
        if not body.get(key):
            return missing(key)
    components = body["components"]
    if isinstance(components, str):
        try:
            components = json.loads(components)
        except ValueError:
            return invalid("Param components must be a JSON array.")
    if not isinstance(components, list):
        return invalid("Param components must be an array.")
    name, language = str(body["name"]), str(body["language"])
    category = str(body["category"]).upper()
    if not _TEMPLATE_NAME.match(name):
        return invalid("Param name must contain only lowercase letters, digits and underscores.")
    if category not in TEMPLATE_CATEGORIES:
        return invalid(f"Param category must be one of {', '.join(TEMPLATE_CATEGORIES)}.")
    existing = g.templates.get(waba, [])
    if any(t["name"] == name and t["language"] == language for t in existing):
        return graph_error(
            400,
            100,
            "Invalid parameter",
            subcode=2388024,
            user_title="Content in this language already exists",
            user_msg=f"Content for {name} in {language} already exists.",
        )
    template = g.add_template(
        waba, name, language, category=category, status=g.new_template_status, components=components
    )
    return web.json_response({"id": template["id"], "status": template["status"], "category": template["category"]})
