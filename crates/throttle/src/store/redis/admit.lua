-- One admission of the towline throttle's Redis store: the same GCRA step as the in-memory
-- store (`crates/throttle/src/gcra.rs`), on the key's hash, atomically, in server time.
--
-- Times are integer microseconds since the Unix epoch (exact in a Lua double up to 2^53, i.e.
-- for the next 250 years). The hash holds:
--   tat    the bucket's theoretical arrival time: it is full again at `tat`
--   pause  no admission before this instant (a provider's Retry-After or remaining = 0); the
--          bucket reads as empty at the pause's end, so waiters leave one at a time after it
--   block  the key's quota is gone until this instant; `error` is the provider's answer
--
-- KEYS[1]  the key's hash: prefix .. KeyHash
-- ARGV[1]  interval: microseconds one unit of cost takes to come back (0: no rate)
-- ARGV[2]  burst: units the bucket holds (>= 1)
-- ARGV[3]  cost of the call in units
-- ARGV[4]  longest wait the caller accepts, in microseconds (-1: any, 0: reject-only)
-- ARGV[5]  "1" to claim a slot reserved earlier (stands unless a pause or block came since)
-- ARGV[6]  a pause this replica learned on its own, in microseconds from now (0: none); it is
--          shared from here on
-- ARGV[7]  the current time in microseconds, for tests only; empty: the server's TIME
-- ARGV[8]  milliseconds the hash outlives the moment its state stops mattering
--
-- Returns {code, a, b}:
--   {0, 0, tat}            admitted now
--   {1, wait, tat}         a slot is reserved `wait` microseconds from now; `tat` names it
--   {2, wait, by_pause}    refused: the wait exceeds the caller's; by_pause = 1 when a pause
--                          alone is longer than the caller would wait
--   {3, left, error}       the key's quota is blocked for `left` microseconds; `error` is the
--                          provider's answer as JSON
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local claim = ARGV[5] == '1'
local local_pause = tonumber(ARGV[6])
local now = tonumber(ARGV[7])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local margin = tonumber(ARGV[8])

local h = redis.call('HMGET', key, 'tat', 'pause', 'block', 'error')
local tat = tonumber(h[1]) or 0
local pause = tonumber(h[2]) or 0
local block = tonumber(h[3]) or 0

local capacity = interval * burst

-- The hash expires once its state no longer differs from an absent one: the bucket full again,
-- the pause's empty bucket refilled, the block over.
local function keep_until()
  local last = math.max(tat, block)
  if pause > 0 then
    last = math.max(last, pause + capacity - interval)
  end
  redis.call('PEXPIREAT', key, math.ceil(last / 1000) + margin)
end

if block > now then
  return {3, block - now, h[4] or ''}
end

local wrote = false
if local_pause > 0 and now + local_pause > pause then
  pause = now + local_pause
  redis.call('HSET', key, 'pause', pause)
  wrote = true
end

if claim and pause <= now then
  if wrote then keep_until() end
  return {0, 0, tat}
end

-- GCRA: the call conforms when, after adding its weight, the bucket is at most `capacity`
-- ahead of now. A cost above the burst is charged the whole bucket.
local weight = interval * math.min(cost, burst)
local base = math.max(tat, now)
if pause > 0 then
  base = math.max(base, pause + capacity - interval)
end
local next_tat = base + weight
local earliest = math.max(next_tat - capacity, pause)

local code, wait = 0, 0
if earliest > now then
  wait = earliest - now
  if max_wait >= 0 and wait > max_wait then
    if wrote then keep_until() end
    local by_pause = 0
    if pause > now + max_wait then by_pause = 1 end
    return {2, wait, by_pause}
  end
  code = 1
end

tat = next_tat
redis.call('HSET', key, 'tat', tat)
keep_until()
return {code, wait, tat}
