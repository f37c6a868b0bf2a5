-- What a provider's answer taught about a key, shared with every replica (see admit.lua for
-- the hash's fields and units).
--
-- KEYS[1]  the key's hash
-- ARGV[1]  pause: no admission for this many microseconds from now (-1: none); the bucket reads
--          as empty at its end, even for a pause of 0 (a 429 without a hint)
-- ARGV[2]  block: the key's quota is gone for this many microseconds from now (-1: none)
-- ARGV[3]  the provider's quota error as JSON (with a block)
-- ARGV[4]  interval in effect, microseconds per unit (0: no rate)
-- ARGV[5]  burst in effect
-- ARGV[6]  units the provider says are left (-1: unknown): the bucket never holds more
-- ARGV[7]  the current time in microseconds, for tests only; empty: the server's TIME
-- ARGV[8]  milliseconds the hash outlives the moment its state stops mattering
--
-- Returns {pause, block}: the instants in force afterwards (0: none).
local key = KEYS[1]
local pause_for = tonumber(ARGV[1])
local block_for = tonumber(ARGV[2])
local interval = tonumber(ARGV[4])
local burst = tonumber(ARGV[5])
local remaining = tonumber(ARGV[6])
local now = tonumber(ARGV[7])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local margin = tonumber(ARGV[8])

local h = redis.call('HMGET', key, 'tat', 'pause', 'block')
local tat = tonumber(h[1]) or 0
local pause = tonumber(h[2]) or 0
local block = tonumber(h[3]) or 0
local capacity = interval * burst

if pause_for >= 0 and now + pause_for > pause then
  pause = now + pause_for
  redis.call('HSET', key, 'pause', pause)
end
if block_for >= 0 and now + block_for > block then
  block = now + block_for
  redis.call('HSET', key, 'block', block, 'error', ARGV[3])
end
if remaining >= 0 and interval > 0 then
  -- Hold at most what the provider says is left.
  local hold = now + capacity - math.min(interval * remaining, capacity)
  if hold > tat then
    tat = hold
    redis.call('HSET', key, 'tat', tat)
  end
end

local last = math.max(tat, block)
if pause > 0 then
  last = math.max(last, pause + capacity - interval)
end
if last > 0 then
  redis.call('PEXPIREAT', key, math.ceil(last / 1000) + margin)
end
return {pause, block}
