-- Gives back a reserved slot whose caller went away, when no later call reserved after it:
-- only then is the refund exact (a later reservation keeps its place, so this one's slot just
-- passes unused). See admit.lua for the hash.
--
-- KEYS[1]  the key's hash
-- ARGV[1]  the `tat` the reservation left behind
-- ARGV[2]  the reservation's weight in microseconds
--
-- Returns 1 when the slot was given back.
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat'))
if tat and tat == tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'tat', tat - tonumber(ARGV[2]))
  return 1
end
return 0
