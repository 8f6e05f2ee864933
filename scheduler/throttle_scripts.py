"""The throttle's Lua scripts, run atomically on Redis's own clock (see ``scheduler.throttle``)."""

# Lua mirror of ratemath.decide/grant_slots/settle/release, in integer microseconds of Redis's clock.
# KEYS: tat, arrival log (zset: slot -> bound), penalty deadline, interactive waiters (zset: id -> expiry)
# ARGV: mps, interval, window, catch_up, interactive (1/0), waiter id, registration grace, want, hold,
#       slot id prefix, lead (a slot is checked as of now + lead; its sender sends no earlier), number of
#       settled pairs, then (slot, age) pairs, then unused slot ids.
# Returns {granted, wait, reason, now}; the granted slots are prefix .. 0 … prefix .. granted-1.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mps = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local catch_up = tonumber(ARGV[4])
local interactive = ARGV[5] == '1'
local waiter = ARGV[6]
local grace = tonumber(ARGV[7])
local want = tonumber(ARGV[8])
local hold = tonumber(ARGV[9])
local prefix = ARGV[10]
local at = now + tonumber(ARGV[11])
local settled = tonumber(ARGV[12])
local function int(x) return string.format('%.0f', x) end

local i = 13
for _ = 1, settled do
  local done = now - tonumber(ARGV[i + 1])
  local bound = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if bound and done < tonumber(bound) then redis.call('ZADD', KEYS[2], int(done), ARGV[i]) end
  i = i + 2
end
while i <= #ARGV do
  redis.call('ZREM', KEYS[2], ARGV[i])
  i = i + 1
end
if want == 0 then return {0, 0, 'ok', now} end

local wait = 0
local reason = 'ok'
local pen = tonumber(redis.call('GET', KEYS[3]) or '0')
if pen - at > wait then wait = pen - at; reason = 'penalty' end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat - now > wait then wait = tat - now; reason = 'pace' end
-- Pruned by now, counted as of at: a bound older than at's second may share one with a plain grant.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(now - window))
local total = redis.call('ZCARD', KEYS[2])
local live = redis.call('ZCOUNT', KEYS[2], '(' .. int(at - window), '+inf')
if live >= mps then
  local nth = redis.call('ZRANGE', KEYS[2], total - mps, total - mps, 'WITHSCORES')
  local free = tonumber(nth[2]) + window - at
  if free > wait then wait = free; reason = 'window' end
end

if not interactive then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', int(now))
  if redis.call('ZCARD', KEYS[4]) > 0 then
    return {0, wait + interval, 'yield', now}
  end
end

if wait > 0 then
  if interactive then
    redis.call('ZADD', KEYS[4], int(now + wait + grace), waiter)
    redis.call('PEXPIRE', KEYS[4], int(math.ceil((wait + grace) / 1000) + 1000))
  end
  return {0, wait, reason, now}
end

local base = tat
if now - catch_up > base then base = now - catch_up end
local count = math.min(want, mps - live, math.floor((now - base) / interval) + 1)
for k = 0, count - 1 do
  redis.call('ZADD', KEYS[2], int(at + hold), prefix .. k)
end
redis.call('SET', KEYS[1], int(base + count * interval), 'PX', int(math.ceil((window + interval) / 1000) + 1000))
redis.call('PEXPIRE', KEYS[2], int(math.ceil((window + hold + interval + at - now) / 1000) + 1000))
if interactive then redis.call('ZREM', KEYS[4], waiter) end
return {count, 0, 'ok', now}
"""

# KEYS: penalty deadline. ARGV: seconds in microseconds. Returns the deadline in force.
PENALIZE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local deadline = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if deadline > current then
  redis.call('SET', KEYS[1], string.format('%.0f', deadline),
             'PX', string.format('%.0f', math.ceil((deadline - now) / 1000) + 1))
  return string.format('%.0f', deadline)
end
return string.format('%.0f', current)
"""
