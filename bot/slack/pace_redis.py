"""The Slack pacer's buckets in Redis, shared by every process: one Lua script per call; the calls made
together share one round trip (bot.core.script_batch).

The script applies bot.slack.pacing's rules (token bucket, Retry-After pause, rate and burst cut after a 429
and probed back up) on Redis's own clock, so process clocks never matter. Keys carry the workspace as their
hash tag, so a call's bucket and its workspace's profile sit in one slot of a Redis Cluster. While Redis does
not answer, this process paces alone (`LocalPaces`), says so once, and goes back to Redis when it answers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError

from bot.core.script_batch import ScriptBatch
from bot.slack.pace_store import Grant, Key, LocalPaces
from bot.slack.pacing import CUT, FLOOR, PROBE_AFTER, PROBE_PAST, STEP, Limit, learns

log = logging.getLogger(__name__)

PREFIX = "wabridge:slack:pace"
TTL_SECONDS = 6 * 3600  # what a bucket learned is forgotten after this long without a call
RETRY_SECONDS = 5.0  # while Redis does not answer, ask it again this often
CALL_TIMEOUT = 2.0  # a Redis slower than this paces nobody: this process goes on alone (a busy event loop
# stretches every wait, so this is well above a round trip)

# KEYS: the bucket; the workspace's profile (what its channels learned together; unused when ARGV[8] is 0).
# ARGV: op ('take' | 'refused'), documented rate (per second), documented burst, reserve, urgent (1/0),
#       Retry-After seconds, ttl (ms), has profile (1/0), CUT, STEP, FLOOR, PROBE_AFTER, PROBE_PAST,
#       learns (1/0: a 429 cuts the level, see pacing.learns; else it only pauses).
# Bucket fields: t tokens, at (µs), pu paused until (µs), own (1: learned from a 429 of its own), and the
# learned level r (per second), b (burst), g (calls through since the last change), cr/cb (the level last
# refused; -1: none). The profile has r, b, g, cr, cb. Returns {wait, paused, rate, burst} as strings.
PACE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]
local nrate = tonumber(ARGV[2])
local nburst = tonumber(ARGV[3])
local reserve = tonumber(ARGV[4])
local urgent = ARGV[5] == '1'
local seconds = tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])
local has_profile = ARGV[8] == '1'
local CUT, STEP, FLOOR = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local AFTER, PAST = tonumber(ARGV[12]), tonumber(ARGV[13])
local function fmt(x) return string.format('%.6f', x) end

local h = redis.call('HMGET', KEYS[1], 't', 'at', 'pu', 'own', 'r', 'b', 'g', 'cr', 'cb')
local own = h[4] == '1'
local function learned(v, i)
  if not v[i] then return nil end
  return {r = tonumber(v[i]), b = tonumber(v[i + 1]), g = tonumber(v[i + 2] or '0'),
          cr = tonumber(v[i + 3] or '-1'), cb = tonumber(v[i + 4] or '-1')}
end
local profile = nil
if has_profile then profile = learned(redis.call('HMGET', KEYS[2], 'r', 'b', 'g', 'cr', 'cb'), 1) end
local L = nil
if own then L = learned(h, 5) elseif has_profile then L = profile end
local rate, burst = nrate, nburst
if L then rate, burst = L.r, L.b end
local function nominal(x) return x.r >= nrate and x.b >= nburst end
local function store(key, x, extra)
  redis.call('HSET', key, 'r', fmt(x.r), 'b', fmt(x.b), 'g', x.g, 'cr', fmt(x.cr), 'cb', fmt(x.cb), unpack(extra))
end

local tokens = tonumber(h[1])
local at = tonumber(h[2])
local pu = tonumber(h[3] or '0')
if not tokens then tokens, at = burst, now end
if now > at then
  tokens = math.min(burst, tokens + (now - at) / 1000000 * rate)
  at = now
end
tokens = math.min(tokens, burst)
local result
if op == 'take' then
  local pause = math.max(0, pu - now)
  local keep = 0
  if not urgent then keep = math.min(reserve, burst - 1) end
  local wait = math.max(pause, math.max(0, 1 + keep - tokens) / rate * 1000000)
  if wait <= 0 then
    tokens = tokens - 1
    if L and (own or has_profile) then
      local n = nil
      if not nominal(L) then
        local g = L.g + 1
        local r, b = L.r, L.b
        if L.r < nrate then r = math.min(nrate, L.r * STEP) else b = math.min(nburst, L.b + 1) end
        local past = L.cr >= 0 and r >= L.cr and b >= L.cb
        local need = AFTER
        if past then need = PAST end
        if g < need then n = {r = L.r, b = L.b, g = g, cr = L.cr, cb = L.cb}
        elseif past then n = {r = r, b = b, g = 0, cr = -1, cb = -1}
        else n = {r = r, b = b, g = 0, cr = L.cr, cb = L.cb} end
      end
      if own then
        if n == nil or nominal(n) then redis.call('HDEL', KEYS[1], 'own', 'r', 'b', 'g', 'cr', 'cb')
        else store(KEYS[1], n, {}) end
      elseif n == nil or nominal(n) then redis.call('DEL', KEYS[2])
      else store(KEYS[2], n, {}); redis.call('PEXPIRE', KEYS[2], ttl) end
    end
  end
  result = {fmt(wait / 1000000), fmt(pause / 1000000), fmt(rate), fmt(burst)}
else
  local learn = pu <= now and ARGV[14] == '1'
  pu = math.max(pu, now + seconds * 1000000)
  tokens = math.min(tokens, 0)
  if learn then
    local cur = L or {r = nrate, b = nburst, g = 0, cr = -1, cb = -1}
    local n = {r = math.max(nrate * FLOOR, cur.r * CUT), b = math.max(1, cur.b - 1), g = 0, cr = cur.r, cb = cur.b}
    store(KEYS[1], n, {'own', '1'})
    if has_profile then
      local known = profile or {r = nrate, b = nburst}
      if n.r < known.r or n.b < known.b then
        store(KEYS[2], n, {})
        redis.call('PEXPIRE', KEYS[2], ttl)
      end
    end
  end
  result = {fmt(math.max(0, pu - now) / 1000000), fmt(math.max(0, pu - now) / 1000000), fmt(rate), fmt(burst)}
end
redis.call('HSET', KEYS[1], 't', fmt(tokens), 'at', fmt(at), 'pu', fmt(pu))
redis.call('PEXPIRE', KEYS[1], ttl)
return result
"""


def redis_key(key: Key, workspace: str) -> str:
    """The Redis key of a bucket or profile; the workspace is its hash tag (one Cluster slot per workspace)."""
    method, scope = key
    return f"{PREFIX}:{{{workspace}}}:{method}:{scope}"


class RedisPaces:
    """Buckets in Redis; `LocalPaces` while Redis does not answer (logged once, healed when it answers)."""

    def __init__(self, redis: Any, *, retry_seconds: float = RETRY_SECONDS, timeout: float = CALL_TIMEOUT) -> None:
        self._redis = redis
        # Calls that several items make together (a claim's posts start at once) share one round trip.
        self._script = ScriptBatch(redis, redis.register_script(PACE_LUA))
        self.local = LocalPaces()
        self._retry = retry_seconds
        self._timeout = timeout
        self._down_since: float | None = None
        self._next_try = 0.0

    @property
    def shared(self) -> bool:
        """False while this process paces alone because Redis does not answer."""
        return self._down_since is None

    async def _run(self, key: Key, limit: Limit, profile: Key | None, workspace: str,
                   op: str, urgent: bool, seconds: float) -> Grant | None:
        now = asyncio.get_running_loop().time()
        if self._down_since is not None and now < self._next_try:
            return None
        keys = [redis_key(key, workspace), redis_key(profile, workspace) if profile else redis_key(key, workspace)]
        args = [op, limit.per_second, limit.burst, limit.reserve, int(urgent), seconds, TTL_SECONDS * 1000,
                int(profile is not None), CUT, STEP, FLOOR, PROBE_AFTER, PROBE_PAST, int(learns(limit))]
        try:
            async with asyncio.timeout(self._timeout):
                answer = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            if self._down_since is None:
                self._down_since = now
                log.warning("Slack pacer: Redis does not answer (%s: %s); pacing in this process alone until "
                            "it does", type(exc).__name__, exc)
            self._next_try = now + self._retry
            return None
        if self._down_since is not None:
            log.info("Slack pacer: Redis answers again after %.0f s; pacing is shared again", now - self._down_since)
            self._down_since = None
        wait, paused, rate, burst = (float(x) for x in answer)
        return Grant(wait, paused, rate, burst)

    async def take(self, key: Key, limit: Limit, urgent: bool, profile: Key | None, workspace: str = "") -> Grant:
        grant = await self._run(key, limit, profile, workspace, "take", urgent, 0.0)
        return grant if grant is not None else await self.local.take(key, limit, urgent, profile)

    async def refused(self, key: Key, limit: Limit, seconds: float, profile: Key | None, workspace: str = "") -> None:
        # Known here at once, whatever Redis says: this process's own calls hold off even while it is away.
        await self.local.refused(key, limit, seconds, profile)
        await self._run(key, limit, profile, workspace, "refused", True, seconds)
