"""The throttle's Lua scripts, run atomically on Redis's own clock (see ``scheduler.throttle``)."""

# Lua mirror of ratemath.schedule/decide/grant_slots/settle/release, in integer microseconds of Redis's clock.
# KEYS: tat, arrival log (zset: slot -> bound), penalty deadline, interactive waiters (zset: id -> expiry),
#       lead (the longest any process asked for in the last second)
# ARGV: mps, interval, window, catch_up, interactive (1/0), waiter id, registration grace, want, hold,
#       slot id prefix, lead, horizon (slots start from now + lead to horizon later), number of settled
#       pairs, then (slot, age) pairs, then unused slot ids.
# Every process's slots start from now + the longest lead: one that asked with a shorter lead would find
# the pacer already moved past the times it could have had, and leave them unused.
# Returns {granted, wait, reason, now, start offsets...}; the granted slots are prefix .. 0 … prefix ..
# granted-1, the k-th not to be sent before its offset after now.
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
local lead = tonumber(ARGV[11])
local horizon = tonumber(ARGV[12])
local settled = tonumber(ARGV[13])
local function int(x) return string.format('%.0f', x) end

local i = 14
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
if want > mps then want = mps end
if lead > 0 then
  local longest = tonumber(redis.call('GET', KEYS[5]) or '0')
  if lead >= longest then redis.call('SET', KEYS[5], lead, 'PX', int(window / 1000)) else lead = longest end
end
local at = now + lead

local pen = tonumber(redis.call('GET', KEYS[3]) or '0')
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(now - window))
-- The k-th new slot may start once the bound at index first + k is a second old (ratemath.schedule).
local first = redis.call('ZCARD', KEYS[2]) - mps
local limits = {}
if first + want - 1 >= 0 then
  local lo = math.max(first, 0)
  local r = redis.call('ZRANGE', KEYS[2], lo, first + want - 1, 'WITHSCORES')
  for j = 2, #r, 2 do limits[lo - first + j / 2 - 1] = tonumber(r[j]) + window end
end
local starts = {}
local wait = 0
local reason = 'ok'
local first_wait = 0
for k = 0, want - 1 do
  local s = at
  local why = 'ok'
  if pen > s then s = pen; why = 'penalty' end
  if tat > s then s = tat; why = 'pace' end
  if limits[k] and limits[k] > s then s = limits[k]; why = 'window' end
  if k == 0 then first_wait = s - at end
  if s > at + horizon then
    if k == 0 then wait = s - at - horizon; reason = why end
    break
  end
  starts[#starts + 1] = s
  local base = tat
  if s - catch_up > base then base = s - catch_up end
  tat = base + interval
end

if not interactive then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', int(now))
  if redis.call('ZCARD', KEYS[4]) > 0 then
    return {0, first_wait + interval, 'yield', now}
  end
end

if #starts == 0 then
  if interactive then
    redis.call('ZADD', KEYS[4], int(now + wait + grace), waiter)
    redis.call('PEXPIRE', KEYS[4], int(math.ceil((wait + grace) / 1000) + 1000))
  end
  return {0, wait, reason, now}
end

local result = {#starts, 0, 'ok', now}
for k, s in ipairs(starts) do
  redis.call('ZADD', KEYS[2], int(s + hold), prefix .. (k - 1))
  result[#result + 1] = int(s - now)
end
redis.call('SET', KEYS[1], int(tat), 'PX', int(math.ceil((tat - now + window + interval) / 1000) + 1000))
-- Only ever lengthened: a reply's short hold must not expire the log under a campaign slot still in flight.
local keep = math.ceil((starts[#starts] - now + window + hold + interval) / 1000) + 1000
if redis.call('PTTL', KEYS[2]) < keep then redis.call('PEXPIRE', KEYS[2], int(keep)) end
if interactive then redis.call('ZREM', KEYS[4], waiter) end
return result
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
