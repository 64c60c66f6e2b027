//! The lease log's scripts. Each runs atomically in Redis, on Redis's clock (`TIME`).
//!
//! The fence. Redis's state can be lost: a restart without persistence, a failover to a replica
//! that missed writes, `FLUSHALL`, a key evicted or deleted. A lost admission whose call is still
//! on its way to CAMS would let the replicas admit `n` more, so every loss starts a quiet period
//! in which nothing is admitted until every lease that might have been lost has ended (one lease
//! plus the rest). What is detected as a loss:
//! - the bookkeeping (`meta`) missing: first use, a restart without persistence, `FLUSHALL`, or
//!   `meta` deleted;
//! - the lease log missing while a call in it may still count (`meta.live_until`, the latest
//!   score in the log): the log evicted or deleted alone;
//! - a new replication history (`master_replid` changed) that is not the promotion of a replica
//!   of the old one (`master_replid2` is the old id): a restart, or another server;
//! - a promotion that did not bring a replica's confirmed admission: each replica reports the
//!   last admission it was granted (the history's id and its sequence number in `meta.seq`) and,
//!   if the promoted server's sequence stopped before it, the quiet period starts.
//!
//! A promotion of a replica that holds every admission costs nothing: replicas use an admission
//! only once `WAIT` has seen every connected replica of the primary take it.
//!
//! `master_replid` missing from `INFO` (a proxy that hides it) fails every admission: without
//! it no loss could be told from a failover.
//!
//! The settings every replica must agree on (the slots `n`, the lease) are published by each
//! replica in a hash with the time it last asked; the stricter of the live ones is used (the
//! least `n`, the longest lease), and a replica whose own differ is told so.

/// KEYS: 1 the lease log, 2 meta, 3 turns, 4 turns-seen, 5 settings.
/// ARGV: 1 n, 2 lease ms, 3 rest ms, 4 call id, 5 reserve, 6 replica, 7 hungry ms, 8 turn lapse
/// ms, 9 settings lapse ms, 10 the history of this replica's last admission, 11 its sequence
/// number, 12 ms it may still count, 13 whether a promotion without loss may skip the quiet
/// period (the replicas confirm admissions with WAIT), 14 the field of `meta` that holds this
/// log's latest score (one per action's log).
/// Returns {status, ms, history, sequence, replicas, settings differ}: status 1 admitted (ms 0),
/// 0 refused with the earliest a slot may free, -1 fenced for ms.
pub(super) const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n, lease, rest = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local reserve = tonumber(ARGV[5])
local me, hungry, lapse = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local settings_lapse = tonumber(ARGV[9])
local my_history, my_seq, my_pending = ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12])
local promotion_keeps = ARGV[13] == '1'
local live_field = ARGV[14]

local info = redis.call('INFO', 'replication')
local replid = string.match(info, 'master_replid:(%w+)')
if not replid then
  return redis.error_reply('CAMSFLOWS INFO replication has no master_replid: the quota cannot tell a loss of state from a failover')
end
local replid2 = string.match(info, 'master_replid2:(%w+)')
local replicas = tonumber(string.match(info, 'connected_slaves:(%d+)')) or 0

-- The settings of the replicas that asked lately; the stricter ones hold.
redis.call('HSET', KEYS[5], me, n .. ':' .. lease .. ':' .. now)
redis.call('PEXPIRE', KEYS[5], settings_lapse * 2)
local eff_n, eff_lease = n, lease
local published = redis.call('HGETALL', KEYS[5])
for i = 1, #published, 2 do
  local rn, rl, seen = string.match(published[i + 1], '(%d+):(%d+):(%d+)')
  if (not seen) or tonumber(seen) < now - settings_lapse then
    redis.call('HDEL', KEYS[5], published[i])
  else
    eff_n = math.min(eff_n, tonumber(rn))
    eff_lease = math.max(eff_lease, tonumber(rl))
  end
end
local differ = (eff_n ~= n or eff_lease ~= lease) and 1 or 0
n, lease = eff_n, eff_lease

local function fence(why)
  local quiet = now + lease + rest
  local before = tonumber(redis.call('HGET', KEYS[2], 'quiet_until')) or 0
  if quiet > before then
    redis.call('HSET', KEYS[2], 'quiet_until', quiet, 'why', why)
  end
end

local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  fence('new')
  redis.call('HSET', KEYS[2], 'epoch', replid, 'seq', 0)
elseif epoch ~= replid then
  local seq = redis.call('HGET', KEYS[2], 'seq') or 0
  if promotion_keeps and replid2 == epoch then
    redis.call('HSET', KEYS[2], 'epoch', replid, 'prev_epoch', epoch, 'seq_at_switch', seq)
  else
    fence('history')
    redis.call('HSET', KEYS[2], 'epoch', replid)
    redis.call('HDEL', KEYS[2], 'prev_epoch', 'seq_at_switch')
  end
end
if my_pending > 0 and my_history ~= '' and my_history ~= replid then
  -- This replica holds an admission that may still count, made under another history.
  local prev = redis.call('HGET', KEYS[2], 'prev_epoch')
  local kept = tonumber(redis.call('HGET', KEYS[2], 'seq_at_switch')) or -1
  if my_history ~= prev or my_seq > kept then
    fence('lost')
  end
end
local live_until = tonumber(redis.call('HGET', KEYS[2], live_field)) or 0
if now < live_until and redis.call('EXISTS', KEYS[1]) == 0 then
  fence('log')
  redis.call('HSET', KEYS[2], live_field, 0)
end

local function answer(status, ms)
  return {status, ms, replid, tonumber(redis.call('HGET', KEYS[2], 'seq')) or 0, replicas, differ}
end

local quiet = tonumber(redis.call('HGET', KEYS[2], 'quiet_until')) or 0
if now < quiet then return answer(-1, quiet - now) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return answer(1, 0) end
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - lapse))) do
  redis.call('ZREM', KEYS[3], gone)
  redis.call('ZREM', KEYS[4], gone)
end
local since = now - hungry
if hungry > 0 then
  redis.call('ZADD', KEYS[3], since, me)
  redis.call('ZADD', KEYS[4], now, me)
  redis.call('PEXPIRE', KEYS[3], lapse * 4)
  redis.call('PEXPIRE', KEYS[4], lapse * 4)
end
local free = redis.call('ZCARD', KEYS[1]) < n - reserve
if free then
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #first == 0 or first[1] == me or tonumber(first[2]) >= since then
    redis.call('ZADD', KEYS[1], now + lease, ARGV[4])
    if redis.call('PTTL', KEYS[1]) < lease + rest then
      redis.call('PEXPIRE', KEYS[1], lease + rest)
    end
    if now + lease > live_until then
      redis.call('HSET', KEYS[2], live_field, now + lease)
    end
    redis.call('HINCRBY', KEYS[2], 'seq', 1)
    redis.call('ZREM', KEYS[3], me)
    redis.call('ZREM', KEYS[4], me)
    return answer(1, 0)
  end
  -- Not its turn: the replica that has waited longest asks again within a poll.
  return answer(0, 20)
end
-- A call in flight may complete at once and free its slot a window later.
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return answer(0, math.min(math.max(0, tonumber(first[2]) - now), rest))
";

/// Completes a call: it counts for one window from now. A call whose lease already ran out is
/// left alone (reviving it could only under-count); 0 tells the caller so. `meta.live_until`
/// follows the latest score, so that a log that empties by itself is never taken for a loss.
/// KEYS: 1 the lease log, 2 meta. ARGV: 1 call id, 2 rest ms, 3 the log's field in `meta`.
pub(super) const RELEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not score) or tonumber(score) < now then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last > 0 then redis.call('HSET', KEYS[2], ARGV[3], last[2]) end
return 1
";
