"""The Redis store's Lua scripts: each write (and each filtered scan) is one atomic script.

Every script takes the key prefix as ``ARGV[1]`` and builds its keys with ``LUA_KEYS``. The
writes are idempotent, so a client that retries after a lost reply cannot apply one twice: a put
of an id that exists, or a transition whose offset the job already has, is answered ``stored``.
A script checks everything before it writes anything (Redis does not roll a script back).

Stream entries hold their fields in a fixed order, ``job``, ``tool``, ``body``: a script reads
the tool at ``fields[4]`` and the body at ``fields[6]`` without a lookup.
"""

from __future__ import annotations

from jobwarden.store.redis_keys import LUA_KEYS

_WRITES = """
local function check_offset(offset)
  local last = redis.call('HGET', K.meta, 'last') or '0'
  if tonumber(offset) <= tonumber(last) then
    return redis.error_reply('event offset ' .. offset .. ' is not after the newest stored (' ..
      last .. '): is another jobwarden node writing under the prefix ' .. P .. '?')
  end
end

-- A cluster node sends offset '~<n>', n the newest offset it has read from the log: the offset
-- is the next of the whole log, taken here, and the event body (encoded with a placeholder id,
-- always its second member) gets it spliced in. It is past n even where the log's newest is not
-- (Redis lost data: restarted empty, or rolled back), since the node's follower reads on from n
-- and would never deliver an event at an offset it passed already.
local function by_log(offset)
  return string.sub(offset, 1, 1) == '~'
end

local function numbered(offset, body)
  if not by_log(offset) then
    return offset, body
  end
  local floor = tonumber(string.sub(offset, 2))
  local next = redis.call('HINCRBY', K.meta, 'last', 1)
  if next <= floor then
    next = floor + 1
    redis.call('HSET', K.meta, 'last', next, 'lost_below', floor)
  end
  next = tostring(next)
  local head, tail = string.match(body, '^(.-"id":")%d+(".*)$')
  return next, head .. next .. tail
end

local function append_event(id, offset, tool, body)
  redis.call('XADD', K.events, offset .. '-0', 'job', id, 'tool', tool, 'body', body)
  redis.call('ZADD', K.job_events(id), offset, offset)
  redis.call('HSET', K.meta, 'last', offset)
end
"""

# ARGV: prefix, id, offset ('~<n>': the next, past n), record, event, state, tool, plugin, owner,
# has_owner (1/0), idempotency field ('' for none), done_at in microseconds ('' for none),
# max queued ('' : not for the work queue; else the job is also added to it unless that many
# entries wait there already), attempt, start deadline in microseconds ('' for none: when the
# queued job runs out of time to start, noted for the nodes' sweep of the queue). Returns
# {'new', offset}, {'duplicate', record}, {'overloaded', entries} or {'stored'} (the same put
# again).
PUT = (
    LUA_KEYS
    + _WRITES
    + """
local id, offset, state, tool, plugin = ARGV[2], ARGV[3], ARGV[6], ARGV[7], ARGV[8]
local owner, idem, done_at, max_queued = ARGV[9], ARGV[11], ARGV[12], ARGV[13]
local has_owner = ARGV[10] == '1'
local job = K.job(id)
if redis.call('EXISTS', job) == 1 then
  return {'stored'}
end
if idem ~= '' then
  local other = redis.call('HGET', K.idempotency, idem)
  if other then
    local record = redis.call('HGET', K.job(other), 'record')
    if record then
      return {'duplicate', record}
    end
  end
end
local queued = max_queued ~= '' and state == 'queued'
if queued then
  local waiting = redis.call('XLEN', K.queue)
  if waiting >= tonumber(max_queued) then
    return {'overloaded', waiting}
  end
end
if not by_log(offset) then
  local refused = check_offset(offset)
  if refused then
    return refused
  end
end
local body
offset, body = numbered(offset, ARGV[5])
redis.call('HSET', job, 'record', ARGV[4], 'state', state, 'tool', tool, 'plugin', plugin,
  'seq', offset, 'attempt', ARGV[14])
redis.call('ZADD', K.all_jobs, 0, id)
redis.call('ZADD', K.seq, offset, id)
redis.call('ZADD', K.state(state), 0, id)
redis.call('ZADD', K.tool(tool), 0, id)
redis.call('ZADD', K.plugin(plugin), 0, id)
if has_owner then
  redis.call('HSET', job, 'owner', owner)
  redis.call('ZADD', K.owner(owner), 0, id)
  redis.call('ZADD', K.owner_state(owner, state), 0, id)
end
if idem ~= '' then
  redis.call('HSET', job, 'idem', idem)
  redis.call('HSET', K.idempotency, idem, id)
end
if done_at ~= '' then
  redis.call('HSET', job, 'done_at', done_at)
  redis.call('ZADD', K.done_at, done_at, id)
end
append_event(id, offset, tool, body)
if queued then
  -- The entry carries the record, so the node that takes it needs no second read.
  redis.call('XADD', K.queue, '*', 'job', id, 'record', ARGV[4])
  if ARGV[15] and ARGV[15] ~= '' then
    redis.call('ZADD', K.queue_deadlines, ARGV[15], id)
  end
end
return {'new', offset}
"""
)

# ARGV: prefix, id, offset ('~<n>': the next, past n), record, event, state, done_at in
# microseconds ('' for none), then for a cluster node's compare-and-set: the state and attempt
# the stored record must still have ('' : no check), the tool's concurrency cap when this starts
# the job ('' : none), the new attempt, the start deadline in microseconds of a job queued again
# ('' : none; noted for the nodes' sweep of the queue, as a put notes it), then for a job given
# up on (optional): its deliveries, the node, and the length to keep of the dead-letter stream,
# which gets a note in the same atomic write.
# Returns 'new', 'stored' (this very record is stored already: a retried write), {'stale', state,
# attempt} (the job moved on without us) or 'busy' (the tool is at its cap on the cluster).
TRANSITION = (
    LUA_KEYS
    + _WRITES
    + """
local id, offset, state, done_at = ARGV[2], ARGV[3], ARGV[6], ARGV[7]
local prior, prior_attempt, cap = ARGV[8] or '', ARGV[9], ARGV[10] or ''
local job = K.job(id)
local old = redis.call('HMGET', job, 'state', 'tool', 'owner', 'attempt', 'record')
if not old[1] then
  if prior ~= '' then
    -- A cluster node's job whose record Redis lost: the node lets it go, as one superseded.
    return {'stale', '', ''}
  end
  return redis.error_reply('job ' .. id .. ' is not in the store under the prefix ' .. P)
end
if not by_log(offset) then
  if redis.call('ZSCORE', K.job_events(id), offset) then
    return 'stored'
  end
  local refused = check_offset(offset)
  if refused then
    return refused
  end
elseif old[5] == ARGV[4] then
  return 'stored'
end
if prior ~= '' and (old[1] ~= prior or (old[4] and old[4] ~= prior_attempt)) then
  return {'stale', old[1], old[4] or ''}
end
local running = K.running(old[2])
if cap ~= '' and state == 'running' and old[1] ~= 'running' and
    redis.call('ZCARD', running) >= tonumber(cap) then
  return 'busy'
end
local body
offset, body = numbered(offset, ARGV[5])
if old[1] ~= state then
  if old[1] == 'queued' then
    redis.call('ZREM', K.queue_deadlines, id)
  end
  redis.call('ZREM', K.state(old[1]), id)
  redis.call('ZADD', K.state(state), 0, id)
  if old[3] then
    redis.call('ZREM', K.owner_state(old[3], old[1]), id)
    redis.call('ZADD', K.owner_state(old[3], state), 0, id)
  end
end
redis.call('HSET', job, 'record', ARGV[4], 'state', state)
if ARGV[11] then
  redis.call('HSET', job, 'attempt', ARGV[11])
end
if state == 'running' then
  redis.call('ZADD', running, 0, id)
elseif old[1] == 'running' then
  redis.call('ZREM', running, id)
end
if done_at ~= '' then
  redis.call('HSET', job, 'done_at', done_at)
  redis.call('ZADD', K.done_at, done_at, id)
else
  redis.call('HDEL', job, 'done_at')
  redis.call('ZREM', K.done_at, id)
end
append_event(id, offset, old[2], body)
if state == 'queued' and ARGV[12] and ARGV[12] ~= '' then
  redis.call('ZADD', K.queue_deadlines, ARGV[12], id)
end
if ARGV[13] then
  redis.call('XADD', K.dead, 'MAXLEN', '~', ARGV[15], '*', 'job', id, 'deliveries', ARGV[13],
    'node', ARGV[14])
end
return 'new'
"""
)

# KEYS: the indexes that could serve the listing (the smallest is read).
# ARGV: prefix, cursor ('' for the newest), wanted rows, scan budget, then field/value pairs
# every row must match. Returns {last id scanned, 1 if the index ran out, records...}.
LIST = (
    LUA_KEYS
    + """
local wanted, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local index, smallest = KEYS[1], redis.call('ZCARD', KEYS[1])
for i = 2, #KEYS do
  local size = redis.call('ZCARD', KEYS[i])
  if size < smallest then
    index, smallest = KEYS[i], size
  end
end
local top = '+'
if ARGV[2] ~= '' then
  top = '(' .. ARGV[2]
end
local ids = redis.call('ZRANGE', index, top, '-', 'BYLEX', 'REV', 'LIMIT', 0, budget)
local fields = {'record'}
for i = 5, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
end
local out = {'', 0}
if #ids < budget then
  out[2] = 1
end
for _, id in ipairs(ids) do
  out[1] = id
  local row = redis.call('HMGET', K.job(id), unpack(fields))
  local match = row[1] ~= false
  for i = 2, #fields do
    match = match and row[i] == ARGV[2 + 2 * i]
  end
  if match then
    out[#out + 1] = row[1]
    if #out - 2 == wanted then
      break
    end
  end
end
return out
"""
)

# ARGV: prefix, job id, after (exclusive offset), limit, tool ('' for any). Returns event bodies.
EVENTS_OF_JOB = (
    LUA_KEYS
    + """
local offsets = redis.call('ZRANGE', K.job_events(ARGV[2]), '(' .. ARGV[3], '+inf', 'BYSCORE',
  'LIMIT', 0, ARGV[4])
local out = {}
for _, offset in ipairs(offsets) do
  local entry = redis.call('XRANGE', K.events, offset .. '-0', offset .. '-0')[1]
  if entry and (ARGV[5] == '' or entry[2][4] == ARGV[5]) then
    out[#out + 1] = entry[2][6]
  end
end
return out
"""
)

# ARGV: prefix, first offset to scan, scan budget, wanted events, tool.
# Returns {last entry id scanned, 1 if the log ran out, bodies...}.
EVENTS_OF_TOOL = (
    LUA_KEYS
    + """
local budget, wanted = tonumber(ARGV[3]), tonumber(ARGV[4])
local entries = redis.call('XRANGE', K.events, ARGV[2], '+', 'COUNT', budget)
local out = {'', 0}
if #entries < budget then
  out[2] = 1
end
for _, entry in ipairs(entries) do
  out[1] = entry[1]
  if entry[2][4] == ARGV[5] then
    out[#out + 1] = entry[2][6]
    if #out - 2 == wanted then
      break
    end
  end
end
return out
"""
)

# ARGV: prefix, job ids. Deletes each that is finished, then trims the log to the first event
# of the oldest job left (all of it when none is left). Returns how many went.
PURGE = (
    LUA_KEYS
    + """
local finished = {succeeded = true, failed = true, timed_out = true, cancelled = true}
local removed = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local job = K.job(id)
  local row = redis.call('HMGET', job, 'state', 'tool', 'plugin', 'owner', 'idem')
  local state = row[1]
  if state and finished[state] then
    redis.call('ZREM', K.all_jobs, id)
    redis.call('ZREM', K.seq, id)
    redis.call('ZREM', K.done_at, id)
    redis.call('ZREM', K.state(state), id)
    redis.call('ZREM', K.tool(row[2]), id)
    redis.call('ZREM', K.plugin(row[3]), id)
    if row[4] then
      redis.call('ZREM', K.owner(row[4]), id)
      redis.call('ZREM', K.owner_state(row[4], state), id)
    end
    if row[5] and redis.call('HGET', K.idempotency, row[5]) == id then
      redis.call('HDEL', K.idempotency, row[5])
    end
    redis.call('DEL', job, K.job_events(id))
    removed = removed + 1
  end
end
local oldest = redis.call('ZRANGE', K.seq, 0, 0, 'WITHSCORES')
if oldest[2] then
  redis.call('XTRIM', K.events, 'MINID', oldest[2])
else
  redis.call('XTRIM', K.events, 'MAXLEN', 0)
end
return removed
"""
)

# ARGV: prefix, schema, floor. After Redis lost data: the layout version again, and the next
# offset past every offset a node delivered, so no offset is handed out twice.
RESTORE = (
    LUA_KEYS
    + """
redis.call('HSETNX', K.meta, 'schema', ARGV[2])
local last = tonumber(redis.call('HGET', K.meta, 'last') or '0')
if last < tonumber(ARGV[3]) then
  redis.call('HSET', K.meta, 'last', ARGV[3])
  return tonumber(ARGV[3])
end
return last
"""
)

SCRIPTS = {
    "put": PUT,
    "restore": RESTORE,
    "transition": TRANSITION,
    "list": LIST,
    "events_of_job": EVENTS_OF_JOB,
    "events_of_tool": EVENTS_OF_TOOL,
    "purge": PURGE,
}
