"""Typed keys for what the aiohttp application carries (aiohttp's web.AppKey)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.metrics import Metrics

if TYPE_CHECKING:
    from bot.deps import Deps
    from bot.webhook_worker import WebhookWorker

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
CHANNEL_IDS = web.AppKey("channel_ids", dict[str, int])
WEBHOOK_WORKER = web.AppKey("webhook_worker", "WebhookWorker")
REDIS = web.AppKey("redis", Any)  # redis.asyncio.Redis or None when running without Redis
DEPS = web.AppKey("deps", "Deps")
