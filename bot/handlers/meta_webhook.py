"""HTTP side of Meta webhooks: the verification handshake and signed deliveries, stored before the 200."""

from __future__ import annotations

import time

from aiohttp import web

from bot.bridge.ingest_writer import IngestUnavailable
from bot.bridge.webhook_sources import SOURCES
from bot.core import json_limits
from bot.handlers import appkeys
from bot.meta.parser import event_type_of
from bot.meta.signature import verify


async def handshake(request: web.Request) -> web.Response:
    """GET /webhooks/meta: echo hub.challenge when hub.verify_token matches, else 403."""
    settings = request.app[appkeys.SETTINGS]
    q = request.query
    if q.get("hub.mode") == "subscribe" and q.get("hub.verify_token") == settings.meta.verify_token:
        return web.Response(text=q.get("hub.challenge", ""), content_type="text/plain")
    return web.Response(status=403, text="verify token mismatch")


def _reject(request: web.Request, status: int, reason: str, text: str) -> web.Response:
    request.app[appkeys.METRICS].webhooks_rejected.labels(reason).inc()
    return web.json_response({"error": text}, status=status)


async def receive(request: web.Request) -> web.Response:
    """POST /webhooks/meta: verify the signature on the raw body, commit it, then answer 200."""
    started = time.perf_counter()
    app = request.app
    settings = app[appkeys.SETTINGS]
    limit = settings.server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _reject(request, 413, "too_large", f"body over {limit} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _reject(request, 413, "too_large", f"body over {limit} bytes")
    if len(body) > limit:
        return _reject(request, 413, "too_large", f"body over {limit} bytes")
    if not verify(settings.meta.app_secret, body, request.headers.get("X-Hub-Signature-256")):
        return _reject(request, 401, "bad_signature", "missing or invalid X-Hub-Signature-256")
    try:
        # Strict UTF-8 (RFC 8259 8.1): json.loads on bytes would also take UTF-16/32 and UTF-8-encoded
        # surrogates, which then fail wherever the text is stored.
        payload = json_limits.loads(body.decode("utf-8"))
    except json_limits.TooDeep:
        return _reject(request, 400, "malformed", f"JSON nested deeper than {json_limits.MAX_DEPTH} levels")
    except (ValueError, UnicodeDecodeError):
        return _reject(request, 400, "malformed", "body is not valid UTF-8 JSON")
    if not isinstance(payload, dict):
        return _reject(request, 400, "malformed", "body must be a JSON object")
    event_type = event_type_of(payload)
    try:
        # Committed together with whatever other deliveries are waiting; the worker is woken per group.
        await app[appkeys.INGEST_WRITER].submit(body, event_type, SOURCES.of(settings, payload))
    except IngestUnavailable:
        # Not stored, so not acknowledged: Meta retries a 5xx.
        return _reject(request, 503, "unavailable", "delivery not stored, retry later")
    metrics = app[appkeys.METRICS]
    metrics.webhooks_received.labels(event_type).inc()
    metrics.ack_latency.observe(time.perf_counter() - started)
    return web.Response(text="EVENT_RECEIVED")
