"""Typed keys for what the aiohttp application carries (aiohttp's web.AppKey)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.bridge.auto_replies import AutoReplies
from bot.bridge.ingest_writer import IngestWriter
from bot.bridge.intake_first import IntakeFirst
from bot.bridge.webhook_worker import WebhookWorker
from bot.core.config import Settings
from bot.core.loop_health import LoopHealth
from bot.core.loops import WakeHub
from bot.core.metrics import Metrics
from bot.deps import Deps
from bot.slack.outbox_handlers import Handler
from bot.slack.pacer import Pacer
from storage.fencing import InHand
from storage.liveness import Heartbeat
from storage.write_gate import WriteGate

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("sessions")
CHANNEL_IDS: web.AppKey[dict[str, int]] = web.AppKey("channel_ids")
WEBHOOK_WORKER = web.AppKey("webhook_worker", WebhookWorker)
AUTO_REPLIES = web.AppKey("auto_replies", AutoReplies)
INGEST_WRITER = web.AppKey("ingest_writer", IngestWriter)
# Present when this process both takes and applies deliveries (`--role all`): its worker steps aside for acks.
INTAKE_FIRST = web.AppKey("intake_first", IntakeFirst)
# None when running without Redis (in-process throttle, one process only).
REDIS: web.AppKey[aioredis.Redis | None] = web.AppKey("redis")
DEPS = web.AppKey("deps", Deps)
# What the migrations did at start-up, for serve's start-up line ("migrations applied: 0012 → 0013").
MIGRATIONS = web.AppKey("migrations", str)
# This process's liveness row; present when it runs background work.
HEARTBEAT = web.AppKey("heartbeat", Heartbeat)
# How each background loop is doing (bot.core.loop_health), for /healthz.
LOOP_HEALTH = web.AppKey("loop_health", LoopHealth)
# Webhooks being stored go before a history import's next transaction (SQLite has one writer).
WRITE_GATE = web.AppKey("write_gate", WriteGate)
# This process's wake-ups per queue (bot.core.loops): the same hub as Deps.wakes.
WAKES: web.AppKey[WakeHub] = web.AppKey("wakes", WakeHub)
# Queue name (storage.takeover.QUEUES) -> the claims this process works on, for giving back the rest.
CLAIMS_IN_HAND: web.AppKey[dict[str, InHand]] = web.AppKey("claims_in_hand")
# More checks for /healthz, each giving name -> reason for whatever is wrong (empty when all is well).
HEALTH_CHECKS: web.AppKey[list[Callable[[], Awaitable[dict[str, str]]]]] = web.AppKey("health_checks")
# Slack outbox kind -> handler, filled by the components mounted (bot.app.slack_component.add_outbox_kinds).
SLACK_OUTBOX_KINDS: web.AppKey[dict[str, Handler]] = web.AppKey("slack_outbox_kinds")
# This process's Slack pacer (buckets in Redis when configured): the outbox's, and every other Slack call's.
PACER: web.AppKey[Pacer] = web.AppKey("slack_pacer")
