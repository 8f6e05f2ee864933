"""wabridge_meta_throughput_errors_24h: Meta's 130429 and 131056 refusals per channel over the last 24 hours,
read from the database at each scrape so that every process reports the whole cluster's count."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from bot.handlers import appkeys
from storage.models import utcnow
from storage.send_errors import COUNTED_CODES, counts_since

WINDOW = timedelta(hours=24)


async def refresh_throughput_gauge(app: web.Application) -> None:
    """Set wabridge_meta_throughput_errors_24h from the database (called before each /metrics answer)."""
    names = {app[appkeys.CHANNEL_IDS].get(c.phone_number_id): c.name for c in app[appkeys.SETTINGS].channels}
    async with app[appkeys.SESSIONS]() as session:
        counts = await counts_since(session, utcnow() - WINDOW)
    gauge = app[appkeys.METRICS].throughput_errors
    for channel_id, name in names.items():
        if channel_id is None:
            continue
        for code in sorted(COUNTED_CODES):
            gauge.labels(name, str(code)).set(counts.get((channel_id, code), 0))
