//! The Lua scripts [`RedisCache`](super::RedisCache) runs: each touches the
//! keys of one namespace only (one Redis Cluster hash slot), all declared in
//! `KEYS`, and runs atomically in Redis.
//!
//! Keys: `KEYS[1]` the namespace's generation, `KEYS[2]` a slot, `KEYS[3]`
//! the slot's lease. A slot's value is `<generation>:<CBOR>`: a slot counts
//! only while its generation is the namespace's current one, so moving the
//! generation (one `INCR`) drops every slot of the namespace at once, and a
//! refill simply overwrites the old key.
//!
//! Generations are compared as the decimal text Redis stores (never as Lua
//! numbers, which are doubles). A missing generation key (first use, expiry,
//! eviction, a Redis restart) is created from the Redis clock in
//! microseconds (`TIME`), so it never takes a value that a ticket taken
//! before the loss could hold: a fill from before a restart is refused.

use redis::Script;

/// Current generation (created from the clock if missing); then the slot if
/// it is of that generation, else a miss with the lease.
///
/// `ARGV`: key TTL (ms), lease TTL (ms), lease owner, `1` to take a lease on
/// a miss (`0` for the seed's `get`).
///
/// Answers `{0, gen, value}` (hit), `{1, gen}` (miss, the lease is this
/// owner's: read the master), `{2, gen}` (miss, another owner's lease
/// stands: wait for its fill) or `{3, gen}` (miss, no lease asked).
const LOOKUP: &str = r"
local g = redis.call('GET', KEYS[1])
if not g then
  local t = redis.call('TIME')
  g = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[1], g, 'PX', ARGV[1])
end
local tag = g .. ':'
local v = redis.call('GET', KEYS[2])
if v and string.sub(v, 1, #tag) == tag then
  return {0, g, v}
end
if ARGV[4] ~= '1' then
  return {3, g}
end
local l = redis.call('GET', KEYS[3])
if l and string.sub(l, 1, #tag) == tag then
  if string.sub(l, #tag + 1) == ARGV[3] then
    return {1, g}
  end
  return {2, g}
end
redis.call('SET', KEYS[3], tag .. ARGV[3], 'PX', ARGV[2])
return {1, g}
";

/// Store a slot if the generation is still the ticket's (`ARGV[1]`).
///
/// `ARGV`: the ticket's generation, the value (`<generation>:<CBOR>`), key
/// TTL (ms). Refreshes the generation's TTL so that it outlives every slot
/// of the namespace, and releases the slot's lease. Answers 1 if stored.
const FILL: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[3])
return 1
";

/// Store a slot at the current generation, unconditionally (the seed's
/// `put`). `ARGV`: the CBOR, key TTL (ms).
const PUT: &str = r"
local g = redis.call('GET', KEYS[1])
if not g then
  local t = redis.call('TIME')
  g = t[1] .. string.format('%06d', tonumber(t[2]))
end
redis.call('SET', KEYS[1], g, 'PX', ARGV[2])
redis.call('SET', KEYS[2], g .. ':' .. ARGV[1], 'PX', ARGV[2])
return 1
";

/// Move the generation: every slot of the namespace is dropped, every fill
/// with an older ticket refused. A missing generation is created from the
/// clock (which moves it past anything handed out before it was lost).
/// `ARGV`: key TTL (ms).
const INVALIDATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
else
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])), 'PX', ARGV[1])
end
return 1
";

/// The four scripts, hashed once (`EVALSHA`, loaded on first use).
pub(crate) struct Scripts {
    pub(crate) lookup: Script,
    pub(crate) fill: Script,
    pub(crate) put: Script,
    pub(crate) invalidate: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            lookup: Script::new(LOOKUP),
            fill: Script::new(FILL),
            put: Script::new(PUT),
            invalidate: Script::new(INVALIDATE),
        }
    }
}
