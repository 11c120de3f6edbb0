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

local function append_event(id, offset, tool, body)
  redis.call('XADD', K.events, offset .. '-0', 'job', id, 'tool', tool, 'body', body)
  redis.call('ZADD', K.job_events(id), offset, offset)
  redis.call('HSET', K.meta, 'last', offset)
end
"""

# ARGV: prefix, id, offset, record, event, state, tool, plugin, owner, has_owner (1/0),
# idempotency field ('' for none), done_at in microseconds ('' for none).
PUT = (
    LUA_KEYS
    + _WRITES
    + """
local id, offset, state, tool, plugin = ARGV[2], ARGV[3], ARGV[6], ARGV[7], ARGV[8]
local owner, idem, done_at = ARGV[9], ARGV[11], ARGV[12]
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
local refused = check_offset(offset)
if refused then
  return refused
end
redis.call('HSET', job, 'record', ARGV[4], 'state', state, 'tool', tool, 'plugin', plugin,
  'seq', offset)
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
append_event(id, offset, tool, ARGV[5])
return {'new'}
"""
)

# ARGV: prefix, id, offset, record, event, state, done_at in microseconds ('' for none).
TRANSITION = (
    LUA_KEYS
    + _WRITES
    + """
local id, offset, state, done_at = ARGV[2], ARGV[3], ARGV[6], ARGV[7]
local job = K.job(id)
local old = redis.call('HMGET', job, 'state', 'tool', 'owner')
if not old[1] then
  return redis.error_reply('job ' .. id .. ' is not in the store under the prefix ' .. P)
end
if redis.call('ZSCORE', K.job_events(id), offset) then
  return 'stored'
end
local refused = check_offset(offset)
if refused then
  return refused
end
if old[1] ~= state then
  redis.call('ZREM', K.state(old[1]), id)
  redis.call('ZADD', K.state(state), 0, id)
  if old[3] then
    redis.call('ZREM', K.owner_state(old[3], old[1]), id)
    redis.call('ZADD', K.owner_state(old[3], state), 0, id)
  end
end
redis.call('HSET', job, 'record', ARGV[4], 'state', state)
if done_at ~= '' then
  redis.call('HSET', job, 'done_at', done_at)
  redis.call('ZADD', K.done_at, done_at, id)
else
  redis.call('HDEL', job, 'done_at')
  redis.call('ZREM', K.done_at, id)
end
append_event(id, offset, old[2], ARGV[5])
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

SCRIPTS = {
    "put": PUT,
    "transition": TRANSITION,
    "list": LIST,
    "events_of_job": EVENTS_OF_JOB,
    "events_of_tool": EVENTS_OF_TOOL,
    "purge": PURGE,
}
