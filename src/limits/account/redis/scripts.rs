//! The lease log's scripts. Each runs atomically in Redis, on Redis's clock (`TIME`).
//!
//! The fence. Redis's state can be lost: a restart without persistence, a failover to a replica
//! that missed writes, `FLUSHALL`, a key evicted or deleted. A lost admission whose call is still
//! on its way to CAMS would let the replicas admit `n` more, so a loss starts a quiet period in
//! which nothing is admitted. How long depends on who can still be holding a lost admission:
//!
//! - Every replica that holds admissions that may still count (a call in flight, or completed
//!   less than a window ago) says so with every request, and with a heartbeat while it holds
//!   them (`HEARTBEAT`): the history it got them in, the bookkeeping's generation, the sequence
//!   number and id of its latest, and how long they may still count. When the state no longer
//!   holds them (the bookkeeping is gone or another generation, the latest is gone from the log,
//!   the history is not one they survive in, or a promotion stopped before its sequence), the
//!   quiet period lasts as long as they may count, plus the rest: the bound holds for every live
//!   replica's calls.
//! - A loss nobody reports (first use, a restart, `FLUSHALL`, the log deleted while no live
//!   replica holds an admission) only has to cover calls that already reached CAMS before it and
//!   the heartbeats of the replicas that may hold some: a short probation (one heartbeat, one
//!   Redis timeout, the rest and a margin, about 2 s by default) instead of a whole lease. A
//!   replica that died holding admissions sends nothing more.
//!
//! What is detected as a loss: the bookkeeping (`meta`) missing or of another generation; the
//! lease log missing while a call in it may still count (`meta`'s latest score for the log); a
//! new replication history (`master_replid` changed) that is not the promotion of a replica of
//! the old one (`master_replid2` is the old id), or a promotion that did not bring a replica's
//! admission. A promotion of a replica that holds every admission costs nothing: replicas use an
//! admission only once `WAIT` has seen every connected replica of the primary take it.
//!
//! `master_replid` missing from `INFO` (a proxy that hides it) fails every admission: without it
//! no loss could be told from a failover.
//!
//! The settings every replica must agree on (the slots `n`, the lease) are published by each
//! replica in a hash with the time it last asked; the stricter of the live ones is used (the
//! least `n`, the longest lease), and a replica whose own differ is told so.

/// What every script that checks a replica's admissions starts with: Redis's time, the
/// replication history, `switched(promotion_keeps, probation)`, which notes a new history, and
/// `mine(gen, history, seq, pending, log, id)`, which fences when the state no longer holds what
/// a replica says it holds (after `switched`, so that a promotion is known). `fence(ms, why)`
/// never shortens a quiet period. Expects `META` and `rest` to be set.
macro_rules! prelude {
    () => {
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local info = redis.call('INFO', 'replication')
local replid = string.match(info, 'master_replid:(%w+)')
if not replid then
  return redis.error_reply('CAMSFLOWS INFO replication has no master_replid: the quota cannot tell a loss of state from a failover')
end
local replid2 = string.match(info, 'master_replid2:(%w+)')
local replicas = tonumber(string.match(info, 'connected_slaves:(%d+)')) or 0

local function fence(ms, why)
  local quiet = now + ms
  local before = tonumber(redis.call('HGET', META, 'quiet_until')) or 0
  if quiet > before then
    redis.call('HSET', META, 'quiet_until', quiet, 'why', why)
  end
end

-- A new replication history: kept if it is a promotion of a replica of the old one (and the
-- replicas confirm their admissions), fenced otherwise.
local function switched(promotion_keeps, probation)
  local epoch = redis.call('HGET', META, 'epoch')
  if (not epoch) or epoch == replid or (not redis.call('HGET', META, 'gen')) then return end
  if promotion_keeps and replid2 == epoch then
    local seq = redis.call('HGET', META, 'seq') or 0
    redis.call('HSET', META, 'epoch', replid, 'prev_epoch', epoch, 'seq_at_switch', seq)
  else
    fence(probation, 'history')
    redis.call('HSET', META, 'epoch', replid)
    redis.call('HDEL', META, 'prev_epoch', 'seq_at_switch')
  end
end

-- `id` is the replica's latest admission, in the lease log `log`: gone while it still counts
-- (by more than a moment, for the two clocks' difference), the log was lost with it.
local function mine(gen, history, seq, pending, log, id)
  if pending <= 0 or gen == '' then return end
  if redis.call('HGET', META, 'gen') ~= gen then
    fence(pending + rest, 'lost')
    return
  end
  if history == replid then
    if seq > (tonumber(redis.call('HGET', META, 'seq')) or 0)
      or (pending > 200 and not redis.call('ZSCORE', log, id)) then
      fence(pending + rest, 'lost')
    end
    return
  end
  if history ~= redis.call('HGET', META, 'prev_epoch')
    or seq > (tonumber(redis.call('HGET', META, 'seq_at_switch')) or -1) then
    fence(pending + rest, 'lost')
  end
end
"
    };
}

/// KEYS: 1 the lease log, 2 meta, 3 turns, 4 turns-seen, 5 settings.
/// ARGV: 1 n, 2 lease ms, 3 rest ms, 4 call id, 5 reserve, 6 replica, 7 hungry ms, 8 turn lapse
/// ms, 9 settings lapse ms, 10-13 what this replica holds (the bookkeeping's generation, the
/// history, the latest sequence number, ms they may still count), 14 whether a promotion without
/// loss may skip the quiet period (the replicas confirm admissions with WAIT), 15 the field of
/// `meta` that holds this log's latest score (one per action's log), 16 the probation ms, 17 the
/// id of this replica's latest admission.
/// Returns {status, ms, history, generation, sequence, replicas, settings differ}: status 1
/// admitted (ms 0), 0 refused with the earliest a slot may free, -1 fenced for ms.
pub(super) const ACQUIRE: &str = concat!(
    r"
local META = KEYS[2]
local n, lease, rest = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
",
    prelude!(),
    r"
local reserve = tonumber(ARGV[5])
local me, hungry, lapse = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local settings_lapse = tonumber(ARGV[9])
local my_gen, my_history, my_seq, my_pending = ARGV[10], ARGV[11], tonumber(ARGV[12]), tonumber(ARGV[13])
local promotion_keeps = ARGV[14] == '1'
local live_field = ARGV[15]
local probation = tonumber(ARGV[16])
local my_id = ARGV[17]

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

switched(promotion_keeps, probation)
mine(my_gen, my_history, my_seq, my_pending, KEYS[1], my_id)
if (not redis.call('HGET', META, 'epoch')) or (not redis.call('HGET', META, 'gen')) then
  -- First use, or the bookkeeping lost: a new generation.
  fence(probation, 'new')
  redis.call('HSET', META, 'epoch', replid, 'gen', ARGV[4], 'seq', 0)
  redis.call('HDEL', META, 'prev_epoch', 'seq_at_switch')
end
local live_until = tonumber(redis.call('HGET', META, live_field)) or 0
if now < live_until and redis.call('EXISTS', KEYS[1]) == 0 then
  fence(probation, 'log')
  redis.call('HSET', META, live_field, 0)
end

local function answer(status, ms)
  return {status, ms, replid, redis.call('HGET', META, 'gen'),
    tonumber(redis.call('HGET', META, 'seq')) or 0, replicas, differ}
end

local quiet = tonumber(redis.call('HGET', META, 'quiet_until')) or 0
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
      redis.call('HSET', META, live_field, now + lease)
    end
    redis.call('HINCRBY', META, 'seq', 1)
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
"
);

/// While a replica holds admissions that may still count, it checks now and then that the state
/// still holds them (the same check as `ACQUIRE`'s), so that a loss is fenced for as long as
/// they may count even while it asks for nothing. Also notices the lease log gone alone.
/// KEYS: 1 the lease log, 2 meta. ARGV: 1 rest ms, 2 gen, 3 history, 4 sequence, 5 ms it may
/// still count, 6 the log's field in `meta`, 7 probation ms, 8 whether a promotion without loss
/// may skip the quiet period, 9 the id of the latest admission. Returns the quiet period left,
/// in ms (0: none).
pub(super) const HEARTBEAT: &str = concat!(
    r"
local META = KEYS[2]
local rest = tonumber(ARGV[1])
",
    prelude!(),
    r"
switched(ARGV[8] == '1', tonumber(ARGV[7]))
mine(ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), KEYS[1], ARGV[9])
local live_until = tonumber(redis.call('HGET', META, ARGV[6])) or 0
if now < live_until and redis.call('EXISTS', KEYS[1]) == 0 then
  fence(tonumber(ARGV[7]), 'log')
  redis.call('HSET', META, ARGV[6], 0)
end
local quiet = tonumber(redis.call('HGET', META, 'quiet_until')) or 0
return math.max(0, quiet - now)
"
);

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
